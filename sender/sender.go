package sender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"go.uber.org/zap"
)

// Options are a sender's dependencies.
type Options struct {
	Logger      *zap.Logger
	Metrics     *Metrics
	Checkpoints Checkpoints
	// UserAgent is sent with every request, e.g. "ferry/1.2.3".
	UserAgent string
	// Drop, if set, keeps series from this endpoint (mapping rules with
	// drop: true); such samples count as dropped with reason "rule".
	Drop func(labels.Labels) bool
	// CheckpointInterval is how often the acknowledged cursor is
	// persisted; default 1s.
	CheckpointInterval time.Duration
	// ReshardInterval is how often the shard count is reconsidered;
	// default 10s.
	ReshardInterval time.Duration
	Now             func() time.Time
}

// Sender forwards a Log to one endpoint.
type Sender struct {
	cfg    Config
	url    string
	log    Log
	seg    segmented // the WAL's, nil for other logs
	o      Options
	logger *zap.Logger
	client *http.Client
	reader Source
	track  *tracker

	sent, retried, failed, sentBytes                 prometheusCounter
	droppedCap, droppedRelabel, droppedRule, unknown prometheusCounter
	droppedRetention, droppedOld, droppedTenant      prometheusCounter
	droppedConfig, seriesForgotten                   prometheusCounter
	exSent, exCap, exRelabel, exRule, exUnknown      prometheusCounter
	exConfig, exNoSample, exRefused, exOld, exTenant prometheusCounter
	metaSent, samplesPartial, exPartial, fallbacks   prometheusCounter
	inFlight, shardsGauge                            prometheusGauge

	// version is the protocol requests are encoded in: the configured
	// one, until a 2.0 endpoint turns out to accept only 1.0.
	version atomic.Int32
	// meta supplies metadata to the encoders; nil when metadata is not sent.
	meta wal.MetadataSource

	highestAcked   atomic.Int64 // ms
	lastErrLog     atomic.Int64 // unix ns of the last logged send error
	lastPartialLog atomic.Int64 // unix ns of the last logged partial write
	lastOldLog     atomic.Int64 // unix ns of the last logged drop of too old samples
	lastTenantLog  atomic.Int64 // unix ns of the last logged drop of series with an invalid tenant

	readCtx    context.Context // ends: stop reading the WAL
	stopRead   context.CancelFunc
	sendCtx    context.Context // ends: abandon in-flight requests
	stopSend   context.CancelFunc
	readerDone chan struct{}
	loopDone   chan struct{}
	stopOnce   sync.Once

	shardsMu   sync.Mutex
	shardsView []*shard // the current shards, for the resharding decision

	// Owned by the reading goroutine.
	shards     []*shard
	wantShards atomic.Int32
	res        resolver
	relabels   bool // external labels, write_relabel_configs or a drop rule apply
	memoized   bool // series go through res: relabels, or tenants apply
	route      [][]item
	// enqueued is one past the last record whose items are all queued in
	// the shards.
	enqueued atomic.Uint64

	// asideMu guards the tenants set aside, and makes routing a record
	// and moving mainEnd past it one step.
	asideMu  sync.Mutex
	aside    []uint32   // the tenants set aside
	catchUps []*catchUp // theirs
	mainEnd  Cursor     // the end of the last record routed
	// catchingUp counts the tenants set aside; catchUpsRunning their
	// goroutines.
	catchingUp      atomic.Int32
	catchUpsRunning sync.WaitGroup
	catchingGauge   prometheusGauge
	catchUpsTotal   prometheusCounter

	// tenants is set when the endpoint splits requests by tenant.
	tenants *tenantTable

	health         health
	sentSamples    atomic.Int64 // samples and histograms acknowledged by the endpoint
	sentBytesTotal atomic.Int64 // request bytes acknowledged
	failedTotal    atomic.Int64 // samples and histograms refused for good
	capTotal       atomic.Int64 // samples the disk cap dropped before they were sent
	lastCapDrop    atomic.Int64 // when the disk cap last dropped unsent samples (unix ns)
}

type prometheusCounter interface{ Add(float64) }
type prometheusGauge interface {
	Set(float64)
	Add(float64)
}

