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

// checkpointSegmentSize bounds the segment files of a checkpoint.
const checkpointSegmentSize = 64 << 20

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

// truncate forgets series no segment from upTo on references, writes a
// checkpoint with the others, and deletes the segments before upTo. w.truncMu
// is held.
func (w *WAL) truncate(upTo int) error {
	start := time.Now()
	// Forget series atomically with respect to appends: an append either
	// finished before (and marked its refs in its segment's set) or looks
	// the series up after and creates it anew.
	w.gcMu.Lock()
	w.series.mu.Lock()
	var keep []*refSet
	for seg, set := range w.live {
		if seg >= upTo {
			keep = append(keep, set)
		} else {
			delete(w.live, seg)
		}
	}
	// In ref order; the labels stay valid after compact (slabs are never
	// rewritten in place).
	live := make([]wireSeries, 0, w.series.count)
	removed := 0
	names := map[string]struct{}{}
	w.series.all(func(ref Ref, wire []byte) {
		for _, set := range keep {
			if set.has(ref) {
				live = append(live, wireSeries{Ref: ref, Wire: wire})
				// A lookup by string(name) does not allocate; only a new
				// name is copied.
				if name := model.WireName(wire); !hasKey(names, name) {
					names[string(name)] = struct{}{}
				}
				return
			}
		}
		w.series.remove(ref, w.series.fingerprintWire(wire))
		removed++
	})
	w.series.compact()
	w.series.mu.Unlock()
	w.gcMu.Unlock()
	w.m.seriesRemoved.Add(float64(removed))
	w.meta.prune(names)

	cp := upTo - 1
	size, err := w.writeCheckpoint(cp, live)
	if err != nil {
		return fmt.Errorf("wal: write checkpoint %d: %w", cp, err)
	}
	w.mu.Lock()
	first := w.first
	w.first = upTo
	for s := first; s < upTo; s++ {
		delete(w.sizes, s)
	}
	w.cpSize = size
	w.publishHead()
	w.mu.Unlock()

	var errs []error
	for s := first; s < upTo; s++ {
		if err := w.fs.Remove(wlog.SegmentName(w.dir, s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove segment %d: %w", s, err))
		}
	}
	if _, err := w.lastCheckpoint(); err != nil {
		errs = append(errs, err)
	}
	w.m.truncations.Inc()
	w.m.checkpointSeconds.Observe(time.Since(start).Seconds())
	w.logger.Debug("WAL truncated", zap.Int("first_segment", upTo), zap.Int("live_series", len(live)),
		zap.Int("removed_series", removed), zap.Duration("took", time.Since(start)))
	return errors.Join(errs...)
}

func hasKey(m map[string]struct{}, k []byte) bool {
	_, ok := m[string(k)]
	return ok
}

// writeCheckpoint writes the series to checkpoint.cp durably and returns its
// size, in records of a thousand series each.
func (w *WAL) writeCheckpoint(cp int, live []wireSeries) (int64, error) {
	final := checkpointName(w.dir, cp)
	tmp := final + ".tmp"
	if err := w.fs.RemoveAll(tmp); err != nil {
		return 0, err
	}
	if err := w.fs.MkdirAll(tmp, 0o750); err != nil {
		return 0, err
	}
	cw := &checkpointWriter{w: w, dir: tmp}
	abort := func(err error) (int64, error) {
		return 0, errors.Join(err, cw.abort(), w.fs.RemoveAll(tmp))
	}
	var buf []byte
	for rest := live; len(rest) > 0; {
		n := min(len(rest), 1000)
		buf = startSeries(buf[:0])
		for _, s := range rest[:n] {
			buf = appendSeries(buf, s.Ref, s.Wire)
		}
		if err := cw.log(buf); err != nil {
			return abort(err)
		}
		rest = rest[n:]
	}
	// The metadata of every family, so that replay starting from this
	// checkpoint knows it.
	buf = buf[:0]
	for _, m := range w.meta.all() {
		if len(buf) > 1 && len(buf)+len(m.Family)+len(m.Help)+len(m.Unit)+16 > maxRawRecord {
			if err := cw.log(buf); err != nil {
				return abort(err)
			}
			buf = buf[:0]
		}
		if len(buf) == 0 {
			buf = startMetadata(buf)
		}
		buf = appendMetadata(buf, m.Type, []byte(m.Family), []byte(m.Help), []byte(m.Unit))
	}
	if len(buf) > 1 {
		if err := cw.log(buf); err != nil {
			return abort(err)
		}
	}
	if err := cw.finish(); err != nil {
		return abort(err)
	}
	if err := syncDir(w.fs, tmp); err != nil {
		return 0, errors.Join(err, w.fs.RemoveAll(tmp))
	}
	if err := w.fs.Rename(tmp, final); err != nil {
		return 0, errors.Join(err, w.fs.RemoveAll(tmp))
	}
	if err := syncDir(w.fs, w.dir); err != nil {
		return 0, err
	}
	return cw.size, nil
}

// checkpointWriter writes a checkpoint's records into segments of at most
// checkpointSegmentSize bytes, each fsynced when sealed.
type checkpointWriter struct {
	w    *WAL
	dir  string
	seg  *segmentWriter
	next int
	size int64 // bytes of the sealed segments
}

func (c *checkpointWriter) log(rec []byte) error {
	if c.seg != nil && c.seg.size >= checkpointSegmentSize {
		if err := c.seal(); err != nil {
			return err
		}
	}
	if c.seg == nil {
		seg, err := createSegment(c.w.fs, c.dir, c.next, c.w.opts.Compression)
		if err != nil {
			return err
		}
		c.seg, c.next = seg, c.next+1
	}
	return c.seg.log(rec)
}

func (c *checkpointWriter) seal() error {
	seg := c.seg
	c.seg = nil
	if err := seg.seal(false); err != nil {
		return err
	}
	c.size += seg.size
	return nil
}

// finish seals the last segment; a checkpoint with no records gets one
// empty segment, as the reader expects at least one.
func (c *checkpointWriter) finish() error {
	if c.seg == nil && c.next == 0 {
		seg, err := createSegment(c.w.fs, c.dir, 0, c.w.opts.Compression)
		if err != nil {
			return err
		}
		c.seg, c.next = seg, 1
	}
	if c.seg == nil {
		return nil
	}
	return c.seal()
}

func (c *checkpointWriter) abort() error {
	if c.seg == nil {
		return nil
	}
	err := c.seg.f.Close()
	c.seg = nil
	return err
}
