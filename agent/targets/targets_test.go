package targets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var _ Source = (*scrape.Manager)(nil)

// The shapes a Prometheus API client decodes, written from Prometheus'
// documentation of /api/v1/targets rather than from this package's types.
type promResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

type promTargetDiscovery struct {
	ActiveTargets       []promTarget        `json:"activeTargets"`
	DroppedTargets      []promDroppedTarget `json:"droppedTargets"`
	DroppedTargetCounts map[string]int      `json:"droppedTargetCounts"`
}

type promTarget struct {
	DiscoveredLabels   map[string]string `json:"discoveredLabels"`
	Labels             map[string]string `json:"labels"`
	ScrapePool         string            `json:"scrapePool"`
	ScrapeURL          string            `json:"scrapeUrl"`
	GlobalURL          string            `json:"globalUrl"`
	LastError          string            `json:"lastError"`
	LastScrape         time.Time         `json:"lastScrape"`
	LastScrapeDuration float64           `json:"lastScrapeDuration"`
	Health             string            `json:"health"`
	ScrapeInterval     string            `json:"scrapeInterval"`
	ScrapeTimeout      string            `json:"scrapeTimeout"`
}

type promDroppedTarget struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	ScrapePool       string            `json:"scrapePool"`
}

// ---------------------------------------------------------------------------
// A real scrape.Manager scraping real HTTP targets.

// memStorage keeps the last value of every series the scraper commits.
type memStorage struct {
	mu     sync.Mutex
	series map[string]float64
}

func (s *memStorage) AppenderV2(context.Context) storage.AppenderV2 {
	return &memAppender{s: s, pending: map[string]float64{}}
}

func (s *memStorage) value(series string) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.series[series]
	return v, ok
}

type memAppender struct {
	s       *memStorage
	pending map[string]float64
}

func (a *memAppender) Append(_ storage.SeriesRef, ls labels.Labels, _, _ int64, v float64, _ *histogram.Histogram, _ *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	a.pending[ls.String()] = v
	return storage.SeriesRef(ls.Hash()), nil
}

func (a *memAppender) Commit() error {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	for k, v := range a.pending {
		a.s.series[k] = v
	}
	a.pending = nil
	return nil
}

func (a *memAppender) Rollback() error {
	a.pending = nil
	return nil
}

var _ storage.AppendableV2 = (*memStorage)(nil)

// Labels with characters that HTML must escape.
const (
	teamValue = `<script>alert("team")</script>`
	envValue  = `prod & "blue" <eu>`
)

// fixture is a scrape manager with two pools: "web" (a healthy target, a
// target answering 500, and a target dropped by relabeling) and "other" (one
// healthy target).
type fixture struct {
	m         *scrape.Manager
	store     *memStorage
	healthy   string // host:port
	failing   string
	droppedAt string
}

const fixtureConfig = `
global:
  scrape_interval: 500ms
  scrape_timeout: 500ms
scrape_configs:
  - job_name: web
    relabel_configs:
      - source_labels: [tier]
        regex: drop-me
        action: drop
  - job_name: other
`

