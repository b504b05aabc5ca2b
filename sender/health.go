package sender

import (
	"math"
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
	failures     int       // failed sends since the last success
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
	h.failures++
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
	h.failingSince, h.failures = time.Time{}, 0
	h.catchingUp, h.recoveredAt, h.sentBefore = true, now, sent
	return d, true
}

// delivered records a successful send while the endpoint is still
// failing (a request of another tenant is being retried).
func (h *health) delivered(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastSuccess = now
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

// Endpoint states, as Status reports them.
const (
	StateHealthy    = "healthy"     // the last sends succeeded, nothing waits
	StateCatchingUp = "catching_up" // sends succeed, a backlog drains
	StateRetrying   = "retrying"    // a send failed; the next attempts may succeed
	StateFailing    = "failing"     // sends keep failing (failingAttempts in a row, or for failingAfter)
	// StateDiskCap: the WAL's disk cap dropped samples the endpoint had
	// not sent, within diskCapRecent.
	StateDiskCap = "dropping_at_disk_cap"
)

// diskCapRecent is how long an endpoint shows StateDiskCap after the disk
// cap last dropped its unsent samples.
const diskCapRecent = 5 * time.Minute

// An endpoint is failing, not just retrying, after this many failed sends in
// a row or this long without a success.
const (
	failingAttempts = 3
	failingAfter    = 30 * time.Second
)

// Status is an endpoint's state for the status page and `ferry status`.
type Status struct {
	Name  string `json:"name"`
	URL   string `json:"url"`
	State string `json:"state"`
	// Protocol is the Remote-Write version requests are sent in;
	// FellBack is set when 2.0 was configured and the endpoint refused it.
	Protocol     string    `json:"protocol"`
	FellBack     bool      `json:"fell_back_to_1_0,omitempty"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	LastSuccess  time.Time `json:"last_success,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	Checkpoint   string    `json:"checkpoint"`
	// Lag is how far the checkpoint is behind the log's head, in LagUnit;
	// LagSeconds how much older the newest acknowledged sample is than the
	// newest in the log.
	Lag        int64   `json:"lag"`
	LagUnit    string  `json:"lag_unit"`
	LagSeconds float64 `json:"lag_seconds"`
	// Totals since start.
	SentSamples   int64 `json:"sent_samples"`
	SentBytes     int64 `json:"sent_bytes"`
	FailedSamples int64 `json:"failed_samples"`   // refused for good (4xx)
	CapDropped    int64 `json:"disk_cap_dropped"` // dropped by the WAL's disk cap before they were sent
}

// Status returns the endpoint's state now.
func (s *Sender) Status() Status {
	c := s.Checkpoint()
	st := Status{
		Name: s.cfg.Name, Checkpoint: s.log.Describe(c), Lag: s.log.Lag(c), LagUnit: s.log.LagUnit().String(),
		Protocol:    s.currentVersion().String(),
		FellBack:    s.cfg.Protocol == RemoteWrite2 && s.currentVersion() == RemoteWrite1,
		SentSamples: s.sentSamples.Load(), SentBytes: s.sentBytesTotal.Load(),
		FailedSamples: s.failedTotal.Load(), CapDropped: s.capTotal.Load(),
	}
	if s.cfg.URL != nil {
		u := *s.cfg.URL
		u.User = nil // no credentials on a status page
		st.URL = u.String()
	}
	hi, acked := s.log.HighestTimestamp(), s.highestAcked.Load()
	if st.Lag > 0 && hi != math.MinInt64 && acked != math.MinInt64 {
		st.LagSeconds = max(0, float64(hi-acked)/1000)
	}
	h := &s.health
	h.mu.Lock()
	st.FailingSince, st.LastSuccess, st.LastError, st.LastErrorAt = h.failingSince, h.lastSuccess, h.lastError, h.lastErrorAt
	catching, failures := h.catchingUp, h.failures
	h.mu.Unlock()
	lastCap := s.lastCapDrop.Load()
	switch {
	case lastCap != 0 && s.o.Now().Sub(time.Unix(0, lastCap)) < diskCapRecent:
		st.State = StateDiskCap
	case !st.FailingSince.IsZero() && (failures >= failingAttempts || s.o.Now().Sub(st.FailingSince) >= failingAfter):
		st.State = StateFailing
	case !st.FailingSince.IsZero():
		st.State = StateRetrying
	case catching || s.track.pending() > 0 && st.Lag > 0 && st.LagSeconds > 60:
		st.State = StateCatchingUp
	default:
		st.State = StateHealthy
	}
	return st
}
