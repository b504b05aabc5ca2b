package agent

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// seriesRecorder is an endpoint that keeps every sample per series name,
// and the last metadata per family.
type seriesRecorder struct {
	mu     sync.Mutex
	got    map[string][]prompb.Sample
	meta   map[string]prompb.MetricMetadata
	labels map[string][]prompb.Label // the last labels each metric name came with
}

func newSeriesRecorder(t *testing.T) (*seriesRecorder, string) {
	r := &seriesRecorder{got: map[string][]prompb.Sample{}, meta: map[string]prompb.MetricMetadata{},
		labels: map[string][]prompb.Label{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		raw, err := snappy.Decode(nil, body)
		var wr prompb.WriteRequest
		if err == nil {
			err = wr.Unmarshal(raw)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, m := range wr.Metadata {
			r.meta[m.MetricFamilyName] = m
		}
		for _, ts := range wr.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "__name__" {
					r.got[l.Value] = append(r.got[l.Value], ts.Samples...)
					r.labels[l.Value] = ts.Labels
				}
			}
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL + "/api/v1/write"
}

func (r *seriesRecorder) metadata(family string) (prompb.MetricMetadata, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.meta[family]
	return m, ok
}

func (r *seriesRecorder) samples(name string) []prompb.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]prompb.Sample(nil), r.got[name]...)
	sort.Slice(out, func(i, j int) bool { return out[i].Timestamp < out[j].Timestamp })
	return out
}

// A raw endpoint gets every sample; an endpoint with a 10s storage policy
// gets one reset-adjusted counter sample per closed window, the gauge's
// last value and the max asked for by a mapping rule; a mapping rule with
// drop keeps its series from the raw endpoint only. Both get metadata: the
// raw endpoint as pushed, the rollup endpoint for its rollup series.
func TestAgentStoragePolicyEndpoint(t *testing.T) {
	raw, rawURL := newSeriesRecorder(t)
	rolled, rolledURL := newSeriesRecorder(t)
	dir := t.TempDir()
	y := fmt.Sprintf(`
listen_address: 127.0.0.1:0
data_dir: %s
shutdown_timeout: 5s
downsample:
  commit_interval: 20ms
  mapping_rules:
    - name: temp-max
      filter: '{__name__="temp"}'
      aggregations: [last, max]
      storage_policies: ["10s:1h"]
    - name: noisy
      filter: '{__name__="noisy"}'
      drop: true
remote_write:
  - name: raw
    url: %s
    queue_config: {batch_send_deadline: 5ms}
  - name: rolled
    url: %s
    queue_config: {batch_send_deadline: 5ms}
    storage_policy: {resolution: 10s, retention: 1h}
`, filepath.Join(dir, "data"), rawURL, rolledURL)
	cfg, err := ParseConfig([]byte(y), "test.yml")
	if err != nil {
		t.Fatal(err)
	}
	ra := startAgent(t, cfg, func() (*Config, error) { return cfg, nil })
	var series []prompb.TimeSeries
	base := time.Now().Add(-time.Minute).UnixMilli() / 10000 * 10000
	for i := int64(1); i <= 25; i++ { // one sample every 2s, 0..50s after base
		v := float64(i * 3)
		if i == 12 {
			v = 1 // counter reset
		}
		series = append(series,
			ts([]string{"__name__", "reqs_total"}, prompb.Sample{Timestamp: base + i*2000, Value: v}),
			ts([]string{"__name__", "temp"}, prompb.Sample{Timestamp: base + i*2000, Value: float64(i % 7)}),
			ts([]string{"__name__", "noisy"}, prompb.Sample{Timestamp: base + i*2000, Value: 1}))
	}
	meta := snappy.Encode(nil, marshal(t, &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "reqs_total", Help: "Requests.", Unit: "requests"},
		{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "temp", Help: "Temperature."},
	}}))
	if code, msg := ra.do(t, http.MethodPost, "/api/v1/write", meta); code != http.StatusNoContent {
		t.Fatalf("push metadata: %d %s", code, msg)
	}
	for _, s := range series {
		if code, msg := ra.do(t, http.MethodPost, "/api/v1/write", snappyBody(t, s)); code != http.StatusNoContent {
			t.Fatalf("push: %d %s", code, msg)
		}
	}
	// Windows [0,10s) … [40s,50s) close when a later sample arrives; the
	// one holding 50s stays open.
	waitFor(t, "rollups", func() bool {
		// Shards send series apart: wait for each.
		return len(rolled.samples("reqs_total")) >= 5 && len(rolled.samples("temp:max")) >= 5 && len(rolled.samples("noisy")) >= 5
	})
	waitFor(t, "raw samples", func() bool { return len(raw.samples("reqs_total")) == 25 })
	for _, c := range []struct {
		rec        *seriesRecorder
		family     string
		typ        prompb.MetricMetadata_MetricType
		help, unit string
	}{
		{raw, "reqs_total", prompb.MetricMetadata_COUNTER, "Requests.", "requests"},
		{raw, "temp", prompb.MetricMetadata_GAUGE, "Temperature.", ""},
		{rolled, "reqs_total", prompb.MetricMetadata_COUNTER, "Requests. Ferry rollup (default per 10s window).", "requests"},
		{rolled, "temp", prompb.MetricMetadata_GAUGE, "Temperature. Ferry rollup (default per 10s window).", ""},
		{rolled, "temp:max", prompb.MetricMetadata_GAUGE, "Temperature. Ferry rollup (max per 10s window).", ""},
	} {
		m, ok := c.rec.metadata(c.family)
		if !ok || m.Type != c.typ || m.Help != c.help || m.Unit != c.unit {
			t.Errorf("metadata of %s at the %s endpoint: %+v (found %v), want %v %q %q", c.family,
				map[*seriesRecorder]string{raw: "raw", rolled: "rollup"}[c.rec], m, ok, c.typ, c.help, c.unit)
		}
	}
	if n := len(raw.samples("noisy")); n != 0 {
		t.Fatalf("raw endpoint got %d samples of a dropped series", n)
	}
	if n := len(rolled.samples("noisy")); n != 5 {
		t.Fatalf("rollup endpoint got %d samples of a dropped-from-raw series, want its 5 windows (all: true)", n)
	}
	// Counter: value at each window's last sample is the reset-adjusted
	// running total, so increases between windows match the raw data.
	got := rolled.samples("reqs_total")
	wantT := []int64{base + 8000, base + 18000, base + 28000, base + 38000, base + 48000}
	rawTotal := func(upTo int64) float64 { // raw reset-adjusted total
		total, prev := 0.0, 0.0
		for i, s := range raw.samples("reqs_total") {
			switch {
			case i == 0:
				total = s.Value
			case s.Value < prev:
				total += s.Value
			default:
				total += s.Value - prev
			}
			prev = s.Value
			if s.Timestamp == upTo {
				return total
			}
		}
		return -1
	}
	for i, s := range got[:5] {
		if s.Timestamp != wantT[i] || s.Value != rawTotal(wantT[i]) {
			t.Fatalf("counter rollup %d: %v, want %v at %d", i, s, rawTotal(wantT[i]), wantT[i])
		}
	}
	last, mx := rolled.samples("temp"), rolled.samples("temp:max")
	for i := range 5 {
		lo, hi := base+int64(i)*10000, base+int64(i+1)*10000
		wantLast, wantMax := 0.0, 0.0
		for _, s := range raw.samples("temp") {
			if s.Timestamp >= lo && s.Timestamp < hi {
				wantLast, wantMax = s.Value, max(wantMax, s.Value)
			}
		}
		if last[i].Value != wantLast || mx[i].Value != wantMax {
			t.Fatalf("gauge window %d: last %v max %v, want %v %v", i, last[i].Value, mx[i].Value, wantLast, wantMax)
		}
	}
}

