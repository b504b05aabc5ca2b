package wal

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/record"
)

// Distinct label sets that share the primary hash are kept apart by the
// check hash, and removing either keeps the other findable.
func TestSeriesTablePrimaryHashCollision(t *testing.T) {
	tab := newSeriesTable()
	a := fingerprint{h: 42, check: 1}
	b := fingerprint{h: 42, check: 2}
	tab.insert(1, WireOf(labels.FromStrings("a", "1")), a)
	tab.insert(2, WireOf(labels.FromStrings("b", "2")), b)
	if tab.lookup(a) != 1 || tab.lookup(b) != 2 {
		t.Fatalf("lookup: a→%d b→%d", tab.lookup(a), tab.lookup(b))
	}
	if tab.lookup(fingerprint{h: 42, check: 3}) != 0 {
		t.Fatal("a third label set with the same primary hash was found")
	}
	tab.remove(1, a)
	if tab.lookup(a) != 0 || tab.lookup(b) != 2 {
		t.Fatalf("after removing a: a→%d b→%d", tab.lookup(a), tab.lookup(b))
	}
	tab.remove(2, b)
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

// Series records encoded from wire form are byte for byte what
// tsdb/record's encoder writes, and decode back to the same labels.
func TestSeriesRecordFromWire(t *testing.T) {
	var enc record.Encoder
	sets := []labels.Labels{
		labels.FromStrings("__name__", "up", "job", "node", "instance", "localhost:9100"),
		labels.FromStrings("a", strings.Repeat("x", 300)),
		labels.EmptyLabels(),
	}
	var rs []record.RefSeries
	b := startSeries(nil)
	for i, ls := range sets {
		rs = append(rs, record.RefSeries{Ref: Ref(1000 + i), Labels: ls})
		b = appendSeries(b, Ref(1000+i), WireOf(ls))
	}
	if want := enc.Series(rs, nil); !bytes.Equal(b, want) {
		t.Fatalf("Series record from wire form:\n%x\nwant\n%x", b, want)
	}
	d := newDecoder(nil)
	if k, err := d.decode(b); err != nil || k != kindSeries || len(d.series) != len(sets) {
		t.Fatalf("decode: kind %v, %d series, %v", k, len(d.series), err)
	}
	for i, s := range d.series {
		if s.Ref != Ref(1000+i) || !labels.Equal(LabelsOfWire(s.Wire), sets[i]) {
			t.Fatalf("series %d decoded as %d %s", i, s.Ref, LabelsOfWire(s.Wire))
		}
	}
	// A label count larger than the record can hold is refused without
	// allocating for it.
	bad := append(startSeries(nil), 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f)
	if _, err := d.decode(bad); err == nil {
		t.Fatal("a series with a huge label count decoded")
	}
}

// The slabs are rewritten once most of what they hold is removed; labels
// handed out before stay intact.
func TestSeriesTableCompactsSlabs(t *testing.T) {
	tab := newSeriesTable()
	label := strings.Repeat("v", 200)
	const n = 5 * slabSize / 200
	var held [][]byte
	for i := 1; i <= n; i++ {
		w := WireOf(labels.FromStrings("id", fmt.Sprint(i), "pad", label))
		tab.insert(Ref(i), w, tab.fingerprintWire(w))
		if i%1000 == 0 {
			held = append(held, tab.wire(Ref(i)))
		}
	}
	before := len(tab.slabs)
	for i := 1; i <= n; i++ {
		if i%10 != 0 {
			tab.remove(Ref(i), tab.fingerprintWire(tab.wire(Ref(i))))
		}
	}
	tab.compact()
	if len(tab.slabs) >= before/2 || tab.used != tab.size {
		t.Fatalf("after removing 90%%: %d slabs (from %d), %d of %d bytes live", len(tab.slabs), before, tab.used, tab.size)
	}
	for i := 10; i <= n; i += 10 {
		w := WireOf(labels.FromStrings("id", fmt.Sprint(i), "pad", label))
		if got := tab.wire(Ref(i)); !bytes.Equal(got, w) || tab.lookup(tab.fingerprintWire(w)) != Ref(i) {
			t.Fatalf("series %d after compaction: %q", i, got)
		}
	}
	for k, h := range held {
		if got := LabelsOfWire(h).Get("id"); got != fmt.Sprint((k+1)*1000) {
			t.Fatalf("labels handed out before compaction changed: id %q", got)
		}
	}
}
