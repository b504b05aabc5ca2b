package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// The families the test exporter exposes, with their metadata. Each is also
// the name of a series: the classic histogram's name is the series of its
// custom-bucket native histogram (convert_classic_histograms_to_nhcb).
var rw2ExporterFamilies = map[string]capMeta{
	"rw2_processed_bytes_total":    {Type: "counter", Help: "Bytes processed.", Unit: "bytes"},
	"rw2_queue_length":             {Type: "gauge", Help: "Items waiting in the queue."},
	"rw2_request_duration_seconds": {Type: "histogram", Help: "Request duration.", Unit: "seconds"},
	"rw2_latency_seconds":          {Type: "histogram", Help: "Latency of a step.", Unit: "seconds"},
}

// startRW2Exporter serves a client_golang registry with a counter, a gauge,
// a classic histogram and a native histogram; every scrape first updates
// them, attaching an exemplar {trace_id} to the counter and the histograms.
// It returns the target's host:port.
func startRW2Exporter(t testing.TB) string {
	t.Helper()
	fam := rw2ExporterFamilies
	reg := prometheus.NewRegistry()
	counter := prometheus.NewCounter(prometheus.CounterOpts{Name: "rw2_processed_bytes_total",
		Help: fam["rw2_processed_bytes_total"].Help, Unit: "bytes"})
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "rw2_queue_length", Help: fam["rw2_queue_length"].Help})
	classic := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rw2_request_duration_seconds",
		Help: fam["rw2_request_duration_seconds"].Help, Unit: "seconds", Buckets: []float64{0.05, 0.1, 0.5, 1}})
	native := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rw2_latency_seconds",
		Help: fam["rw2_latency_seconds"].Help, Unit: "seconds", NativeHistogramBucketFactor: 1.1})
	reg.MustRegister(counter, gauge, classic, native)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		k := n
		trace := prometheus.Labels{"trace_id": fmt.Sprintf("%016x", k)}
		counter.(prometheus.ExemplarAdder).AddWithExemplar(float64(100*k), trace)
		gauge.Set(float64(k % 7))
		classic.(prometheus.ExemplarObserver).ObserveWithExemplar(0.03*float64(k%40), trace)
		native.(prometheus.ExemplarObserver).ObserveWithExemplar(0.001*float64(k), trace)
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// scrapeSum fetches a /metrics page and sums the samples of name whose
// labels contain all of match; ok is false when nothing matched.
func scrapeSum(t testing.TB, metricsURL, name string, match ...string) (sum float64, ok bool) {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatalf("scrape %s: %v", metricsURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		hit := true
		for _, want := range match {
			hit = hit && strings.Contains(m[1], want)
		}
		if hit {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
			ok = true
		}
	}
	return sum, ok
}

