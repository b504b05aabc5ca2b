package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"go.uber.org/zap"
)

// Lost counts what the disk cap deleted before a consumer read it: float
// samples and native histograms, and exemplars.
type Lost struct {
	Samples, Exemplars int
	// Reason says what deleted them: empty for the WAL's disk cap;
	// "retention" for rollups past their retention.
	Reason string
}

// DropFunc is told that the disk cap deleted segments before to that the
// consumer had not committed past. lost was not read yet (between from, the
// read position, and to; zero if the consumer had read it all). What the
// consumer read before to but has not stored is lost too once it crashes:
// it should count and discard it now.
type DropFunc func(lost Lost, from, to Position)

// Reader reads the log for one consumer, from a position the consumer
// persisted, and follows the head as it grows. A Reader is used by one
// goroutine; Commit and Position may be called from others.
type Reader struct {
	w      *WAL
	name   string
	onDrop DropFunc

	mu        sync.Mutex // held while reading a record; the disk cap takes it to move the reader
	pos       Position   // just past the last record read
	jump      *Position  // set by the disk cap: continue here
	f         vfs.File
	lr        *wlog.LiveReader
	sealedEOF bool // EOF seen once after the segment was sealed
	dec       *decoder
	entry     Entry

	readPos   atomic.Pointer[Position]
	committed atomic.Pointer[Position]
}

// NewReader registers a consumer called name that starts reading at from.
// A position before the oldest retained segment, or past the head (a log
// that was wiped), is moved to the oldest retained record and logged.
// Until the reader is closed, truncation keeps every segment at or after
// the position last given to Commit (initially from). onDrop may be nil.
func (w *WAL) NewReader(name string, from Position, onDrop DropFunc) (*Reader, error) {
	w.truncMu.Lock()
	defer w.truncMu.Unlock()
	w.readersMu.Lock()
	defer w.readersMu.Unlock()
	if w.isClosed.Load() {
		return nil, ErrClosed
	}
	if _, ok := w.readers[name]; ok {
		return nil, fmt.Errorf("wal: reader %q already exists", name)
	}
	first, head := w.segmentRange()
	switch {
	case from.Segment < first:
		w.logger.Error("Consumer position is in a segment the WAL no longer has; samples between were lost to the disk cap or damage",
			zap.String("consumer", name), zap.Stringer("position", from), zap.Int("oldest_segment", first))
		from = Position{Segment: first}
	case from.Segment > head:
		w.logger.Error("Consumer position is past the end of the WAL (was the WAL directory replaced?); reading from the oldest record",
			zap.String("consumer", name), zap.Stringer("position", from), zap.Int("head_segment", head))
		from = Position{Segment: first}
	}
	r := &Reader{w: w, name: name, onDrop: onDrop, pos: from, dec: newDecoder(w.slog)}
	r.readPos.Store(&from)
	r.committed.Store(&from)
	w.readers[name] = r
	return r, nil
}

// Oldest returns the position of the oldest retained record.
func (w *WAL) Oldest() Position {
	first, _ := w.segmentRange()
	return Position{Segment: first}
}

// Name returns the consumer's name.
func (r *Reader) Name() string { return r.name }

// Position returns the position just past the last record read.
func (r *Reader) Position() Position { return *r.readPos.Load() }

// Commit tells the log that the consumer has durably stored p: segments
// before p's segment may be deleted.
func (r *Reader) Commit(p Position) {
	r.committed.Store(&p)
	if (r.w.opts.MaxSize > 0 && r.w.Size() >= r.w.opts.MaxSize) || r.w.lowOnSpace() {
		r.w.kickMaintenance()
	}
}

// BytesBehind returns how far the reader is behind the head, in bytes.
func (r *Reader) BytesBehind() int64 { return r.w.BytesBehind(r.Position()) }