// New opens the endpoint's reader of log at its checkpoint (or, for a new
// endpoint, at the oldest entry or the head, per cfg.StartAtHead). Run
// starts it.
func New(cfg Config, log Log, o Options) (*Sender, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", cfg.Name, err)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Second
	}
	if o.ReshardInterval <= 0 {
		o.ReshardInterval = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.UserAgent == "" {
		o.UserAgent = "ferry"
	}
	start, ok, err := o.Checkpoints.Load(cfg.CheckpointKey)
	if err != nil {
		return nil, err
	}
	logger := o.Logger.With(zap.String("endpoint", cfg.Name))
	if !ok {
		from := "oldest"
		start = log.Oldest()
		if cfg.StartAtHead {
			from, start = "now", log.Head()
		}
		logger.Info("New endpoint: no checkpoint yet", zap.String("start_from", from), zap.String("position", log.Describe(start)))
	} else {
		logger.Info("Resuming from the stored checkpoint", zap.String("position", log.Describe(start)))
	}
	m := o.Metrics
	name := cfg.Name
	s := &Sender{
		cfg: cfg, url: cfg.URL.String(), log: log, o: o, logger: logger, client: cfg.Client,
		sent: m.sent.WithLabelValues(name), retried: m.retried.WithLabelValues(name),
		failed: m.failed.WithLabelValues(name), sentBytes: m.sentBytes.WithLabelValues(name),
		droppedCap:       m.dropped.WithLabelValues(name, "disk_cap"),
		droppedRetention: m.dropped.WithLabelValues(name, "retention"),
		droppedRelabel:   m.dropped.WithLabelValues(name, "relabel"),
		droppedRule:      m.dropped.WithLabelValues(name, "rule"),
		unknown:          m.dropped.WithLabelValues(name, "unknown_series"),
		droppedConfig:    m.dropped.WithLabelValues(name, "config"),
		droppedOld:       m.dropped.WithLabelValues(name, "too_old"),
		seriesForgotten:  m.seriesForgotten.WithLabelValues(name),
		exSent:           m.exemplarsSent.WithLabelValues(name),
		exCap:            m.exemplarsDropped.WithLabelValues(name, "disk_cap"),
		exRelabel:        m.exemplarsDropped.WithLabelValues(name, "relabel"),
		exRule:           m.exemplarsDropped.WithLabelValues(name, "rule"),
		exUnknown:        m.exemplarsDropped.WithLabelValues(name, "unknown_series"),
		exConfig:         m.exemplarsDropped.WithLabelValues(name, "config"),
		exNoSample:       m.exemplarsDropped.WithLabelValues(name, "no_sample"),
		exRefused:        m.exemplarsDropped.WithLabelValues(name, "refused"),
		exOld:            m.exemplarsDropped.WithLabelValues(name, "too_old"),
		metaSent:         m.metadataSent.WithLabelValues(name),
		samplesPartial:   m.samplesPartial.WithLabelValues(name),
		exPartial:        m.exemplarsPartial.WithLabelValues(name),
		fallbacks:        m.fallbacks.WithLabelValues(name),
		inFlight:         m.inFlight.WithLabelValues(name), shardsGauge: m.shards.WithLabelValues(name),
		readerDone: make(chan struct{}), loopDone: make(chan struct{}),
		res: newResolver(),
	}
	s.seg, _ = log.(segmented)
	s.highestAcked.Store(math.MinInt64)
	s.wantShards.Store(int32(cfg.Queue.MinShards))
	if cfg.SendMetadata {
		s.meta = log
	}
	s.setVersion(cfg.Protocol)
	s.relabels = len(cfg.WriteRelabelConfigs) > 0 || o.Drop != nil || !cfg.ExternalLabels.IsEmpty()
	if cfg.Tenant != nil {
		s.tenants = newTenantTable(m.tenantSent, name)
		s.droppedTenant = m.dropped.WithLabelValues(name, "tenant")
		s.exTenant = m.exemplarsDropped.WithLabelValues(name, "tenant")
		s.catchingGauge = m.tenantsCatching.WithLabelValues(name)
		s.catchUpsTotal = m.tenantCatchUps.WithLabelValues(name)
	}
	s.memoized = s.relabels || s.tenants != nil
	r, err := log.Open(name, start, s.onDrop)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: open WAL reader: %w", name, err)
	}
	s.reader = r
	s.track = newTracker(r.Cursor())
	s.mainEnd = r.Cursor()
	if s.seg != nil {
		p := s.seg.position(r.Cursor())
		m.cpSegment.WithLabelValues(name).Set(float64(p.Segment))
		m.cpOffset.WithLabelValues(name).Set(float64(p.Offset))
	}
	s.readCtx, s.stopRead = context.WithCancel(context.Background())
	s.sendCtx, s.stopSend = context.WithCancel(context.Background())
	return s, nil
}

