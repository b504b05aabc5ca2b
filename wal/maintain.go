package wal

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"go.uber.org/zap"
)

// maintain deletes the segments every consumer has committed past and
// enforces the disk cap.
func (w *WAL) maintain() {
	if err := w.truncateConsumed(); err != nil {
		w.m.truncationErrors.Inc()
		w.logger.Error("WAL truncation failed", zap.Error(err))
	}
	if w.opts.WhenFull == DropOldest && (w.opts.MaxSize > 0 || w.opts.MinFree > 0) {
		if err := w.dropOldest(); err != nil {
			w.m.truncationErrors.Inc()
			w.logger.Error("WAL disk cap: dropping old segments failed", zap.Error(err))
		}
	}
}

// truncateConsumed deletes segments before the lowest committed position.
// With no consumer registered nothing is deleted: the data waits for one
// (or for the disk cap).
func (w *WAL) truncateConsumed() error {
	w.truncMu.Lock()
	defer w.truncMu.Unlock()
	w.readersMu.Lock()
	low, n := Position{Segment: int(w.headSg.Load())}, len(w.readers)
	for _, r := range w.readers {
		low = minPosition(low, *r.committed.Load())
	}
	w.readersMu.Unlock()
	first, _ := w.segmentRange()
	if n == 0 || low.Segment <= first {
		return nil
	}
	return w.truncate(low.Segment)
}

// dropOldest deletes the oldest sealed segments until the log fits its cap
// (MaxSize, and MinFree plus one segment free on its filesystem), moving
// readers that had not finished them and reporting their losses.
func (w *WAL) dropOldest() error {
	w.truncMu.Lock()
	defer w.truncMu.Unlock()
	excess, reason := w.dropTarget()
	if excess <= 0 {
		return nil
	}
	w.mu.Lock()
	upTo := w.first
	var bytes int64
	for upTo < w.head.Segment && excess > 0 {
		excess -= w.sizes[upTo]
		bytes += w.sizes[upTo]
		upTo++
	}
	first := w.first
	w.mu.Unlock()
	if upTo == first {
		return nil
	}
	to := Position{Segment: upTo}
	var affected []string
	w.readersMu.Lock()
	readers := make([]*Reader, 0, len(w.readers))
	for _, r := range w.readers {
		readers = append(readers, r)
	}
	w.readersMu.Unlock()
	for _, r := range readers {
		r.mu.Lock()
		from := r.pos
		if r.jump != nil {
			from = *r.jump
		}
		if !from.Less(to) && !r.committed.Load().Less(to) {
			r.mu.Unlock()
			continue
		}
		// The consumer has not stored everything before to: it may hold
		// records it read from the dropped segments, and is told, even
		// when it read them all (n is 0).
		var n Lost
		if from.Less(to) {
			var err error
			if n, err = w.countLost(from, upTo); err != nil {
				w.logger.Error("Counting the samples a consumer loses to the disk cap failed; the count is a lower bound",
					zap.String("consumer", r.name), zap.Error(err))
			}
			r.jump = &to
			affected = append(affected, fmt.Sprintf("%s (%d samples, %d exemplars)", r.name, n.Samples, n.Exemplars))
		} else {
			from = to
		}
		r.mu.Unlock()
		if r.onDrop != nil {
			r.onDrop(n, from, to)
		}
	}
	if err := w.truncate(upTo); err != nil {
		return err
	}
	w.m.droppedSegments.Add(float64(upTo - first))
	w.m.droppedBytes.Add(float64(bytes))
	slices.Sort(affected)
	w.logger.Error("WAL reached its disk cap: dropped the oldest segments before every consumer stored them",
		zap.String("limit", reason), zap.Int("first_segment", first), zap.Int("last_segment", upTo-1), zap.Int64("bytes", bytes),
		zap.Int64("max_size", w.opts.MaxSize), zap.Int64("min_free_disk", w.opts.MinFree),
		zap.String("unread_samples", strings.Join(affected, ", ")))
	return nil
}

