package sender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymetrics/ferry/wal"
	"go.uber.org/zap"
)

// shard sends its share of the series in order: one request at a time,
// retried until it is acknowledged or refused for good.
type shard struct {
	s     *Sender
	mu    sync.Mutex
	queue []item // queue[head:] are waiting; the items before are taken
	head  int
	// queuedExemplars counts the exemplars in queue.
	queuedExemplars int
	batch, spare    []item
	// For take and groupBySeries.
	idx    refIndex
	groups []int32       // group of each batch item
	counts []int32       // items, then offsets, of each group
	datac  chan struct{} // items were queued
	roomc  chan struct{} // items were taken
	drain  atomic.Bool   // send what is queued without waiting for the deadline, then exit
	done   chan struct{}
	enc    encoder
	busy   atomic.Int64 // nanoseconds spent sending
	fails  atomic.Int64 // consecutive failed attempts
	// refusedLogged counts refusals, to log the first in full.
	refusedLogged atomic.Int64
	// For splitByTenant.
	byTenant     []item
	tenantCounts []int32
	tenantGroups []tenantGroup
	// tooOld holds the items dropTooOld takes out of a batch.
	tooOld []item
	// tries holds send's attempt state of each tenant group.
	tries []tenantTry
	// takenMin is the lowest record sequence number in the batch being
	// sent, MaxUint64 between batches (guarded by mu).
	takenMin uint64
	// catchUp is set on the shard a tenant's catch-up sends with.
	catchUp *catchUp
}

func (s *Sender) startShards(n int) {
	s.shards = make([]*shard, n)
	for i := range s.shards {
		sh := &shard{s: s, datac: make(chan struct{}, 1), roomc: make(chan struct{}, 1), done: make(chan struct{}),
			takenMin: math.MaxUint64}
		sh.enc.meta = s.meta
		sh.enc.maxMetadata = s.cfg.MaxMetadataPerSend
		s.shards[i] = sh
		go sh.run()
	}
	s.shardsMu.Lock()
	s.shardsView = s.shards
	s.shardsMu.Unlock()
	s.shardsGauge.Set(float64(n))
}

// stopShards lets every shard send what it holds (until sendCtx ends) and
// waits for them.
func (s *Sender) stopShards() {
	for _, sh := range s.shards {
		sh.drain.Store(true)
		notify(sh.datac)
	}
	for _, sh := range s.shards {
		<-sh.done
	}
	s.shards = nil
	s.shardsMu.Lock()
	s.shardsView = nil
	s.shardsMu.Unlock()
}

// reshard drains the shards and starts n new ones; false if stopping.
func (s *Sender) reshard(n int) bool {
	old := len(s.shards)
	s.stopShards()
	if s.readCtx.Err() != nil {
		return false
	}
	s.startShards(n)
	s.logger.Info("Resharded", zap.Int("from", old), zap.Int("to", n))
	return true
}

// considerResharding picks the shard count from how busy the shards were:
// more when they spent most of the interval sending and the endpoint is
// healthy, fewer when they were mostly idle.
func (s *Sender) considerResharding() {
	q := s.cfg.Queue
	cur := int(s.wantShards.Load())
	var busy time.Duration
	failing := false
	shards := s.shardsSnapshot()
	for _, sh := range shards {
		busy += time.Duration(sh.busy.Swap(0))
		failing = failing || sh.fails.Load() > 0
	}
	if len(shards) == 0 || failing {
		return
	}
	util := busy.Seconds() / (s.o.ReshardInterval.Seconds() * float64(len(shards)))
	want := cur
	switch {
	case util > 0.7 && s.log.Lag(s.reader.Cursor()) > 0:
		want = min(q.MaxShards, cur*2)
	case util < 0.2:
		want = max(q.MinShards, cur/2)
	}
	if want != cur {
		s.wantShards.Store(int32(want)) // the reading goroutine reshards before its next record
	}
}

// shardsSnapshot returns the current shards; the slice is replaced, never
// mutated, by the reading goroutine.
func (s *Sender) shardsSnapshot() []*shard {
	s.shardsMu.Lock()
	defer s.shardsMu.Unlock()
	return s.shardsView
}