// Close unregisters the consumer: it no longer holds back truncation.
func (r *Reader) Close() error {
	r.w.readersMu.Lock()
	if r.w.readers[r.name] == r {
		delete(r.w.readers, r.name)
	}
	r.w.readersMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closeSegment()
}

func (r *Reader) closeSegment() error {
	r.lr = nil
	r.sealedEOF = false
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// Next returns the next Samples record, waiting for one to be written. The
// Entry is valid until the next call. It returns ctx.Err() when ctx ends and
// ErrClosed when the log closes. Where the log is damaged (an undecodable
// record, a segment whose rest fails its checksums, a segment cut by a
// repair under the reader's position) it moves past the damage and returns
// a *CorruptionError saying where, once; the next call goes on after it.
func (r *Reader) Next(ctx context.Context) (*Entry, error) {
	for {
		waitc := r.w.waitc()
		if r.w.isClosed.Load() {
			return nil, ErrClosed
		}
		e, err := r.tryNext()
		if e != nil || err != nil {
			return e, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-waitc:
		}
	}
}

// TryNext is Next without the wait: it returns nil, nil when every record
// on disk has been read.
func (r *Reader) TryNext() (*Entry, error) {
	if r.w.isClosed.Load() {
		return nil, ErrClosed
	}
	return r.tryNext()
}

// tryNext returns the next Samples record if one is on disk, or nil.
func (r *Reader) tryNext() (*Entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if r.jump != nil {
			if err := r.closeSegment(); err != nil {
				return nil, fmt.Errorf("wal: reader %s: close segment: %w", r.name, err)
			}
			r.setPos(*r.jump)
			r.jump = nil
		}
		if r.lr == nil {
			ok, err := r.openSegment()
			if err != nil || !ok {
				return nil, err
			}
			continue
		}
		if r.lr.Next() {
			start := r.pos
			r.setPos(Position{Segment: r.pos.Segment, Offset: r.lr.Offset()})
			r.sealedEOF = false
			rec := r.lr.Record()
			ok, err := r.decodeRecord(rec, start)
			if err != nil {
				r.w.m.corruptions.Inc()
				return nil, &CorruptionError{Dir: r.w.dir, Segment: start.Segment, Offset: start.Offset,
					Err: fmt.Errorf("undecodable record skipped: %w", err)}
			}
			if ok {
				return &r.entry, nil
			}
			continue
		}
		sealed := int64(r.pos.Segment) < r.w.headSg.Load()
		if err := r.lr.Err(); err != nil && !errors.Is(err, io.EOF) {
			if !sealed {
				return nil, nil // a failed write in the head; it is sealed before the next one
			}
			r.w.m.corruptions.Inc()
			damage := &CorruptionError{Dir: r.w.dir, Segment: r.pos.Segment, Offset: r.pos.Offset,
				Err: fmt.Errorf("rest of the segment skipped: %w", err)}
			r.closeSegment()
			r.setPos(Position{Segment: r.pos.Segment + 1})
			return nil, damage
		}
		if !sealed {
			return nil, nil
		}
		if !r.sealedEOF {
			// The segment was sealed after the read above began: everything
			// in it is on disk now, so one more pass finds the rest.
			r.sealedEOF = true
			continue
		}
		if err := r.nextSegment(); err != nil {
			return nil, err
		}
	}
}

func (r *Reader) setPos(p Position) {
	r.pos = p
	r.readPos.Store(&p)
}

// nextSegment moves to the start of the next segment. If the sealed
// segment ends in bytes that hold no complete record, it returns a
// *CorruptionError saying where (after moving).
func (r *Reader) nextSegment() error {
	var damage error
	if r.lr != nil {
		if fi, err := r.f.Stat(); err == nil && fi.Size() > r.lr.Offset() {
			r.w.m.corruptions.Inc()
			damage = &CorruptionError{Dir: r.w.dir, Segment: r.pos.Segment, Offset: r.lr.Offset(),
				Err: fmt.Errorf("segment ends in an incomplete record (%d bytes skipped)", fi.Size()-r.lr.Offset())}
		}
	}
	_ = r.closeSegment()
	r.setPos(Position{Segment: r.pos.Segment + 1})
	return damage
}

