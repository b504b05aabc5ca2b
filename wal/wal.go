package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

var (
	// ErrFull is wrapped by the error Append returns when the log is at
	// MaxSize under the Backpressure policy, or its filesystem has less than
	// MinFree bytes available. Nothing of the batch was written.
	ErrFull = errors.New("wal: full")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("wal: closed")
)

// WAL is the write-ahead log. It is safe for concurrent use.
type WAL struct {
	fs     vfs.FS
	dir    string
	opts   Options
	logger *zap.Logger
	slog   *slog.Logger
	now    func() time.Time
	m      *metrics

	series *seriesTable
	meta   *metadataTable
	// appended counts the samples and histograms appended since Open.
	appendedTotal atomic.Int64
	// gcMu is held for reading by Append from the ref lookup until its
	// records are written, and for writing by truncation while it forgets
	// series, so that a sample is never written for a forgotten ref.
	gcMu sync.RWMutex

	// mu serialises writes, rotation and the bookkeeping of positions.
	mu    sync.Mutex
	seg   *segmentWriter // the head segment; replaced under segMu
	head  Position       // just past the last record written
	first int            // oldest segment on disk
	sizes map[int]int64  // sizes of sealed segments
	// sealedAt holds when each segment on disk, and each deleted one
	// within Options.SeriesGrace, was sealed (for those replayed: when
	// the log was opened).
	sealedAt map[int]time.Time
	cpSize   int64 // bytes of the checkpoint chain
	// refStart maps each segment on disk to the next ref when it began:
	// every Series record in earlier segments has a smaller ref.
	refStart map[int]Ref
	chain    checkpointChain // guarded by truncMu
	// prunedFamilies is the number of families with metadata after the
	// last pruning; guarded by truncMu.
	prunedFamilies int
	broken         error // last write error; the segment must be sealed before the next write
	closed         bool
	seq            atomic.Uint64 // count of successful writes
	headSz         atomic.Int64  // head.Offset, readable without mu
	headSg         atomic.Int64  // head.Segment, readable without mu
	total          atomic.Int64  // Size(), readable without mu
	notify         atomic.Pointer[chan struct{}]

	// segMu is held for writing while the head segment is sealed and
	// replaced, and for reading around its fsync, which runs without mu.
	segMu sync.RWMutex
	// sealFailures counts sealed segments whose fsync failed, and
	// sealFailedUpTo is the last write in the newest of them; both are
	// guarded by segMu, so that an fsync that sees the new head segment also
	// sees that the old one failed.
	sealFailures   uint64
	sealFailedUpTo uint64
	// syncFailed is set by a failed fsync for the writer (under mu) to seal
	// the segment before its next write.
	syncFailed atomic.Pointer[error]

	// syncMu serialises fsyncs of the head segment and guards the fields
	// below. Lock order: mu before syncMu before segMu; nothing holding
	// syncMu takes mu.
	syncMu       sync.Mutex
	synced       uint64 // writes up to this seq are fsynced
	failFrom     uint64 // writes in (failFrom, failTo] may be lost: an fsync failed
	failTo       uint64
	seenFailures uint64 // sealFailures already counted in failFrom/failTo
	lastSyncErr  error
	highestTs    atomic.Int64
	bufs         sync.Pool
	truncMu      sync.Mutex // serialises truncation and reader registration
	readersMu    sync.Mutex
	readers      map[string]*Reader
	maintainc    chan struct{}
	started      atomic.Bool
	isClosed     atomic.Bool
	stopc, donec chan struct{}
	liveMetrics  *wlog.LiveReaderMetrics
	space        diskSpace
}

