package sender

import (
	"sort"
	"sync"
)

// tracker finds the checkpoint: the end of the longest prefix of the log's
// entries ("records") whose every sample was acknowledged (or deliberately
// dropped). Records are added in log order by the reading goroutine and
// acknowledged in any order by the shards.
type tracker struct {
	mu      sync.Mutex
	base    uint64 // sequence number of recs[head]
	recs    []trackedRecord
	head    int
	done    Cursor
	changed bool
	// writeOffTo is where the disk cap last moved the reader: records
	// ending before it are written off.
	writeOffTo Cursor
}

type trackedRecord struct {
	end       Cursor
	remaining int
	exemplars bool // an exemplars record: its items are exemplars
}

func newTracker(start Cursor) *tracker { return &tracker{done: start} }

// next returns the sequence number the next add will assign.
func (t *tracker) next() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.base + uint64(len(t.recs)-t.head)
}

// add registers a record ending at end with n items in flight (exemplars
// if exemplars is set, else samples). A record the disk cap dropped while
// it was being dispatched is written off at once: add returns how many
// items that wrote off.
func (t *tracker) add(end Cursor, n int, exemplars bool) (writtenOff int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.head > 0 && t.head >= len(t.recs)/2 {
		k := copy(t.recs, t.recs[t.head:])
		t.recs = t.recs[:k]
		t.head = 0
	}
	if end.Less(t.writeOffTo) {
		writtenOff, n = n, 0
	}
	t.recs = append(t.recs, trackedRecord{end: end, remaining: n, exemplars: exemplars})
	t.advance()
	return writtenOff
}

// ack marks n items of record seq as done. Items of a record already
// written off are ignored.
func (t *tracker) ack(seq uint64, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq < t.base {
		return
	}
	t.recs[t.head+int(seq-t.base)].remaining -= n
	t.advance()
}

// ackItems marks every item of batch as done, in one step.
func (t *tracker) ackItems(batch []item) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range batch {
		if seq := batch[i].rec; seq >= t.base {
			t.recs[t.head+int(seq-t.base)].remaining--
		}
	}
	t.advance()
}

// writeOff retires every record that ends before to, the cursor the disk
// cap moved the reader to once it deleted the segments before it, and
// returns the number of their samples and exemplars not yet acknowledged:
// read, but now never to be delivered.
func (t *tracker) writeOff(to Cursor) (samples, exemplars int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.writeOffTo.Less(to) {
		t.writeOffTo = to
	}
	for i := t.head; i < len(t.recs) && t.recs[i].end.Less(to); i++ {
		if t.recs[i].exemplars {
			exemplars += t.recs[i].remaining
		} else {
			samples += t.recs[i].remaining
		}
		t.recs[i].remaining = 0
	}
	t.advance()
	return samples, exemplars
}

// dropRetired removes from batch, in place and keeping the order of the
// rest, the items of retired records (in a shard's hands, only written-off
// ones are), and returns what is left and how many it removed.
func (t *tracker) dropRetired(batch []item) ([]item, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := 0
	for i := range batch {
		if batch[i].rec >= t.base {
			if k != i {
				batch[k] = batch[i]
			}
			k++
		}
	}
	return batch[:k], len(batch) - k
}

func (t *tracker) advance() {
	for t.head < len(t.recs) && t.recs[t.head].remaining == 0 {
		t.done = t.recs[t.head].end
		t.changed = true
		t.head++
		t.base++
	}
}

// position returns the checkpoint and whether it moved since the last call.
func (t *tracker) position() (Cursor, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.changed
	t.changed = false
	return t.done, c
}

// pending returns the number of records not fully acknowledged.
func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.recs) - t.head
}

// seqOf returns the sequence number of the record ending at end, if it is
// still tracked (not yet retired).
func (t *tracker) seqOf(end Cursor) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := t.recs[t.head:]
	i := sort.Search(len(live), func(i int) bool { return !live[i].end.Less(end) })
	if i == len(live) || live[i].end != end {
		return 0, false
	}
	return t.base + uint64(i), true
}
