package downsample

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ferrymetrics/ferry/sender"
	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/record"
	"go.uber.org/zap"
)

// consumerName is the compactor's name as a WAL consumer.
const consumerName = "downsample"

// Options are a compactor's dependencies.
type Options struct {
	Logger   *zap.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
}

// output is a rollup series: its labels and, once interned, its id in the
// resolution's rollup log.
type output struct {
	wire []byte // labels in wire form, never modified
	id   uint64
}

// defaultAggs holds the one-aggregation lists of series that get their
// type's default, shared (never modified).
var defaultAggs = map[string][]string{"last": {"last"}, "counter": {"counter"}}

// route is what one resolution does with one series.
type route struct {
	aggs []string // aggregations to emit
	outs []output // per aggregation; pending samples point into it
}

// membership places a series in a rollup rule's group.
type membership struct {
	ri int
	g  *group
}

// seriesState is the compactor's view of one WAL series.
type seriesState struct {
	wire    []byte   // labels in wire form: the WAL's own bytes, never modified
	routes  []route  // per resolution (index into Compactor.logs); nil aggs: not rolled up
	windows []window // per resolution
	members []membership
	// RawPrev is the last raw value, for the increases counters contribute
	// to rollup rules.
	RawPrev    float64
	HasRawPrev bool
	// counter is the series' type, decided once (typed) from metadata or
	// its name, and kept with its state so that a restart decides alike.
	counter, typed bool
	dirty          bool
	labelsSaved    bool  // labels are in the state database
	seen           int64 // clock (ms) of the last sample, to forget series that stopped
}

// pendingSample is a closed-window sample waiting for the next commit.
type pendingSample struct {
	t   int64
	v   float64
	out *output
}

// Compactor reads the WAL and writes per-resolution rollups into the state
// database. Its window state and WAL position are committed together, so
// after a crash it resumes exactly where its last commit left off.
type Compactor struct {
	cfg      Config
	db       *pebble.DB
	log      *wal.WAL
	reader   *wal.Reader
	logger   *zap.Logger
	now      func() time.Time
	logs     []*rollupLog // one per resolution, ascending
	policies [][]StoragePolicy
	series   seriesIndex
	pending  [][]pendingSample   // closed-window samples per resolution, not yet committed
	groups   []map[string]*group // rollup rule groups per resolution, by output labels
	types    map[string]uint8    // metric family → type from metadata
	newTypes map[string]uint8    // types learned since the last commit
	pos      wal.Position
	// lastBatch is the size of the last commit's batch: the next one is
	// allocated at about that size instead of doubling its way there.
	lastBatch int
	m         *metrics
	done      chan struct{}
	cancel    context.CancelFunc
	mu        sync.Mutex // serialises commits with Stop
	// idleMs is how long a series without samples keeps its state once
	// its windows closed: two of the longest windows plus max_delay, so
	// that a series sampled less often than its windows keeps its counter
	// total between samples.
	idleMs int64
}

type metrics struct {
	samples   prometheus.Counter
	late      prometheus.Counter
	skipped   *prometheus.CounterVec
	emitted   *prometheus.CounterVec
	commits   prometheus.Counter
	commitDur prometheus.Histogram
	expired   *prometheus.CounterVec
	freed     *prometheus.CounterVec
	released  *prometheus.CounterVec
	series    prometheus.GaugeFunc
}

