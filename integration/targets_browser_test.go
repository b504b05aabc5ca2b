package integration

// The /targets page of a running ferry in a real headless Chromium: Ferry
// scrapes real HTTP targets from its scrape_configs and serves the page,
// and /api/v1/targets, on its listen address.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
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

const browserTeam = `<script>alert("team")</script>`

// apiTargets is the part of GET /api/v1/targets the test reads.
type apiTargets struct {
	Status string `json:"status"`
	Data   struct {
		ActiveTargets []struct {
			ScrapePool string    `json:"scrapePool"`
			ScrapeURL  string    `json:"scrapeUrl"`
			Health     string    `json:"health"`
			LastError  string    `json:"lastError"`
			LastScrape time.Time `json:"lastScrape"`
		} `json:"activeTargets"`
		DroppedTargetCounts map[string]int `json:"droppedTargetCounts"`
	} `json:"data"`
}

// getAPITargets reads GET /api/v1/targets of the ferry at addr.
func getAPITargets(addr string) (*apiTargets, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/targets")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/targets: status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, fmt.Errorf("GET /api/v1/targets: content type %q", ct)
	}
	var res apiTargets
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("decode /api/v1/targets: %w", err)
	}
	if res.Status != "success" {
		return nil, fmt.Errorf("GET /api/v1/targets: status %q", res.Status)
	}
	return &res, nil
}

// scraped reports how many active targets were scraped at least once, of
// how many.
func (a *apiTargets) scraped() (scraped, active int) {
	for _, tg := range a.Data.ActiveTargets {
		if !tg.LastScrape.IsZero() {
			scraped++
		}
	}
	return scraped, len(a.Data.ActiveTargets)
}

// startTargetsFerry starts a ferry scraping pool "web" (a healthy target, a
// target answering 500 and a target dropped by relabeling) and pool "other"
// (the healthy target again), and waits until every active target has been
// scraped. It returns the ferry and the host:port of the two targets.
func startTargetsFerry(t *testing.T) (f *ferry, healthy, failing string) {
	t.Helper()
	healthy = staticTarget(t, "text/plain; version=0.0.4", "# TYPE ferry_browser_test gauge\nferry_browser_test 1\n")
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(down.Close)
	failing = strings.TrimPrefix(down.URL, "http://")

	s := newSink(t, nil)
	f = scrapeFerry(t, "", fmt.Sprintf(`global:
  scrape_interval: 500ms
  scrape_timeout: 500ms
scrape_configs:
  - job_name: web
    static_configs:
      - targets: [%[1]q]
        labels: {team: %[3]q, env: prod}
      - targets: [%[2]q]
        labels: {team: %[3]q}
      - targets: ["127.0.0.1:1"]
        labels: {team: %[3]q, tier: drop-me}
    relabel_configs:
      - source_labels: [tier]
        regex: drop-me
        action: drop
  - job_name: other
    static_configs: [{targets: [%[1]q]}]
`, healthy, failing, browserTeam), "sink="+s.url())

	// Ferry applies discovered targets every 5 s: the first scrape may take
	// about 10 s.
	var last *apiTargets
	var lastErr error
	ok := waitFor(30*time.Second, func() bool {
		last, lastErr = getAPITargets(f.addr)
		if lastErr != nil {
			return false
		}
		scraped, active := last.scraped()
		return active == 3 && scraped == 3 && last.Data.DroppedTargetCounts["web"] == 1
	})
	if !ok {
		if lastErr != nil {
			t.Fatalf("targets not scraped within 30s: %v", lastErr)
		}
		scraped, active := last.scraped()
		t.Fatalf("targets not scraped within 30s: %d/%d active targets scraped, dropped %v", scraped, active, last.Data.DroppedTargetCounts)
	}
	return f, healthy, failing
}

func TestTargetsBrowser(t *testing.T) {
	requireIntegration(t)
	chromium := lookChromium(t)

	f, healthy, failing := startTargetsFerry(t)
	base := "http://" + f.addr

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

	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+"/targets"))
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

	t.Run("api_matches_page", func(t *testing.T) {
		type row struct{ Pool, Endpoint, Health string }
		page, err := chromedp.Run(ctx, chromedp.Evaluate[[]row](`[...document.querySelectorAll('tr.target')].map(tr => ({
			Pool: tr.closest('section.pool').dataset.pool,
			Endpoint: tr.querySelector('td.endpoint').textContent.trim(),
			Health: tr.dataset.health,
		}))`))
		if err != nil {
			t.Fatalf("read the rows of the page: %v", err)
		}
		res, err := getAPITargets(f.addr)
		if err != nil {
			t.Fatal(err)
		}
		var api []row
		for _, tg := range res.Data.ActiveTargets {
			api = append(api, row{Pool: tg.ScrapePool, Endpoint: tg.ScrapeURL, Health: tg.Health})
			if tg.LastScrape.IsZero() {
				t.Errorf("API: %s in %s never scraped", tg.ScrapeURL, tg.ScrapePool)
			}
			want := ""
			if tg.Health == "down" {
				want = "server returned HTTP status 500 Internal Server Error"
			}
			if tg.LastError != want {
				t.Errorf("API: %s in %s has health %s and error %q", tg.ScrapeURL, tg.ScrapePool, tg.Health, tg.LastError)
			}
		}
		byEndpoint := func(a, b row) int {
			return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Endpoint, b.Endpoint))
		}
		want := []row{
			{"other", "http://" + healthy + "/metrics", "up"},
			{"web", "http://" + failing + "/metrics", "down"},
			{"web", "http://" + healthy + "/metrics", "up"},
		}
		slices.SortFunc(want, byEndpoint)
		slices.SortFunc(page, byEndpoint)
		slices.SortFunc(api, byEndpoint)
		if !slices.Equal(api, want) {
			t.Errorf("API lists %v, want %v", api, want)
		}
		if !slices.Equal(page, api) {
			t.Errorf("page shows %v, API lists %v", page, api)
		}
		if got := res.Data.DroppedTargetCounts["web"]; got != 1 {
			t.Errorf("API: %d targets of web dropped, want 1", got)
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