// Open opens the log in dir, creating it if needed, repairs damaged segment
// tails, rebuilds the series table and starts a new segment for writing.
// Background work (fsync timer, truncation) starts with Start.
func Open(dir string, opts Options, logger *zap.Logger, reg prometheus.Registerer, now func() time.Time) (*WAL, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	w := &WAL{
		fs:          opts.FS,
		dir:         dir,
		opts:        opts,
		logger:      logger,
		slog:        slog.New(zapslog.NewHandler(logger.Core())),
		now:         now,
		series:      newSeriesTable(),
		meta:        newMetadataTable(),
		sizes:       map[int]int64{},
		sealedAt:    map[int]time.Time{},
		refStart:    map[int]Ref{},
		readers:     map[string]*Reader{},
		maintainc:   make(chan struct{}, 1),
		stopc:       make(chan struct{}),
		donec:       make(chan struct{}),
		liveMetrics: wlog.NewLiveReaderMetrics(nil),
	}
	w.highestTs.Store(math.MinInt64)
	ch := make(chan struct{})
	w.notify.Store(&ch)
	w.m = newMetrics(w, reg)
	if err := mkdirDurable(w.fs, dir); err != nil {
		return nil, fmt.Errorf("wal: create directory %s: %w", dir, err)
	}
	start := now()
	if err := w.replay(); err != nil {
		return nil, err
	}
	segs, err := listSegments(w.fs, dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list segments in %s: %w", dir, err)
	}
	next := 0
	if len(segs) > 0 {
		next = segs[len(segs)-1] + 1
	}
	seg, err := createSegment(w.fs, dir, next, opts.Compression)
	if err != nil {
		return nil, fmt.Errorf("wal: open writer in %s: %w", dir, err)
	}
	w.seg = seg
	if err := syncDir(w.fs, dir); err != nil {
		return nil, errors.Join(err, seg.f.Close())
	}
	w.head = Position{Segment: next}
	w.refStart[next] = w.series.nextRef
	if len(w.sizes) == 0 {
		w.first = next
	}
	w.publishHead()
	w.m.replayDuration.Set(now().Sub(start).Seconds())
	return w, nil
}

// Start runs the background work: the fsync timer (SyncInterval) and the
// maintenance loop that truncates consumed segments and enforces MaxSize.
// Call it once all consumers known at start are registered.
func (w *WAL) Start() {
	if w.started.Swap(true) {
		return
	}
	go w.run()
}

func (w *WAL) run() {
	defer close(w.donec)
	var syncTick <-chan time.Time
	if w.opts.Sync == SyncInterval {
		t := time.NewTicker(w.opts.SyncInterval)
		defer t.Stop()
		syncTick = t.C
	}
	maint := time.NewTicker(w.opts.MaintenanceInterval)
	defer maint.Stop()
	for {
		select {
		case <-w.stopc:
			return
		case <-syncTick:
			if err := w.syncTo(w.seq.Load()); err != nil {
				w.logger.Error("Periodic WAL fsync failed", zap.Error(err))
			}
		case <-maint.C:
			w.maintain()
		case <-w.maintainc:
			w.maintain()
		}
	}
}

func (w *WAL) kickMaintenance() {
	select {
	case w.maintainc <- struct{}{}:
	default:
	}
}

// appendBuf holds the per-append scratch space.
type appendBuf struct {
	refs      []Ref
	fps       []fingerprint
	hashBuf   []byte
	samples   []record.RefSample
	exemplars []record.RefExemplar
	recs      [][]byte
	enc       []byte
	builder   labels.ScratchBuilder
	sink      Ref // see fpIndex.lookupAll
}

// Append writes the batch to the log. When it returns nil the batch is
// durable as the sync policy promises; on error nothing of it may be
// acknowledged (parts may still reach readers: delivery is at-least-once).
// Metadata is written only where it differs from what the log holds.
func (w *WAL) Append(b *model.Batch) error { return w.append(b, nil, nil) }

// AppendChecked is Append with check(i) called, before anything is
// written, for each series b.Series[i] the log does not hold yet: a series
// the log holds has the same labels as one that passed check before. If
// check fails, AppendChecked writes nothing and returns its error.
func (w *WAL) AppendChecked(b *model.Batch, check func(series int) error) error {
	return w.append(b, nil, check)
}

// AppendRefs is Append for a batch whose series are named by refs (refs[i]
// for b.Series[i]) that Resolve returned; the series' labels in b are not
// read. If truncation forgot one of the refs since, it returns an
// *UnknownRefError and writes nothing: resolve that series again.
func (w *WAL) AppendRefs(b *model.Batch, refs []Ref) error {
	if len(refs) != len(b.Series) {
		return fmt.Errorf("wal: append of %d series with %d refs", len(b.Series), len(refs))
	}
	return w.append(b, refs, nil)
}