// A Prometheus 3 scraping floats, classic, custom-bucket and exponential
// native histograms and exemplars remote-writes them over 2.0 to Ferry,
// which forwards them to a Prometheus 3 over 2.0 and to a Prometheus 2.42
// over 1.0. Everything arrives: the floats and histograms the downstreams
// hold equal the upstream's, the downstream Prometheus 3 holds the
// upstream's exemplars, the upstream counts no failed write, and Ferry's WAL
// holds the histograms and exemplars.
func TestRemoteWrite2ThroughFerry(t *testing.T) {
	requireIntegration(t)
	prometheus3Binary(t)
	down3 := startProm3(t, "downstream-3", promReceiver, "", "--enable-feature=exemplar-storage")
	down2 := startPromBin(t, lookBinary(t, "prometheus", "prometheus"), false, "downstream-2.42", promReceiver, "",
		"--enable-feature=native-histograms,exemplar-storage")
	f := newFerry(t, "",
		"prom3="+down3.writeURL()+"|protobuf_message: io.prometheus.write.v2.Request",
		// Prometheus 2.42 predates custom-bucket native histograms.
		"prom242="+down2.writeURL()+"|write_relabel_configs: [{source_labels: [__name__], regex: rw2_request_duration_seconds, action: drop}]",
	)
	f.start()
	target := startRW2Exporter(t)
	begin := time.Now()
	up := startProm3(t, "upstream", promServer, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: exporter
    scrape_native_histograms: true
    always_scrape_classic_histograms: true
    convert_classic_histograms_to_nhcb: true
    static_configs: [{targets: [%q]}]
remote_write:
  - url: http://%s/api/v1/write
    protobuf_message: io.prometheus.write.v2.Request
    send_exemplars: true
    send_native_histograms: true
    queue_config: {batch_send_deadline: 1s, min_backoff: 50ms, max_backoff: 1s}
`, target, f.addr), "--enable-feature=exemplar-storage")

	// Let the upstream scrape eight times; the window compared ends then.
	scraped := waitFor(time.Minute, func() bool {
		v, err := up.vector(`count_over_time(rw2_queue_length[5m])`, time.Now())
		if err != nil {
			return false
		}
		for _, n := range v {
			return n >= 8
		}
		return false
	})
	if !scraped {
		t.Fatalf("the upstream did not scrape the exporter 8 times within a minute")
	}
	end := time.Now()
	rng := end.Sub(begin) + time.Second

	// A write the upstream could not deliver makes every later check fail:
	// report it, with the upstream's own error, and stop.
	upstreamOK := t.Run("upstream saw every write succeed", func(t *testing.T) {
		for _, name := range []string{"prometheus_remote_storage_samples_failed_total", "prometheus_remote_storage_histograms_failed_total",
			"prometheus_remote_storage_exemplars_failed_total"} {
			if n, _ := scrapeSum(t, "http://"+up.addr+"/metrics", name); n != 0 {
				t.Errorf("upstream %s = %v", name, n)
			}
		}
		if n, _ := scrapeSum(t, "http://"+up.addr+"/metrics", "prometheus_remote_storage_exemplars_total"); n == 0 {
			t.Errorf("upstream sent no exemplars")
		}
		if t.Failed() {
			for _, l := range strings.Split(up.logText(), "\n") {
				if strings.Contains(l, "level=ERROR") {
					t.Logf("upstream: %s", l)
					break
				}
			}
		}
	})
	if !upstreamOK {
		t.Fatalf("the upstream's writes to Ferry failed; the checks of what arrived downstream would only repeat it")
	}

	t.Run("floats", func(t *testing.T) {
		sel := `{job="exporter",__name__!~"rw2_request_duration_seconds|rw2_latency_seconds"}`
		want := waitSame(t, up, sel, end, rng, time.Minute, down3, down2)
		if n := len(want); n < 10 {
			t.Fatalf("the upstream holds only %d float series: %v", n, sortedKeys(want))
		}
	})

	t.Run("native histograms", func(t *testing.T) {
		sel := `{job="exporter",__name__=~"rw2_request_duration_seconds|rw2_latency_seconds"}`
		var last string
		ok := waitFor(30*time.Second, func() bool {
			want, err := up.rawHistograms(sel, end, rng)
			if err != nil {
				t.Fatalf("query upstream: %v", err)
			}
			if len(want) != 2 {
				last = fmt.Sprintf("the upstream holds %d native histogram series, want 2 (exponential and custom buckets): %v", len(want), sortedKeys(want))
				return false
			}
			got3, err := down3.rawHistograms(sel, end, rng)
			if err != nil {
				t.Fatalf("query %s: %v", down3.name, err)
			}
			// 2.42 gets the exponential one only, and formats buckets its own way.
			want2 := map[string]map[int64]promHistogram{}
			for k, v := range want {
				if strings.Contains(k, `"rw2_latency_seconds"`) {
					want2[k] = v
				}
			}
			got2, err := down2.rawHistograms(sel, end, rng)
			if err != nil {
				t.Fatalf("query %s: %v", down2.name, err)
			}
			d3, d2 := diffHistograms(want, got3, true), diffHistograms(want2, got2, false)
			last = fmt.Sprintf("%s: %s\n%s: %s", down3.name, d3, down2.name, d2)
			return d3 == "" && d2 == ""
		})
		if !ok {
			t.Fatalf("native histograms differ from the upstream's after 30s:\n%s", last)
		}
	})

	t.Run("exemplars", func(t *testing.T) {
		var last string
		ok := waitFor(30*time.Second, func() bool {
			want, err := up.exemplars(`{job="exporter"}`, begin, end)
			if err != nil {
				t.Fatalf("query upstream exemplars: %v", err)
			}
			for _, fam := range []string{"rw2_processed_bytes_total", "rw2_request_duration_seconds", "rw2_latency_seconds"} {
				found := false
				for k := range want {
					found = found || strings.Contains(k, `__name__="`+fam)
				}
				if !found {
					last = fmt.Sprintf("the upstream holds no exemplar of %s (it has %d)", fam, len(want))
					return false
				}
			}
			// The 1.0 downstream does not get the custom-bucket histogram
			// (dropped by relabelling above), nor its exemplars.
			for _, d := range []struct {
				p    *prom
				skip string
			}{{down3, ""}, {down2, "rw2_request_duration_seconds"}} {
				got, err := d.p.exemplars(`{job="exporter"}`, begin, end)
				if err != nil {
					t.Fatalf("query %s exemplars: %v", d.p.name, err)
				}
				var missing, extra []string
				for k := range want {
					if !got[k] && (d.skip == "" || !strings.Contains(k, `__name__="`+d.skip)) {
						missing = append(missing, k)
					}
				}
				for k := range got {
					if !want[k] {
						extra = append(extra, k)
					}
				}
				last = fmt.Sprintf("upstream %d exemplars, %s %d; %d missing (e.g. %v), %d extra (e.g. %v)",
					len(want), d.p.name, len(got), len(missing), first(missing, 3), len(extra), first(extra, 3))
				if len(missing) > 0 || len(extra) > 0 {
					return false
				}
			}
			return true
		})
		if !ok {
			t.Fatalf("exemplars differ after 30s: %s", last)
		}
	})

	t.Run("ferry metrics", func(t *testing.T) {
		if n := f.metric("ferry_receiver_requests_total", `code="204"`, `proto="2.0"`); n == 0 {
			t.Errorf("ferry_receiver_requests_total{code=\"204\",proto=\"2.0\"} = 0: the upstream's 2.0 requests are not counted")
		}
		if n := f.metric("ferry_receiver_requests_total", `proto="1.0"`); n != 0 {
			t.Errorf("ferry_receiver_requests_total{proto=\"1.0\"} = %v, but only 2.0 was pushed", n)
		}
		if n := f.metric("ferry_receiver_exemplars_total"); n == 0 {
			t.Errorf("ferry_receiver_exemplars_total = 0")
		}
		if n := f.metric("ferry_sender_protocol_fallbacks_total", `endpoint="prom3"`); n != 0 {
			t.Errorf("endpoint prom3 fell back to Remote-Write 1.0 %v times", n)
		}
		if n := f.metric("ferry_sender_exemplars_sent_total", `endpoint="prom3"`); n == 0 {
			t.Errorf("ferry_sender_exemplars_sent_total{endpoint=\"prom3\"} = 0")
		}
	})

	// The upstream stops first so that Ferry's WAL is complete, then Ferry.
	up.stop(30 * time.Second)
	f.stop()
	totals, out := walInspectTotals(t, filepath.Join(f.dir, "data", "wal"))
	for _, col := range []string{"samples", "histograms", "exemplars"} {
		if totals[col] == 0 {
			t.Errorf("ferry wal inspect: no %s in the WAL:\n%s", col, out)
		}
	}
}

