package scrape

import (
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferrymetrics/ferry/wal"
	walmodel "github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Prometheus' HTTP client pools and the DNS resolver's singleflight
		// outlive a stopped scrape manager briefly.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// target serves a registry with a counter and a native histogram (each
// with an exemplar) and a gauge, in every format Prometheus negotiates.
func target(t *testing.T) *httptest.Server {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "demo_requests_total", Help: "Requests served."})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "demo_latency_seconds", Help: "Request latency.", NativeHistogramBucketFactor: 1.1,
	})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "demo_temperature_celsius", Help: "Temperature."})
	reg.MustRegister(c, h, g)
	c.(prometheus.ExemplarAdder).AddWithExemplar(3, prometheus.Labels{"trace_id": "abc"})
	for _, v := range []float64{0.1, 0.2, 0.4} {
		h.(prometheus.ExemplarObserver).ObserveWithExemplar(v, prometheus.Labels{"trace_id": "def"})
	}
	g.Set(21.5)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	t.Cleanup(srv.Close)
	return srv
}

type env struct {
	t   *testing.T
	w   *wal.WAL
	reg *prometheus.Registry
	s   *Scraper
}

func newEnv(t *testing.T) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := wal.DefaultOptions()
	opts.Sync = wal.SyncAlways
	w, err := wal.Open(t.TempDir(), opts, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), reg, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	w.Start()
	s, err := New(Options{Log: w, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), Registry: reg, Refresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, w: w, reg: reg, s: s}
	t.Cleanup(func() {
		s.Stop()
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

func (e *env) apply(yaml string) {
	e.t.Helper()
	cfg, errs := ParseConfig([]byte(yaml), promslog.NewNopLogger())
	if len(errs) > 0 {
		e.t.Fatalf("config: %v", errs)
	}
	if err := e.s.ApplyConfig(cfg); err != nil {
		e.t.Fatal(err)
	}
}

// read returns the log's entries until done says so.
func (e *env) read(done func(*wal.Entry) bool) {
	e.t.Helper()
	r, err := e.w.NewReader("test", e.w.Oldest(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		ent, err := r.Next(ctx)
		if err != nil {
			e.t.Fatalf("read the WAL: %v", err)
		}
		if done(ent) {
			return
		}
	}
}

func jobConfig(job, interval string, targets ...string) string {
	return fmt.Sprintf(`
global:
  scrape_interval: %s
scrape_configs:
  - job_name: %s
    scrape_protocols: [PrometheusProto, OpenMetricsText1.0.0]
    scrape_native_histograms: true
    static_configs:
      - targets: ['%s']
`, interval, job, strings.Join(targets, "','"))
}

func host(srv *httptest.Server) string {
	u, _ := url.Parse(srv.URL)
	return u.Host
}

func TestScrapeCommitsEverythingToTheWAL(t *testing.T) {
	e := newEnv(t)
	srv := target(t)
	e.apply(jobConfig("demo", "100ms", host(srv)))

	var counter, up, hist, exCounter, exHist bool
	e.read(func(ent *wal.Entry) bool {
		for i, s := range ent.Samples {
			ls := ent.SeriesLabels(i)
			if ls.Get("job") != "demo" || ls.Get("instance") != host(srv) {
				t.Fatalf("sample of %s without the target's labels", ls)
			}
			switch ls.Get("__name__") {
			case "demo_requests_total":
				counter = counter || s.V == 3
			case "up":
				up = up || s.V == 1
			}
		}
		for _, h := range ent.Histograms {
			var m writev2.Histogram
			if err := m.Unmarshal(h.Data); err != nil {
				t.Fatalf("histogram of %s: %v", wal.LabelsOfWire(h.Wire), err)
			}
			if wal.LabelsOfWire(h.Wire).Get("__name__") == "demo_latency_seconds" && m.GetCountInt() == 3 && m.Schema > 0 && math.Abs(m.Sum-0.7) < 1e-9 {
				hist = true
			}
		}
		for _, x := range ent.Exemplars {
			switch {
			case wal.LabelsOfWire(x.Wire).Get("__name__") == "demo_requests_total" && x.Exemplar.Get("trace_id") == "abc" && x.V == 3:
				exCounter = true
			case wal.LabelsOfWire(x.Wire).Get("__name__") == "demo_latency_seconds" && x.Exemplar.Get("trace_id") == "def":
				exHist = true
			}
		}
		return counter && up && hist && exCounter && exHist
	})
	md, ok := e.w.Metadata("demo_temperature_celsius")
	if !ok || md.Type != walmodel.TypeGauge || md.Help != "Temperature." {
		t.Errorf("metadata of the gauge: %+v, %v", md, ok)
	}
	md, ok = e.w.Metadata("demo_latency_seconds")
	if !ok || md.Type != walmodel.TypeHistogram {
		t.Errorf("metadata of the histogram: %+v, %v", md, ok)
	}

	// Each scrape is one write to the log (and so one fsync at most).
	for deadline := time.Now().Add(10 * time.Second); counterValue(t, e.reg, "ferry_scrape_commits_total") < 3; {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 3 scrapes committed in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.s.Stop()
	commits := counterValue(t, e.reg, "ferry_scrape_commits_total")
	appends := counterValue(t, e.reg, "ferry_wal_appends_total")
	if appends != commits {
		t.Errorf("%v WAL appends for %v scrape commits, want one each", appends, commits)
	}
	if f := counterValue(t, e.reg, "ferry_wal_fsyncs_total"); f > commits+1 {
		t.Errorf("%v fsyncs for %v scrape commits", f, commits)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func TestRemovedJobGetsStalenessMarkers(t *testing.T) {
	e := newEnv(t)
	srv := target(t)
	keep := target(t)
	e.apply(jobConfig("gone", "100ms", host(srv)) + strings.TrimPrefix(jobConfig("kept", "100ms", host(keep)), "\nglobal:\n  scrape_interval: 100ms\nscrape_configs:\n"))

	scraped := func(job string) func(*wal.Entry) bool {
		return func(ent *wal.Entry) bool {
			for i := range ent.Samples {
				if ent.SeriesLabels(i).Get("job") == job && ent.SeriesLabels(i).Get("__name__") == "up" {
					return true
				}
			}
			return false
		}
	}
	e.read(scraped("gone"))
	e.read(scraped("kept"))
	e.apply(jobConfig("kept", "100ms", host(keep)))

	// Every series the removed job wrote gets a staleness marker.
	series := map[string]bool{}
	stale := map[string]bool{}
	e.read(func(ent *wal.Entry) bool {
		for i, s := range ent.Samples {
			ls := ent.SeriesLabels(i)
			if ls.Get("job") != "gone" {
				continue
			}
			series[ls.String()] = true
			if value.IsStaleNaN(s.V) {
				stale[ls.String()] = true
			}
		}
		return len(stale) > 0 && len(stale) == len(series)
	})
	// The job itself goes once its markers are written.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pools := e.s.Targets().ScrapePools()
		if len(pools) == 1 && pools[0] == "kept" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrape pools %v, want [kept]", pools)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCommitResolvesForgottenRefs(t *testing.T) {
	// A log that forgets a ref between Resolve and AppendRefs, as
	// truncation can.
	w, err := wal.Open(t.TempDir(), wal.DefaultOptions(), zap.NewNop(), nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fl := &forgetfulLog{WAL: w, reg: prometheus.NewRegistry()}
	app := (&appendable{log: fl, logger: zap.NewNop(), m: newAppendMetrics(fl.reg)}).AppenderV2(context.Background())
	ls := labels.FromStrings("__name__", "m", "job", "j")
	if _, err := app.Append(0, ls, 0, 1000, 1, nil, nil, storage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	fl.forget = true
	if err := app.Commit(); err != nil {
		t.Fatalf("commit after the log forgot a ref: %v", err)
	}
	if fl.refused != 1 || fl.resolved != 2 {
		t.Fatalf("AppendRefs refused %d times and Resolve ran %d times, want 1 and 2", fl.refused, fl.resolved)
	}
	if n := counterValue(t, fl.reg, "ferry_scrape_appended_total"); n != 1 {
		t.Fatalf("%v samples committed, want 1", n)
	}
}

// forgetfulLog refuses the first AppendRefs as if truncation had forgotten
// the batch's first series, until it is resolved again.
type forgetfulLog struct {
	*wal.WAL
	reg      *prometheus.Registry
	forget   bool
	gone     wal.Ref
	refused  int
	resolved int
}

func (f *forgetfulLog) AppendRefs(b *walmodel.Batch, refs []wal.Ref) error {
	if f.forget {
		f.forget = false
		f.refused++
		f.gone = refs[0]
		return &wal.UnknownRefError{Ref: refs[0]}
	}
	return f.WAL.AppendRefs(b, refs)
}

func (f *forgetfulLog) Holds(ref wal.Ref) bool { return ref != f.gone && f.WAL.Holds(ref) }

func (f *forgetfulLog) Resolve(ls labels.Labels) (wal.Ref, error) {
	f.resolved++
	f.gone = 0
	return f.WAL.Resolve(ls)
}