// New opens the compactor: it loads the window state and the WAL position
// from db and registers as a WAL consumer there. policies are the storage
// policies endpoints use.
func New(cfg Config, policies []StoragePolicy, db *pebble.DB, w *wal.WAL, o Options) (*Compactor, error) {
	if errs := cfg.Validate(policies); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = model.Duration(5 * time.Second)
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = model.Duration(time.Minute)
	}
	c := &Compactor{cfg: cfg, db: db, log: w, logger: o.Logger, now: o.Now, done: make(chan struct{})}
	byRes := map[int64][]StoragePolicy{}
	for _, p := range policies {
		byRes[int64(time.Duration(p.Resolution)/time.Millisecond)] = append(byRes[int64(time.Duration(p.Resolution)/time.Millisecond)], p)
	}
	var resolutions []int64
	for r := range byRes {
		resolutions = append(resolutions, r)
	}
	slices.Sort(resolutions)
	for _, r := range resolutions {
		ret := int64(0)
		for _, p := range byRes[r] {
			ret = max(ret, int64(time.Duration(p.Retention)/time.Millisecond))
		}
		l, err := openRollupLog(db, r, ret)
		if l != nil && w != nil {
			l.meta = w
		}
		if err != nil {
			return nil, fmt.Errorf("downsample: open rollup log %dms: %w", r, err)
		}
		c.logs = append(c.logs, l)
		c.policies = append(c.policies, byRes[r])
	}
	if len(resolutions) > 0 {
		c.idleMs = 2*resolutions[len(resolutions)-1] + int64(time.Duration(cfg.MaxDelay)/time.Millisecond)
	}
	c.pending = make([][]pendingSample, len(c.logs))
	c.types, c.newTypes = map[string]uint8{}, map[string]uint8{}
	c.groups = make([]map[string]*group, len(c.logs))
	for i := range c.groups {
		c.groups[i] = map[string]*group{}
	}
	c.m = c.newMetrics(o.Registry)
	if err := c.load(); err != nil {
		return nil, err
	}
	r, err := w.NewReader(consumerName, c.pos, func(lost wal.Lost, from, to wal.Position) {
		// What was aggregated from the segments being dropped is in memory
		// only: store it before they go, or a crash now would lose it
		// uncounted (the restart could not read it again).
		if err := c.Commit(); err != nil {
			c.logger.Error("Compactor: commit before the disk cap drops segments failed; a crash before the next commit loses what was aggregated from them", zap.Error(err))
		}
		if lost.Samples == 0 {
			return
		}
		c.m.skipped.WithLabelValues("disk_cap").Add(float64(lost.Samples))
		c.logger.Error("WAL disk cap dropped samples the compactor had not read; their windows are incomplete",
			zap.Int("samples", lost.Samples), zap.Stringer("from", from), zap.Stringer("to", to))
	})
	if err != nil {
		return nil, fmt.Errorf("downsample: open WAL reader: %w", err)
	}
	c.mu.Lock() // a drop may already call Commit
	c.reader = r
	c.pos = r.Position()
	c.mu.Unlock()
	return c, nil
}

func (c *Compactor) newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		samples: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_downsample_samples_total", Help: "WAL samples the compactor aggregated."}),
		late: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_downsample_late_samples_total",
			Help: "Samples older than an already closed window (or than the series' previous sample), dropped."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_downsample_skipped_samples_total",
			Help: "Samples not rolled up: stale markers, native histograms, disk cap."}, []string{"reason"}),
		emitted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_downsample_rollup_samples_total",
			Help: "Rollup samples written, per resolution."}, []string{"resolution"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_downsample_commits_total", Help: "Compactor commits."}),
		commitDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ferry_downsample_commit_duration_seconds",
			Help: "Duration of compactor commits.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_downsample_expired_entries_total",
			Help: "Rollup log entries deleted by retention."}, []string{"resolution"}),
		freed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_downsample_rollup_series_freed_total",
			Help: "Rollup series whose labels were deleted from the state database (and memory) once retention deleted every entry that used them."}, []string{"resolution"}),
		released: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_downsample_rollup_series_released_total",
			Help: "Rollup series dropped from memory once every endpoint read their entries and two windows passed without a rollup of them (departed series); their labels stay in the state database until retention."}, []string{"resolution"}),
		series: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_downsample_series", Help: "Series with window state."},
			func() float64 { c.mu.Lock(); defer c.mu.Unlock(); return float64(c.series.len()) }),
	}
	if reg != nil {
		reg.MustRegister(m.samples, m.late, m.skipped, m.emitted, m.commits, m.commitDur, m.expired, m.freed, m.released, m.series)
	}
	return m
}