// countLost counts the samples and exemplars from p to the end of segment
// upTo-1.
func (w *WAL) countLost(p Position, upTo int) (Lost, error) {
	dec := newDecoder(w.slog)
	var n Lost
	for seg := p.Segment; seg < upTo; seg++ {
		from := int64(0)
		if seg == p.Segment {
			from = p.Offset
		}
		_, err := w.replaySegmentReadOnly(seg, func(rec []byte, end int64) {
			if end <= from {
				return
			}
			if s, x, err := dec.count(rec); err == nil {
				n.Samples += s
				n.Exemplars += x
			}
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// replaySegmentReadOnly calls fn with every intact record of seg and the
// offset just past it.
func (w *WAL) replaySegmentReadOnly(seg int, fn func(rec []byte, end int64)) (int64, error) {
	f, err := w.fs.Open(wlog.SegmentName(w.dir, seg))
	if err != nil {
		return 0, fmt.Errorf("open segment %d: %w", seg, err)
	}
	defer f.Close()
	r := wlog.NewLiveReader(w.slog, w.liveMetrics, f)
	for r.Next() {
		fn(r.Record(), r.Offset())
	}
	return r.Offset(), nil
}

// truncate forgets the series with no record in a segment from upTo on
// whose last segment was sealed over Options.SeriesGrace ago, carries the
// others whose Series record is in a segment before upTo into the
// checkpoint chain, and deletes the segments before upTo. w.truncMu is held.
func (w *WAL) truncate(upTo int) error {
	start := time.Now()
	w.mu.Lock()
	// Every series with a Series record before segment upTo has a smaller ref.
	bound, ok := w.refStart[upTo]
	forget := w.forgetBelow(upTo)
	w.mu.Unlock()
	// Forget series atomically with respect to appends: an append either
	// finished before (and recorded its segment in the table) or looks the
	// series up after and creates it anew.
	w.gcMu.Lock()
	w.series.mu.Lock()
	if !ok {
		bound = w.series.nextRef
	}
	removed, kept, covered, fresh := 0, 0, 0, 0
	w.series.all(func(ref Ref, wire []byte) {
		if w.series.lastSeen(ref) < forget {
			w.series.remove(ref, w.series.fingerprintWire(wire))
			removed++
			return
		}
		kept++
		switch {
		case ref < w.chain.end:
			covered++
		case ref < bound:
			fresh++
		}
	})
	w.series.compact()
	w.series.mu.Unlock()
	w.gcMu.Unlock()
	w.m.seriesRemoved.Add(float64(removed))
	// Families can only lose their last series when a series was removed,
	// or have none when they are new.
	if removed > 0 || w.meta.len() != w.prunedFamilies {
		w.pruneMetadata()
		w.prunedFamilies = w.meta.len()
	}

	cp := upTo - 1
	chain := w.chain
	full := chain.needsFullCheckpoint(covered, fresh)
	from, extends := max(chain.end, 1), chain.members
	if full {
		from, extends = 1, nil
	}
	bound = max(bound, chain.end)
	n, size, err := w.writeCheckpoint(cp, from, bound, extends)
	if err != nil {
		return fmt.Errorf("wal: write checkpoint %d: %w", cp, err)
	}
	if full {
		chain = checkpointChain{}
	}
	w.chain = checkpointChain{
		members: append(slices.Clip(chain.members), cp),
		records: chain.records + n,
		size:    chain.size + size,
		end:     bound,
	}
	w.m.checkpointSeries.Add(float64(n))
	w.mu.Lock()
	first := w.first
	w.first = upTo
	for s := first; s < upTo; s++ {
		delete(w.sizes, s)
		delete(w.refStart, s)
	}
	w.cpSize = w.chain.size
	w.publishHead()
	w.mu.Unlock()

	var errs []error
	for s := first; s < upTo; s++ {
		if err := w.fs.Remove(wlog.SegmentName(w.dir, s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove segment %d: %w", s, err))
		}
	}
	if err := w.removeCheckpointsOutside(w.chain.members); err != nil {
		errs = append(errs, err)
	}
	w.m.truncations.Inc()
	w.m.checkpointSeconds.Observe(time.Since(start).Seconds())
	w.logger.Debug("WAL truncated", zap.Int("first_segment", upTo), zap.Int("live_series", kept),
		zap.Int("removed_series", removed), zap.Int("checkpointed_series", n), zap.Bool("full_checkpoint", full),
		zap.Int("checkpoint_chain", len(w.chain.members)), zap.Duration("took", time.Since(start)))
	return errors.Join(errs...)
}

// pruneMetadata forgets the metadata of families no series is left of.
// Appends go on meanwhile: a family whose series comes back has its
// metadata written again when it is next sent.
func (w *WAL) pruneMetadata() {
	if w.meta.len() == 0 {
		return
	}
	names := map[string]struct{}{}
	w.series.mu.RLock()
	w.series.all(func(_ Ref, wire []byte) {
		// A lookup by string(name) does not allocate; only a new name is
		// copied.
		if name := model.WireName(wire); !hasKey(names, name) {
			names[string(name)] = struct{}{}
		}
	})
	w.series.mu.RUnlock()
	w.meta.prune(names)
}

// forgetBelow returns the segment below which the series whose newest
// record is there may be forgotten when the segments before upTo go: the
// lowest segment sealed within the grace period, at most upTo. It forgets
// the seal times of the segments below it; w.mu is held.
func (w *WAL) forgetBelow(upTo int) int {
	below := upTo
	cutoff := w.now().Add(-w.opts.SeriesGrace)
	for seg, at := range w.sealedAt {
		if seg < below && at.After(cutoff) {
			below = seg
		}
	}
	for seg := range w.sealedAt {
		if seg < below {
			delete(w.sealedAt, seg)
		}
	}
	return below
}

func hasKey(m map[string]struct{}, k []byte) bool {
	_, ok := m[string(k)]
	return ok
}
