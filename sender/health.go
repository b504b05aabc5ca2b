package sender

import (
	"sync"
	"time"
)

// health follows an endpoint through the states an operator cares about,
// so that each change is logged once: failing (with its reason), recovered
// (after how long, with what backlog) and caught up (having drained how
// many samples in how long). Shards report sends; the checkpoint loop
// reports whether the endpoint has caught up.
type health struct {
	mu           sync.Mutex
	failingSince time.Time // zero while sends succeed
	lastError    string
	lastErrorAt  time.Time
	lastSuccess  time.Time
	// Set at recovery until the backlog is drained.
	catchingUp  bool
	recoveredAt time.Time
	sentBefore  int64 // samples sent before recovery
}

// failed records a failed send; it reports whether the endpoint has just
// started failing.
func (h *health) failed(now time.Time, reason string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastError, h.lastErrorAt = reason, now
	h.catchingUp = false
	if !h.failingSince.IsZero() {
		return false
	}
	h.failingSince = now
	return true
}

// succeeded records a successful send; when the endpoint was failing it
// returns for how long, and true, and starts following the catch-up from
// sent samples.
func (h *health) succeeded(now time.Time, sent int64) (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastSuccess = now
	if h.failingSince.IsZero() {
		return 0, false
	}
	d := now.Sub(h.failingSince)
	h.failingSince = time.Time{}
	h.catchingUp, h.recoveredAt, h.sentBefore = true, now, sent
	return d, true
}

// caughtUp ends a catch-up when nothing is left to send; it returns the
// samples sent since recovery and how long that took, and true, once.
func (h *health) caughtUp(now time.Time, sent int64) (int64, time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.catchingUp {
		return 0, 0, false
	}
	h.catchingUp = false
	return sent - h.sentBefore, now.Sub(h.recoveredAt), true
}
