package sender

import (
	"strings"
	"testing"

	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/prometheus/model/labels"
)

// A series looked up in every round keeps its entry; one that stops being looked up is forgotten within two rounds.
func TestSeriesMemoForgetsSeriesThatStopped(t *testing.T) {
	m := newSeriesMemo()
	active := &seriesInfo{wire: wal.WireOf(labels.FromStrings("__name__", "up"))}
	m.put(1, active)
	m.put(2, &seriesInfo{wire: wal.WireOf(labels.FromStrings("__name__", "gone"))})
	forgotten := 0
	for round := range 3 {
		for range minMemoRound {
			if m.get(1) != active {
				t.Fatalf("round %d: the active series' entry changed", round)
			}
			forgotten += m.age()
		}
	}
	if m.get(2) != nil {
		t.Fatal("a series not looked up for three rounds is still held")
	}
	if forgotten != 1 {
		t.Fatalf("age reported %d series forgotten, want 1", forgotten)
	}
	if n := m.len(); n != 1 {
		t.Fatalf("memo holds %d entries, want 1", n)
	}
}

func TestRefMapGrowsAndResets(t *testing.T) {
	var x refMap
	infos := map[uint64]*seriesInfo{}
	for i := range uint64(10_000) {
		ref := i*i + 1 // sparse, as refs are after churn
		infos[ref] = &seriesInfo{}
		x.put(ref, infos[ref])
	}
	for ref, si := range infos {
		if x.get(ref) != si {
			t.Fatalf("ref %d: wrong entry", ref)
		}
	}
	if x.get(3) != nil || x.n != len(infos) {
		t.Fatalf("absent ref found, or %d entries for %d puts", x.n, len(infos))
	}
	x.reset(len(infos))
	if x.get(1) != nil || x.n != 0 {
		t.Fatal("reset kept entries")
	}
	x.reset(0) // far larger than needed: slots are released
	if x.slots != nil {
		t.Fatalf("reset for an empty generation kept %d slots", len(x.slots))
	}
}

// The sender reads the metric name and the labels back from the wire form
// the WAL keeps.
func TestWireForm(t *testing.T) {
	long := strings.Repeat("x", 300) // a two-byte length
	ls := labels.FromStrings("A", "upper", "__name__", "up", "job", long, "zone", "")
	w := wal.WireOf(ls)
	if got := wal.LabelsOfWire(w); !labels.Equal(got, ls) {
		t.Fatalf("round trip: %v, want %v", got, ls)
	}
	if got := wireName(w); got != "up" {
		t.Fatalf("wireName: %q", got)
	}
	if got := wireName(wal.WireOf(labels.FromStrings("job", "x"))); got != "" {
		t.Fatalf("wireName without a name: %q", got)
	}
}
