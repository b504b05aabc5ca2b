package sender

import (
	"testing"

	"github.com/ferrymetrics/ferry/wal"
)

func TestTrackerAdvancesOnlyPastFullyAcknowledgedRecords(t *testing.T) {
	start := wal.Position{Segment: 3, Offset: 10}
	tr := newTracker(start)
	pos := func(o int64) wal.Position { return wal.Position{Segment: 3, Offset: o} }
	s0 := tr.next()
	tr.add(pos(100), 2)
	s1 := tr.next()
	tr.add(pos(200), 1)
	s2 := tr.next()
	tr.add(pos(300), 0) // everything relabelled away

	tr.ack(s1, 1) // a later record first: nothing moves
	if p, _ := tr.position(); p != start {
		t.Fatalf("checkpoint moved to %v before record 0 was acknowledged", p)
	}
	tr.ack(s0, 1)
	if p, _ := tr.position(); p != start {
		t.Fatalf("checkpoint moved to %v with one sample of record 0 unacknowledged", p)
	}
	tr.ack(s0, 1)
	if p, changed := tr.position(); p != pos(300) || !changed {
		t.Fatalf("checkpoint %v (changed %v), want %v", p, changed, pos(300))
	}
	if _, changed := tr.position(); changed {
		t.Fatal("position reported a change twice")
	}
	_ = s2
	// Many records: compaction keeps sequence numbers right.
	var seqs []uint64
	for i := range 100 {
		seqs = append(seqs, tr.next())
		tr.add(pos(int64(400+i)), 1)
	}
	for i := len(seqs) - 1; i >= 0; i-- {
		tr.ack(seqs[i], 1)
	}
	if p, _ := tr.position(); p != pos(499) {
		t.Fatalf("checkpoint %v, want %v", p, pos(499))
	}
	if tr.pending() != 0 {
		t.Fatalf("%d records pending", tr.pending())
	}
}
