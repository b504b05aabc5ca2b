package sender

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/ferrymetrics/ferry/wal"
	"go.uber.org/zap"
)

// maxCatchUps is the most tenants an endpoint sets aside at once: each
// re-reads the log on its own once its endpoint accepts it again.
const maxCatchUps = 8

// maxPendingAside is the most records the tracker holds while tenants are
// set aside (about 32 bytes each): past it, reading waits for the
// catch-ups, as it would for a failing shard.
const maxPendingAside = 1 << 20

// catchUp sends the items of one tenant set aside, in log order, on its
// own: first those the shards held when it was set aside (handed over by
// them), then, reading the log again from where the reading goroutine
// began skipping the tenant, those it skipped; once it reaches the reading
// goroutine, the tenant goes back to the shards.
//
// Every item keeps its record's sequence number, so the tracker holds the
// checkpoint at the first record with an item of the tenant not yet
// delivered, and counts such items as any other if the disk cap deletes
// their records.
type catchUp struct {
	s  *Sender
	tn *tenant
	// from is the end of the last record routed before the tenant was set
	// aside; skipFrom the sequence number of the next one, the first
	// record whose items of the tenant the reading goroutine skipped.
	from     Cursor
	skipFrom uint64
	sh       *shard // sends, retrying in place; never sets aside
	// try is its requests' attempt state: failing from the start, so that
	// the endpoint does not recover before the tenant does.
	try   tenantTry
	res   resolver
	since time.Time

	mu    sync.Mutex
	held  []item // handed over by the shards
	heldc chan struct{}
}

// setAside sets tn aside and starts its catch-up, unless stopping or
// maxCatchUps are catching up; it returns tn's catch-up, nil if none.
func (s *Sender) setAside(tn *tenant) *catchUp {
	s.asideMu.Lock()
	defer s.asideMu.Unlock()
	if cu := tn.catchUp.Load(); cu != nil {
		return cu
	}
	if s.readCtx.Err() != nil || len(s.aside) >= maxCatchUps {
		return nil
	}
	cu := &catchUp{
		s: s, tn: tn, from: s.mainEnd, skipFrom: s.track.next(), res: newResolver(),
		since: s.o.Now(), heldc: make(chan struct{}, 1),
		sh: &shard{s: s, takenMin: math.MaxUint64},
	}
	cu.sh.enc.meta = s.meta
	cu.sh.enc.maxMetadata = s.cfg.MaxMetadataPerSend
	cu.sh.catchUp = cu
	cu.try = tenantTry{failedAt: -1, retrying: true}
	s.tenants.retrying.Add(1)
	tn.catchUp.Store(cu)
	s.aside = append(s.aside, tn.id)
	s.catchUps = append(s.catchUps, cu)
	s.catchingUp.Add(1)
	s.catchingGauge.Add(1)
	s.catchUpsTotal.Add(1)
	s.logger.Warn("Tenant failing while others are delivered: set aside; its samples are re-read from the WAL and retried on their own, and the other tenants go on",
		zap.String("tenant", tn.name), zap.String("from", s.log.Describe(cu.from)))
	s.catchUpsRunning.Add(1)
	go cu.run()
	return cu
}

// rejoin puts the tenant of cu back in the shards. s.asideMu is held.
func (s *Sender) rejoin(cu *catchUp) {
	cu.tn.catchUp.Store(nil)
	i := slices.Index(s.catchUps, cu)
	s.aside = append(s.aside[:i], s.aside[i+1:]...)
	s.catchUps = append(s.catchUps[:i], s.catchUps[i+1:]...)
	s.catchingUp.Add(-1)
	s.catchingGauge.Add(-1)
	s.logger.Info("Tenant caught up; its samples go through the shards again",
		zap.String("tenant", cu.tn.name), zap.Duration("set_aside_for", s.o.Now().Sub(cu.since).Round(time.Millisecond)))
}

// handOver gives the catch-up items of its tenant a shard held when the
// tenant was set aside. A shard hands over a series' items in order, and
// each series is on one shard, so the held items keep each series' order.
func (cu *catchUp) handOver(items []item) {
	cu.mu.Lock()
	cu.held = append(cu.held, items...)
	cu.mu.Unlock()
	notify(cu.heldc)
}