func startFixture(t *testing.T) *fixture {
	t.Helper()
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, "# TYPE ferry_test_requests_total counter\nferry_test_requests_total{code=\"200\"} 42\n")
	}))
	t.Cleanup(healthy.Close)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)

	f := &fixture{
		store:     &memStorage{series: map[string]float64{}},
		healthy:   strings.TrimPrefix(healthy.URL, "http://"),
		failing:   strings.TrimPrefix(failing.URL, "http://"),
		droppedAt: "127.0.0.1:1",
	}
	logger := slog.New(slog.DiscardHandler)
	cfg, err := config.Load(fixtureConfig, logger)
	if err != nil {
		t.Fatalf("load scrape config: %v", err)
	}
	opts := &scrape.Options{DiscoveryReloadInterval: model.Duration(10 * time.Millisecond), DiscoveryReloadOnStartup: true}
	f.m, err = scrape.NewManager(opts, logger, nil, nil, f.store, prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("new scrape manager: %v", err)
	}
	if err := f.m.ApplyConfig(cfg); err != nil {
		t.Fatalf("apply scrape config: %v", err)
	}
	tsets := make(chan map[string][]*targetgroup.Group, 1)
	tsets <- map[string][]*targetgroup.Group{
		"web": {{
			Source: "test",
			Labels: model.LabelSet{"team": teamValue},
			Targets: []model.LabelSet{
				{model.AddressLabel: model.LabelValue(f.healthy), "env": envValue},
				{model.AddressLabel: model.LabelValue(f.failing)},
				{model.AddressLabel: model.LabelValue(f.droppedAt), "tier": "drop-me"},
			},
		}},
		"other": {{
			Source:  "test",
			Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(f.healthy)}},
		}},
	}
	ran := make(chan error, 1)
	go func() { ran <- f.m.Run(tsets) }()
	t.Cleanup(func() {
		f.m.Stop()
		if err := <-ran; err != nil {
			t.Errorf("scrape manager run: %v", err)
		}
	})
	f.waitScraped(t)
	return f
}

// waitScraped waits until the manager has created both pools, dropped one
// target and scraped every active target at least once.
func (f *fixture) waitScraped(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		active := f.m.TargetsActive()
		n, scraped := 0, 0
		for _, ts := range active {
			for _, tg := range ts {
				n++
				if !tg.LastScrape().IsZero() {
					scraped++
				}
			}
		}
		if len(active) == 2 && n == 3 && scraped == n && f.m.TargetsDroppedCounts()["web"] == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets not scraped in time: %d pools, %d/%d active targets scraped, dropped %v", len(active), scraped, n, f.m.TargetsDroppedCounts())
		}
		<-tick.C
	}
}

func get(t *testing.T, h http.Handler, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

func decodeTargets(t *testing.T, rec *httptest.ResponseRecorder) promTargetDiscovery {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var resp promResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("decode response: %v\n%s", err, rec.Body)
	}
	if resp.Status != "success" || resp.ErrorType != "" || resp.Error != "" {
		t.Fatalf("envelope %+v, want success", resp)
	}
	var d promTargetDiscovery
	if err := json.Unmarshal(resp.Data, &d); err != nil {
		t.Fatalf("decode data: %v\n%s", err, resp.Data)
	}
	return d
}