func notify(c chan struct{}) {
	if c == nil {
		return
	}
	select {
	case c <- struct{}{}:
	default:
	}
}

// enqueue adds items, waiting for room; false if ctx ended first.
func (sh *shard) enqueue(ctx context.Context, items []item) bool {
	capacity := sh.s.cfg.Queue.Capacity
	for len(items) > 0 {
		sh.mu.Lock()
		room := capacity - (len(sh.queue) - sh.head)
		if room > 0 {
			k := min(room, len(items))
			if sh.head > 0 && len(sh.queue)+k > cap(sh.queue) {
				// Move the waiting items to the front rather than grow.
				n := copy(sh.queue, sh.queue[sh.head:])
				clear(sh.queue[n:])
				sh.queue, sh.head = sh.queue[:n], 0
			}
			sh.queue = append(sh.queue, items[:k]...)
			for i := range items[:k] {
				if items[i].kind == kindExemplar {
					sh.queuedExemplars++
				}
			}
			items = items[k:]
		}
		sh.mu.Unlock()
		notify(sh.datac)
		if len(items) == 0 {
			return true
		}
		select {
		case <-sh.roomc:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// take removes up to max items once a batch is full, the deadline passed
// or the shard drains, and returns them grouped by series.
//
// Exemplars follow their samples in the WAL, in records of their own, so a
// batch may end between the two. A Remote-Write 2.0 request cannot carry
// an exemplar without a sample of its series, so take also moves into the
// batch the exemplars, among the next max queued items, of the series it
// holds samples of: a batch may exceed max by those.
func (sh *shard) take(max int, force bool) []item {
	sh.mu.Lock()
	live := sh.queue[sh.head:]
	n := min(len(live), max)
	if n == 0 || (n < max && !force) {
		sh.mu.Unlock()
		return nil
	}
	batch := append(sh.batch[:0], live[:n]...)
	rest := live[n:]
	sh.takenMin = live[0].rec // the queue is in record order
	if sh.queuedExemplars > 0 {
		for i := range batch {
			if batch[i].kind == kindExemplar {
				sh.queuedExemplars--
			}
		}
		batch, rest = sh.pullExemplars(batch, rest, max)
	}
	// The taken items stay in place, cleared, until enqueue needs the room:
	// no copy of the waiting ones per batch.
	clear(live[:n])
	sh.head += n
	sh.queue = sh.queue[:sh.head+len(rest)]
	if sh.head == len(sh.queue) {
		sh.queue, sh.head = sh.queue[:0], 0
	}
	sh.mu.Unlock()
	notify(sh.roomc)
	sh.batch = batch
	return sh.groupBySeries(batch)
}

// pullExemplars moves from the first window items of rest to batch the
// exemplars of series batch holds samples or histograms of. sh.mu is held.
func (sh *shard) pullExemplars(batch, rest []item, window int) ([]item, []item) {
	win := rest[:min(len(rest), window)]
	any := false
	for i := range win {
		if win[i].kind == kindExemplar {
			any = true
			break
		}
	}
	if !any {
		return batch, rest
	}
	sh.idx.reset(len(batch))
	for i := range batch {
		if batch[i].kind != kindExemplar {
			sh.idx.put(batch[i].ref, 0)
		}
	}
	kept := 0
	for i := range win {
		if it := &win[i]; it.kind == kindExemplar && sh.idx.has(it.ref) {
			batch = append(batch, *it)
			sh.queuedExemplars--
			continue
		}
		if kept != i {
			win[kept] = win[i]
		}
		kept++
	}
	k := kept + copy(rest[kept:], rest[len(win):])
	clear(rest[k:])
	return batch, rest[:k]
}

// groupBySeries reorders batch so that each series' items are adjacent,
// keeping the order of the series' first items and, within a series, the
// queue's order: one TimeSeries per series, exemplars with their samples.
// The result is batch itself or the shard's spare buffer.
func (sh *shard) groupBySeries(batch []item) []item {
	sh.idx.reset(len(batch))
	groups, counts := sh.groups[:0], sh.counts[:0]
	runs := 0
	for i := range batch {
		g, seen := sh.idx.put(batch[i].ref, int32(len(counts)))
		if !seen {
			counts = append(counts, 0)
		}
		counts[g]++
		groups = append(groups, g)
		if i == 0 || batch[i].ref != batch[i-1].ref {
			runs++
		}
	}
	sh.groups, sh.counts = groups, counts
	if runs == len(counts) {
		return batch // every series in one run already
	}
	out := groupSlots(counts, sh.spare, batch)
	for i := range batch {
		g := groups[i]
		out[counts[g]] = batch[i]
		counts[g]++
	}
	sh.spare, sh.batch = batch[:0], out
	return out
}

func (sh *shard) queued() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.queue) - sh.head
}

func (sh *shard) run() {
	defer close(sh.done)
	q := sh.s.cfg.Queue
	deadline := q.BatchSendDeadline
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		draining := sh.drain.Load()
		if batch := sh.take(q.MaxSamplesPerSend, draining); batch != nil {
			sh.send(batch)
			if sh.s.sendCtx.Err() != nil {
				return
			}
			continue
		}
		if draining && sh.queued() == 0 {
			return
		}
		if sh.queued() == 0 {
			// Nothing waits: the deadline counts from the next item.
			select {
			case <-sh.datac:
			case <-sh.s.sendCtx.Done():
				return
			}
			timer.Reset(deadline)
			continue
		}
		select {
		case <-sh.datac:
		case <-timer.C:
			if batch := sh.take(q.MaxSamplesPerSend, true); batch != nil {
				sh.send(batch)
			}
			timer.Reset(deadline)
		case <-sh.s.sendCtx.Done():
			return
		}
	}
}

