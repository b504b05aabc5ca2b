package integration

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// rollupRecorder keeps the distinct samples an endpoint received.
type rollupRecorder struct {
	mu  sync.Mutex
	got map[string]bool // "labels t v"
}

func newRollupRecorder(t *testing.T) (*rollupRecorder, string) {
	r := &rollupRecorder{got: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		raw, err := snappy.Decode(nil, body)
		var wr prompb.WriteRequest
		if err == nil {
			err = wr.Unmarshal(raw)
		}
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		r.mu.Lock()
		for _, ts := range wr.Timeseries {
			for _, s := range ts.Samples {
				r.got[fmt.Sprintf("%v %d %v", ts.Labels, s.Timestamp, s.Value)] = true
			}
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL + "/api/v1/write"
}

func (r *rollupRecorder) snapshot() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := make(map[string]bool, len(r.got))
	for k := range r.got {
		c[k] = true
	}
	return c
}

// pushRollupData pushes one round (one sample per series) per call, until
// Ferry acknowledges it.
type rollupData struct {
	series int
	base   int64
	vals   []float64
	rng    *rand.Rand
}

func (d *rollupData) request(round int) []byte {
	var wr prompb.WriteRequest
	for s := range d.series {
		if d.rng.IntN(30) == 0 {
			d.vals[s] = float64(d.rng.IntN(3))
		} else {
			d.vals[s] += float64(d.rng.IntN(50))
		}
		wr.Timeseries = append(wr.Timeseries,
			prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "crash_test_total"}, {Name: "id", Value: fmt.Sprint(s)}},
				Samples: []prompb.Sample{{Timestamp: d.base + int64(round)*15_000, Value: d.vals[s]}}},
			prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "crash_test_gauge"}, {Name: "id", Value: fmt.Sprint(s)}},
				Samples: []prompb.Sample{{Timestamp: d.base + int64(round)*15_000, Value: float64(d.rng.IntN(1000))}}})
	}
	raw, _ := wr.Marshal()
	return snappy.Encode(nil, raw)
}

// postSnappy posts a snappy-compressed WriteRequest to Ferry and returns
// the status (0 on a network error).
func postSnappy(addr string, body []byte) int {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// postWriteRequest marshals wr and posts it.
func postWriteRequest(t testing.TB, addr string, wr *prompb.WriteRequest) int {
	t.Helper()
	raw, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return postSnappy(addr, snappy.Encode(nil, raw))
}

func pushUntilAcked(addr string, body []byte, alive func() bool) {
	for {
		if postSnappy(addr, body) == http.StatusNoContent {
			return
		}
		if !alive() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Rollups produced by a Ferry killed with SIGKILL again and again while it
// ingests and compacts equal, sample for sample, those of an uninterrupted
// run of the same data.
func TestRollupsSurviveKill9(t *testing.T) {
	const series, rounds = 40, 480 // two hours of 15s data
	base := (time.Now().Add(-3*time.Hour).UnixMilli() / 300_000) * 300_000
	run := func(kills bool) map[string]bool {
		rec, u := newRollupRecorder(t)
		f := newFerry(t, "", "rolled="+u+"|storage_policy: {resolution: 5m, retention: 720h}")
		cfg, _ := os.ReadFile(f.cfgPath)
		if err := os.WriteFile(f.cfgPath, append(cfg, "downsample:\n  commit_interval: 100ms\n"...), 0o644); err != nil {
			t.Fatal(err)
		}
		f.start()
		d := &rollupData{series: series, base: base, vals: make([]float64, series), rng: rand.New(rand.NewPCG(5, 6))}
		nextKill := 40
		for r := range rounds {
			body := d.request(r)
			for {
				pushUntilAcked(f.addr, body, func() bool { return f.cmd != nil })
				if f.cmd != nil {
					break
				}
				f.start()
			}
			if kills && r == nextKill {
				f.kill9()
				f.start()
				nextKill += 30 + rand.IntN(60)
			}
		}
		// Every window but the last closed by data: series × 2 metrics × 95.
		want := series * 2 * (rounds/20 - 1)
		waitUntil(t, 2*time.Minute, func() bool { return len(rec.snapshot()) >= want })
		f.stop()
		return rec.snapshot()
	}
	clean := run(false)
	crashed := run(true)
	if len(clean) != len(crashed) {
		t.Fatalf("distinct rollup samples: %d uninterrupted, %d with kill -9", len(clean), len(crashed))
	}
	for k := range clean {
		if !crashed[k] {
			t.Fatalf("rollup %s missing after kill -9", k)
		}
	}
	t.Logf("%d rollup samples identical with and without kill -9", len(clean))
}