func TestAPIWithScrapeManager(t *testing.T) {
	f := startFixture(t)
	h := New(f.m, time.Now, Options{})
	api := h.API()

	if v, ok := f.store.value(`{__name__="ferry_test_requests_total", code="200", env="prod & \"blue\" <eu>", instance="` + f.healthy + `", job="web", team="<script>alert(\"team\")</script>"}`); !ok || v != 42 {
		t.Errorf("sample of the healthy target: %v, %v; want 42, true", v, ok)
	}

	d := decodeTargets(t, get(t, api, "/api/v1/targets"))
	if len(d.ActiveTargets) != 3 {
		t.Fatalf("%d active targets, want 3: %+v", len(d.ActiveTargets), d.ActiveTargets)
	}
	// Pools sorted by name: "other" first.
	if got := []string{d.ActiveTargets[0].ScrapePool, d.ActiveTargets[1].ScrapePool, d.ActiveTargets[2].ScrapePool}; !slices.Equal(got, []string{"other", "web", "web"}) {
		t.Errorf("pools in order %v, want [other web web]", got)
	}
	byURL := map[string]promTarget{}
	for _, tg := range d.ActiveTargets {
		byURL[tg.ScrapePool+" "+tg.ScrapeURL] = tg
	}

	up, ok := byURL["web http://"+f.healthy+"/metrics"]
	if !ok {
		t.Fatalf("healthy target missing from %v", byURL)
	}
	if up.Health != "up" || up.LastError != "" {
		t.Errorf("healthy target: health %q, lastError %q", up.Health, up.LastError)
	}
	if up.GlobalURL != up.ScrapeURL {
		t.Errorf("globalUrl %q, want scrapeUrl %q without an external URL", up.GlobalURL, up.ScrapeURL)
	}
	if since := time.Since(up.LastScrape); up.LastScrape.IsZero() || since < 0 || since > time.Minute {
		t.Errorf("lastScrape %v", up.LastScrape)
	}
	if up.LastScrapeDuration <= 0 || up.LastScrapeDuration > 0.5 {
		t.Errorf("lastScrapeDuration %v s", up.LastScrapeDuration)
	}
	if up.ScrapeInterval != "500ms" || up.ScrapeTimeout != "500ms" {
		t.Errorf("interval %q, timeout %q; want 500ms, 500ms", up.ScrapeInterval, up.ScrapeTimeout)
	}
	wantLabels := map[string]string{"instance": f.healthy, "job": "web", "env": envValue, "team": teamValue}
	if !maps.Equal(up.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", up.Labels, wantLabels)
	}
	for name, want := range map[string]string{
		"__address__": f.healthy, "__scheme__": "http", "__metrics_path__": "/metrics",
		"job": "web", "env": envValue, "team": teamValue,
		"__scrape_interval__": "500ms", "__scrape_timeout__": "500ms",
	} {
		if got, ok := up.DiscoveredLabels[name]; !ok || got != want {
			t.Errorf("discoveredLabels[%s] = %q, %v; want %q", name, got, ok, want)
		}
	}
	if _, ok := up.DiscoveredLabels["instance"]; ok {
		t.Errorf("discoveredLabels has instance, which relabeling adds: %v", up.DiscoveredLabels)
	}

	down, ok := byURL["web http://"+f.failing+"/metrics"]
	if !ok {
		t.Fatalf("failing target missing from %v", byURL)
	}
	if down.Health != "down" || down.LastError != "server returned HTTP status 500 Internal Server Error" {
		t.Errorf("failing target: health %q, lastError %q", down.Health, down.LastError)
	}

	if len(d.DroppedTargets) != 1 {
		t.Fatalf("%d dropped targets, want 1: %+v", len(d.DroppedTargets), d.DroppedTargets)
	}
	dt := d.DroppedTargets[0]
	if dt.ScrapePool != "web" || dt.DiscoveredLabels["__address__"] != f.droppedAt || dt.DiscoveredLabels["tier"] != "drop-me" {
		t.Errorf("dropped target %+v", dt)
	}
	if want := map[string]int{"web": 1, "other": 0}; !maps.Equal(d.DroppedTargetCounts, want) {
		t.Errorf("droppedTargetCounts %v, want %v", d.DroppedTargetCounts, want)
	}
}

func TestAPIFilters(t *testing.T) {
	f := startFixture(t)
	api := New(f.m, time.Now, Options{}).API()

	for _, tc := range []struct {
		name            string
		query           string
		active          []string // scrapePool/health of each active target, sorted
		dropped         int
		countsNull      bool
		droppedCountWeb int
	}{
		{name: "none", query: "", active: []string{"other/up", "web/down", "web/up"}, dropped: 1, droppedCountWeb: 1},
		{name: "any", query: "?state=any", active: []string{"other/up", "web/down", "web/up"}, dropped: 1, droppedCountWeb: 1},
		{name: "active", query: "?state=active", active: []string{"other/up", "web/down", "web/up"}, countsNull: true},
		{name: "dropped_mixed_case", query: "?state=Dropped", dropped: 1, droppedCountWeb: 1},
		{name: "pool_web", query: "?scrapePool=web", active: []string{"web/down", "web/up"}, dropped: 1, droppedCountWeb: 1},
		// droppedTargetCounts covers every pool whatever scrapePool says, as in Prometheus.
		{name: "pool_other", query: "?scrapePool=other", active: []string{"other/up"}, droppedCountWeb: 1},
		{name: "pool_other_dropped", query: "?scrapePool=other&state=dropped", droppedCountWeb: 1},
		{name: "pool_unknown", query: "?scrapePool=nope", droppedCountWeb: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(t, api, "/api/v1/targets"+tc.query)
			d := decodeTargets(t, rec)
			// Prometheus sends empty lists, never null, for both target lists.
			if !strings.Contains(rec.Body.String(), `"activeTargets":[`) || !strings.Contains(rec.Body.String(), `"droppedTargets":[`) {
				t.Errorf("target lists not both JSON arrays: %s", rec.Body)
			}
			var active []string
			for _, tg := range d.ActiveTargets {
				active = append(active, tg.ScrapePool+"/"+tg.Health)
			}
			slices.Sort(active)
			if !slices.Equal(active, tc.active) {
				t.Errorf("active %v, want %v", active, tc.active)
			}
			if len(d.DroppedTargets) != tc.dropped {
				t.Errorf("%d dropped targets, want %d", len(d.DroppedTargets), tc.dropped)
			}
			if tc.countsNull {
				if !strings.Contains(rec.Body.String(), `"droppedTargetCounts":null`) {
					t.Errorf("droppedTargetCounts not null: %s", rec.Body)
				}
			} else if got := d.DroppedTargetCounts["web"]; got != tc.droppedCountWeb {
				t.Errorf("droppedTargetCounts[web] = %d, want %d", got, tc.droppedCountWeb)
			}
		})
	}
}