// send delivers one batch: retried with backoff on 5xx, 429 and network
// errors; dropped and counted on any other 4xx (415 to a 2.0 request falls
// back to 1.0). It returns without acknowledging only when sendCtx ends.
//
// An endpoint with tenants is sent one request per tenant, in turn. A
// tenant whose first attempt fails is tried again after the others: if
// it fails again while others were delivered, the trouble is its own, and
// it is set aside (see catchUp) rather than holding up the shard.
func (sh *shard) send(batch []item) {
	s := sh.s
	s.inFlight.Add(1)
	defer func() {
		s.inFlight.Add(-1)
		sh.mu.Lock()
		sh.takenMin = math.MaxUint64
		sh.mu.Unlock()
	}()
	if s.tenants == nil {
		sh.deliver(batch, nil, nil)
		return
	}
	groups := sh.splitByTenant(batch)
	tries := sh.tries[:0]
	for range groups {
		tries = append(tries, tenantTry{failedAt: -1, deferrable: true})
	}
	sh.tries = tries
	defer func() {
		for i := range tries {
			tries[i].settle(s)
		}
		clear(tries)
	}()
	for i, g := range groups {
		if sh.deliver(g.items, g.tenant, &tries[i]) == stopped {
			return
		}
	}
	for i, g := range groups {
		if tries[i].deferred != nil {
			tries[i].deferrable = false
			if sh.deliver(tries[i].deferred, g.tenant, &tries[i]) == stopped {
				return
			}
		}
	}
}

// outcome is how deliver ended.
type outcome int

const (
	done     outcome = iota // acknowledged, refused for good, dropped or handed over
	stopped                 // sendCtx ended
	deferred                // a deferrable attempt failed; try it again later
)

// tenantTry is what deliver keeps of a tenant group's attempts, across a
// deferral.
type tenantTry struct {
	// failedAt is s.tenants.delivered when the group first failed, -1
	// before.
	failedAt   int64
	retrying   bool   // counted in s.tenants.retrying
	deferrable bool   // a first failure returns deferred
	deferred   []item // what is left of the group, once deferred
}

