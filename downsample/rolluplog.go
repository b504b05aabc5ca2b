package downsample

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/ferrymetrics/ferry/sender"
	"github.com/ferrymetrics/ferry/wal"
	ferrymodel "github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/tsdb/record"
)

// Keys in the state database (all big-endian):
//
//	ds/pos                                 compactor's WAL position: segment u64, offset u64
//	ds/state/<ref u64>                     window state of a WAL series, for every resolution
//	ds/labels/<ref u64>                    that series' labels, written once
//	ds/type/<family>                       metric type from metadata (one byte)
//	ds/series/<res ms u64>/<id u64>        labels of a rollup series (a tsdb/record Series record)
//	ds/log/<res ms u64>/<seq u64>          rollup samples: maxT i64, then a tsdb/record Samples record
//	ds/group/<res ms u64>/<output labels>  state of a rollup rule's group
//	ds/rseries/<res ms u64>/<id u64>       labels of a rollup series released from
//	                                       memory (moved from ds/series/)
//	ds/released/<res ms u64>/<seq u64>/<id u64>
//	                                       that series, whose newest entry is seq
//	                                       (empty value; retention deletes by seq)
//
// A commit writes state, new rollup series, the closed windows of each
// resolution as log entries of at most maxEntrySamples samples, and the WAL
// position in one synced batch.
var (
	keyPos        = []byte("ds/pos")
	prefixState   = []byte("ds/state/")
	prefixSeries  = []byte("ds/series/")
	prefixLog     = []byte("ds/log/")
	prefixGroup   = []byte("ds/group/")
	prefixLabels  = []byte("ds/labels/")
	prefixType    = []byte("ds/type/")
	prefixRelease = []byte("ds/released/")
	prefixRSeries = []byte("ds/rseries/")
	errLogClosed  = fmt.Errorf("downsample: rollup log closed: %w", sender.ErrSourceClosed)
	discardLogger = slog.New(slog.DiscardHandler)
	recordDecoder = record.NewDecoder(nil, discardLogger)
)

func u64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func logKey(res int64, seq uint64) []byte {
	return u64(u64(append([]byte(nil), prefixLog...), uint64(res)), seq)
}

func releasedKey(res int64, seq, id uint64) []byte {
	return u64(u64(u64(append([]byte(nil), prefixRelease...), uint64(res)), seq), id)
}

func releasedSeriesKey(res int64, id uint64) []byte {
	return u64(u64(append([]byte(nil), prefixRSeries...), uint64(res)), id)
}

func seriesKey(res int64, id uint64) []byte {
	return u64(u64(append([]byte(nil), prefixSeries...), uint64(res)), id)
}

// rollupLog is the ordered log of rollup samples of one resolution. The
// compactor appends to it; endpoints with a storage policy of this
// resolution read it, each from its own cursor (see seqCursor).
type rollupLog struct {
	db        *pebble.DB
	res       int64
	retention int64

	mu   sync.RWMutex
	wire map[uint64][]byte   // rollup series id → labels in wire form
	ids  map[uint64][]uint64 // xxhash of the wire form → ids
	// last is, per id in memory, the newest entry that uses it (at start,
	// the newest entry of the log, at its newest timestamp): once every
	// reader read past it and two windows passed without a rollup of the
	// series, it is released from memory; once retention deleted it, no
	// entry refers to the series and it is freed.
	last       map[uint64]use
	swept      uint64 // entries below this seq were swept for unused series
	releasedAt int64  // highest timestamp at the last release
	nextID     uint64
	first      uint64 // oldest retained seq
	next       uint64 // next seq to write
	highest    atomic.Int64
	notify     atomic.Pointer[chan struct{}]
	closed     atomic.Bool
	meta       wal.MetadataSource   // the raw series' metadata
	readers    map[*Reader]struct{} // guarded by mu
}

// use is the newest entry that uses a rollup series: its seq, and the
// series' rollup timestamp in it.
type use struct {
	seq uint64
	t   int64
}

