package integration

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// Native histograms pushed at Ferry reach a real Prometheus (with native
// histograms enabled) unchanged: histogram_count and histogram_sum there
// equal what was pushed. The receiver counts them as acknowledged samples;
// the compactor does not roll them up, it counts them.
func TestNativeHistogramsReachPrometheus(t *testing.T) {
	requireIntegration(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global: {scrape_interval: 15s}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := &proc{t: t, name: "prometheus native histograms", bin: lookBinary(t, "prometheus", "prometheus"), keep: 256 << 10,
		args: []string{"--config.file=" + cfg, "--web.listen-address=" + addr, "--web.enable-remote-write-receiver",
			"--enable-feature=native-histograms", "--storage.tsdb.path=" + filepath.Join(dir, "data")}}
	prom.start()
	t.Cleanup(func() { prom.stop(30 * time.Second) })
	prom.waitHTTP200("http://"+addr+"/-/ready", time.Minute)

	f := newFerry(t, "", "raw=http://"+addr+"/api/v1/write",
		"rolled=http://127.0.0.1:1/api/v1/write|storage_policy: {resolution: 5m, retention: 24h}")
	f.start()
	ts := time.Now().Add(-time.Minute).UnixMilli()
	var wr prompb.WriteRequest
	for i := range 5 {
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels: []prompb.Label{{Name: "__name__", Value: "ferry_latency_seconds"}, {Name: "job", Value: "e2e"}},
			Histograms: []prompb.Histogram{{
				Count: &prompb.Histogram_CountInt{CountInt: uint64(10 + i)}, Sum: float64(i) + 0.5, Schema: 0,
				ZeroThreshold: 1e-128, ZeroCount: &prompb.Histogram_ZeroCountInt{ZeroCountInt: 0},
				PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 1}}, PositiveDeltas: []int64{int64(10 + i)},
				Timestamp: ts + int64(i)*1000,
			}},
		})
	}
	if code := postWriteRequest(t, f.addr, &wr); code != http.StatusNoContent {
		t.Fatalf("push: %d", code)
	}
	query := func(q string) (string, bool) {
		resp, err := http.Get("http://" + addr + "/api/v1/query?" + url.Values{"query": {q}, "time": {fmtTime(time.UnixMilli(ts + 4000))}}.Encode())
		if err != nil {
			return "", false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) != 1 {
			return "", false
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		return s, true
	}
	waitUntil(t, time.Minute, func() bool { v, ok := query(`histogram_count(ferry_latency_seconds)`); return ok && v == "14" })
	if v, _ := query(`histogram_sum(ferry_latency_seconds)`); v != "4.5" {
		t.Fatalf("histogram_sum = %q, want 4.5", v)
	}
	waitUntil(t, 30*time.Second, func() bool {
		return f.metric("ferry_downsample_skipped_samples_total", `reason="native_histogram"`) == 5
	})
	if n := f.metric("ferry_receiver_samples_total"); n != 5 {
		t.Fatalf("ferry_receiver_samples_total = %v, want the 5 histograms pushed", n)
	}
	f.stop()
}