// settle takes a finished group out of s.tenants.retrying.
func (tt *tenantTry) settle(s *Sender) {
	if tt.retrying {
		tt.retrying = false
		s.tenants.retrying.Add(-1)
	}
}

// dropTooOld removes from batch, in place and keeping the order of the
// rest, the items older than the queue's SampleAgeLimit, acknowledges,
// counts and logs them, and returns what is left and how many it removed.
func (sh *shard) dropTooOld(batch []item) ([]item, int) {
	s := sh.s
	limit := s.cfg.Queue.SampleAgeLimit
	if limit <= 0 || len(batch) == 0 {
		return batch, 0
	}
	cutoff := s.o.Now().Add(-limit).UnixMilli()
	old := sh.tooOld[:0]
	k := 0
	for i := range batch {
		if batch[i].t < cutoff {
			old = append(old, batch[i])
			continue
		}
		if k != i {
			batch[k] = batch[i]
		}
		k++
	}
	if len(old) == 0 {
		return batch, 0
	}
	clear(batch[k:])
	samples, exemplars, oldest := 0, 0, old[0].t
	for i := range old {
		if old[i].kind == kindExemplar {
			exemplars++
		} else {
			samples++
		}
		oldest = min(oldest, old[i].t)
	}
	s.track.ackItems(old)
	clear(old)
	sh.tooOld = old[:0]
	if samples > 0 {
		s.droppedOld.Add(float64(samples))
	}
	if exemplars > 0 {
		s.exOld.Add(float64(exemplars))
	}
	if s.shouldLog(&s.lastOldLog) {
		s.logger.Warn("Dropped samples older than queue_config.sample_age_limit instead of sending them; they are counted (reason too_old)",
			zap.Int("samples", samples), zap.Int("exemplars", exemplars), zap.Duration("sample_age_limit", limit),
			zap.Time("oldest", time.UnixMilli(oldest)))
	}
	return batch[:k], len(old)
}

// splittable reports whether a refusal may be caused by some of a batch's
// samples only: then the batch is split to deliver the others. A real
// Prometheus refuses a whole batch with 400 when one sample is out of order
// or a duplicate, as a batch re-sent after a crash can be.
func splittable(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge || status == http.StatusUnprocessableEntity
}

// splitPoint returns where to cut a batch in two: at the boundary between
// two series' runs nearest the middle, or in the middle of a single run.
func splitPoint(batch []item) int {
	mid := len(batch) / 2
	for d := 0; d <= mid; d++ {
		if i := mid - d; i > 0 && batch[i].ref != batch[i-1].ref {
			return i
		}
		if i := mid + d; i < len(batch) && batch[i].ref != batch[i-1].ref {
			return i
		}
	}
	return mid
}

// deliver sends batch until it is acknowledged, retrying as send says; a
// refused batch that splittable allows is cut in two and each half
// delivered in turn (keeping per-series order), so that only the samples
// the endpoint refuses on their own are dropped. A 2.0 request answered 415
// (or 2xx without Written headers) switches the endpoint to 1.0 and the
// same batch is sent again as 1.0. It returns false once sendCtx ends.
// maxDialBackoff caps the wait before retrying a request whose connection
// could not be made.
const maxDialBackoff = 250 * time.Millisecond

