package sender

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// shard sends its share of the series in order: one request at a time,
// retried until it is acknowledged or refused for good.
type shard struct {
	s     *Sender
	mu    sync.Mutex
	queue []item
	batch []item
	datac chan struct{} // items were queued
	roomc chan struct{} // items were taken
	drain atomic.Bool   // send what is queued without waiting for the deadline, then exit
	done  chan struct{}
	enc   encoder
	busy  atomic.Int64 // nanoseconds spent sending
	fails atomic.Int64 // consecutive failed attempts
	// refusedLogged counts refusals, to log the first in full.
	refusedLogged atomic.Int64
}

func (s *Sender) startShards(n int) {
	s.shards = make([]*shard, n)
	for i := range s.shards {
		sh := &shard{s: s, datac: make(chan struct{}, 1), roomc: make(chan struct{}, 1), done: make(chan struct{})}
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
	q := s.cfg.QueueConfig
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
	case util > 0.7 && s.reader.BytesBehind() > 0:
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
	capacity := sh.s.cfg.QueueConfig.Capacity
	for len(items) > 0 {
		sh.mu.Lock()
		room := capacity - len(sh.queue)
		if room > 0 {
			k := min(room, len(items))
			sh.queue = append(sh.queue, items[:k]...)
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
// or the shard drains.
func (sh *shard) take(max int, force bool) []item {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := min(len(sh.queue), max)
	if n == 0 || (n < max && !force) {
		return nil
	}
	sh.batch = append(sh.batch[:0], sh.queue[:n]...)
	k := copy(sh.queue, sh.queue[n:])
	clear(sh.queue[k:])
	sh.queue = sh.queue[:k]
	notify(sh.roomc)
	return sh.batch
}

func (sh *shard) queued() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.queue)
}

func (sh *shard) run() {
	defer close(sh.done)
	q := sh.s.cfg.QueueConfig
	deadline := time.Duration(q.BatchSendDeadline)
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
// errors; dropped and counted on any other 4xx. It returns without
// acknowledging only when sendCtx ends.
func (sh *shard) send(batch []item) {
	s := sh.s
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	sh.deliver(batch)
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
// the endpoint refuses on their own are dropped. It returns false once
// sendCtx ends.
func (sh *shard) deliver(batch []item) bool {
	s := sh.s
	q := s.cfg.QueueConfig
	body := sh.enc.encode(batch)
	backoff := time.Duration(q.MinBackoff)
	for {
		// Samples the disk cap wrote off (and counted) are not sent.
		if k := s.track.retired(batch); k > 0 {
			if batch = batch[k:]; len(batch) == 0 {
				return true
			}
			body = sh.enc.encode(batch)
		}
		start := time.Now()
		status, retryAfter, msg, err := s.post(s.sendCtx, body)
		elapsed := time.Since(start)
		sh.busy.Add(int64(elapsed))
		if s.sendCtx.Err() != nil {
			return false
		}
		outcome := "success"
		switch {
		case err == nil && status/100 == 2:
			s.o.Metrics.duration.WithLabelValues(s.cfg.Name, outcome).Observe(elapsed.Seconds())
			sh.fails.Store(0)
			s.sent.Add(float64(len(batch)))
			s.sentBytes.Add(float64(len(body)))
			sh.acknowledge(batch)
			return true
		case err != nil || status/100 == 5 || (status == http.StatusTooManyRequests && *q.RetryOnRateLimit):
			outcome = "retry"
			s.o.Metrics.duration.WithLabelValues(s.cfg.Name, outcome).Observe(elapsed.Seconds())
			s.o.Metrics.lastSendError.WithLabelValues(s.cfg.Name).Set(float64(s.o.Now().Unix()))
			s.retried.Add(float64(len(batch)))
			if sh.fails.Add(1) == 1 || s.shouldLog() {
				if err == nil {
					err = fmt.Errorf("HTTP %d: %s", status, msg)
				}
				s.logger.Warn("Sending failed; retrying until the endpoint accepts",
					zap.Error(err), zap.Int("samples", len(batch)), zap.Duration("backoff", max(backoff, retryAfter)))
			}
			wait := backoff
			if retryAfter > 0 {
				wait = retryAfter
			}
			select {
			case <-time.After(wait):
			case <-s.sendCtx.Done():
				return false
			}
			backoff = min(2*backoff, time.Duration(q.MaxBackoff))
		default:
			outcome = "refused"
			s.o.Metrics.duration.WithLabelValues(s.cfg.Name, outcome).Observe(elapsed.Seconds())
			s.o.Metrics.lastSendError.WithLabelValues(s.cfg.Name).Set(float64(s.o.Now().Unix()))
			sh.fails.Store(0)
			if len(batch) > 1 && splittable(status) {
				mid := splitPoint(batch)
				// The halves re-encode into the shard's buffers: body is
				// not used again.
				return sh.deliver(batch[:mid]) && sh.deliver(batch[mid:])
			}
			s.failed.Add(float64(len(batch)))
			if sh.refusedLogged.Add(1) == 1 || s.shouldLog() {
				s.logger.Error("Endpoint refused samples for good; they are dropped and counted, the stream goes on",
					zap.Int("status", status), zap.String("message", msg), zap.Int("samples", len(batch)),
					zap.String("series", batch[0].labels.String()), zap.Int64("timestamp", batch[0].t))
			}
			sh.acknowledge(batch)
			return true
		}
	}
}

// acknowledge tells the tracker which records' samples are done.
func (sh *shard) acknowledge(batch []item) {
	s := sh.s
	hi := s.highestAcked.Load()
	for i := 0; i < len(batch); {
		j := i + 1
		for j < len(batch) && batch[j].rec == batch[i].rec {
			j++
		}
		s.track.ack(batch[i].rec, j-i)
		i = j
	}
	for _, it := range batch {
		if it.hist == nil {
			hi = max(hi, it.t)
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

// shouldLog rate-limits repeated failure logs to one per 10 seconds.
func (s *Sender) shouldLog() bool {
	now := s.o.Now().UnixNano()
	last := s.lastErrLog.Load()
	return now-last >= int64(10*time.Second) && s.lastErrLog.CompareAndSwap(last, now)
}

// post sends one request and returns the status, the Retry-After delay and
// the start of the response body.
func (s *Sender) post(ctx context.Context, body []byte) (int, time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.cfg.RemoteTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, "", fmt.Errorf("build request: %w", err)
	}
	for k, v := range s.cfg.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", s.o.UserAgent)
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	var msg []byte
	if resp.StatusCode/100 != 2 {
		msg, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"), s.o.Now()), string(bytes.TrimSpace(msg)), nil
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