func (w *WAL) append(b *model.Batch, refs []Ref, check func(int) error) error {
	if len(b.Series) == 0 && len(b.Metadata) == 0 {
		return nil
	}
	if err := w.checkSpace(); err != nil {
		return err
	}
	buf, _ := w.bufs.Get().(*appendBuf)
	if buf == nil {
		buf = &appendBuf{builder: labels.NewScratchBuilder(16)}
	}
	defer w.bufs.Put(buf)

	w.gcMu.RLock()
	seq, err := w.appendLocked(b, buf, refs, check)
	w.gcMu.RUnlock()
	if err != nil {
		return err
	}
	return w.appended(seq)
}

// appended finishes an append whose records end at seq: it wakes the
// readers, kicks maintenance and syncs per the policy.
func (w *WAL) appended(seq uint64) error {
	w.wake()
	if w.opts.MaxSize > 0 && w.opts.WhenFull == DropOldest && w.total.Load() > w.opts.MaxSize {
		w.kickMaintenance()
	}
	if w.opts.Sync == SyncAlways {
		return w.syncTo(seq)
	}
	return nil
}

// appendLocked writes b; gcMu is held for reading. refs, when not nil,
// are the refs of b's series (whose labels are then not read).
func (w *WAL) appendLocked(b *model.Batch, buf *appendBuf, refs []Ref, check func(int) error) (uint64, error) {
	if refs != nil {
		if err := w.checkRefs(refs); err != nil {
			return 0, err
		}
		buf.refs = append(buf.refs[:0], refs...)
	} else if err := w.resolvePairs(b, buf, check); err != nil {
		return 0, err
	}

	buf.samples = buf.samples[:0]
	maxTs := int64(math.MinInt64)
	for i, s := range b.Series {
		ref := buf.refs[i]
		for _, smp := range b.Samples[s.SamplesStart:s.SamplesEnd] {
			buf.samples = append(buf.samples, record.RefSample{Ref: ref, ST: smp.Start, T: smp.Timestamp, V: smp.Value})
			maxTs = max(maxTs, smp.Timestamp)
		}
	}
	var enc encoder
	buf.recs = buf.recs[:0]
	buf.enc = buf.enc[:0]
	appendChunked(buf, &enc, buf.samples, (*encoder).samples)
	if len(b.Histograms) > 0 {
		start := -1
		for i, s := range b.Series {
			for _, h := range b.Histograms[s.HistogramsStart:s.HistogramsEnd] {
				if start >= 0 && len(buf.enc)-start+histogramSize(buf.refs[i], h) > maxRawRecord {
					buf.recs = append(buf.recs, buf.enc[start:len(buf.enc):len(buf.enc)])
					start = -1
				}
				if start < 0 {
					start = len(buf.enc)
					buf.enc = startHistograms(buf.enc)
				}
				buf.enc = appendHistogram(buf.enc, buf.refs[i], h)
			}
		}
		if start >= 0 {
			buf.recs = append(buf.recs, buf.enc[start:len(buf.enc):len(buf.enc)])
		}
	}
	if len(b.Exemplars) > 0 {
		buf.exemplars = buf.exemplars[:0]
		for i, s := range b.Series {
			for k := s.ExemplarsStart; k < s.ExemplarsEnd; k++ {
				e := &b.Exemplars[k]
				buf.exemplars = append(buf.exemplars, record.RefExemplar{
					Ref: buf.refs[i], T: e.Timestamp, V: e.Value,
					Labels: labelsFromPairs(&buf.builder, b.ExemplarLabels(e)),
				})
			}
		}
		appendChunked(buf, &enc, buf.exemplars, (*encoder).exemplars)
		clear(buf.exemplars)
	}
	var metaChanged []int
	if len(b.Metadata) > 0 {
		metaChanged = w.meta.changed(b.Metadata)
		start := -1
		for _, k := range metaChanged {
			m := &b.Metadata[k]
			if start >= 0 && len(buf.enc)-start+len(m.Family)+len(m.Help)+len(m.Unit)+16 > maxRawRecord {
				buf.recs = append(buf.recs, buf.enc[start:len(buf.enc):len(buf.enc)])
				start = -1
			}
			if start < 0 {
				start = len(buf.enc)
				buf.enc = startMetadata(buf.enc)
			}
			buf.enc = appendMetadata(buf.enc, m.Type, m.Family, m.Help, m.Unit)
		}
		if start >= 0 {
			buf.recs = append(buf.recs, buf.enc[start:len(buf.enc):len(buf.enc)])
		}
	}
	if len(buf.recs) == 0 {
		return w.seq.Load(), nil
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	seq, err := w.logLocked(buf.recs...)
	if err != nil {
		return 0, err
	}
	for _, k := range metaChanged {
		w.meta.set(&b.Metadata[k])
	}
	for _, ref := range buf.refs {
		w.series.touch(ref, w.head.Segment)
	}
	for {
		cur := w.highestTs.Load()
		if maxTs <= cur || w.highestTs.CompareAndSwap(cur, maxTs) {
			break
		}
	}
	w.m.appendedSamples.Add(float64(len(buf.samples) + len(b.Histograms)))
	w.appendedTotal.Add(int64(len(buf.samples) + len(b.Histograms)))
	w.m.appendedRequests.Inc()
	return seq, nil
}

// appendChunked encodes items into buf as records of at most
// maxSamplesPerRecord items each.
func appendChunked[T any](buf *appendBuf, enc *encoder, items []T, encode func(*encoder, []T, []byte) []byte) {
	for len(items) > 0 {
		n := min(len(items), maxSamplesPerRecord)
		start := len(buf.enc)
		buf.enc = encode(enc, items[:n], buf.enc)
		buf.recs = append(buf.recs, buf.enc[start:len(buf.enc):len(buf.enc)])
		items = items[n:]
	}
}

// resolvePairs sets buf.refs to the refs of b's series, creating the
// series the log does not hold once check, if not nil, accepts each of them.
func (w *WAL) resolvePairs(b *model.Batch, buf *appendBuf, check func(int) error) error {
	buf.refs = buf.refs[:0]
	buf.fps = buf.fps[:0]
	t := w.series
	for i := range b.Series {
		var fp fingerprint
		if s := &b.Series[i]; s.WireEnd > s.WireStart {
			fp = t.fingerprintWire(b.Wire[s.WireStart:s.WireEnd])
		} else {
			fp, buf.hashBuf = t.fingerprintPairs(b.SeriesLabels(i), buf.hashBuf)
		}
		buf.fps = append(buf.fps, fp)
	}
	buf.refs = slices.Grow(buf.refs, len(buf.fps))[:len(buf.fps)]
	t.mu.RLock()
	missing := t.index.lookupAll(buf.fps, buf.refs, &buf.sink)
	t.mu.RUnlock()
	if missing == 0 {
		return nil
	}
	if check != nil {
		for i, ref := range buf.refs {
			if ref != 0 {
				continue
			}
			if err := check(i); err != nil {
				return err
			}
		}
	}
	return w.createSeries(buf.refs, buf.fps, func(i int) []byte {
		if s := &b.Series[i]; s.WireEnd > s.WireStart {
			return b.Wire[s.WireStart:s.WireEnd]
		}
		buf.hashBuf = buf.hashBuf[:0]
		for _, l := range b.SeriesLabels(i) {
			buf.hashBuf = model.AppendWireLabel(buf.hashBuf, l.Name, l.Value)
		}
		return buf.hashBuf
	})
}

// createSeries assigns refs to the series whose refs[i] is 0 (fps[i] is
// their fingerprint, wireOf(i) their labels in wire form, valid until the
// next call) and writes their Series record before any sample that uses
// them. The labels are copied once, from wireOf into the table; the record
// is encoded from them. Refs are never reused, even those of a failed
// write, so that a Series record that reached the disk despite the error
// can never name another series.
func (w *WAL) createSeries(refs []Ref, fps []fingerprint, wireOf func(int) []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.series
	t.mu.Lock()
	defer t.mu.Unlock()

	var fresh map[fingerprint]Ref
	var created []int // indexes into refs, in ref order
	rec := startSeries(nil)
	firstRef := t.nextRef
	nextRef := firstRef
	for i := range refs {
		if refs[i] != 0 {
			continue
		}
		fp := fps[i]
		if ref := t.lookup(fp); ref != 0 {
			refs[i] = ref // created meanwhile by another append
			continue
		}
		if ref, dup := fresh[fp]; dup { // the same series twice in one batch
			refs[i] = ref
			continue
		}
		if fresh == nil {
			fresh = map[fingerprint]Ref{}
		}
		ref := nextRef
		nextRef++
		fresh[fp] = ref
		wire := wireOf(i)
		rec = appendSeries(rec, ref, wire)
		t.insert(ref, wire, fp)
		created = append(created, i)
		refs[i] = ref
	}
	if len(created) == 0 {
		return nil
	}
	if _, err := w.logLocked(rec); err != nil {
		for _, i := range created {
			t.remove(refs[i], fps[i])
		}
		for i := range refs {
			if refs[i] >= firstRef {
				refs[i] = 0
			}
		}
		return err
	}
	for _, i := range created {
		t.touch(refs[i], w.head.Segment)
	}
	w.m.seriesCreated.Add(float64(len(created)))
	return nil
}

// labelsFromPairs builds a labels.Labels that owns its memory.
func labelsFromPairs(b *labels.ScratchBuilder, pairs []model.Label) labels.Labels {
	b.Reset()
	for _, l := range pairs {
		b.Add(yoloString(l.Name), yoloString(l.Value))
	}
	return b.Labels()
}

// logLocked writes records; w.mu is held.
func (w *WAL) logLocked(recs ...[]byte) (uint64, error) {
	if w.closed {
		return 0, ErrClosed
	}
	if w.broken == nil {
		if err := w.syncFailed.Swap(nil); err != nil {
			w.broken = *err
		}
	}
	if w.broken != nil {
		if err := w.rotateLocked(); err != nil {
			return 0, fmt.Errorf("wal: seal segment %d after write error (%v): %w", w.head.Segment, w.broken, err)
		}
		w.logger.Info("WAL writes resumed in a new segment", zap.Int("segment", w.head.Segment), zap.NamedError("after", w.broken))
		w.broken = nil
	}
	if w.head.Offset >= w.opts.SegmentSize {
		if err := w.rotateLocked(); err != nil {
			return 0, fmt.Errorf("wal: rotate segment %d: %w", w.head.Segment, err)
		}
	}
	err := w.seg.log(recs...)
	w.head.Offset = w.seg.size
	w.publishHead()
	if err != nil {
		w.broken = err
		w.m.writeErrors.Inc()
		return 0, fmt.Errorf("wal: %w", err)
	}
	return w.seq.Add(1), nil
}

// rotateLocked starts the next segment, seals the head segment (pads its
// last page, fsyncs and closes it) and fsyncs the directory; w.mu is held.
// If the sealing fsync fails, the writes since the last good fsync are
// reported lost to those waiting for them, and writing goes on in the new
// segment. If the directory fsync fails, the log stays broken, so that the
// next write starts yet another segment and fsyncs the directory again.
func (w *WAL) rotateLocked() error {
	oldIdx := w.head.Segment
	next, err := createSegment(w.fs, w.dir, oldIdx+1, w.opts.Compression)
	if err != nil {
		return err
	}
	upTo := w.seq.Load()
	w.segMu.Lock()
	old := w.seg
	w.seg = next
	sealErr := old.seal(w.broken != nil)
	if sealErr != nil {
		w.sealFailures++
		w.sealFailedUpTo = upTo
	}
	w.segMu.Unlock()

	w.sizes[oldIdx] = old.size
	w.sealedAt[oldIdx] = w.now()
	w.head = Position{Segment: oldIdx + 1}
	// Refs change under mu (createSeries), so this bounds the refs of every
	// Series record written so far.
	w.refStart[oldIdx+1] = w.series.nextRef
	w.broken = nil
	w.publishHead()
	// The failure is recorded twice on purpose: here, so that a later
	// successful rotation cannot advance synced over it before an fsync
	// sees it, and under segMu above, so that an fsync of the new segment
	// running meanwhile does not report these writes durable.
	w.syncMu.Lock()
	if sealErr != nil {
		w.markFailedLocked(upTo, sealErr)
	} else {
		w.synced = max(w.synced, upTo)
	}
	w.syncMu.Unlock()
	w.kickMaintenance()
	if sealErr != nil {
		w.m.fsyncErrors.Inc()
		w.logger.Error("WAL segment fsync failed while sealing it; the writes not yet fsynced are reported lost",
			zap.Int("segment", oldIdx), zap.Error(sealErr))
	}
	if err := syncDir(w.fs, w.dir); err != nil {
		w.broken = err
		return err
	}
	return nil
}

// markFailedLocked records that the writes after the last good fsync, up
// to upTo, may be lost; w.syncMu is held. Ranges of separate failures merge,
// which can only fail writes that were durable after all.
func (w *WAL) markFailedLocked(upTo uint64, err error) {
	if w.failTo <= w.failFrom {
		w.failFrom = w.synced
	}
	w.failFrom = min(w.failFrom, w.synced)
	w.failTo = max(w.failTo, upTo)
	w.lastSyncErr = err
}

// publishHead makes the head position and the size readable without w.mu.
func (w *WAL) publishHead() {
	w.headSg.Store(int64(w.head.Segment))
	w.headSz.Store(w.head.Offset)
	total := w.cpSize + w.head.Offset
	for _, s := range w.sizes {
		total += s
	}
	w.total.Store(total)
}

// wake tells readers waiting at the head that there is more to read.
func (w *WAL) wake() {
	ch := make(chan struct{})
	old := w.notify.Swap(&ch)
	close(*old)
}

func (w *WAL) waitc() <-chan struct{} { return *w.notify.Load() }

// syncTo returns once every write up to seq is fsynced. Concurrent callers
// share one fsync.
func (w *WAL) syncTo(seq uint64) error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	if seq > w.failFrom && seq <= w.failTo {
		return fmt.Errorf("wal: fsync failed, write may be lost: %w", w.lastSyncErr)
	}
	if seq <= w.synced {
		return nil
	}
	target := w.seq.Load()
	start := time.Now()
	w.segMu.RLock()
	err := w.seg.sync()
	failures, failedUpTo := w.sealFailures, w.sealFailedUpTo
	w.segMu.RUnlock()
	w.m.fsyncs.Inc()
	w.m.fsyncDuration.Observe(time.Since(start).Seconds())
	if failures != w.seenFailures {
		// A segment sealed meanwhile failed its fsync: what it held since
		// the last good fsync is not covered by this one.
		w.seenFailures = failures
		w.markFailedLocked(failedUpTo, w.lastSyncErrOr(err))
	}
	if err != nil {
		w.m.fsyncErrors.Inc()
		w.markFailedLocked(target, err)
		w.syncFailed.CompareAndSwap(nil, &err)
		return fmt.Errorf("wal: %w", err)
	}
	w.synced = target
	if seq > w.failFrom && seq <= w.failTo {
		return fmt.Errorf("wal: fsync failed, write may be lost: %w", w.lastSyncErr)
	}
	return nil
}

