package integration

// The /targets page of agent/targets in a real headless Chromium, served
// in-process around a real scrape.Manager that scrapes real HTTP targets.

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"

	"github.com/ferrymetrics/ferry/agent/targets"
)

// lookChromium finds Debian's chromium. A missing browser fails the test
// under CI=true, and skips it elsewhere.
func lookChromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("chromium not found (%v): install it with `apt-get install chromium`", err)
	}
	t.Skipf("chromium not found (%v): install it with `apt-get install chromium` to run the browser test", err)
	return ""
}

// targetsDiscardStorage accepts and forgets every sample.
type targetsDiscardStorage struct{}

func (targetsDiscardStorage) AppenderV2(context.Context) storage.AppenderV2 {
	return targetsDiscardAppender{}
}

type targetsDiscardAppender struct{}

func (targetsDiscardAppender) Append(_ storage.SeriesRef, ls labels.Labels, _, _ int64, _ float64, _ *histogram.Histogram, _ *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	return storage.SeriesRef(ls.Hash()), nil
}
func (targetsDiscardAppender) Commit() error   { return nil }
func (targetsDiscardAppender) Rollback() error { return nil }

const browserTeam = `<script>alert("team")</script>`

// startTargetsScraper runs a scrape.Manager with pool "web" (a healthy target, a
// target answering 500 and a target dropped by relabeling) and pool "other"
// (the healthy target again), and waits until every active target has been
// scraped. It returns the manager and the host:port of the two targets.
func startTargetsScraper(t *testing.T) (m *scrape.Manager, healthy, failing string) {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, "# TYPE ferry_browser_test gauge\nferry_browser_test 1\n")
	}))
	t.Cleanup(up.Close)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(down.Close)
	healthy, failing = strings.TrimPrefix(up.URL, "http://"), strings.TrimPrefix(down.URL, "http://")

	logger := slog.New(slog.DiscardHandler)
	cfg, err := config.Load(`
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
`, logger)
	if err != nil {
		t.Fatalf("load scrape config: %v", err)
	}
	opts := &scrape.Options{DiscoveryReloadInterval: model.Duration(10 * time.Millisecond), DiscoveryReloadOnStartup: true}
	m, err = scrape.NewManager(opts, logger, nil, nil, targetsDiscardStorage{}, prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("new scrape manager: %v", err)
	}
	if err := m.ApplyConfig(cfg); err != nil {
		t.Fatalf("apply scrape config: %v", err)
	}
	tsets := make(chan map[string][]*targetgroup.Group, 1)
	tsets <- map[string][]*targetgroup.Group{
		"web": {{
			Source: "browser-test",
			Labels: model.LabelSet{"team": browserTeam},
			Targets: []model.LabelSet{
				{model.AddressLabel: model.LabelValue(healthy), "env": "prod"},
				{model.AddressLabel: model.LabelValue(failing)},
				{model.AddressLabel: "127.0.0.1:1", "tier": "drop-me"},
			},
		}},
		"other": {{Source: "browser-test", Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(healthy)}}}},
	}
	ran := make(chan error, 1)
	go func() { ran <- m.Run(tsets) }()
	t.Cleanup(func() {
		m.Stop()
		if err := <-ran; err != nil {
			t.Errorf("scrape manager run: %v", err)
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n, scraped := 0, 0
		for _, ts := range m.TargetsActive() {
			for _, tg := range ts {
				n++
				if !tg.LastScrape().IsZero() {
					scraped++
				}
			}
		}
		if n == 3 && scraped == 3 && m.TargetsDroppedCounts()["web"] == 1 {
			return m, healthy, failing
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets not scraped in time: %d/%d active targets scraped, dropped %v", scraped, n, m.TargetsDroppedCounts())
		}
		<-tick.C
	}
}

func TestTargetsBrowser(t *testing.T) {
	requireIntegration(t)
	chromium := lookChromium(t)

	m, healthy, failing := startTargetsScraper(t)
	mux := http.NewServeMux()
	targets.New(m, time.Now, targets.Options{}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromium),
			chromedp.NoSandbox,
			chromedp.Headless,
			chromedp.DisableGPU,
		)...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()

	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(srv.URL+"/targets"))
	if err != nil {
		t.Fatalf("open /targets in chromium: %v", err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("GET /targets: status %d", resp.Status)
	}

	run := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}

	t.Run("rows", func(t *testing.T) {
		rows, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("tr.target")))
		if err != nil {
			t.Fatalf("query target rows: %v", err)
		}
		health := map[string]int{}
		for _, r := range rows {
			health[r.AttributeValue("data-health")]++
		}
		if len(rows) != 3 || health["up"] != 2 || health["down"] != 1 {
			t.Errorf("%d rows with health %v, want 2 up and 1 down", len(rows), health)
		}
		web, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(`section.pool[data-pool="web"] tr.target`)))
		if err != nil {
			t.Fatalf("query rows of pool web: %v", err)
		}
		if len(web) != 2 {
			t.Errorf("pool web has %d rows, want 2", len(web))
		}
		if got := run("summary of web", chromedp.Text(chromedp.CSS(`section.pool[data-pool="web"] .summary`))); got != "1/2 up" {
			t.Errorf("summary of web %q, want 1/2 up", got)
		}
		if got := run("dropped of web", chromedp.Text(chromedp.CSS(`section.pool[data-pool="web"] .dropped`))); got != "1 dropped by relabeling" {
			t.Errorf("dropped count of web %q", got)
		}
		if got := run("summary of other", chromedp.Text(chromedp.CSS(`section.pool[data-pool="other"] .summary`))); got != "1/1 up" {
			t.Errorf("summary of other %q, want 1/1 up", got)
		}
	})

	t.Run("down_target_shows_error", func(t *testing.T) {
		endpoint := run("endpoint of the down row", chromedp.Text(chromedp.CSS(`tr.target[data-health="down"] td.endpoint`)))
		if endpoint != "http://"+failing+"/metrics" {
			t.Errorf("down row endpoint %q, want the failing target", endpoint)
		}
		if got := run("error of the down row", chromedp.Text(chromedp.CSS(`tr.target[data-health="down"] td.error`))); got != "server returned HTTP status 500 Internal Server Error" {
			t.Errorf("error of the down row %q", got)
		}
		errs, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
			`[...document.querySelectorAll('tr.target[data-health="up"] td.error')].map(td => td.textContent)`))
		if err != nil {
			t.Fatalf("read errors of the up rows: %v", err)
		}
		if len(errs) != 2 || errs[0] != "" || errs[1] != "" {
			t.Errorf("errors of the up rows %q, want two empty", errs)
		}
		if got := run("last scrape of the down row", chromedp.Text(chromedp.CSS(`tr.target[data-health="down"] td.last-scrape time`))); !strings.HasSuffix(got, " s ago") {
			t.Errorf("last scrape %q, want N s ago", got)
		}
	})

	t.Run("health_classes_and_colors", func(t *testing.T) {
		type cell struct {
			Row, Class, Text, Background string
		}
		cells, err := chromedp.Run(ctx, chromedp.Evaluate[[]cell](`[...document.querySelectorAll('td.health')].map(td => ({
			Row: td.closest('tr').dataset.health,
			Class: td.className,
			Text: td.innerText.trim(),
			Background: getComputedStyle(td.querySelector('span')).backgroundColor,
		}))`))
		if err != nil {
			t.Fatalf("read health cells: %v", err)
		}
		bg := map[string]string{}
		for _, c := range cells {
			if c.Class != "health health-"+c.Row {
				t.Errorf("health cell of a %s row has class %q", c.Row, c.Class)
			}
			// The stylesheet upper-cases the state.
			if c.Text != strings.ToUpper(c.Row) {
				t.Errorf("health cell of a %s row reads %q", c.Row, c.Text)
			}
			bg[c.Row] = c.Background
		}
		if bg["up"] == "" || bg["down"] == "" || bg["up"] == bg["down"] || bg["up"] == "rgba(0, 0, 0, 0)" {
			t.Errorf("health colors %v: up and down not colored apart", bg)
		}
	})

	t.Run("discovered_labels_expand", func(t *testing.T) {
		details := `tr.target[data-health="down"] details.discovered`
		open, err := chromedp.Run(ctx, chromedp.JavascriptAttribute[bool](chromedp.CSS(details), "open"))
		if err != nil {
			t.Fatalf("read details state: %v", err)
		}
		if open {
			t.Fatalf("discovered labels open before a click")
		}
		if got := run("hidden discovered labels", chromedp.Text(chromedp.CSS(details+" ul"))); got != "" {
			t.Errorf("discovered labels visible before a click: %q", got)
		}
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(details+" summary")),
			chromedp.WaitVisible(chromedp.CSS(details+" ul")),
		); err != nil {
			t.Fatalf("expand discovered labels: %v", err)
		}
		shown := run("discovered labels", chromedp.Text(chromedp.CSS(details+" ul")))
		for _, want := range []string{`__address__="` + failing + `"`, `__metrics_path__="/metrics"`, `job="web"`, `team="` + browserTeam + `"`} {
			if !strings.Contains(shown, want) {
				t.Errorf("discovered labels lack %s:\n%s", want, shown)
			}
		}
		if strings.Contains(shown, "instance=") {
			t.Errorf("discovered labels show instance, which relabeling adds:\n%s", shown)
		}
	})

	t.Run("labels_escaped", func(t *testing.T) {
		labelsText := run("labels of the up row in web", chromedp.Text(chromedp.CSS(`section.pool[data-pool="web"] tr.target[data-health="up"] td.labels`)))
		for _, want := range []string{`team="` + browserTeam + `"`, `env="prod"`, `instance="` + healthy + `"`, `job="web"`} {
			if !strings.Contains(labelsText, want) {
				t.Errorf("labels lack %s:\n%s", want, labelsText)
			}
		}
		scripts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.scripts.length`))
		if err != nil {
			t.Fatalf("count scripts: %v", err)
		}
		if scripts != 0 {
			t.Errorf("page has %d script elements, want 0", scripts)
		}
	})

	t.Run("filter_form", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS(`form.filter select[name="health"]`), "down")); err != nil {
			t.Fatalf("choose health=down: %v", err)
		}
		resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`form.filter button[type="submit"]`)))
		if err != nil {
			t.Fatalf("submit the filter: %v", err)
		}
		if resp.Status != http.StatusOK || !strings.Contains(resp.URL, "health=down") {
			t.Fatalf("filter answered %d for %s", resp.Status, resp.URL)
		}
		rows, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("tr.target")))
		if err != nil {
			t.Fatalf("query filtered rows: %v", err)
		}
		if len(rows) != 1 || rows[0].AttributeValue("data-health") != "down" {
			t.Errorf("health=down shows %d rows", len(rows))
		}
		pools, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("section.pool")))
		if err != nil {
			t.Fatalf("query filtered pools: %v", err)
		}
		if len(pools) != 1 || pools[0].AttributeValue("data-pool") != "web" {
			t.Errorf("health=down shows %d pools", len(pools))
		}
	})
}
