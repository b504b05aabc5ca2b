package wal

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// Ref identifies a series in the log. Refs are never reused within a log.
type Ref = chunks.HeadSeriesRef

// series is the one in-memory copy of a series' labels, shared by the writer
// and every reader.
type series struct {
	ref    Ref
	hash   uint64
	labels labels.Labels
	// lastSeg is the newest segment holding a sample of this series. A
	// truncation that deletes every segment before lastSeg+1 may forget it.
	lastSeg atomic.Int64
	next    *series // next series with the same hash
}

// seriesTable maps label sets to refs for the writer and refs to labels for
// readers.
type seriesTable struct {
	mu      sync.RWMutex
	byHash  map[uint64]*series
	byRef   map[Ref]*series
	nextRef Ref
}

func newSeriesTable() *seriesTable {
	return &seriesTable{byHash: map[uint64]*series{}, byRef: map[Ref]*series{}, nextRef: 1}
}

// lookup finds the series with exactly these label pairs. The caller holds
// t.mu for reading.
func (t *seriesTable) lookup(hash uint64, ls []Label) *series {
	for s := t.byHash[hash]; s != nil; s = s.next {
		if equalPairs(s.labels, ls) {
			return s
		}
	}
	return nil
}

// insert adds s; the caller holds t.mu for writing.
func (t *seriesTable) insert(s *series) {
	s.next = t.byHash[s.hash]
	t.byHash[s.hash] = s
	t.byRef[s.ref] = s
	if s.ref >= t.nextRef {
		t.nextRef = s.ref + 1
	}
}

// remove deletes s; the caller holds t.mu for writing.
func (t *seriesTable) remove(s *series) {
	delete(t.byRef, s.ref)
	head := t.byHash[s.hash]
	if head == s {
		if s.next == nil {
			delete(t.byHash, s.hash)
		} else {
			t.byHash[s.hash] = s.next
		}
		return
	}
	for p := head; p != nil; p = p.next {
		if p.next == s {
			p.next = s.next
			return
		}
	}
}

func (t *seriesTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byRef)
}

// hashPairs hashes label pairs; hashLabels gives the same value for the
// equivalent labels.Labels.
func hashPairs(ls []Label, buf []byte) (uint64, []byte) {
	buf = buf[:0]
	for _, l := range ls {
		buf = append(buf, l.Name...)
		buf = append(buf, 0xff)
		buf = append(buf, l.Value...)
		buf = append(buf, 0xff)
	}
	return xxhash.Sum64(buf), buf
}

func hashLabels(ls labels.Labels, buf []byte) (uint64, []byte) {
	buf = buf[:0]
	ls.Range(func(l labels.Label) {
		buf = append(buf, l.Name...)
		buf = append(buf, 0xff)
		buf = append(buf, l.Value...)
		buf = append(buf, 0xff)
	})
	return xxhash.Sum64(buf), buf
}

func equalPairs(ls labels.Labels, pairs []Label) bool {
	if ls.Len() != len(pairs) {
		return false
	}
	i, eq := 0, true
	ls.Range(func(l labels.Label) {
		if eq && (l.Name != yoloString(pairs[i].Name) || l.Value != yoloString(pairs[i].Value)) {
			eq = false
		}
		i++
	})
	return eq
}

// labelsFromPairs builds a labels.Labels that owns its memory.
func labelsFromPairs(b *labels.ScratchBuilder, pairs []Label) labels.Labels {
	b.Reset()
	for _, l := range pairs {
		b.Add(yoloString(l.Name), yoloString(l.Value))
	}
	return b.Labels()
}

// yoloString views b as a string without copying; the string must not
// outlive b's contents.
func yoloString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