// The type, help and unit of every metric family reach a Remote-Write 2.0
// endpoint (per series, a family's histogram and counter series included)
// and a 1.0 endpoint (as WriteRequest.metadata), whichever version brought
// them to Ferry: a Prometheus 3 sends its scraped families' metadata over
// 1.0 (metadata_config; Prometheus 3.15 sends none over 2.0 because its
// metadata-wal-records flag does not reach the TSDB), and a client pushes
// metadata over 2.0. Ferry's WAL holds it.
func TestRemoteWrite2MetadataReachesEndpoints(t *testing.T) {
	requireIntegration(t)
	prometheus3Binary(t)
	cap2, cap1 := newRWCapture(t), newRWCapture(t)
	f := newFerry(t, "",
		"capture2="+cap2.url()+"|protobuf_message: io.prometheus.write.v2.Request",
		"capture1="+cap1.url(),
	)
	f.start()
	target := startRW2Exporter(t)
	up := startProm3(t, "upstream", promServer, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: exporter
    scrape_native_histograms: true
    static_configs: [{targets: [%q]}]
remote_write:
  - url: http://%s/api/v1/write
    send_native_histograms: true
    metadata_config: {send: true, send_interval: 1s}
    queue_config: {batch_send_deadline: 1s, min_backoff: 50ms, max_backoff: 1s}
`, target, f.addr))
	m := newMixedLoad(f.addr)
	for r := range 3 {
		if !m.push(r, time.Now().UnixMilli()+int64(r)) {
			t.Fatalf("2.0 push %d refused", r)
		}
	}

	want := map[string]capMeta{}
	for name, md := range rw2ExporterFamilies {
		want[name] = md
	}
	for name, md := range mixedFamilies {
		want[name] = capMeta{Type: strings.ToLower(strings.TrimPrefix(md.typ.String(), "METRIC_TYPE_")), Help: md.help, Unit: md.unit}
	}
	for _, c := range []struct {
		name string
		cap  *rwCapture
		v2   bool
		// extra: series names that carry their family's metadata; skip: a
		// family no series is named after (the classic histogram's).
		extra map[string]string
		skip  string
	}{
		{"over 2.0", cap2, true, map[string]string{
			"rw2_request_duration_seconds_bucket": "rw2_request_duration_seconds",
			"rw2_request_duration_seconds_count":  "rw2_request_duration_seconds",
		}, "rw2_request_duration_seconds"},
		{"over 1.0", cap1, false, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var last string
			ok := waitFor(30*time.Second, func() bool {
				last = ""
				check := func(name string, want capMeta) {
					if got, ok := c.cap.meta(c.v2, name); !ok || got != want {
						last += fmt.Sprintf("\n  %s: got %+v (present: %v), want %+v", name, got, ok, want)
					}
				}
				for _, name := range sortedKeys(want) {
					if name != c.skip {
						check(name, want[name])
					}
				}
				for _, name := range sortedKeys(c.extra) {
					check(name, want[c.extra[name]])
				}
				return last == ""
			})
			if !ok {
				t.Fatalf("metadata did not arrive within 30s:%s", last)
			}
			counts := c.cap.counts()
			if v1, v2 := counts["1.0"], counts["2.0"]; c.v2 && (v2 == 0 || v1 != 0) || !c.v2 && (v1 == 0 || v2 != 0) {
				t.Fatalf("requests by protocol: %v", counts)
			}
			c.cap.mu.Lock()
			bad := c.cap.badHdr
			c.cap.mu.Unlock()
			if len(bad) > 0 {
				t.Fatalf("%d requests with a wrong X-Prometheus-Remote-Write-Version, e.g. %s", len(bad), bad[0])
			}
		})
	}
	if n := f.metric("ferry_receiver_metadata_total"); n == 0 {
		t.Errorf("ferry_receiver_metadata_total = 0")
	}
	up.stop(30 * time.Second)
	f.stop()
	totals, out := walInspectTotals(t, filepath.Join(f.dir, "data", "wal"))
	if totals["metadata"] < len(want) {
		t.Errorf("ferry wal inspect: %d metadata entries in the WAL, want at least %d:\n%s", totals["metadata"], len(want), out)
	}
}

// waitFor polls cond every 500ms until it holds (true) or within passes.
func waitFor(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(500 * time.Millisecond)
	}
	return true
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// An endpoint configured for Remote-Write 2.0 that only speaks 1.0 (Debian's
// VictoriaMetrics 1.79, which answers a 2.0 request with 204 and stores
// nothing, as it reads it as an empty 1.0 request) gets everything pushed to
// Ferry over both protocol versions: Ferry notices and falls back to 1.0,
// and loses nothing.
func TestRemoteWrite2FallbackToVictoriaMetrics(t *testing.T) {
	requireIntegration(t)
	vm := startVictoriaMetrics(t)
	f := newFerry(t, "", "vm="+vm.writeURL()+"|protobuf_message: io.prometheus.write.v2.Request")
	f.start()

	const series, rounds = 20, 20
	begin := time.Now()
	base := begin.Add(-time.Minute).UnixMilli()
	// Remote-Write 2.0 first, so that the first request Ferry sends is one
	// VictoriaMetrics cannot read.
	client := &http.Client{Timeout: 10 * time.Second}
	want := map[string]map[int64]float64{}
	for r := range rounds {
		ts := base + int64(r)*1000
		b := newRW2Builder()
		for i := range series {
			lv := []string{"__name__", "rw2_pushed_total", "id", seriesID(i), "job", "rw2"}
			s := b.series(rw2Meta{typ: writev2.Metadata_METRIC_TYPE_COUNTER, help: "Pushed over 2.0."}, lv...)
			s.Samples = append(s.Samples, writev2.Sample{Value: float64(r*series + i), Timestamp: ts})
			k := labelKey(labels.FromStrings(lv...).Map())
			if want[k] == nil {
				want[k] = map[int64]float64{}
			}
			want[k][ts] = float64(r*series + i)
		}
		if code, _ := postRW2(client, f.addr, b.body()); code/100 != 2 {
			t.Fatalf("2.0 push %d: status %d", r, code)
		}
	}
	p := newPusher(f.addr, series)
	p.pushRounds(t, base+1, base+rounds, series/2) // 1.0; value = timestamp
	acked, _ := p.snapshot()
	for id, tss := range acked {
		k := labelKey(map[string]string{"__name__": "e2e_metric", "id": id, "job": "e2e"})
		want[k] = map[int64]float64{}
		for _, ts := range tss {
			want[k][ts] = float64(ts)
		}
	}

	var last string
	ok := waitFor(time.Minute, func() bool {
		got, err := vm.export(`{job=~"rw2|e2e"}`, time.UnixMilli(base-1000), time.Now())
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		miss, wrong := 0, 0
		var ex []string
		for k, w := range want {
			for ts, v := range w {
				gv, ok := got[k][ts]
				switch {
				case !ok:
					miss++
				case !floatEq(gv, v):
					wrong++
				default:
					continue
				}
				if len(ex) < 5 {
					ex = append(ex, fmt.Sprintf("%s @%d (present %v, value %v, want %v)", k, ts, ok, gv, v))
				}
			}
		}
		last = fmt.Sprintf("%d of %d samples missing, %d wrong, e.g. %v", miss, 2*series*rounds, wrong, ex)
		return miss == 0 && wrong == 0
	})
	if !ok {
		t.Fatalf("VictoriaMetrics after a minute: %s", last)
	}
	if n := f.metric("ferry_sender_protocol_fallbacks_total", `endpoint="vm"`); n < 1 {
		t.Errorf("ferry_sender_protocol_fallbacks_total{endpoint=\"vm\"} = %v, want at least 1", n)
	}
	if n := f.metric("ferry_sender_protocol", `endpoint="vm"`, `version="1.0"`); n != 1 {
		t.Errorf("ferry_sender_protocol{endpoint=\"vm\",version=\"1.0\"} = %v, want 1", n)
	}
	if line := regexp.MustCompile(`(?m)^.*WARN.*Remote-Write 2\.0.*1\.0.*$`).FindString(f.logText()); line == "" {
		t.Errorf("no log line tells about the fallback:\n%s", tailLines(f.logText(), 30))
	} else {
		t.Logf("ferry: %s", line)
	}
	if n := f.metric("ferry_sender_samples_failed_total", `endpoint="vm"`); n != 0 {
		t.Errorf("ferry_sender_samples_failed_total{endpoint=\"vm\"} = %v", n)
	}
	f.stop()
}

// mixedLoad pushes Remote-Write 2.0 requests holding floats with start
// timestamps, native histograms, exemplars and metadata, and remembers what
// Ferry acknowledged.
type mixedLoad struct {
	addr   string
	client *http.Client
	begin  int64
	mu     sync.Mutex
	rounds int // acknowledged requests
	failed int
	floats map[string]map[int64]float64 // series (labels.String()) → ts → value
	starts map[string]map[int64]int64
	hists  map[string]map[int64][2]float64 // count, sum
	exs    map[string]map[string]bool      // series → exemplarKey
}

// The families of the mixed load and their metadata.
var mixedFamilies = map[string]rw2Meta{
	"mix_requests_total":      {typ: writev2.Metadata_METRIC_TYPE_COUNTER, help: "Requests handled."},
	"mix_temperature_celsius": {typ: writev2.Metadata_METRIC_TYPE_GAUGE, help: "Temperature of the room.", unit: "celsius"},
	"mix_latency_seconds":     {typ: writev2.Metadata_METRIC_TYPE_HISTOGRAM, help: "Latency of a request.", unit: "seconds"},
}

func newMixedLoad(addr string) *mixedLoad {
	return &mixedLoad{addr: addr, client: &http.Client{Timeout: 10 * time.Second}, begin: time.Now().UnixMilli(),
		floats: map[string]map[int64]float64{}, starts: map[string]map[int64]int64{},
		hists: map[string]map[int64][2]float64{}, exs: map[string]map[string]bool{}}
}

// push sends round r at ts: 6 counters (each with an exemplar and the
// load's start as start timestamp), 3 gauges and 2 native histograms (each
// with an exemplar). It returns whether Ferry acknowledged it.
func (m *mixedLoad) push(r int, ts int64) bool {
	b := newRW2Builder()
	type item struct {
		key    string
		v      float64
		st     int64
		hist   *[2]float64
		exKeys []string
	}
	var items []item
	trace := func(i int) string { return fmt.Sprintf("%x-%d", r, i) }
	for i := range 6 {
		lv := []string{"__name__", "mix_requests_total", "id", strconv.Itoa(i), "job", "mix"}
		s := b.series(mixedFamilies["mix_requests_total"], lv...)
		v := float64(r + i)
		s.Samples = append(s.Samples, writev2.Sample{Value: v, Timestamp: ts, StartTimestamp: m.begin})
		s.Exemplars = append(s.Exemplars, b.exemplar(1, ts, "trace_id", trace(i)))
		items = append(items, item{key: labels.FromStrings(lv...).String(), v: v, st: m.begin,
			exKeys: []string{exemplarKey(labels.FromStrings("trace_id", trace(i)), 1, ts)}})
	}
	for i := range 3 {
		lv := []string{"__name__", "mix_temperature_celsius", "id", strconv.Itoa(i), "job", "mix"}
		s := b.series(mixedFamilies["mix_temperature_celsius"], lv...)
		v := 20 + float64(r%10)/4
		s.Samples = append(s.Samples, writev2.Sample{Value: v, Timestamp: ts})
		items = append(items, item{key: labels.FromStrings(lv...).String(), v: v})
	}
	for i := range 2 {
		lv := []string{"__name__", "mix_latency_seconds", "id", strconv.Itoa(i), "job", "mix"}
		s := b.series(mixedFamilies["mix_latency_seconds"], lv...)
		h := &histogram.Histogram{Schema: 0, Count: uint64(r + 2), Sum: 0.25 * float64(r+i), ZeroThreshold: 0.001, ZeroCount: 1,
			PositiveSpans: []histogram.Span{{Offset: -2, Length: 1}}, PositiveBuckets: []int64{int64(r + 1)}}
		s.Histograms = append(s.Histograms, writev2.FromIntHistogram(0, ts, h))
		s.Exemplars = append(s.Exemplars, b.exemplar(0.25, ts, "trace_id", trace(10+i)))
		items = append(items, item{key: labels.FromStrings(lv...).String(), hist: &[2]float64{float64(h.Count), h.Sum},
			exKeys: []string{exemplarKey(labels.FromStrings("trace_id", trace(10+i)), 0.25, ts)}})
	}
	code, _ := postRW2(m.client, m.addr, b.body())
	m.mu.Lock()
	defer m.mu.Unlock()
	if code/100 != 2 {
		m.failed++
		return false
	}
	m.rounds++
	for _, it := range items {
		if it.hist != nil {
			if m.hists[it.key] == nil {
				m.hists[it.key] = map[int64][2]float64{}
			}
			m.hists[it.key][ts] = *it.hist
		} else {
			if m.floats[it.key] == nil {
				m.floats[it.key], m.starts[it.key] = map[int64]float64{}, map[int64]int64{}
			}
			m.floats[it.key][ts] = it.v
			if it.st != 0 {
				m.starts[it.key][ts] = it.st
			}
		}
		for _, k := range it.exKeys {
			if m.exs[it.key] == nil {
				m.exs[it.key] = map[string]bool{}
			}
			m.exs[it.key][k] = true
		}
	}
	return true
}

// run pushes rounds with timestamps max(previous+1, now) until ctx ends.
func (m *mixedLoad) run(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last int64
		for r := 0; ctx.Err() == nil; r++ {
			ts := max(last+1, time.Now().UnixMilli())
			last = ts
			if !m.push(r, ts) {
				select { // Ferry is down or starting: try again shortly.
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}()
	return done
}

func (m *mixedLoad) acked() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rounds
}

// missing compares what the load got acknowledged with what c received.
func (m *mixedLoad) missing(c *rwCapture) (n int, examples []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	ex := func(format string, args ...any) {
		n++
		if len(examples) < 6 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	for k, w := range m.floats {
		got := c.series[k]
		for ts, v := range w {
			switch {
			case got == nil:
				ex("%s @%d: no such series", k, ts)
			case !floatEqOK(got.floats, ts, v):
				ex("float %s @%d missing or wrong", k, ts)
			case m.starts[k][ts] != got.starts[ts]:
				ex("float %s @%d: start timestamp %d, want %d", k, ts, got.starts[ts], m.starts[k][ts])
			}
		}
	}
	for k, w := range m.hists {
		got := c.series[k]
		for ts, v := range w {
			if got == nil || got.hists[ts] != v {
				ex("histogram %s @%d missing or wrong", k, ts)
			}
		}
	}
	for k, w := range m.exs {
		got := c.series[k]
		for e := range w {
			if got == nil || !got.exemplars[e] {
				ex("exemplar %s of %s missing", e, k)
			}
		}
	}
	return n, examples
}

func floatEqOK(m map[int64]float64, ts int64, v float64) bool {
	g, ok := m[ts]
	return ok && floatEq(g, v)
}

// Ferry killed with SIGKILL three times while a client pushes Remote-Write
// 2.0 requests holding floats with start timestamps, native histograms,
// exemplars and metadata, and restarted on the same data directory each
// time, delivers to a Remote-Write 2.0 endpoint everything it acknowledged:
// every sample with its start timestamp, every histogram, every exemplar,
// and the metadata of every family, with every series it sends.
func TestRemoteWrite2MixedLoadSurvivesKill9(t *testing.T) {
	requireIntegration(t)
	c := newRWCapture(t)
	f := newFerry(t, "", "capture="+c.url()+"|protobuf_message: io.prometheus.write.v2.Request")
	f.start()
	m := newMixedLoad(f.addr)
	ctx, cancel := context.WithCancel(context.Background())
	done := m.run(ctx)
	defer func() { cancel(); <-done }()

	const cycles, perCycle = 3, 300
	for i := range cycles {
		target := m.acked() + perCycle
		waitUntil(t, time.Minute, func() bool { return m.acked() >= target })
		f.kill9()
		f.start()
		t.Logf("kill -9 #%d after %d acknowledged requests", i+1, m.acked())
	}
	target := m.acked() + perCycle
	waitUntil(t, time.Minute, func() bool { return m.acked() >= target })
	cancel()
	<-done

	var last string
	ok := waitFor(time.Minute, func() bool {
		n, ex := m.missing(c)
		last = fmt.Sprintf("%d acknowledged items missing, e.g.\n  %s", n, strings.Join(ex, "\n  "))
		return n == 0
	})
	if !ok {
		t.Fatalf("after %d acknowledged requests (%d refused or failed) and %d kills: %s", m.acked(), m.failed, cycles, last)
	}
	for _, name := range sortedKeys(mixedFamilies) {
		md := mixedFamilies[name]
		want := capMeta{Type: strings.ToLower(strings.TrimPrefix(md.typ.String(), "METRIC_TYPE_")), Help: md.help, Unit: md.unit}
		if got, ok := c.meta(true, name); !ok || got != want {
			t.Errorf("metadata of %s: got %+v (present: %v), want %+v", name, got, ok, want)
		}
		c.mu.Lock()
		n := c.noMetaV2[name]
		c.mu.Unlock()
		if n > 0 {
			t.Errorf("%d series of %s arrived without their metadata", n, name)
		}
	}
	t.Logf("%d requests acknowledged, %d refused or failed; endpoint got %v requests", m.acked(), m.failed, c.counts())
	f.stop()
}