func openRollupLog(db *pebble.DB, res, retention int64) (*rollupLog, error) {
	l := &rollupLog{db: db, res: res, retention: retention, wire: map[uint64][]byte{}, ids: map[uint64][]uint64{}, nextID: 1,
		last: map[uint64]use{}, readers: map[*Reader]struct{}{}}
	l.highest.Store(math.MinInt64)
	ch := make(chan struct{})
	l.notify.Store(&ch)
	// Interned series.
	lo := seriesKey(res, 0)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: seriesKey(res, math.MaxUint64)})
	if err != nil {
		return nil, err
	}
	var buf []record.RefSeries
	for it.First(); it.Valid(); it.Next() {
		if buf, err = recordDecoder.Series(it.Value(), buf[:0]); err != nil || len(buf) != 1 {
			_ = it.Close()
			return nil, fmt.Errorf("downsample: decode rollup series %x: %v", it.Key(), err)
		}
		id := uint64(buf[0].Ref)
		w := wal.WireOf(buf[0].Labels)
		l.wire[id] = w
		h := xxhash.Sum64(w)
		l.ids[h] = append(l.ids[h], id)
		l.nextID = max(l.nextID, id+1)
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	// Released series keep their ids until retention frees them: new ids
	// start above them.
	it, err = db.NewIter(&pebble.IterOptions{LowerBound: releasedSeriesKey(res, 0), UpperBound: releasedSeriesKey(res, math.MaxUint64)})
	if err != nil {
		return nil, err
	}
	if it.Last() {
		l.nextID = max(l.nextID, binary.BigEndian.Uint64(it.Key()[len(it.Key())-8:])+1)
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	// Log bounds.
	it, err = db.NewIter(&pebble.IterOptions{LowerBound: logKey(res, 0), UpperBound: logKey(res, math.MaxUint64)})
	if err != nil {
		return nil, err
	}
	if it.First() {
		l.first = binary.BigEndian.Uint64(it.Key()[len(it.Key())-8:])
	}
	if it.Last() {
		l.next = binary.BigEndian.Uint64(it.Key()[len(it.Key())-8:]) + 1
		if v := it.Value(); len(v) >= 8 {
			l.highest.Store(int64(binary.BigEndian.Uint64(v)))
		}
	} else {
		l.first, l.next = 0, 0
	}
	// Which entries use a series is not stored: take the newest one, so a
	// series is freed at the latest once everything now in the log expired.
	for id := range l.wire {
		l.last[id] = use{seq: max(l.next, 1) - 1, t: l.highest.Load()}
	}
	l.swept = l.first
	return l, it.Close()
}

// has reports whether the series id is interned (not freed).
func (l *rollupLog) has(id uint64) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.wire[id]
	return ok
}

// lookup returns the id of the series with labels w (wire form), or 0;
// l.mu is held.
func (l *rollupLog) lookup(h uint64, w []byte) uint64 {
	for _, id := range l.ids[h] {
		if bytes.Equal(l.wire[id], w) {
			return id
		}
	}
	return 0
}

// setter is the part of a Pebble batch intern writes with.
type setter interface {
	Set(key, value []byte, o *pebble.WriteOptions) error
}

// intern returns the id of the rollup series with labels w (wire form, kept
// as it is: it must not change), adding the series to b if new.
func (l *rollupLog) intern(w []byte, b setter, fresh *[]uint64) (uint64, error) {
	h := xxhash.Sum64(w)
	l.mu.RLock()
	id := l.lookup(h, w)
	l.mu.RUnlock()
	if id != 0 {
		return id, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	id = l.nextID
	l.nextID++
	l.ids[h] = append(l.ids[h], id)
	l.wire[id] = w
	*fresh = append(*fresh, id)
	var enc record.Encoder
	if err := b.Set(seriesKey(l.res, id), enc.Series([]record.RefSeries{{Ref: wal.Ref(id), Labels: wal.LabelsOfWire(w)}}, nil), nil); err != nil {
		return 0, err
	}
	return id, nil
}

// forget undoes interning of ids whose batch was not committed.
func (l *rollupLog) forget(ids []uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.dropLocked(id)
	}
}

