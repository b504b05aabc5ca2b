package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ferrymetrics/ferry/downsample"
	"github.com/ferrymetrics/ferry/sender"
	"github.com/ferrymetrics/ferry/wal"
	"go.uber.org/zap"
)

// Status is what GET /api/v1/status returns, the status page shows and
// `ferry status` prints. Rates are over the last minute of the agent's
// in-memory history (sampled every StatusInterval; over at least 5 s while
// it is shorter), ETAs extrapolate them; both are absent until there is
// history to measure.
type Status struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Time    time.Time `json:"time"`
	Ready   bool      `json:"ready"`
	// Healthy is set when every endpoint is healthy.
	Healthy   bool               `json:"healthy"`
	WAL       *WALStatus         `json:"wal,omitempty"`
	Endpoints []EndpointStatus   `json:"endpoints"`
	Compactor *downsample.Status `json:"compactor,omitempty"`
	Scrape    ScrapeStatus       `json:"scrape"`
}

// WALStatus is the WAL with its ingest and growth rates.
type WALStatus struct {
	wal.Status
	IngestRate float64 `json:"ingest_samples_per_second"`
	// GrowthRate is how fast the WAL grows (negative: it shrinks);
	// SecondsToCap how long until max_size or min_free_disk is reached at
	// that rate (absent when not growing towards it).
	GrowthRate   float64  `json:"growth_bytes_per_second"`
	SecondsToCap *float64 `json:"seconds_to_disk_cap,omitempty"`
}

// EndpointStatus is an endpoint with its rates, its ETA to caught up and
// the last hour of its backlog.
type EndpointStatus struct {
	sender.Status
	SendRate float64 `json:"send_samples_per_second"`
	// DrainRate is how fast the lag shrinks, in lag units per second
	// (negative: it grows); SecondsToCaughtUp extrapolates it.
	DrainRate         float64        `json:"drain_rate"`
	SecondsToCaughtUp *float64       `json:"seconds_to_caught_up,omitempty"`
	History           []HistoryPoint `json:"history,omitempty"`
}

// HistoryPoint is one sample of an endpoint's backlog.
type HistoryPoint struct {
	Time       time.Time `json:"t"`
	Lag        int64     `json:"lag"`
	LagSeconds float64   `json:"lag_seconds"`
}

// ScrapeStatus summarises the scrape targets.
type ScrapeStatus struct {
	Targets int `json:"targets"`
	Up      int `json:"up"`
	Down    int `json:"down"`
}

// statusPoint is one sample of the history.
type statusPoint struct {
	t         time.Time
	appended  int64
	walSize   int64
	walFree   int64
	endpoints map[string]sender.Status
}

// history keeps the last hour of status points.
type history struct {
	mu     sync.Mutex
	points []statusPoint // oldest first
	span   time.Duration
}

func (h *history) add(p statusPoint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.points = append(h.points, p)
	cut := 0
	for cut < len(h.points) && p.t.Sub(h.points[cut].t) > h.span {
		cut++
	}
	h.points = slices.Delete(h.points, 0, cut)
}

// snapshot returns a copy of the points.
func (h *history) snapshot() []statusPoint {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.points)
}

// Rates are measured over rateWindow, or over at least minRateSpan while
// the history is shorter.
const (
	rateWindow  = time.Minute
	minRateSpan = 5 * time.Second
)

// sample takes a status point now.
func (a *Agent) sample() (statusPoint, bool) {
	w := a.wal.Load()
	if w == nil {
		return statusPoint{}, false
	}
	ws := w.Status()
	p := statusPoint{t: a.o.Now(), appended: ws.AppendedSamples, walSize: ws.SizeBytes, walFree: ws.FreeBytes, endpoints: map[string]sender.Status{}}
	a.mu.Lock()
	for name, s := range a.senders {
		p.endpoints[name] = s.Status()
	}
	a.mu.Unlock()
	return p, true
}

// recordHistory samples the status every interval until ctx ends.
func (a *Agent) recordHistory(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if p, ok := a.sample(); ok {
			a.hist.add(p)
			// The disk reserve is made again once the space is back.
			if err := a.ballast.ensure(p.walFree, a.minFree); err != nil {
				a.logger.Warn("Could not reserve disk space for the state database", zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Status returns the agent's status now.
func (a *Agent) Status() Status {
	st := Status{Version: a.o.Version, Started: a.started, Time: a.o.Now(), Ready: a.ready.Load(), Healthy: true, Endpoints: []EndpointStatus{}}
	now, ok := a.sample()
	if !ok {
		return st
	}
	w := a.wal.Load()
	past := a.hist.snapshot()
	// base is the newest point at least rateWindow old; with a shorter
	// history, the newest at least minRateSpan old.
	var base *statusPoint
	for _, span := range []time.Duration{rateWindow, minRateSpan} {
		for i := range past {
			if now.t.Sub(past[i].t) >= span {
				base = &past[i]
			}
		}
		if base != nil {
			break
		}
	}
	perSec := func(d int64) float64 { return float64(d) / now.t.Sub(base.t).Seconds() }

	ws := &WALStatus{Status: w.Status()}
	if base != nil {
		ws.IngestRate = perSec(now.appended - base.appended)
		ws.GrowthRate = perSec(now.walSize - base.walSize)
		var eta []float64
		if ws.MaxSizeBytes > 0 && ws.GrowthRate > 0 {
			eta = append(eta, max(0, float64(ws.MaxSizeBytes-ws.SizeBytes)/ws.GrowthRate))
		}
		if shrink := -perSec(now.walFree - base.walFree); ws.FreeBytes >= 0 && base.walFree >= 0 && shrink > 0 {
			eta = append(eta, max(0, float64(ws.FreeBytes-ws.MinFreeBytes)/shrink))
		}
		if len(eta) > 0 {
			m := slices.Min(eta)
			ws.SecondsToCap = &m
		}
	}
	st.WAL = ws

	names := make([]string, 0, len(now.endpoints))
	for n := range now.endpoints {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		cur := now.endpoints[n]
		es := EndpointStatus{Status: cur}
		if base != nil {
			if prev, ok := base.endpoints[n]; ok {
				es.SendRate = perSec(cur.SentSamples - prev.SentSamples)
				es.DrainRate = perSec(prev.Lag - cur.Lag)
				if cur.Lag > 0 && es.DrainRate > 0 {
					eta := float64(cur.Lag) / es.DrainRate
					es.SecondsToCaughtUp = &eta
				}
			}
		}
		for _, p := range past {
			if e, ok := p.endpoints[n]; ok {
				es.History = append(es.History, HistoryPoint{Time: p.t, Lag: e.Lag, LagSeconds: e.LagSeconds})
			}
		}
		es.History = append(es.History, HistoryPoint{Time: now.t, Lag: cur.Lag, LagSeconds: cur.LagSeconds})
		if cur.State != sender.StateHealthy {
			st.Healthy = false
		}
		st.Endpoints = append(st.Endpoints, es)
	}
	if a.compactor != nil {
		cs := a.compactor.Status()
		st.Compactor = &cs
	}
	if sc := a.scraper.Load(); sc != nil {
		for _, ts := range sc.Targets().TargetsActive() {
			for _, t := range ts {
				st.Scrape.Targets++
				switch t.Health() {
				case "up":
					st.Scrape.Up++
				case "down":
					st.Scrape.Down++
				}
			}
		}
	}
	return st
}

// serveStatus answers GET /api/v1/status.
func (a *Agent) serveStatus(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(a.Status())
}