// Name returns the endpoint's name.
func (s *Sender) Name() string { return s.cfg.Name }

// Run starts reading and sending in the background.
func (s *Sender) Run() {
	go s.readLoop()
	go s.checkpointLoop()
}

// onDrop counts what the disk cap (or, for rollups, their retention) took:
// what the reader had not read yet (lost), and what it had read but not
// delivered, which is written off (the shards discard it) so that each is
// counted once, here, whether or not the process lives to retry it.
func (s *Sender) onDrop(lost wal.Lost, from, to Cursor) {
	queued, exemplars := s.track.writeOff(to)
	if lost.Reason == "retention" {
		if n := lost.Samples + queued; n > 0 {
			s.droppedRetention.Add(float64(n))
			s.logger.Error("Rollups passed their retention before this endpoint sent them; they are dropped",
				zap.Int("samples", n), zap.Int("unread", lost.Samples), zap.Int("read_not_delivered", queued),
				zap.String("from", s.log.Describe(from)), zap.String("to", s.log.Describe(to)))
		}
		return
	}
	if ex := lost.Exemplars + exemplars; ex > 0 {
		s.exCap.Add(float64(ex))
	}
	if lost.Samples+queued+lost.Exemplars+exemplars == 0 {
		return
	}
	s.droppedCap.Add(float64(lost.Samples + queued))
	s.capTotal.Add(int64(lost.Samples + queued))
	if lost.Samples+queued > 0 {
		s.lastCapDrop.Store(s.o.Now().UnixNano())
	}
	s.logger.Error("WAL disk cap dropped samples this endpoint had not sent",
		zap.Int("samples", lost.Samples+queued), zap.Int("unread", lost.Samples), zap.Int("read_not_delivered", queued),
		zap.Int("exemplars", lost.Exemplars+exemplars), zap.Int("exemplars_unread", lost.Exemplars),
		zap.String("from", s.log.Describe(from)), zap.String("to", s.log.Describe(to)))
}