// Log returns the rollup log of a resolution, for senders.
func (c *Compactor) Log(res time.Duration) *RollupLog {
	for _, l := range c.logs {
		if l.res == int64(res/time.Millisecond) {
			return &RollupLog{l}
		}
	}
	return nil
}

// RollupLog is a resolution's rollup log as senders see it: a sender.Log
// whose cursors hold entry sequence numbers and whose lag counts entries.
type RollupLog struct{ *rollupLog }

var _ sender.Log = (*RollupLog)(nil)

// load reads the committed position and window state.
func (c *Compactor) load() error {
	v, closer, err := c.db.Get(keyPos)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		c.pos = c.log.Oldest()
	case err != nil:
		return fmt.Errorf("downsample: load position: %w", err)
	default:
		if len(v) != 16 {
			closer.Close()
			return fmt.Errorf("downsample: position has %d bytes, want 16", len(v))
		}
		c.pos = wal.Position{Segment: int(binary.BigEndian.Uint64(v)), Offset: int64(binary.BigEndian.Uint64(v[8:]))}
		closer.Close()
	}
	tit, err := c.db.NewIter(&pebble.IterOptions{LowerBound: prefixType, UpperBound: prefixEnd(prefixType)})
	if err != nil {
		return err
	}
	for tit.First(); tit.Valid(); tit.Next() {
		if v := tit.Value(); len(v) == 1 {
			c.types[string(tit.Key()[len(prefixType):])] = v[0]
		}
	}
	if err := tit.Close(); err != nil {
		return err
	}
	lbls := map[wal.Ref]labels.Labels{}
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: prefixLabels, UpperBound: prefixEnd(prefixLabels)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		ref := wal.Ref(binary.BigEndian.Uint64(it.Key()[len(prefixLabels):]))
		ls, err := decodeLabels(it.Value())
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("downsample: decode labels of series %d: %w", ref, err)
		}
		lbls[ref] = ls
	}
	if err := it.Close(); err != nil {
		return err
	}
	it, err = c.db.NewIter(&pebble.IterOptions{LowerBound: prefixState, UpperBound: prefixEnd(prefixState)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		ref := wal.Ref(binary.BigEndian.Uint64(it.Key()[len(prefixState):]))
		ls, ok := lbls[ref]
		if !ok {
			c.logger.Warn("Compactor: window state without labels ignored", zap.Uint64("ref", uint64(ref)))
			continue
		}
		st, err := c.decodeState(it.Value(), ls)
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("downsample: decode state of series %d: %w", ref, err)
		}
		if !c.series.set(ref, st) {
			c.logger.Warn("Compactor: state of an out-of-sequence series ref ignored", zap.Uint64("ref", uint64(ref)))
		}
	}
	return it.Close()
}

// Run aggregates the WAL until Stop.
func (c *Compactor) Run() {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.run(ctx)
}

func (c *Compactor) run(ctx context.Context) {
	defer close(c.done)
	interval := time.Duration(c.cfg.CommitInterval)
	deadline := time.Now().Add(interval)
	for ctx.Err() == nil {
		rctx, cancel := context.WithDeadline(ctx, deadline)
		e, err := c.reader.Next(rctx)
		cancel()
		switch {
		case err == nil:
			c.mu.Lock()
			c.apply(e)
			c.mu.Unlock()
			if time.Now().Before(deadline) {
				continue
			}
		case errors.Is(err, wal.ErrClosed) || ctx.Err() != nil:
			return
		case errors.As(err, new(*wal.CorruptionError)):
			c.logger.Error("Compactor: skipped damaged WAL data; its samples are not rolled up", zap.Error(err))
			continue
		case !errors.Is(err, context.DeadlineExceeded):
			c.logger.Error("Compactor: reading the WAL failed; retrying", zap.Error(err))
		}
		if err := c.Commit(); err != nil {
			c.logger.Error("Compactor: commit failed; retrying at the next interval", zap.Error(err))
		}
		deadline = time.Now().Add(interval)
	}
}

// Stop ends Run and commits.
func (c *Compactor) Stop() error {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	err := c.Commit()
	for _, l := range c.logs {
		l.close()
	}
	return errors.Join(err, c.reader.Close())
}