func (w *WAL) lastSyncErrOr(err error) error {
	if err != nil {
		return err
	}
	return errors.New("fsync of a sealed segment failed")
}

// Ping returns once the writer's lock is free: a log stuck in a write or a
// rotation does not answer.
func (w *WAL) Ping() {
	w.mu.Lock()
	defer w.mu.Unlock()
}

// Head returns the position just past the last record written.
func (w *WAL) Head() Position {
	return Position{Segment: int(w.headSg.Load()), Offset: w.headSz.Load()}
}

// Size returns the bytes the log uses on disk.
func (w *WAL) Size() int64 { return w.total.Load() }

// HighestTimestamp returns the highest sample timestamp appended (ms), or
// math.MinInt64 if none.
func (w *WAL) HighestTimestamp() int64 { return w.highestTs.Load() }

func (w *WAL) segmentRange() (first, head int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first, w.head.Segment
}

// BytesBehind returns how many bytes of records lie between p and the head.
func (w *WAL) BytesBehind(p Position) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.Segment == w.head.Segment {
		return max(0, w.head.Offset-p.Offset)
	}
	n := w.head.Offset - p.Offset
	for s := max(p.Segment, w.first); s < w.head.Segment; s++ {
		n += w.sizes[s]
	}
	return max(0, n)
}

// Close stops background work, fsyncs and closes the head segment. Readers
// must be closed first or be abandoned.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	w.isClosed.Store(true)
	w.mu.Unlock()
	select {
	case <-w.stopc:
	default:
		close(w.stopc)
	}
	if w.started.Load() {
		<-w.donec
	}
	w.mu.Lock()
	w.segMu.Lock()
	err := w.seg.seal(w.broken != nil)
	w.segMu.Unlock()
	w.mu.Unlock()
	w.wake()
	if err != nil {
		w.m.fsyncErrors.Inc()
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}

func checkpointName(dir string, seg int) string {
	return filepath.Join(dir, fmt.Sprintf("checkpoint.%08d", seg))
}