// dropLocked removes the series id from memory; l.mu is held.
func (l *rollupLog) dropLocked(id uint64) {
	h := xxhash.Sum64(l.wire[id])
	l.ids[h] = slices.DeleteFunc(l.ids[h], func(x uint64) bool { return x == id })
	if len(l.ids[h]) == 0 {
		delete(l.ids, h)
	}
	delete(l.wire, id)
	delete(l.last, id)
}

// maxEntrySamples bounds a log entry, so that a reader holds a bounded
// number of samples whatever the number of windows a commit closed.
const maxEntrySamples = 10000

// stage adds samples to b as log entries of at most maxEntrySamples each,
// and returns the last entry's seq.
func (l *rollupLog) stage(b *pebble.Batch, samples []record.RefSample) (uint64, error) {
	var enc record.Encoder
	var v []byte
	l.mu.Lock()
	seq := l.next
	for i, s := range samples {
		l.last[uint64(s.Ref)] = use{seq: seq + uint64(i/maxEntrySamples), t: s.T}
	}
	l.mu.Unlock()
	for {
		n := min(len(samples), maxEntrySamples)
		maxT := int64(math.MinInt64)
		for _, s := range samples[:n] {
			maxT = max(maxT, s.T)
		}
		v = enc.Samples(samples[:n], u64(v[:0], uint64(maxT)))
		if err := b.Set(logKey(l.res, seq), v, nil); err != nil {
			return 0, err
		}
		if samples = samples[n:]; len(samples) == 0 {
			return seq, nil
		}
		seq++
	}
}

// published makes staged entries up to seq visible to readers, once their
// batch is committed.
func (l *rollupLog) published(seq uint64, maxT int64) {
	l.mu.Lock()
	l.next = seq + 1
	l.mu.Unlock()
	if maxT > l.highest.Load() {
		l.highest.Store(maxT)
	}
	ch := make(chan struct{})
	close(*l.notify.Swap(&ch))
}

// applyRetention deletes entries whose newest sample is older than now
// minus the retention. Every open reader that had not read them is told
// how many samples it lost (onDrop, reason "retention"): they are counted,
// not skipped in silence. Rollup series that no remaining entry uses are
// freed (see sweep); it returns how many entries it deleted and how many
// series it freed.
func (l *rollupLog) applyRetention(nowMs int64) (int, int, error) {
	cutoff := nowMs - l.retention
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: logKey(l.res, 0), UpperBound: logKey(l.res, math.MaxUint64)})
	if err != nil {
		return 0, 0, err
	}
	type expired struct {
		seq     uint64
		samples int
	}
	var gone []expired
	var buf []record.RefSample
	for it.First(); it.Valid(); it.Next() {
		v := it.Value()
		if len(v) < 8 || int64(binary.BigEndian.Uint64(v)) >= cutoff {
			break
		}
		buf, _ = recordDecoder.Samples(v[8:], buf[:0])
		k := it.Key()
		gone = append(gone, expired{seq: binary.BigEndian.Uint64(k[len(k)-8:]), samples: len(buf)})
	}
	if err := it.Close(); err != nil {
		return 0, 0, err
	}
	if len(gone) == 0 {
		return 0, 0, nil
	}
	last := gone[len(gone)-1].seq
	// Readers see the new first entry before the entries go: one that read
	// an entry did so before, one that did not is counted here.
	type drop struct {
		r    *Reader
		from uint64
		lost int
	}
	var drops []drop
	l.mu.Lock()
	l.first = max(l.first, last+1)
	for r := range l.readers {
		from := r.pos.Load()
		if from > last || r.onDrop == nil {
			continue
		}
		d := drop{r: r, from: from}
		for _, e := range gone {
			if e.seq >= from {
				d.lost += e.samples
			}
		}
		drops = append(drops, d)
	}
	l.mu.Unlock()
	for _, d := range drops {
		d.r.onDrop(wal.Lost{Samples: d.lost, Reason: "retention"}, seqCursor(d.from), seqCursor(last+1))
	}
	if err := l.db.DeleteRange(logKey(l.res, 0), logKey(l.res, last+1), pebble.Sync); err != nil {
		return 0, 0, fmt.Errorf("downsample: delete expired rollups of %dms: %w", l.res, err)
	}
	freed, err := l.sweep()
	return len(gone), freed, err
}