func TestAPIErrors(t *testing.T) {
	api := New(&fakeSource{}, time.Now, Options{}).API()

	rec := get(t, api, "/api/v1/targets?state=bogus")
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var resp promResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("decode error response: %v\n%s", err, rec.Body)
	}
	if resp.Status != "error" || resp.ErrorType != "bad_data" || !strings.Contains(resp.Error, `"bogus"`) || resp.Data != nil {
		t.Errorf("error envelope %+v", resp)
	}

	for _, h := range []http.Handler{api, New(&fakeSource{}, time.Now, Options{}).Page()} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, "/", strings.NewReader("state=any")))
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s: status %d, Allow %q; want 405, GET, HEAD", method, rec.Code, rec.Header().Get("Allow"))
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("HEAD: status %d, want 200", rec.Code)
		}
	}
}

func TestPageWithScrapeManager(t *testing.T) {
	f := startFixture(t)
	page := New(f.m, time.Now, Options{}).Page()

	rec := get(t, page, "/targets")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`<section class="pool" data-pool="web">`,
		`<section class="pool" data-pool="other">`,
		`<span class="summary">1/2 up</span>`,
		`<span class="summary">1/1 up</span>`,
		`<span class="dropped">1 dropped by relabeling</span>`,
		`<span class="dropped">0 dropped by relabeling</span>`,
		`>http://` + f.healthy + `/metrics</a>`,
		`>http://` + f.failing + `/metrics</a>`,
		`<td class="health health-up"><span>up</span></td>`,
		`<td class="health health-down"><span>down</span></td>`,
		`<td class="error">server returned HTTP status 500 Internal Server Error</td>`,
		`team="&lt;script&gt;alert(&#34;team&#34;)&lt;/script&gt;"`,
		`env="prod &amp; &#34;blue&#34; &lt;eu&gt;"`,
		`<details class="discovered">`,
		`__address__="` + f.healthy + `"`,
		`2/3 up in 2 scrape pools`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(body, "<script") {
		t.Errorf("page has an unescaped <script")
	}
	if strings.Count(body, `<tr class="target"`) != 3 {
		t.Errorf("%d target rows, want 3", strings.Count(body, `<tr class="target"`))
	}
	if strings.Contains(body, "drop-me") {
		t.Errorf("page lists the dropped target's labels")
	}

	down := get(t, page, "/targets?health=down").Body.String()
	if n := strings.Count(down, `<tr class="target"`); n != 1 || !strings.Contains(down, f.failing) || strings.Contains(down, `data-pool="other"`) {
		t.Errorf("health=down: %d rows, failing target listed %v, pool other listed %v", n, strings.Contains(down, f.failing), strings.Contains(down, `data-pool="other"`))
	}
	other := get(t, page, "/targets?pool=other").Body.String()
	if n := strings.Count(other, `<tr class="target"`); n != 1 || strings.Contains(other, `data-pool="web"`) {
		t.Errorf("pool=other: %d rows, pool web listed %v", n, strings.Contains(other, `data-pool="web"`))
	}
	if none := get(t, page, "/targets?pool=nope").Body.String(); !strings.Contains(none, `id="no-match"`) {
		t.Errorf("pool=nope: no empty-filter notice")
	}
	if rec := get(t, page, "/targets?health=sick"); rec.Code != http.StatusBadRequest {
		t.Errorf("health=sick: status %d, want 400", rec.Code)
	}
}

