package wal

import (
	"strings"
	"testing"

	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/model/labels"
)

// Distinct label sets that share the primary hash are kept apart by the
// check hash, and removing either keeps the other findable.
func TestSeriesTablePrimaryHashCollision(t *testing.T) {
	tab := newSeriesTable()
	a := fingerprint{h: 42, check: 1}
	b := fingerprint{h: 42, check: 2}
	tab.insert(&series{ref: 1, wire: WireOf(labels.FromStrings("a", "1"))}, a)
	tab.insert(&series{ref: 2, wire: WireOf(labels.FromStrings("b", "2"))}, b)
	if tab.lookup(a) != 1 || tab.lookup(b) != 2 {
		t.Fatalf("lookup: a→%d b→%d", tab.lookup(a), tab.lookup(b))
	}
	if tab.lookup(fingerprint{h: 42, check: 3}) != 0 {
		t.Fatal("a third label set with the same primary hash was found")
	}
	tab.remove(tab.get(1), a)
	if tab.lookup(a) != 0 || tab.lookup(b) != 2 {
		t.Fatalf("after removing a: a→%d b→%d", tab.lookup(a), tab.lookup(b))
	}
	tab.remove(tab.get(2), b)
	if tab.lookup(b) != 0 || tab.len() != 0 || tab.index.n != 0 {
		t.Fatalf("table not empty: %d series, %d indexed", tab.len(), tab.index.n)
	}
}

func TestFingerprintOfPairsAndLabelsAgree(t *testing.T) {
	tab := newSeriesTable()
	ls := labels.FromStrings("__name__", "up", "job", "node")
	fpl, _ := tab.fingerprintLabels(ls, nil)
	fpp, _ := tab.fingerprintPairs([]model.Label{{Name: []byte("__name__"), Value: []byte("up")}, {Name: []byte("job"), Value: []byte("node")}}, nil)
	if fpl != fpp {
		t.Fatalf("fingerprints differ: %v vs %v", fpl, fpp)
	}
	// Moving the boundary between name and value changes the fingerprint.
	other, _ := tab.fingerprintPairs([]model.Label{{Name: []byte("__name__u"), Value: []byte("p")}, {Name: []byte("job"), Value: []byte("node")}}, nil)
	if other == fpp {
		t.Fatal("different label sets share a fingerprint")
	}
}

func TestRefSet(t *testing.T) {
	var s refSet
	for _, r := range []Ref{1000, 5, 64, 63, 200000} {
		s.add(r)
	}
	for _, r := range []Ref{1000, 5, 64, 63, 200000} {
		if !s.has(r) {
			t.Errorf("ref %d missing", r)
		}
	}
	for _, r := range []Ref{0, 4, 6, 62, 65, 999, 1001, 199999, 300000} {
		if s.has(r) {
			t.Errorf("ref %d present", r)
		}
	}
	var nilSet *refSet
	if nilSet.has(1) {
		t.Error("nil set has a ref")
	}
}

// Labels survive their wire form, including empty values and lengths
// that take two bytes.
func TestLabelsOfWire(t *testing.T) {
	ls := labels.FromStrings("A", "upper", "__name__", "up", "job", strings.Repeat("x", 300), "zone", "")
	w := WireOf(ls)
	if got := LabelsOfWire(w); !labels.Equal(got, ls) {
		t.Fatalf("round trip: %v, want %v", got, ls)
	}
	if cap(w) != len(w) {
		t.Fatalf("WireOf allocated %d bytes for %d (model.WireLabelSize disagrees with AppendWireLabel)", cap(w), len(w))
	}
	if got := string(model.WireName(WireOf(ls))); got != "up" {
		t.Fatalf("WireName: %q", got)
	}
	if !LabelsOfWire(nil).IsEmpty() {
		t.Fatal("no wire form gives labels")
	}
}