// sweep frees the rollup series whose newest entry is gone: their labels
// in memory, and their key in the state database, also for series released
// from memory before. A writer that kept a freed id interns the series
// again (it checks has). To keep the cost per entry flat, it runs once a
// quarter of the log's entries expired since the last sweep.
func (l *rollupLog) sweep() (int, error) {
	l.mu.Lock()
	first := l.first
	if (first-l.swept)*4 < l.next-first {
		l.mu.Unlock()
		return 0, nil
	}
	l.swept = first
	var freed []uint64
	for id, u := range l.last {
		if u.seq < first {
			freed = append(freed, id)
		}
	}
	for _, id := range freed {
		l.dropLocked(id)
	}
	l.mu.Unlock()
	// The released series whose newest entry is gone.
	lo, hi := releasedKey(l.res, 0, 0), releasedKey(l.res, first, 0)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	var gone []uint64
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		gone = append(gone, binary.BigEndian.Uint64(k[len(k)-8:]))
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if len(freed)+len(gone) == 0 {
		return 0, nil
	}
	// Not synced: a key that comes back after a crash is loaded and freed
	// again.
	b := l.db.NewBatch()
	defer b.Close()
	for _, id := range freed {
		if err := b.Delete(seriesKey(l.res, id), nil); err != nil {
			return len(freed), err
		}
	}
	for _, id := range gone {
		if err := b.Delete(releasedSeriesKey(l.res, id), nil); err != nil {
			return len(freed), err
		}
	}
	freed = append(freed, gone...)
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		return len(freed), err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return len(freed), fmt.Errorf("downsample: delete freed rollup series of %dms: %w", l.res, err)
	}
	return len(freed), nil
}