// ---------------------------------------------------------------------------
// Hand-made targets, for what a live scraper cannot pin down: the clock,
// targets not scraped yet, and the external URL.

type fakeSource struct {
	active, dropped map[string][]*scrape.Target
	counts          map[string]int
}

func (s *fakeSource) TargetsActive() map[string][]*scrape.Target  { return s.active }
func (s *fakeSource) TargetsDropped() map[string][]*scrape.Target { return s.dropped }
func (s *fakeSource) TargetsDroppedCounts() map[string]int        { return s.counts }

func fakeTarget(job, addr string, extra ...string) *scrape.Target {
	cfg := &config.ScrapeConfig{
		JobName: job, Scheme: "http", MetricsPath: "/metrics",
		ScrapeInterval: model.Duration(15 * time.Second), ScrapeTimeout: model.Duration(10 * time.Second),
	}
	ls := labels.NewBuilder(labels.FromStrings(
		model.AddressLabel, addr, model.SchemeLabel, "http", model.MetricsPathLabel, "/metrics",
		model.ScrapeIntervalLabel, "15s", model.ScrapeTimeoutLabel, "10s",
		model.JobLabel, job, model.InstanceLabel, addr,
	))
	for i := 0; i+1 < len(extra); i += 2 {
		ls.Set(extra[i], extra[i+1])
	}
	return scrape.NewTarget(ls.Labels(), cfg, model.LabelSet{model.AddressLabel: model.LabelValue(addr)}, nil)
}

func TestPageRendering(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	up := fakeTarget("node", "b.example:9100")
	up.Report(now.Add(-2500*time.Millisecond), 12300*time.Microsecond, nil)
	stale := fakeTarget("node", "a.example:9100")
	stale.Report(now.Add(-192*time.Second), 1234*time.Millisecond, errors.New(`dial tcp: <refused> & "gone"`))
	fresh := fakeTarget("node", "c.example:9100")
	src := &fakeSource{
		active: map[string][]*scrape.Target{"node": {up, fresh, stale}, "empty": nil},
		counts: map[string]int{"node": 4, "empty": 2},
	}
	body := get(t, New(src, func() time.Time { return now }, Options{}).Page(), "/targets").Body.String()

	rows := strings.Split(body, `<tr class="target"`)[1:]
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3:\n%s", len(rows), body)
	}
	for i, tc := range []struct {
		name string
		want []string
	}{
		{"stale_down", []string{
			`data-health="down"`, `>http://a.example:9100/metrics</a>`,
			`<td class="health health-down"><span>down</span></td>`,
			`>3m12s ago</time>`, `<td class="duration">1.234 s</td>`,
			`<td class="error">dial tcp: &lt;refused&gt; &amp; &#34;gone&#34;</td>`,
		}},
		{"recent_up", []string{
			`data-health="up"`, `<td class="health health-up"><span>up</span></td>`,
			`datetime="2026-03-04T05:06:04.5Z"`, `>2.5 s ago</time>`, `<td class="duration">12.3 ms</td>`,
			`<td class="error"></td>`, `every 15s, timeout 10s`,
		}},
		{"never_scraped", []string{
			`data-health="unknown"`, `<td class="health health-unknown"><span>unknown</span></td>`,
			`<td class="last-scrape">never`, `<td class="duration"></td>`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.want {
				if !strings.Contains(rows[i], w) {
					t.Errorf("row %d lacks %s:\n%s", i, w, rows[i])
				}
			}
		})
	}
	for _, want := range []string{
		`<span class="summary">1/3 up</span>`, `<span class="dropped">4 dropped by relabeling</span>`,
		`<section class="pool" data-pool="empty">`, `<span class="summary">0/0 up</span>`, `No active targets.`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if i, j := strings.Index(body, `data-pool="empty"`), strings.Index(body, `data-pool="node"`); i > j {
		t.Errorf("pools not sorted by name")
	}

	if body := get(t, New(&fakeSource{}, func() time.Time { return now }, Options{}).Page(), "/targets").Body.String(); !strings.Contains(body, `id="no-pools"`) {
		t.Errorf("page without pools lacks the notice")
	}
}