// unreachable reports whether err is a failure to connect to the endpoint
// (refused, unreachable, timed out dialling): the request never reached it.
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// deliver sends batch, to tenant tn if not nil, until it is done; try, if
// not nil, is the tenant group's attempt state (see send).
func (sh *shard) deliver(batch []item, tn *tenant, try *tenantTry) outcome {
	s := sh.s
	q := s.cfg.Queue
	var enc encoded
	fresh := false // enc holds batch as it is
	backoff := q.MinBackoff
	if try == nil {
		// try.retrying is set while a request of tenant tn failed and is
		// being retried: the endpoint does not recover while any is.
		try = &tenantTry{failedAt: -1}
		defer try.settle(s)
	}
	for {
		// Items the disk cap wrote off (and counted) are not sent, nor
		// those older than sample_age_limit, checked before every attempt.
		if rest, k := s.track.dropRetired(batch); k > 0 {
			batch, fresh = rest, false
		}
		if rest, k := sh.dropTooOld(batch); k > 0 {
			batch, fresh = rest, false
		}
		if len(batch) == 0 {
			return done
		}
		if tn != nil && sh.catchUp == nil {
			if cu := tn.catchUp.Load(); cu != nil {
				// Set aside: its catch-up sends what the shards held.
				cu.handOver(batch)
				return done
			}
		}
		// A fallback to 1.0, by this shard or another, changes the version.
		if v := s.currentVersion(); !fresh || v != enc.version {
			enc, fresh = sh.enc.encode(batch, v), true
		}
		if enc.samples+enc.histograms+enc.exemplars == 0 {
			// Only exemplars a 2.0 request cannot carry: nothing to send.
			sh.settle(enc)
			sh.acknowledge(batch)
			return done
		}
		start := time.Now()
		resp, err := s.post(s.sendCtx, enc, tn)
		elapsed := time.Since(start)
		sh.busy.Add(int64(elapsed))
		if s.sendCtx.Err() != nil {
			return stopped
		}
		status := resp.status
		observe := func(outcome string) {
			s.o.Metrics.duration.WithLabelValues(s.cfg.Name, outcome).Observe(elapsed.Seconds())
		}
		switch {
		case err == nil && enc.version == RemoteWrite2 &&
			(status == http.StatusUnsupportedMediaType || (status/100 == 2 && !resp.written.confirmed)):
			observe("fallback")
			s.fallBack(status) // the next attempt encodes batch in 1.0
		case err == nil && status/100 == 2:
			observe("success")
			sh.fails.Store(0)
			s.sent.Add(float64(enc.samples + enc.histograms))
			s.exSent.Add(float64(enc.exemplars))
			s.metaSent.Add(float64(enc.metadata))
			s.sentBytes.Add(float64(len(enc.body)))
			s.sentBytesTotal.Add(int64(len(enc.body)))
			if tn != nil {
				tn.sent.Add(float64(enc.samples + enc.histograms))
			}
			n := int64(enc.samples + enc.histograms)
			sentBefore := s.sentSamples.Add(n) - n
			try.settle(s)
			if tn != nil {
				s.tenants.delivered.Add(1)
			}
			if tn != nil && s.tenants.retrying.Load() > 0 {
				// Another tenant's request is still failing: the endpoint
				// has not recovered.
				s.health.delivered(s.o.Now())
			} else if down, ok := s.health.succeeded(s.o.Now(), sentBefore); ok {
				c := s.Checkpoint()
				s.logger.Info("Endpoint recovered", zap.Duration("failing_for", down.Round(time.Millisecond)),
					zap.Int64("backlog", s.log.Lag(c)), zap.String("backlog_unit", s.log.LagUnit().String()),
					zap.String("checkpoint", s.log.Describe(c)))
			}
			if enc.version == RemoteWrite2 {
				s.checkWritten(enc, resp.written)
			}
			sh.settle(enc)
			sh.acknowledge(batch)
			return done
		case err != nil || status/100 == 5 || (status == http.StatusTooManyRequests && q.RetryOnRateLimit):
			observe("retry")
			s.o.Metrics.lastSendError.WithLabelValues(s.cfg.Name).Set(float64(s.o.Now().Unix()))
			s.retried.Add(float64(enc.samples + enc.histograms))
			sh.fails.Add(1)
			reason := err
			if reason == nil {
				reason = fmt.Errorf("HTTP %d: %s", status, resp.msg)
			}
			if tn != nil {
				reason = fmt.Errorf("tenant %q: %w", tn.name, reason)
				if !try.retrying {
					try.retrying = true
					s.tenants.retrying.Add(1)
				}
			}
			switch {
			case s.health.failed(s.o.Now(), reason.Error()):
				s.lastErrLog.Store(s.o.Now().UnixNano()) // the next reminder in 10s
				s.logger.Warn("Endpoint failing; retrying until it accepts; samples wait in the WAL",
					zap.Error(reason), zap.Int("samples", enc.samples+enc.histograms), zap.Int("exemplars", enc.exemplars),
					zap.Duration("backoff", max(backoff, resp.retryAfter)))
			case s.shouldLog(&s.lastErrLog):
				s.logger.Warn("Endpoint still failing; retrying",
					zap.Error(reason), zap.Duration("backoff", max(backoff, resp.retryAfter)))
			}
			if tn != nil {
				if d := s.tenants.delivered.Load(); try.failedAt < 0 {
					try.failedAt = d
					if try.deferrable {
						try.deferred = batch
						return deferred
					}
				} else if d > try.failedAt && sh.catchUp == nil {
					// Failed again while other tenants were delivered:
					// the trouble is this tenant's, and it need not hold
					// up the others.
					if cu := s.setAside(tn); cu != nil {
						cu.handOver(batch)
						return done
					}
				}
			}
			wait := backoff
			switch {
			case resp.retryAfter > 0:
				wait = resp.retryAfter
			case unreachable(err):
				// Nothing accepts connections: trying again costs the
				// endpoint nothing, and a short wait lets the backlog
				// start draining as soon as it is back.
				wait = min(backoff, maxDialBackoff)
			}
			select {
			case <-time.After(wait):
			case <-s.sendCtx.Done():
				return stopped
			}
			backoff = min(2*backoff, q.MaxBackoff)
		default:
			observe("refused")
			s.o.Metrics.lastSendError.WithLabelValues(s.cfg.Name).Set(float64(s.o.Now().Unix()))
			sh.fails.Store(0)
			if len(batch) > 1 && splittable(status) {
				mid := splitPoint(batch)
				// The halves re-encode into the shard's buffers: enc is
				// not used again.
				if sh.deliver(batch[:mid], tn, nil) == stopped {
					return stopped
				}
				return sh.deliver(batch[mid:], tn, nil)
			}
			s.failed.Add(float64(enc.samples + enc.histograms))
			s.failedTotal.Add(int64(enc.samples + enc.histograms))
			s.exRefused.Add(float64(enc.exemplars))
			if sh.refusedLogged.Add(1) == 1 || s.shouldLog(&s.lastErrLog) {
				fields := []zap.Field{zap.Int("status", status), zap.String("message", resp.msg), zap.Int("samples", enc.samples+enc.histograms),
					zap.Int("exemplars", enc.exemplars), zap.Stringer("protocol", enc.version),
					zap.String("series", wal.LabelsOfWire(batch[0].wire).String()), zap.Int64("timestamp", batch[0].t)}
				if tn != nil {
					fields = append(fields, zap.String("tenant", tn.name))
				}
				s.logger.Error("Endpoint refused samples for good; they are dropped and counted, the stream goes on", fields...)
			}
			sh.settle(enc)
			sh.acknowledge(batch)
			return done
		}
	}
}

