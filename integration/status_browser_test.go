package integration

// The status page of a running ferry in a real headless Chromium: an
// endpoint goes down, the page shows it failing with its error and no ETA
// yet; it comes back slow, and the page shows it catching up with an ETA;
// then healthy and caught up.
// FERRY_SCREENSHOTS=DIR saves the page at each step as PNG files there
// (docs/ holds the ones the README shows).

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func TestStatusPageBrowser(t *testing.T) {
	requireIntegration(t)
	chromium := lookChromium(t)

	// slow makes the sink take a second per request, so that catching up
	// takes a while.
	var slow atomic.Bool
	s := newSink(t, func(int) int {
		if slow.Load() {
			time.Sleep(time.Second)
		}
		return 0
	})
	f := newFerry(t, "", "central="+s.url())
	f.start()
	base := "http://" + f.addr
	s.down()
	p := newPusher(f.addr, 200)
	ts := time.Now().UnixMilli()
	p.pushRounds(t, ts, ts+49, 200)
	screenshots := os.Getenv("FERRY_SCREENSHOTS")
	// The outage lasts past a sample of the page's history (every 10 s),
	// which the drain rate and the ETA are measured from.
	outage := 12
	if screenshots != "" {
		outage = 25 // the chart draws the backlog growing
	}
	for i := range outage {
		time.Sleep(time.Second)
		p.pushRounds(t, ts+100+int64(i)*10, ts+109+int64(i)*10, 200)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
			chromedp.WindowSize(1000, 1100),
		)...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()

	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	// waitState reloads the page until the endpoint shows state.
	waitState := func(state string) {
		t.Helper()
		ok := waitFor(60*time.Second, func() bool {
			resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+"/"))
			if err != nil || resp.Status != http.StatusOK {
				t.Fatalf("open / in chromium: %v (%v)", err, resp)
			}
			return text("#endpoint-central .state") == state
		})
		if !ok {
			t.Fatalf("the page never showed central %s; last: %q", state, text("#endpoint-central .state"))
		}
	}
	shoot := func(name string) {
		t.Helper()
		dir := screenshots
		if dir == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	waitState("failing")
	if got := text("#endpoint-central .eta"); got != "unknown: not draining yet" {
		t.Errorf("ETA while failing: %q", got)
	}
	if got := text("#endpoint-central"); !strings.Contains(got, "connect: connection refused") || !strings.Contains(got, "failing for") {
		t.Errorf("the failing endpoint's table lacks its error:\n%s", got)
	}
	scripts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.scripts.length`))
	if err != nil || scripts != 0 {
		t.Errorf("the page has %d scripts (%v), want none", scripts, err)
	}
	charts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#endpoint-central svg.lag-chart polyline').length`))
	if err != nil || charts != 1 {
		t.Errorf("%d backlog charts (%v), want 1", charts, err)
	}
	shoot("status-failing.png")

	slow.Store(true)
	s.up()
	waitState("catching up")
	eta := ""
	if !waitFor(30*time.Second, func() bool {
		if _, err := chromedp.Run(ctx, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		eta = text("#endpoint-central .eta")
		_, err := time.ParseDuration(eta)
		return err == nil
	}) {
		t.Errorf("no ETA while catching up: %q", eta)
	}
	shoot("status-catching-up.png")
	slow.Store(false)
	waitState("healthy")
	if screenshots != "" {
		time.Sleep(11 * time.Second) // one more history point, after the drain
		if _, err := chromedp.Run(ctx, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
	}
	if got := text("#endpoint-central .eta"); got != "caught up" {
		t.Errorf("ETA after recovery: %q, want caught up", got)
	}
	shoot("status-healthy.png")
	p.pushRounds(t, ts+1000, ts+1009, 200)
	s.waitDelivered(p.acked, 30*time.Second)
}