func TestAPITimestampsAndUnknownHealth(t *testing.T) {
	tg := fakeTarget("node", "a.example:9100")
	src := &fakeSource{active: map[string][]*scrape.Target{"node": {tg}}}
	body := get(t, New(src, time.Now, Options{}).API(), "/api/v1/targets?state=active").Body.String()
	for _, want := range []string{`"lastScrape":"0001-01-01T00:00:00Z"`, `"health":"unknown"`, `"lastScrapeDuration":0`, `"lastError":""`} {
		if !strings.Contains(body, want) {
			t.Errorf("response lacks %s: %s", want, body)
		}
	}

	start := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	tg.Report(start, 1500*time.Millisecond, nil)
	body = get(t, New(src, time.Now, Options{}).API(), "/api/v1/targets?state=active").Body.String()
	for _, want := range []string{`"lastScrape":"2026-03-04T05:06:07.123456789Z"`, `"lastScrapeDuration":1.5`, `"health":"up"`} {
		if !strings.Contains(body, want) {
			t.Errorf("response lacks %s: %s", want, body)
		}
	}
}

func TestGlobalURL(t *testing.T) {
	ext, err := url.Parse("https://ferry.example.org:8443/prefix")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, addr, listen string
		ext                *url.URL
		want, wantErr      string
	}{
		{name: "no_external_url", addr: "127.0.0.1:9100", listen: "127.0.0.1:9201", want: "http://127.0.0.1:9100/metrics"},
		{name: "remote_host", addr: "node.example:9100", listen: "127.0.0.1:9201", ext: ext, want: "http://node.example:9100/metrics"},
		{name: "localhost_other_port", addr: "localhost:9100", listen: "127.0.0.1:9201", ext: ext, want: "http://ferry.example.org:9100/metrics"},
		{name: "ipv6_loopback", addr: "[::1]:9100", listen: "127.0.0.1:9201", ext: ext, want: "http://ferry.example.org:9100/metrics"},
		{name: "self", addr: "127.0.0.1:9201", listen: ":9201", ext: ext, want: "https://ferry.example.org:8443/metrics"},
		{name: "bad_listen_address", addr: "127.0.0.1:9100", listen: "nonsense", ext: ext, want: "http://127.0.0.1:9100/metrics", wantErr: `: split listen address "nonsense"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &fakeSource{active: map[string][]*scrape.Target{"j": {fakeTarget("j", tc.addr)}}}
			h := New(src, time.Now, Options{ExternalURL: tc.ext, ListenAddress: tc.listen})
			d := decodeTargets(t, get(t, h.API(), "/api/v1/targets"))
			if len(d.ActiveTargets) != 1 {
				t.Fatalf("%d targets", len(d.ActiveTargets))
			}
			got := d.ActiveTargets[0]
			if got.GlobalURL != tc.want {
				t.Errorf("globalUrl %q, want %q", got.GlobalURL, tc.want)
			}
			if got.ScrapeURL != fmt.Sprintf("http://%s/metrics", tc.addr) {
				t.Errorf("scrapeUrl %q changed", got.ScrapeURL)
			}
			if !strings.HasPrefix(got.LastError, tc.wantErr) || (tc.wantErr == "") != (got.LastError == "") {
				t.Errorf("lastError %q, want prefix %q", got.LastError, tc.wantErr)
			}
		})
	}
}