// settle counts what a finished request left out: exemplars a 2.0 request
// could not carry.
func (sh *shard) settle(enc encoded) {
	if enc.orphans > 0 {
		sh.s.exNoSample.Add(float64(enc.orphans))
	}
}

// checkWritten compares what a 2xx-acknowledged 2.0 request carried with
// what the endpoint says it wrote. The spec lets a receiver acknowledge
// what it accepted: the rest is not retried (the receiver decided), but
// counted and logged, so no loss goes unseen.
func (s *Sender) checkWritten(enc encoded, w written) {
	ds := max(0, enc.samples-w.samples)
	dh := max(0, enc.histograms-w.histograms)
	dx := max(0, enc.exemplars-w.exemplars)
	if ds+dh > 0 {
		s.samplesPartial.Add(float64(ds + dh))
	}
	if dx > 0 {
		s.exPartial.Add(float64(dx))
	}
	if ds+dh+dx > 0 && s.shouldLog(&s.lastPartialLog) {
		s.logger.Warn("Endpoint acknowledged a request but wrote only part of it; the rest is not retried and is counted",
			zap.Int("samples_sent", enc.samples), zap.Int("samples_written", w.samples),
			zap.Int("histograms_sent", enc.histograms), zap.Int("histograms_written", w.histograms),
			zap.Int("exemplars_sent", enc.exemplars), zap.Int("exemplars_written", w.exemplars))
	}
}

