package sender

import (
	"testing"

	"github.com/ferrymetrics/ferry/wal"
)

func TestTrackerAdvancesOnlyPastFullyAcknowledgedRecords(t *testing.T) {
	start := walCursor(wal.Position{Segment: 3, Offset: 10})
	tr := newTracker(start)
	pos := func(o int64) Cursor { return walCursor(wal.Position{Segment: 3, Offset: o}) }
	s0 := tr.next()
	tr.add(pos(100), 2, false)
	s1 := tr.next()
	tr.add(pos(200), 1, false)
	s2 := tr.next()
	tr.add(pos(300), 0, false) // everything relabelled away

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
		tr.add(pos(int64(400+i)), 1, false)
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

// The disk cap writes off what was read but not delivered from the segments
// it deleted: each sample is counted once, acknowledgements that come later
// are ignored, and the shards see which items to discard.
func TestTrackerWriteOff(t *testing.T) {
	tr := newTracker(walCursor(wal.Position{Segment: 1}))
	at := func(seg int, o int64) Cursor { return walCursor(wal.Position{Segment: seg, Offset: o}) }
	s0 := tr.next()
	tr.add(at(1, 100), 3, false)
	s1 := tr.next()
	tr.add(at(2, 100), 2, false)
	tr.next()
	tr.add(at(2, 200), 1, true)
	tr.ack(s0, 1) // one sample of record 0 was delivered

	// Segments 1..3 are dropped: the reader moves to 4:0.
	if n, x := tr.writeOff(at(4, 0)); n != 2+2 || x != 1 {
		t.Fatalf("wrote off %d samples and %d exemplars, want 4 (2 of record 0, 2 of record 1) and 1", n, x)
	}
	if p, _ := tr.position(); p != at(2, 200) {
		t.Fatalf("checkpoint %v, want %v", p, at(2, 200))
	}
	// A record dispatched while the drop happened is written off at add.
	s3 := tr.next()
	if n := tr.add(at(3, 50), 5, false); n != 5 {
		t.Fatalf("add of a dropped record wrote off %d samples, want 5", n)
	}
	s2 := tr.next()
	if n := tr.add(at(4, 100), 4, false); n != 0 { // read after the reader jumped: kept
		t.Fatalf("add of a retained record wrote off %d samples", n)
	}
	// A shard's batch, grouped by series: written-off items anywhere.
	batch := []item{{rec: s0, ref: 1}, {rec: s2, ref: 1}, {rec: s1}, {rec: s2}, {rec: s3}, {rec: s1}, {rec: s2, ref: 3}}
	live, k := tr.dropRetired(batch)
	if k != 4 || len(live) != 3 || live[0].ref != 1 || live[2].ref != 3 {
		t.Fatalf("dropRetired removed %d, left %+v; want 4 removed and the record-%d items in order", k, live, s2)
	}
	tr.ack(s1, 2) // a late acknowledgement of written-off samples is ignored
	tr.ackItems(append(live, item{rec: s2}))
	if p, _ := tr.position(); p != at(4, 100) {
		t.Fatalf("checkpoint %v, want %v", p, at(4, 100))
	}
	if tr.pending() != 0 {
		t.Fatalf("%d records pending", tr.pending())
	}
}