// openSegment opens the reader's segment and skips to its offset. It
// returns false if the segment does not exist yet.
func (r *Reader) openSegment() (bool, error) {
	first, head := r.w.segmentRange()
	if r.pos.Segment < first {
		r.setPos(Position{Segment: first})
	}
	if r.pos.Segment > head {
		return false, nil
	}
	f, err := r.w.fs.Open(wlog.SegmentName(r.w.dir, r.pos.Segment))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && r.pos.Segment < head {
			r.w.logger.Error("WAL segment missing; skipping it", zap.String("consumer", r.name), zap.Int("segment", r.pos.Segment))
			r.setPos(Position{Segment: r.pos.Segment + 1})
			return true, nil
		}
		return false, fmt.Errorf("wal: reader %s: open segment %d: %w", r.name, r.pos.Segment, err)
	}
	r.f = f
	r.lr = wlog.NewLiveReader(r.w.slog, r.w.liveMetrics, f)
	target := r.pos.Offset
	for r.lr.Offset() < target {
		if !r.lr.Next() {
			// The segment is shorter than the position: it was cut by a
			// repair. Continue with the next one.
			damage := &CorruptionError{Dir: r.w.dir, Segment: r.pos.Segment, Offset: r.lr.Offset(),
				Err: fmt.Errorf("position %s is past the end of the segment (cut by a repair at start); continuing with the next segment", r.pos)}
			_ = r.closeSegment()
			r.setPos(Position{Segment: r.pos.Segment + 1})
			return true, damage
		}
	}
	r.pos.Offset = r.lr.Offset()
	r.setPos(r.pos)
	return true, nil
}

// decodeRecord fills r.entry from a record consumers see (samples,
// histograms, exemplars, metadata); it returns false for records they skip
// (series, unknown types). Metadata records also update nothing here: the
// log's table was updated when they were written or replayed.
func (r *Reader) decodeRecord(rec []byte, start Position) (bool, error) {
	k, err := r.dec.decode(rec)
	if err != nil {
		return false, err
	}
	e := &r.entry
	e.Start, e.End, e.Unknown = start, r.pos, 0
	e.Samples, e.Wire, e.Histograms, e.Exemplars, e.Metadata = e.Samples[:0], e.Wire[:0], e.Histograms[:0], e.Exemplars[:0], e.Metadata[:0]
	t := r.w.series
	// A ref the log does not hold has no labels (nil).
	lookup := func(ref Ref) []byte {
		w := t.wire(ref)
		if w == nil {
			e.Unknown++
		}
		return w
	}
	switch k {
	case kindSamples:
		e.Samples, r.dec.samples = r.dec.samples, e.Samples
		if cap(e.Wire) < len(e.Samples) {
			e.Wire = make([][]byte, 0, 2*len(e.Samples))
		}
		t.mu.RLock()
		for _, s := range e.Samples {
			e.Wire = append(e.Wire, lookup(s.Ref))
		}
		t.mu.RUnlock()
	case kindHistograms:
		t.mu.RLock()
		for _, h := range r.dec.histograms {
			e.Histograms = append(e.Histograms, RawHistogram{Ref: h.ref, Wire: lookup(h.ref), Data: h.data})
		}
		t.mu.RUnlock()
	case kindExemplars:
		t.mu.RLock()
		for _, x := range r.dec.exemplars {
			e.Exemplars = append(e.Exemplars, Exemplar{Ref: x.Ref, Wire: lookup(x.Ref), Exemplar: x.Labels, T: x.T, V: x.V})
		}
		t.mu.RUnlock()
	case kindMetadata:
		e.Metadata = append(e.Metadata, r.dec.metadata...)
	default:
		return false, nil
	}
	return true, nil
}