// acknowledge tells the tracker the batch's items are done.
func (sh *shard) acknowledge(batch []item) {
	s := sh.s
	s.track.ackItems(batch)
	hi := s.highestAcked.Load()
	for i := range batch {
		if batch[i].kind == kindSample {
			hi = max(hi, batch[i].t)
		}
	}
	for {
		cur := s.highestAcked.Load()
		if hi <= cur || s.highestAcked.CompareAndSwap(cur, hi) {
			break
		}
	}
	s.o.Metrics.highestSent.WithLabelValues(s.cfg.Name).Set(float64(s.highestAcked.Load()) / 1000)
}

// shouldLog rate-limits a repeated log line to one per 10 seconds; last
// holds when it was last logged.
func (s *Sender) shouldLog(last *atomic.Int64) bool {
	now := s.o.Now().UnixNano()
	prev := last.Load()
	return now-prev >= int64(10*time.Second) && last.CompareAndSwap(prev, now)
}

// Remote-Write 2.0 response headers: how many items the receiver wrote.
const (
	headerSamplesWritten    = "X-Prometheus-Remote-Write-Samples-Written"
	headerHistogramsWritten = "X-Prometheus-Remote-Write-Histograms-Written"
	headerExemplarsWritten  = "X-Prometheus-Remote-Write-Exemplars-Written"
)

// written is what a 2.0 receiver says it wrote. confirmed is set when at
// least one header was present: then a missing header means 0, as the
// spec allows.
type written struct {
	samples, histograms, exemplars int
	confirmed                      bool
}

func parseWritten(h http.Header) written {
	var w written
	for _, f := range []struct {
		name string
		n    *int
	}{{headerSamplesWritten, &w.samples}, {headerHistogramsWritten, &w.histograms}, {headerExemplarsWritten, &w.exemplars}} {
		v := h.Get(f.name)
		if v == "" {
			continue
		}
		w.confirmed = true
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			// Unreadable: assume everything was written rather than
			// report a partial write that may not have happened.
			n = math.MaxInt32
		}
		*f.n = int(min(n, math.MaxInt32))
	}
	return w
}

// response is what post learnt from an answer.
type response struct {
	status     int
	retryAfter time.Duration
	msg        string // the start of the body of a non-2xx answer
	written    written
}

// post sends one request, to tenant tn if not nil.
func (s *Sender) post(ctx context.Context, enc encoded, tn *tenant) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(enc.body))
	if err != nil {
		return response{}, fmt.Errorf("build request: %w", err)
	}
	for k, v := range s.cfg.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Encoding", "snappy")
	if enc.version == RemoteWrite2 {
		req.Header.Set("Content-Type", "application/x-protobuf;proto="+MessageV2)
		req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	} else {
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	}
	req.Header.Set("User-Agent", s.o.UserAgent)
	if tn != nil && tn.name != "" {
		req.Header.Set(s.cfg.Tenant.Header, tn.name)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	r := response{status: resp.StatusCode, retryAfter: retryAfter(resp.Header.Get("Retry-After"), s.o.Now())}
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		r.msg = string(bytes.TrimSpace(msg))
	} else if enc.version == RemoteWrite2 {
		r.written = parseWritten(resp.Header)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return r, nil
}

// retryAfter parses a Retry-After header: seconds or an HTTP date. Delays
// are capped at 5 minutes.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(h); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), 5*time.Minute)
}

// groupSlots prepares a counting sort of batch into groups: it turns
// counts (items per group) into each group's first index, and returns
// spare, or a new slice, sized to hold batch.
func groupSlots(counts []int32, spare, batch []item) []item {
	off := int32(0)
	for g, c := range counts {
		counts[g] = off
		off += c
	}
	if cap(spare) < len(batch) {
		spare = make([]item, len(batch), cap(batch))
	}
	return spare[:len(batch)]
}
