package integration

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// rwProxy sits between ferry and a real remote-write receiver. It forwards
// every request, optionally after a delay, and records what the receiver
// did with each sample: when the e2e_metric samples were first accepted
// (for latency), and which samples were in batches it refused with a 4xx.
// In hang mode it forwards, then withholds the receiver's answer from ferry
// until released: the receiver has stored the batch but ferry cannot know.
type rwProxy struct {
	t      testing.TB
	target string
	addr   string
	srv    *http.Server
	client *http.Client

	delay     atomic.Int64 // ns to wait before forwarding
	hang      atomic.Bool
	releaseMu sync.Mutex
	release   chan struct{}

	mu        sync.Mutex
	accepted  map[string]map[int64]time.Time // e2e id → ts → first 2xx
	refused   map[string]map[int64]bool      // series (id, or labelKey) → ts in refused batches
	status    map[int]int
	okSamples int
	refusedN  int
	held      int // requests forwarded and answered 2xx while hanging
	heldN     int // their samples
	notify    chan struct{}
}

func newRWProxy(t testing.TB, target string) *rwProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &rwProxy{t: t, target: target, addr: ln.Addr().String(), client: &http.Client{Timeout: time.Minute},
		release: make(chan struct{}), accepted: map[string]map[int64]time.Time{}, refused: map[string]map[int64]bool{},
		status: map[int]int{}, notify: make(chan struct{}, 1)}
	p.srv = &http.Server{Handler: p}
	go p.srv.Serve(ln)
	t.Cleanup(func() {
		p.unhang()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		p.srv.Shutdown(ctx)
		p.srv.Close()
	})
	return p
}

func (p *rwProxy) url() string { return "http://" + p.addr + "/api/v1/write" }

// unhang releases held answers and forwards normally from now on.
func (p *rwProxy) unhang() {
	p.hang.Store(false)
	p.releaseMu.Lock()
	defer p.releaseMu.Unlock()
	select {
	case <-p.release:
	default:
		close(p.release)
	}
}

func (p *rwProxy) setHang() {
	p.releaseMu.Lock()
	p.release = make(chan struct{})
	p.releaseMu.Unlock()
	p.hang.Store(true)
}

func seriesKey(ls []prompb.Label) (key string, e2eID string) {
	m := make(map[string]string, len(ls))
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	if m["__name__"] == "e2e_metric" {
		return "id=" + m["id"], m["id"]
	}
	return labelKey(m), ""
}

func (p *rwProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	if d := time.Duration(p.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	req, _ := http.NewRequest(http.MethodPost, p.target, bytes.NewReader(body))
	for _, h := range []string{"Content-Encoding", "Content-Type", "X-Prometheus-Remote-Write-Version", "User-Agent"} {
		req.Header.Set(h, r.Header.Get(h))
	}
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	now := time.Now()

	var wr prompb.WriteRequest
	if raw, err := snappy.Decode(nil, body); err == nil {
		_ = wr.Unmarshal(raw)
	}
	n := 0
	for _, ts := range wr.Timeseries {
		n += len(ts.Samples)
	}
	p.mu.Lock()
	p.status[resp.StatusCode]++
	switch {
	case resp.StatusCode/100 == 2:
		p.okSamples += n
		for _, ts := range wr.Timeseries {
			_, id := seriesKey(ts.Labels)
			if id == "" {
				continue
			}
			m := p.accepted[id]
			if m == nil {
				m = map[int64]time.Time{}
				p.accepted[id] = m
			}
			for _, s := range ts.Samples {
				if _, ok := m[s.Timestamp]; !ok {
					m[s.Timestamp] = now
				}
			}
		}
	case resp.StatusCode/100 == 4:
		p.refusedN += n
		for _, ts := range wr.Timeseries {
			k, _ := seriesKey(ts.Labels)
			m := p.refused[k]
			if m == nil {
				m = map[int64]bool{}
				p.refused[k] = m
			}
			for _, s := range ts.Samples {
				m[s.Timestamp] = true
			}
		}
	}
	hanging := p.hang.Load() && resp.StatusCode/100 == 2
	if hanging {
		p.held++
		p.heldN += n
	}
	p.mu.Unlock()
	select {
	case p.notify <- struct{}{}:
	default:
	}
	if hanging {
		p.releaseMu.Lock()
		rel := p.release
		p.releaseMu.Unlock()
		select {
		case <-rel:
		case <-r.Context().Done():
			return // ferry is gone: it never learns the batch was stored
		}
	}
	for _, h := range []string{"Content-Type", "Retry-After"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(answer)
}

// wasRefused reports whether the e2e sample (id, ts) was in a refused batch.
func (p *rwProxy) wasRefused(key string, ts int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused[key][ts]
}

func (p *rwProxy) counts() (ok, refused int, status map[int]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := map[int]int{}
	for k, v := range p.status {
		st[k] = v
	}
	return p.okSamples, p.refusedN, st
}

func (p *rwProxy) heldSamples() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.heldN
}

// acceptedAt returns when the e2e sample (id, ts) was first stored.
func (p *rwProxy) acceptedAt(id string, ts int64) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.accepted[id][ts]
	return at, ok
}