// readLoop reads the WAL and hands samples to the shards.
func (s *Sender) readLoop() {
	defer close(s.readerDone)
	s.startShards(int(s.wantShards.Load()))
	defer s.stopShards()
	for {
		if want := int(s.wantShards.Load()); want != len(s.shards) {
			if !s.reshard(want) {
				return
			}
		}
		if !s.holdForCatchUps(s.readCtx) {
			return
		}
		e, err := s.reader.Next(s.readCtx)
		if err != nil {
			if s.readCtx.Err() != nil || errors.Is(err, ErrSourceClosed) {
				return
			}
			if ce := (*wal.CorruptionError)(nil); errors.As(err, &ce) {
				s.logger.Error("Skipped damaged WAL data: what it held is not sent to this endpoint (ferry_wal_corruptions_total)",
					zap.String("dir", ce.Dir), zap.Int("segment", ce.Segment), zap.Int64("offset", ce.Offset), zap.Error(ce.Err))
				continue
			}
			s.logger.Error("Reading the WAL failed; retrying", zap.Error(err))
			select {
			case <-s.readCtx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if !s.dispatch(e) {
			return
		}
	}
}

// dispatch routes one record's samples, histograms or exemplars to the
// shards; false if stopping. The items of tenants set aside are counted in
// the record but not routed: their catch-ups send them.
func (s *Sender) dispatch(entry Entry) bool {
	e := entry.Data
	n := len(s.shards)
	if cap(s.route) < n {
		s.route = make([][]item, n)
	}
	s.route = s.route[:n]
	for i := range s.route {
		s.route[i] = s.route[i][:0]
	}
	var drops admitDrops
	count := 0
	// Routing, registering the record and moving mainEnd happen as one
	// step for the catch-ups, which read only records routed before.
	s.asideMu.Lock()
	seq := s.track.next()
	aside := s.aside
	s.collect(e, seq, &s.res, &drops, func(it item) {
		count++
		if len(aside) > 0 && slices.Contains(aside, it.tenant) {
			return
		}
		k := shardOf(it.ref, n)
		s.route[k] = append(s.route[k], it)
	})
	// An entry holds one kind of data: its losses are counted as samples
	// or as exemplars.
	exemplars := len(e.Exemplars) > 0
	writtenOff := s.track.add(entry.End, count, exemplars)
	s.mainEnd = entry.End
	s.asideMu.Unlock()
	unknownC, relabelC, ruleC, configC, capC := s.unknown, s.droppedRelabel, s.droppedRule, s.droppedConfig, s.droppedCap
	tenantC := s.droppedTenant
	if exemplars {
		unknownC, relabelC, ruleC, configC, capC = s.exUnknown, s.exRelabel, s.exRule, s.exConfig, s.exCap
		tenantC = s.exTenant
	}
	for _, c := range []struct {
		c prometheusCounter
		n int
	}{{unknownC, e.Unknown}, {relabelC, drops.relabel}, {ruleC, drops.rule}, {configC, drops.config}, {tenantC, drops.tenant}} {
		if c.n > 0 {
			c.c.Add(float64(c.n))
		}
	}
	if drops.tenant > 0 && s.shouldLog(&s.lastTenantLog) {
		s.logger.Warn("Dropped series whose tenant cannot be sent in a header (it holds control characters); they are counted",
			zap.Int("items", drops.tenant), zap.String("label", s.cfg.Tenant.Label))
	}
	if writtenOff > 0 {
		capC.Add(float64(writtenOff))
		if !exemplars {
			s.capTotal.Add(int64(writtenOff))
			s.lastCapDrop.Store(s.o.Now().UnixNano())
		}
		s.logger.Error("WAL disk cap dropped samples this endpoint had read but not sent",
			zap.Int("items", writtenOff), zap.Bool("exemplars", exemplars), zap.String("record_end", s.log.Describe(entry.End)))
	}
	if s.memoized {
		if n := s.res.memo.age(); n > 0 {
			s.seriesForgotten.Add(float64(n))
		}
	}
	for k, items := range s.route {
		if len(items) > 0 && !s.shards[k].enqueue(s.readCtx, items) {
			return false
		}
	}
	s.enqueued.Store(seq + 1)
	return true
}

// collect passes to add, in log order, the entry's samples, histograms and
// exemplars that the endpoint sends, as items of record seq, and counts in
// drops those it keeps from the endpoint; r resolves series.
func (s *Sender) collect(e *wal.Entry, seq uint64, r *resolver, drops *admitDrops, add func(item)) {
	for i, smp := range e.Samples {
		if !e.Known(i) {
			continue // unknown series, counted by the caller
		}
		if !s.memoized {
			add(item{kind: kindSample, wire: e.Wire[i], ref: uint64(smp.Ref), t: smp.T, v: smp.V, st: smp.ST, rec: seq})
			continue
		}
		if i%prefetchAhead == 0 {
			r.memo.prefetch(e.Samples[i:min(i+prefetchAhead, len(e.Samples))])
		}
		wire, tenant, ok := s.admit(r, uint64(smp.Ref), e.Wire[i], drops)
		if !ok {
			continue
		}
		add(item{kind: kindSample, wire: wire, tenant: tenant, ref: uint64(smp.Ref), t: smp.T, v: smp.V, st: smp.ST, rec: seq})
	}
	for _, h := range e.Histograms {
		if len(h.Wire) == 0 {
			continue
		}
		if !s.cfg.SendHistograms {
			drops.config++
			continue
		}
		wire, tenant, ok := s.admit(r, uint64(h.Ref), h.Wire, drops)
		if !ok {
			continue
		}
		// The entry's data is only valid until the next read.
		add(item{kind: kindHistogram, wire: wire, tenant: tenant, ref: uint64(h.Ref), t: histogramTimestamp(h.Data),
			x: &extra{hist: bytes.Clone(h.Data)}, rec: seq})
	}
	for _, x := range e.Exemplars {
		if len(x.Wire) == 0 {
			continue
		}
		if !s.cfg.SendExemplars {
			drops.config++
			continue
		}
		wire, tenant, ok := s.admit(r, uint64(x.Ref), x.Wire, drops)
		if !ok {
			continue
		}
		add(item{kind: kindExemplar, wire: wire, tenant: tenant, ref: uint64(x.Ref), t: x.T, v: x.V, x: &extra{ex: x.Exemplar}, rec: seq})
	}
}

// admitDrops counts the items collect keeps from the endpoint, by reason.
type admitDrops struct{ relabel, rule, tenant, config int }

// resolver remembers what the endpoint sends each series as. Each
// goroutine that reads the log has its own.
type resolver struct {
	memo *seriesMemo
	lb   *labels.Builder
}

func newResolver() resolver {
	return resolver{memo: newSeriesMemo(), lb: labels.NewBuilder(labels.EmptyLabels())}
}

// admit returns what the endpoint sends series ref as: its labels in wire
// form (the log's own, wire, when the endpoint changes no labels, else
// what external labels, write_relabel_configs, drop rules and a dropped
// tenant label make of them) and its tenant, computed once per series; or
// false for a series it does not send, counted in drops.
func (s *Sender) admit(r *resolver, ref uint64, wire []byte, drops *admitDrops) (sent []byte, tenant uint32, ok bool) {
	if !s.memoized {
		return wire, 0, true
	}
	si := r.memo.get(ref)
	if si == nil {
		si = s.describe(r.lb, wire)
		r.memo.put(ref, si)
	}
	switch si {
	case droppedByRelabel:
		drops.relabel++
		return nil, 0, false
	case droppedByRule:
		drops.rule++
		return nil, 0, false
	case droppedByTenant:
		drops.tenant++
		return nil, 0, false
	}
	return si.wire, si.tenant, true
}

// describe works out, with lb, what the endpoint sends a series with
// labels wire as.
func (s *Sender) describe(lb *labels.Builder, wire []byte) *seriesInfo {
	ls := wal.LabelsOfWire(wire)
	if s.o.Drop != nil && s.o.Drop(ls) {
		return droppedByRule
	}
	lb.Reset(ls)
	s.cfg.ExternalLabels.Range(func(l labels.Label) {
		if lb.Get(l.Name) == "" {
			lb.Set(l.Name, l.Value)
		}
	})
	if !relabel.ProcessBuilder(lb, s.cfg.WriteRelabelConfigs...) {
		return droppedByRelabel
	}
	si := &seriesInfo{wire: wire}
	changed := s.relabels
	if tc := s.cfg.Tenant; tc != nil {
		name := lb.Get(tc.Label)
		if name == "" {
			name = tc.Default
		}
		if !validTenant(name) {
			return droppedByTenant
		}
		si.tenant = s.tenants.intern(name)
		if tc.DropLabel && lb.Get(tc.Label) != "" {
			lb.Del(tc.Label)
			changed = true
		}
	}
	if !changed {
		return si // the log's own labels, shared
	}
	if ls = lb.Labels(); ls.IsEmpty() {
		return droppedByRelabel
	}
	si.wire = wal.WireOf(ls)
	return si
}

// currentVersion returns the protocol requests are encoded in.
func (s *Sender) currentVersion() Protocol { return Protocol(s.version.Load()) }

func (s *Sender) setVersion(v Protocol) {
	s.version.Store(int32(v))
	g := s.o.Metrics.protocol
	g.WithLabelValues(s.cfg.Name, v.String()).Set(1)
	other := RemoteWrite2
	if v == RemoteWrite2 {
		other = RemoteWrite1
	}
	g.WithLabelValues(s.cfg.Name, other.String()).Set(0)
}

// fallBack switches the endpoint from Remote-Write 2.0 to 1.0 for the life
// of the sender: it answered status (415, or a 2xx without the Written
// headers that 2.0 requires) to a 2.0 request.
func (s *Sender) fallBack(status int) {
	if !s.version.CompareAndSwap(int32(RemoteWrite2), int32(RemoteWrite1)) {
		return // another shard switched first
	}
	s.setVersion(RemoteWrite1)
	s.fallbacks.Add(1)
	reason := "it answered 415 Unsupported Media Type"
	if status/100 == 2 {
		reason = "it answered 2xx without the X-Prometheus-Remote-Write-*-Written headers, as a 1.0-only receiver does"
	}
	s.logger.Warn("Endpoint does not accept Remote-Write 2.0: "+reason+"; sending Remote-Write 1.0 from now on (until the endpoint is reloaded)",
		zap.Int("status", status))
}

func shardOf(ref uint64, n int) int {
	return int((ref * 0x9E3779B97F4A7C15 >> 32) % uint64(n))
}

// checkpointLoop persists the acknowledged cursor and updates the lag
// metrics.
func (s *Sender) checkpointLoop() {
	defer close(s.loopDone)
	t := time.NewTicker(s.o.CheckpointInterval)
	defer t.Stop()
	r := time.NewTicker(s.o.ReshardInterval)
	defer r.Stop()
	for {
		select {
		case <-s.readerDone:
			return
		case <-t.C:
			s.saveCheckpoint()
		case <-r.C:
			s.considerResharding()
		}
	}
}

// saveCheckpoint persists the acknowledged cursor if it moved.
func (s *Sender) saveCheckpoint() {
	c, changed := s.track.position()
	m, name := s.o.Metrics, s.cfg.Name
	if changed {
		if err := s.o.Checkpoints.Save(s.cfg.CheckpointKey, c); err != nil {
			m.cpSaveErrors.WithLabelValues(name).Inc()
			s.logger.Error("Persisting the checkpoint failed; it will be retried", zap.Error(err))
			s.track.mu.Lock()
			s.track.changed = true
			s.track.mu.Unlock()
		} else {
			s.reader.Commit(c)
			if s.seg != nil {
				p := s.seg.position(c)
				m.cpSegment.WithLabelValues(name).Set(float64(p.Segment))
				m.cpOffset.WithLabelValues(name).Set(float64(p.Offset))
			}
		}
	}
	lagVec := m.lagBytes
	if s.log.LagUnit() == LagEntries {
		lagVec = m.lagEntries
	}
	lagVec.WithLabelValues(name).Set(float64(s.log.Lag(c)))
	lag := 0.0
	hi, acked := s.log.HighestTimestamp(), s.highestAcked.Load()
	caughtUp := s.track.pending() == 0 && s.log.Lag(s.reader.Cursor()) == 0
	if caughtUp {
		if n, d, ok := s.health.caughtUp(s.o.Now(), s.sentSamples.Load()); ok {
			s.logger.Info("Endpoint caught up", zap.Int64("drained_samples", n), zap.Duration("took", d.Round(time.Millisecond)))
		}
	}
	if !caughtUp && hi != math.MinInt64 && acked != math.MinInt64 {
		lag = max(0, float64(hi-acked)/1000)
	}
	m.lagSeconds.WithLabelValues(name).Set(lag)
}

// Stop stops reading, lets the shards send what they hold until ctx ends
// or a send fails (an endpoint that is down would only hold the shutdown
// up), abandons what is still in flight, and persists the acknowledged
// cursor. Unsent samples stay in the WAL for the next start.
func (s *Sender) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		s.stopRead()
		drained := make(chan struct{})
		go func() {
			<-s.readerDone
			close(drained)
		}()
		poll := time.NewTicker(50 * time.Millisecond)
		defer poll.Stop()
	drain:
		for {
			select {
			case <-drained:
				break drain
			case <-ctx.Done():
				s.logger.Warn("Drain deadline reached; unsent samples stay in the WAL")
				break drain
			case <-poll.C:
				if s.failing() {
					s.logger.Warn("Endpoint failing: not waiting for it to drain; unsent samples stay in the WAL")
					break drain
				}
			}
		}
		s.stopSend()
		<-drained
		<-s.loopDone
		s.catchUpsRunning.Wait()
		c, _ := s.track.position()
		if err = s.o.Checkpoints.Save(s.cfg.CheckpointKey, c); err == nil {
			s.reader.Commit(c)
		}
		s.client.CloseIdleConnections()
		err = errors.Join(err, s.reader.Close())
		s.logger.Info("Endpoint stopped", zap.String("checkpoint", s.log.Describe(c)))
	})
	return err
}

// failing reports whether a shard's last send, or a tenant's, failed and
// is being retried.
func (s *Sender) failing() bool {
	if s.tenants != nil && s.tenants.retrying.Load() > 0 {
		return true
	}
	s.shardsMu.Lock()
	defer s.shardsMu.Unlock()
	for _, sh := range s.shardsView {
		if sh.fails.Load() > 0 {
			return true
		}
	}
	return false
}

// Remove stops the sender without draining and deletes its checkpoint and
// metrics: the endpoint was removed from the configuration.
func (s *Sender) Remove() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Stop(ctx)
	s.o.Metrics.forget(s.cfg.Name)
	return errors.Join(err, s.o.Checkpoints.Delete(s.cfg.CheckpointKey))
}

// Checkpoint returns the cursor up to which everything was acknowledged.
func (s *Sender) Checkpoint() Cursor {
	s.track.mu.Lock()
	defer s.track.mu.Unlock()
	return s.track.done
}
