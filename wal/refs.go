package wal

import (
	"fmt"

	"github.com/prometheus/prometheus/model/labels"
)

// UnknownRefError is returned by AppendRefs for a ref the log no longer
// holds: truncation forgot its series after Resolve returned it.
type UnknownRefError struct {
	Ref   Ref
	Index int // of the series in the batch
}

func (e *UnknownRefError) Error() string {
	return fmt.Sprintf("wal: series ref %d (batch series %d) is no longer in the log", e.Ref, e.Index)
}

// Resolve returns the ref of the series ls, creating the series when the
// log does not hold it: its Series record is written now, ahead of any
// sample, and made durable with the first append that uses it. ls must not
// be modified afterwards (the log keeps it).
//
// Resolve and AppendRefs serve writers that keep refs across appends (the
// scraper caches one per series), so that a steady append costs no label
// hashing.
func (w *WAL) Resolve(ls labels.Labels) (Ref, error) {
	buf, _ := w.bufs.Get().(*appendBuf)
	if buf == nil {
		buf = &appendBuf{builder: labels.NewScratchBuilder(16)}
	}
	defer w.bufs.Put(buf)
	t := w.series
	var fp fingerprint
	fp, buf.hashBuf = t.fingerprintLabels(ls, buf.hashBuf)

	w.gcMu.RLock()
	defer w.gcMu.RUnlock()
	t.mu.RLock()
	ref := t.lookup(fp)
	t.mu.RUnlock()
	if ref != 0 {
		return ref, nil
	}
	if err := w.checkSpace(); err != nil {
		return 0, err
	}
	refs := [1]Ref{}
	if err := w.createSeries(refs[:], []fingerprint{fp}, func(int) []byte { return buf.hashBuf }); err != nil {
		return 0, fmt.Errorf("wal: create series %s: %w", ls, err)
	}
	return refs[0], nil
}

// Holds reports whether the log holds the series ref.
func (w *WAL) Holds(ref Ref) bool {
	t := w.series
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.has(ref)
}

// checkRefs fails with an *UnknownRefError for the first of refs the log
// does not hold. gcMu is held for reading, so the answer stays true until
// the records are written.
func (w *WAL) checkRefs(refs []Ref) error {
	t := w.series
	t.mu.RLock()
	defer t.mu.RUnlock()
	for i, ref := range refs {
		if !t.has(ref) {
			return &UnknownRefError{Ref: ref, Index: i}
		}
	}
	return nil
}