// apply aggregates one WAL record.
func (c *Compactor) apply(e *wal.Entry) {
	for _, m := range e.Metadata {
		if t := uint8(m.Type); t != 0 && c.types[m.Family] != t {
			c.types[m.Family] = t
			c.newTypes[m.Family] = t
		}
	}
	nowMs := c.now().UnixMilli()
	for i, s := range e.Samples {
		if !e.Known(i) {
			continue
		}
		st := c.series.get(s.Ref)
		if st == nil {
			st = &seriesState{windows: make([]window, len(c.logs))}
			if !c.series.set(s.Ref, st) {
				continue
			}
		}
		if st.routes == nil {
			st.wire = e.Wire[i]
			c.route(st, e.SeriesLabels(i))
		}
		st.seen = nowMs
		if len(st.members) > 0 && !math.IsNaN(s.V) {
			delta := 0.0
			switch {
			case !st.HasRawPrev:
			case s.V < st.RawPrev:
				delta = s.V
			default:
				delta = s.V - st.RawPrev
			}
			st.RawPrev, st.HasRawPrev = s.V, true
			maxDelay := int64(time.Duration(c.cfg.MaxDelay) / time.Millisecond)
			for _, m := range st.members {
				if m.g.add(s.Ref, s.T, s.V, delta, c.logs[m.ri].res) {
					c.m.late.Inc()
				}
				m.g.seen = nowMs
				c.closeGroup(m.ri, m.g, nowMs, maxDelay)
			}
			st.dirty = true
		}
		for ri, rt := range st.routes {
			if len(rt.aggs) == 0 {
				continue
			}
			cw, o := st.windows[ri].add(s.T, s.V, c.logs[ri].res)
			switch o {
			case late:
				c.m.late.Inc()
			case stale:
				c.m.skipped.WithLabelValues("stale_marker").Inc()
			}
			if cw != nil {
				c.emit(st, ri, *cw)
			}
			st.dirty = true
		}
	}
	c.m.samples.Add(float64(len(e.Samples)))
	if len(e.Histograms) > 0 {
		// Native histograms go to raw endpoints as received; they are not
		// rolled up.
		c.m.skipped.WithLabelValues("native_histogram").Add(float64(len(e.Histograms)))
	}
	c.pos = e.End
}

// route decides, per resolution, which aggregations a series with labels ls
// gets.
func (c *Compactor) route(st *seriesState, ls labels.Labels) {
	st.routes = make([]route, len(c.logs))
	name := ls.Get(model.MetricNameLabel)
	if !st.typed {
		st.counter, st.typed = c.isCounter(name), true
	}
	def := "last"
	if st.counter {
		def = "counter"
	}
	for ri, ps := range c.policies {
		var aggs []string
		for _, p := range ps {
			if p.All() && !slices.Contains(aggs, def) {
				aggs = append(aggs, def)
			}
			for _, r := range c.cfg.MappingRules {
				if !slices.ContainsFunc(r.StoragePolicies, func(s string) bool { return samePolicy(s, p) }) || !matches(r.matchers, ls) {
					continue
				}
				ra := r.Aggregations
				if len(ra) == 0 {
					ra = []string{def}
				}
				for _, a := range ra {
					if !slices.Contains(aggs, a) {
						aggs = append(aggs, a)
					}
				}
			}
		}
		if len(aggs) == 1 && aggs[0] == def {
			aggs = defaultAggs[def] // shared by most series
		}
		rt := route{aggs: aggs, outs: make([]output, len(aggs))}
		for i, a := range aggs {
			rt.outs[i] = output{wire: st.wire}
			if a != def {
				rt.outs[i].wire = wal.WireOf(labels.NewBuilder(ls).Set(model.MetricNameLabel, name+":"+a).Labels())
			}
		}
		st.routes[ri] = rt
	}
	st.members = st.members[:0]
	for _, r := range c.cfg.RollupRules {
		if !matches(r.matchers, ls) {
			continue
		}
		out := groupLabels(r, ls)
		key := out.String()
		for _, p := range r.StoragePolicies {
			ri := c.resolutionIndex(p)
			if ri < 0 {
				continue
			}
			g := c.groups[ri][key]
			if g == nil {
				g = &group{labels: out, agg: r.Aggregation, counter: def == "counter", Watermark: math.MinInt64}
				if err := c.loadGroup(ri, key, g); err != nil {
					c.logger.Error("Compactor: damaged rollup-rule state; starting the group afresh", zap.String("group", key), zap.Error(err))
				}
				c.groups[ri][key] = g
			}
			st.members = append(st.members, membership{ri: ri, g: g})
		}
	}
}