// Scraped series are rolled up like pushed ones, and external labels reach
// both endpoints.
func TestAgentRollsUpScrapedSeries(t *testing.T) {
	raw, rawURL := newSeriesRecorder(t)
	rolled, rolledURL := newSeriesRecorder(t)
	var n atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		k := n.Add(1)
		fmt.Fprintf(w, "# TYPE temp gauge\ntemp %d\n# TYPE reqs_total counter\nreqs_total %d\n", k%5, k)
	}))
	defer target.Close()
	y := fmt.Sprintf(`
listen_address: 127.0.0.1:0
data_dir: %s
shutdown_timeout: 5s
global:
  scrape_interval: 100ms
  scrape_timeout: 100ms
  external_labels: {site: edge1}
scrape_configs:
  - job_name: t
    static_configs: [{targets: [%q]}]
downsample:
  commit_interval: 20ms
  mapping_rules:
    - name: temp-max
      filter: '{__name__="temp"}'
      aggregations: [last, max]
      storage_policies: ["1s:1h"]
remote_write:
  - name: raw
    url: %s
    queue_config: {batch_send_deadline: 5ms}
  - name: rolled
    url: %s
    queue_config: {batch_send_deadline: 5ms}
    storage_policy: {resolution: 1s, retention: 1h}
`, filepath.Join(t.TempDir(), "data"), strings.TrimPrefix(target.URL, "http://"), rawURL, rolledURL)
	cfg, err := ParseConfig([]byte(y), "test.yml")
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, New(cfg, Options{
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), Version: "test",
		Load: func() (*Config, error) { return cfg, nil }, ScrapeRefresh: 20 * time.Millisecond,
	}))
	waitFor(t, "rollups of scraped series", func() bool {
		return len(rolled.samples("temp:max")) >= 2 && len(rolled.samples("reqs_total")) >= 2 && len(raw.samples("temp")) >= 10
	})
	for _, c := range []struct {
		rec  *seriesRecorder
		name string
	}{{raw, "temp"}, {raw, "up"}, {rolled, "temp:max"}, {rolled, "reqs_total"}} {
		c.rec.mu.Lock()
		ls := c.rec.labels[c.name]
		c.rec.mu.Unlock()
		want := map[string]string{"job": "t", "site": "edge1"}
		for _, l := range ls {
			if w, ok := want[l.Name]; ok && w == l.Value {
				delete(want, l.Name)
			}
		}
		if len(want) > 0 {
			t.Errorf("%s arrived with %v, missing %v", c.name, ls, want)
		}
	}
	for _, s := range rolled.samples("temp:max") {
		if s.Value > 4 || s.Value < 0 {
			t.Errorf("temp:max rollup %v outside the scraped values 0..4", s.Value)
		}
	}
}