func (cu *catchUp) takeHeld() []item {
	cu.mu.Lock()
	defer cu.mu.Unlock()
	held := cu.held
	cu.held = nil
	return held
}

// shardsHoldBefore reports whether a shard may still hold an item of a
// record before seq: queued, being enqueued, or in the batch it sends.
func (s *Sender) shardsHoldBefore(seq uint64) bool {
	if s.enqueued.Load() < seq {
		return true
	}
	for _, sh := range s.shardsSnapshot() {
		sh.mu.Lock()
		holds := sh.takenMin < seq || (sh.head < len(sh.queue) && sh.queue[sh.head].rec < seq)
		sh.mu.Unlock()
		if holds {
			return true
		}
	}
	return false
}

// send delivers batch, retried in place; false if stopping.
func (cu *catchUp) send(batch []item) bool {
	s := cu.s
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	return cu.sh.deliver(cu.sh.groupBySeries(batch), cu.tn, &cu.try) != stopped
}

func (cu *catchUp) run() {
	s := cu.s
	defer s.catchUpsRunning.Done()
	defer cu.try.settle(s)
	// First what the shards held. They hand it over as they meet it, and
	// hold nothing of the tenant once nothing from before skipFrom is left.
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		if held := cu.takeHeld(); len(held) > 0 {
			if !cu.send(held) {
				return
			}
			continue
		}
		if !s.shardsHoldBefore(cu.skipFrom) {
			if held := cu.takeHeld(); len(held) > 0 {
				if !cu.send(held) {
					return
				}
			}
			break
		}
		select {
		case <-cu.heldc:
		case <-poll.C:
		case <-s.readCtx.Done():
			return
		}
	}
	// Then what the reading goroutine skipped.
	r, err := s.log.Open(fmt.Sprintf("%s/catch-up/%d/%s", s.cfg.Name, cu.skipFrom, cu.tn.name), cu.from, nil)
	if err != nil {
		s.logger.Error("Opening a WAL reader for a tenant's catch-up failed; its samples stay in the WAL for the next start",
			zap.String("tenant", cu.tn.name), zap.Error(err))
		return
	}
	defer func() {
		if err := r.Close(); err != nil {
			s.logger.Warn("Closing a tenant's catch-up reader failed", zap.String("tenant", cu.tn.name), zap.Error(err))
		}
	}()
	maxBatch := s.cfg.Queue.MaxSamplesPerSend
	batch := make([]item, 0, maxBatch)
	for {
		s.asideMu.Lock()
		reached := !r.Cursor().Less(s.mainEnd)
		if reached && len(batch) == 0 {
			s.rejoin(cu)
			s.asideMu.Unlock()
			return
		}
		s.asideMu.Unlock()
		if reached || len(batch) >= maxBatch {
			if !cu.send(batch) {
				return
			}
			r.Commit(r.Cursor())
			// groupBySeries may keep batch's array as its spare.
			batch = make([]item, 0, maxBatch)
			continue
		}
		e, err := r.Next(s.readCtx)
		if err != nil {
			if s.readCtx.Err() != nil || errors.Is(err, ErrSourceClosed) {
				return
			}
			if ce := (*wal.CorruptionError)(nil); errors.As(err, &ce) {
				continue // the reading goroutine logged it
			}
			s.logger.Error("Reading the WAL for a tenant's catch-up failed; retrying", zap.String("tenant", cu.tn.name), zap.Error(err))
			select {
			case <-s.readCtx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		seq, ok := s.track.seqOf(e.End)
		if !ok {
			continue // written off by the disk cap, and counted
		}
		var drops admitDrops // counted by the reading goroutine
		s.collect(e.Data, seq, &cu.res, &drops, func(it item) {
			if it.tenant == cu.tn.id {
				batch = append(batch, it)
			}
		})
	}
}

// holdForCatchUps waits while tenants are set aside and the tracker holds
// maxPendingAside records; false if stopping.
func (s *Sender) holdForCatchUps(ctx context.Context) bool {
	for s.catchingUp.Load() > 0 && s.track.pending() >= maxPendingAside {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return true
}