// Metadata metric types (prometheus.MetricMetadata.MetricType).
const (
	typeCounter   = 1
	typeGauge     = 2
	typeHistogram = 3
	typeSummary   = 5
)

// isCounter decides whether a series is a counter: from its family's type
// in metadata when known (for histograms and summaries, their _count, _sum
// and _bucket series are counters), else from its name.
func (c *Compactor) isCounter(name string) bool {
	if t, ok := c.types[name]; ok {
		switch t {
		case typeCounter:
			return true
		case typeHistogram, typeSummary:
			// Remote-Write 2.0 gives every series its family's metadata:
			// foo_bucket, foo_count and foo_sum say "histogram".
			for _, suffix := range []string{"_count", "_sum", "_bucket"} {
				if strings.HasSuffix(name, suffix) {
					return true
				}
			}
		}
		return false
	}
	for _, suffix := range []string{"_total", "_count", "_sum", "_bucket"} {
		if fam, ok := strings.CutSuffix(name, suffix); ok {
			if t, ok := c.types[fam]; ok {
				return t == typeCounter || ((t == typeHistogram || t == typeSummary) && suffix != "_total")
			}
		}
	}
	return IsCounterName(name)
}

// groupLabels returns the output labels of a rollup rule for a member.
func groupLabels(r RollupRule, ls labels.Labels) labels.Labels {
	b := labels.NewBuilder(labels.EmptyLabels())
	if len(r.Without) > 0 {
		b.Reset(ls)
		b.Del(r.Without...)
	} else {
		for _, n := range r.By {
			if v := ls.Get(n); v != "" {
				b.Set(n, v)
			}
		}
	}
	b.Set(model.MetricNameLabel, r.NewName)
	return b.Labels()
}

// resolutionIndex returns the index of a policy's resolution in c.logs.
func (c *Compactor) resolutionIndex(policy string) int {
	res, _, err := ParsePolicy(policy)
	if err != nil {
		return -1
	}
	for i, l := range c.logs {
		if l.res == int64(res/time.Millisecond) {
			return i
		}
	}
	return -1
}

// closeGroup queues the samples of the group's windows that are due.
func (c *Compactor) closeGroup(ri int, g *group, nowMs, maxDelay int64) {
	var buf [4]closedSample
	out := g.closeDue(nowMs, c.logs[ri].res, maxDelay, buf[:0])
	if len(out) == 0 {
		return
	}
	if g.out == nil {
		g.out = &output{wire: wal.WireOf(g.labels)}
	}
	for _, cs := range out {
		c.pending[ri] = append(c.pending[ri], pendingSample{t: cs.t, v: cs.v, out: g.out})
	}
}

func samePolicy(s string, p StoragePolicy) bool {
	res, ret, err := ParsePolicy(s)
	return err == nil && time.Duration(p.Resolution) == res && time.Duration(p.Retention) == ret
}

// emit queues the samples of a closed window.
func (c *Compactor) emit(st *seriesState, ri int, cw closed) {
	rt := &st.routes[ri]
	for i, a := range rt.aggs {
		c.pending[ri] = append(c.pending[ri], pendingSample{t: cw.LastT, v: cw.value(a), out: &rt.outs[i]})
	}
}

// Commit closes windows the clock has passed, and writes window state,
// closed-window samples and the WAL position in one synced batch.