// release drops from memory the rollup series every open reader has read
// past and that had no rollup for two windows (departed series), so that
// series churn does not grow memory for the whole retention. Their labels
// stay in the state database, marked released, until retention frees
// them: a reader that reads their entries again takes them from there. It
// runs at most once a window, and returns how many series it released.
func (l *rollupLog) release() (int, error) {
	highest := l.highest.Load()
	if highest == math.MinInt64 || highest-l.releasedAt < l.res {
		return 0, nil
	}
	l.releasedAt = highest
	horizon := highest - 2*l.res
	l.mu.Lock()
	read := l.next
	for r := range l.readers {
		read = min(read, r.pos.Load())
	}
	type released struct {
		id, seq uint64
		wire    []byte
	}
	var gone []released
	for id, u := range l.last {
		if u.seq < read && u.t < horizon {
			gone = append(gone, released{id: id, seq: u.seq, wire: l.wire[id]})
		}
	}
	for _, g := range gone {
		l.dropLocked(g.id)
	}
	l.mu.Unlock()
	if len(gone) == 0 {
		return 0, nil
	}
	// The labels move to ds/rseries/, so that start-up loads only the
	// series held in memory. Not synced, and in one batch: after a crash
	// the series is either still under ds/series/ (loaded, and released
	// again) or released.
	b := l.db.NewBatch()
	defer b.Close()
	var enc record.Encoder
	var v []byte
	for _, g := range gone {
		v = enc.Series([]record.RefSeries{{Ref: wal.Ref(g.id), Labels: wal.LabelsOfWire(g.wire)}}, v[:0])
		if err := errors.Join(b.Set(releasedSeriesKey(l.res, g.id), v, nil), b.Delete(seriesKey(l.res, g.id), nil),
			b.Set(releasedKey(l.res, g.seq, g.id), nil, nil)); err != nil {
			return len(gone), err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return len(gone), fmt.Errorf("downsample: mark released rollup series of %dms: %w", l.res, err)
	}
	return len(gone), nil
}

// stored reads the labels of rollup series id from the state database.
func (l *rollupLog) stored(id uint64) ([]byte, bool) {
	v, closer, err := l.db.Get(releasedSeriesKey(l.res, id))
	if errors.Is(err, pebble.ErrNotFound) {
		v, closer, err = l.db.Get(seriesKey(l.res, id))
	}
	if err != nil {
		return nil, false
	}
	defer closer.Close()
	ss, err := recordDecoder.Series(v, nil)
	if err != nil || len(ss) != 1 {
		return nil, false
	}
	return wal.WireOf(ss[0].Labels), true
}

func (l *rollupLog) close() {
	l.closed.Store(true)
	ch := make(chan struct{})
	close(*l.notify.Swap(&ch))
}

// Metadata returns the metadata of a rollup family: the raw family's, with
// help saying which rollup it is. A family named <metric>:<aggregation>
// (an aggregation other than a series' default) is a gauge, except
// "counter", which stays a counter; a family under its raw name has the raw
// family's type.
func (l *rollupLog) Metadata(family string) (wal.Metadata, bool) {
	if l.meta == nil {
		return wal.Metadata{}, false
	}
	res := time.Duration(l.res) * time.Millisecond
	if i := strings.LastIndexByte(family, ':'); i > 0 && slices.Contains(aggregations, family[i+1:]) {
		m, ok := l.meta.Metadata(family[:i])
		if !ok {
			return m, false
		}
		agg := family[i+1:]
		m.Family = family
		if agg != "counter" {
			m.Type = ferrymodel.TypeGauge
		}
		m.Help = rollupHelp(m.Help, agg, res)
		return m, true
	}
	m, ok := l.meta.Metadata(family)
	if ok {
		m.Help = rollupHelp(m.Help, "default", res)
	}
	return m, ok
}

func rollupHelp(help, agg string, res time.Duration) string {
	s := fmt.Sprintf("Ferry rollup (%s per %s window)", agg, model.Duration(res))
	if help == "" {
		return s + "."
	}
	return help + " " + s + "."
}

// A rollup log's cursor is the sequence number of the next entry to read,
// a big-endian uint64 in its second half (the first is zero). Checkpoints
// store these bytes: they are part of the on-disk format.
func seqCursor(seq uint64) sender.Cursor {
	var c sender.Cursor
	binary.BigEndian.PutUint64(c[8:], seq)
	return c
}

func cursorSeq(c sender.Cursor) uint64 { return binary.BigEndian.Uint64(c[8:]) }

// Oldest returns the cursor of the oldest retained entry.
func (l *rollupLog) Oldest() sender.Cursor {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return seqCursor(l.first)
}

// Head returns the cursor after the newest entry.
func (l *rollupLog) Head() sender.Cursor {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return seqCursor(l.next)
}

// HighestTimestamp returns the newest rollup sample's timestamp.
func (l *rollupLog) HighestTimestamp() int64 { return l.highest.Load() }

// Lag returns the number of retained entries from c on.
func (l *rollupLog) Lag(c sender.Cursor) int64 {
	l.mu.RLock()
	first, next := l.first, l.next
	l.mu.RUnlock()
	seq := max(cursorSeq(c), first)
	if seq >= next {
		return 0
	}
	return int64(next - seq)
}

// LagUnit returns sender.LagEntries: Lag counts entries.
func (l *rollupLog) LagUnit() sender.LagUnit { return sender.LagEntries }

// Describe returns c as "next entry <seq>".
func (l *rollupLog) Describe(c sender.Cursor) string {
	return fmt.Sprintf("next entry %d", cursorSeq(c))
}

// Reader reads a rollup log for one endpoint.
type Reader struct {
	l      *rollupLog
	pos    atomic.Uint64 // next seq
	entry  wal.Entry
	onDrop sender.DropFunc
	cold   map[uint64][]byte // released series read back, by id
}

// Open returns a reader of the log starting at at. Entries that pass their
// retention before the reader gets to them are counted through onDrop
// (reason "retention"). Entries already gone when it opens are skipped:
// they were counted when they went, unless no reader of the endpoint was
// open then (it was not configured).
func (l *rollupLog) Open(name string, at sender.Cursor, onDrop sender.DropFunc) (sender.Source, error) {
	r := &Reader{l: l, onDrop: onDrop}
	r.pos.Store(cursorSeq(at))
	l.mu.Lock()
	l.readers[r] = struct{}{}
	l.mu.Unlock()
	return r, nil
}

// Next returns the next entry, waiting for one. Its Data has no WAL
// positions (Start and End are zero).
func (r *Reader) Next(ctx context.Context) (sender.Entry, error) {
	for {
		waitc := *r.l.notify.Load()
		if r.l.closed.Load() {
			return sender.Entry{}, errLogClosed
		}
		e, err := r.tryNext()
		if err != nil {
			return sender.Entry{}, err
		}
		if e != nil {
			return sender.Entry{Data: e, End: seqCursor(r.pos.Load())}, nil
		}
		select {
		case <-ctx.Done():
			return sender.Entry{}, ctx.Err()
		case <-waitc:
		}
	}
}

// tryNext reads the next entry, if there is one, and moves past it. It
// holds l.mu for reading from the bounds check until it has moved, so that
// retention either sees it past an entry or counts that entry as lost.
func (r *Reader) tryNext() (*wal.Entry, error) {
	l := r.l
	l.mu.RLock()
	defer l.mu.RUnlock()
	seq := r.pos.Load()
	if seq < l.first {
		// Past their retention: counted as lost when they went.
		seq = l.first
		r.pos.Store(seq)
	}
	if seq >= l.next {
		return nil, nil
	}
	v, closer, err := l.db.Get(logKey(l.res, seq))
	if errors.Is(err, pebble.ErrNotFound) {
		r.pos.Store(seq + 1)
		return nil, fmt.Errorf("downsample: rollup entry %d of %dms is missing; skipped", seq, l.res)
	}
	if err != nil {
		return nil, fmt.Errorf("downsample: read rollup entry %d: %w", seq, err)
	}
	defer closer.Close()
	e := &r.entry
	e.Samples, err = recordDecoder.Samples(v[8:], e.Samples[:0])
	if err != nil {
		return nil, fmt.Errorf("downsample: decode rollup entry %d: %w", seq, err)
	}
	e.Unknown = 0
	e.Wire = e.Wire[:0]
	for _, s := range e.Samples {
		w, ok := l.wire[uint64(s.Ref)]
		if !ok {
			w, ok = r.released(uint64(s.Ref))
		}
		if !ok {
			e.Unknown++
		}
		e.Wire = append(e.Wire, w)
	}
	r.pos.Store(seq + 1)
	return e, nil
}

// released returns the labels of a series released from memory, which a
// reader reading entries again (from an older checkpoint, or a new
// endpoint backfilling) needs. It keeps the ones it read, up to a bound.
func (r *Reader) released(id uint64) ([]byte, bool) {
	if w, ok := r.cold[id]; ok {
		return w, true
	}
	w, ok := r.l.stored(id)
	if !ok {
		return nil, false
	}
	if r.cold == nil || len(r.cold) >= maxColdSeries {
		r.cold = map[uint64][]byte{}
	}
	r.cold[id] = w
	return w, true
}

// maxColdSeries bounds the released series a reader keeps.
const maxColdSeries = 1 << 16

// Cursor returns the cursor of the next entry to read.
func (r *Reader) Cursor() sender.Cursor { return seqCursor(r.pos.Load()) }

// Commit is a no-op: rollups are kept for their retention, whatever the
// readers have read.
func (r *Reader) Commit(sender.Cursor) {}

// Close unregisters the reader.
func (r *Reader) Close() error {
	r.l.mu.Lock()
	delete(r.l.readers, r)
	r.l.mu.Unlock()
	return nil
}