// aheadBatchBytes bounds the batches that write new series ahead of a
// commit's synced batch.
const aheadBatchBytes = 4 << 20

// aheadBatch writes what a commit only adds (labels of new WAL series, new
// rollup series) in unsynced batches of at most about aheadBatchBytes,
// committed before the commit's own batch. Pebble's log is ordered, so the
// synced commit makes them durable with it. If a crash comes between them,
// they are entries nothing refers to: a series' labels are written again
// with its state, and a rollup series interned again reuses or replaces its
// id; neither changes any rollup.
type aheadBatch struct {
	db *pebble.DB
	b  *pebble.Batch
}

// Set adds a key to the current batch, and commits it when it is full.
func (a *aheadBatch) Set(k, v []byte, _ *pebble.WriteOptions) error {
	if a.b == nil {
		a.b = a.db.NewBatch()
	}
	if err := a.b.Set(k, v, nil); err != nil {
		return err
	}
	if a.b.Len() >= aheadBatchBytes {
		return a.flush()
	}
	return nil
}

// flush commits the current batch, unsynced.
func (a *aheadBatch) flush() error {
	if a.b == nil {
		return nil
	}
	err := a.b.Commit(pebble.NoSync)
	a.close()
	if err != nil {
		return fmt.Errorf("downsample: write new series ahead of a commit: %w", err)
	}
	return nil
}

func (a *aheadBatch) close() {
	if a.b != nil {
		_ = a.b.Close()
		a.b = nil
	}
}
func (c *Compactor) Commit() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	nowMs := c.now().UnixMilli()
	maxDelay := int64(time.Duration(c.cfg.MaxDelay) / time.Millisecond)
	b := c.db.NewBatchWithSize(c.lastBatch + c.lastBatch/8)
	defer b.Close()
	// New series' labels and new rollup series go ahead in batches of
	// their own, so that the synced batch stays the size of the state.
	ahead := aheadBatch{db: c.db}
	defer ahead.close()
	var firstErr error
	var newLabels []*seriesState
	var key, val []byte // Set copies them
	c.series.all(func(ref wal.Ref, st *seriesState) {
		if firstErr != nil {
			return
		}
		for ri := range st.routes {
			if st.windows[ri].due(nowMs, st.seen, c.logs[ri].res, maxDelay) {
				c.emit(st, ri, st.windows[ri].close(c.logs[ri].res))
				st.dirty = true
			}
		}
		// A series silent for two of the longest windows (a departed one)
		// has no open window worth keeping.
		if st.seen > 0 && nowMs-st.seen > c.idleMs && !st.open() {
			firstErr = errors.Join(b.Delete(stateKey(ref), nil), b.Delete(labelsKey(ref), nil))
			c.series.delete(ref)
			return
		}
		if st.dirty {
			key = appendStateKey(key[:0], ref)
			val = c.appendState(val[:0], st)
			firstErr = b.Set(key, val, nil)
			if !st.labelsSaved && firstErr == nil {
				firstErr = ahead.Set(labelsKey(ref), encodeLabels(wal.LabelsOfWire(st.wire)), nil)
				newLabels = append(newLabels, st)
			}
		}
	})
	if firstErr != nil {
		return firstErr
	}
	type staged struct {
		seq  uint64
		maxT int64
	}
	for fam, t := range c.newTypes {
		if err := b.Set(append(slices.Clone(prefixType), fam...), []byte{t}, nil); err != nil {
			return err
		}
	}
	// Rollup-rule groups: windows the clock closed, and dirty state.
	for ri, gs := range c.groups {
		for key, g := range gs {
			c.closeGroup(ri, g, nowMs, maxDelay)
			if g.dirty {
				if err := b.Set(groupKey(c.logs[ri].res, key), g.encode(), nil); err != nil {
					return err
				}
			}
		}
	}
	stagedEntries := make([]*staged, len(c.logs))
	fresh := make([][]uint64, len(c.logs))
	var newIDs []*output
	for ri, samples := range c.pending {
		if len(samples) == 0 {
			continue
		}
		l := c.logs[ri]
		out := make([]record.RefSample, len(samples))
		maxT := int64(math.MinInt64)
		for i, s := range samples {
			if s.out.id == 0 || !l.has(s.out.id) { // new, or freed since
				id, err := l.intern(s.out.wire, &ahead, &fresh[ri])
				if err != nil {
					return err
				}
				s.out.id = id
				newIDs = append(newIDs, s.out)
			}
			out[i] = record.RefSample{Ref: wal.Ref(s.out.id), T: s.t, V: s.v}
			maxT = max(maxT, s.t)
		}
		seq, err := l.stage(b, out)
		if err != nil {
			return err
		}
		stagedEntries[ri] = &staged{seq: seq, maxT: maxT}
	}
	var pos [16]byte
	binary.BigEndian.PutUint64(pos[:], uint64(c.pos.Segment))
	binary.BigEndian.PutUint64(pos[8:], uint64(c.pos.Offset))
	if err := b.Set(keyPos, pos[:], nil); err != nil {
		return err
	}
	c.lastBatch = b.Len()
	err := ahead.flush()
	if err == nil {
		err = b.Commit(pebble.Sync)
	}
	if err != nil {
		// The commit's batch was not written (what went ahead of it is
		// harmless, see aheadBatch): undo the interning; the next commit
		// retries everything.
		for ri, f := range fresh {
			c.logs[ri].forget(f)
		}
		for _, o := range newIDs {
			o.id = 0
		}
		return fmt.Errorf("downsample: commit: %w", err)
	}
	for ri, s := range stagedEntries {
		if s != nil {
			c.logs[ri].published(s.seq, s.maxT)
			c.m.emitted.WithLabelValues(time.Duration(c.logs[ri].res * int64(time.Millisecond)).String()).Add(float64(len(c.pending[ri])))
		}
		c.pending[ri] = c.pending[ri][:0]
	}
	c.series.all(func(_ wal.Ref, st *seriesState) { st.dirty = false })
	for _, st := range newLabels {
		st.labelsSaved = true
	}
	for _, gs := range c.groups {
		for _, g := range gs {
			g.dirty = false
		}
	}
	clear(c.newTypes)
	if c.reader != nil {
		c.reader.Commit(c.pos)
	}
	for _, l := range c.logs {
		n, freed, err := l.applyRetention(nowMs)
		if err != nil {
			c.logger.Error("Rollup retention failed", zap.Error(err))
		}
		res := time.Duration(l.res * int64(time.Millisecond)).String()
		if n > 0 {
			c.m.expired.WithLabelValues(res).Add(float64(n))
		}
		if freed > 0 {
			c.m.freed.WithLabelValues(res).Add(float64(freed))
		}
		released, err := l.release()
		if err != nil {
			c.logger.Error("Releasing departed rollup series from memory failed", zap.Error(err))
		}
		if released > 0 {
			c.m.released.WithLabelValues(res).Add(float64(released))
		}
	}
	c.m.commits.Inc()
	c.m.commitDur.Observe(time.Since(start).Seconds())
	return nil
}

func (st *seriesState) open() bool {
	for _, w := range st.windows {
		if w.Count > 0 {
			return true
		}
	}
	return false
}

func groupKey(res int64, key string) []byte {
	return append(binary.BigEndian.AppendUint64(append([]byte(nil), prefixGroup...), uint64(res)), key...)
}

// loadGroup reads a group's committed state, if any.
func (c *Compactor) loadGroup(ri int, key string, g *group) error {
	v, closer, err := c.db.Get(groupKey(c.logs[ri].res, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	return g.decode(v)
}

func labelsKey(ref wal.Ref) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), prefixLabels...), uint64(ref))
}

// prefixEnd is the first key after every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := slices.Clone(p)
	end[len(end)-1]++
	return end
}

func stateKey(ref wal.Ref) []byte { return appendStateKey(nil, ref) }

func appendStateKey(b []byte, ref wal.Ref) []byte {
	return binary.BigEndian.AppendUint64(append(b, prefixState...), uint64(ref))
}
