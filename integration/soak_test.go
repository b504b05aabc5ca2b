package integration

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

type soakPoint struct {
	at         time.Duration
	rss        int64
	goroutines float64
	walBytes   float64
	received   float64
	lagA, lagB float64
	cpu        float64 // percent of one core over the last interval
}

// cpuTicks returns utime+stime of pid in clock ticks.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return u + st
}

// A steady load for FERRY_SOAK (default 10m): a real Prometheus scraping
// itself and node-exporter every second, plus 2000 synthetic series pushed
// every second, through ferry (built without the race detector) to two
// real Prometheus servers. Ferry's RSS and goroutines are sampled every
// 10 s and must stay flat: after a warm-up, the maximum over the last third
// is within 25% of the maximum over the first third. Every sample is then
// checked in both downstreams. The curve is logged and, if
// FERRY_SOAK_REPORT names a file, written there as a Markdown table.
func TestSoak(t *testing.T) {
	requireIntegration(t)
	d := envDuration(t, "FERRY_SOAK", 10*time.Minute)
	warmup := min(time.Minute, d/5)
	a := startProm(t, "downstream-a", promReceiver, "")
	b := startProm(t, "downstream-b", promReceiver, "")
	f := newFerry(t, "", "a="+a.writeURL(), "b="+b.writeURL())
	f.startWith(ferryPlainBinary(t))
	l := startLoad(t, f, promServer, nil, 2000, time.Second, 500)
	up, p, begin := l.up, l.p, l.begin

	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	start := time.Now()
	pid := f.pid()
	ticksPerSec := 100.0 // USER_HZ on Linux
	var points []soakPoint
	lastCPU, lastAt := cpuTicks(pid), time.Now()
	for time.Since(start) < d {
		<-tick.C
		now := time.Now()
		c := cpuTicks(pid)
		pt := soakPoint{
			at:         now.Sub(start).Round(time.Second),
			rss:        rssBytes(pid),
			goroutines: f.metric("go_goroutines"),
			walBytes:   f.metric("ferry_wal_size_bytes"),
			received:   f.metric("ferry_receiver_samples_total"),
			lagA:       f.metric("ferry_sender_lag_seconds", `endpoint="a"`),
			lagB:       f.metric("ferry_sender_lag_seconds", `endpoint="b"`),
			cpu:        100 * float64(c-lastCPU) / ticksPerSec / now.Sub(lastAt).Seconds(),
		}
		lastCPU, lastAt = c, now
		points = append(points, pt)
		if !f.running() {
			t.Fatalf("ferry exited during the soak:\n%s", f.logText())
		}
	}
	l.stopPushing()
	end := time.Now().Add(-2 * time.Second)

	table := soakTable(points)
	t.Logf("soak curve (%v, warm-up %v):\n%s", d, warmup, table)
	if path := os.Getenv("FERRY_SOAK_REPORT"); path != "" {
		hdr := fmt.Sprintf("Soak of %v on %s/%s, %d CPUs, ferry built without -race; load: Prometheus %s scraping itself and node-exporter every 1s "+
			"plus 2000 synthetic series pushed every 1s, forwarded to two Prometheus servers. Started %s.\n\n",
			d, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), "2.42 (Debian)", start.UTC().Format(time.RFC3339))
		if err := os.WriteFile(path, []byte(hdr+table), 0o644); err != nil {
			t.Errorf("write %s: %v", path, err)
		}
	}

	// Flat after the warm-up: compare the first and the last third.
	var steady []soakPoint
	for _, pt := range points {
		if pt.at >= warmup {
			steady = append(steady, pt)
		}
	}
	if len(steady) < 3 {
		t.Fatalf("only %d samples after the warm-up: FERRY_SOAK=%v is too short", len(steady), d)
	}
	third := len(steady) / 3
	firstMax := func(get func(soakPoint) float64, pts []soakPoint) float64 {
		m := 0.0
		for _, pt := range pts {
			m = max(m, get(pt))
		}
		return m
	}
	for _, c := range []struct {
		name string
		get  func(soakPoint) float64
	}{
		{"RSS (MiB)", func(p soakPoint) float64 { return float64(p.rss) / (1 << 20) }},
		{"goroutines", func(p soakPoint) float64 { return p.goroutines }},
	} {
		first, last := firstMax(c.get, steady[:third]), firstMax(c.get, steady[len(steady)-third:])
		t.Logf("%s: max %.1f over the first third after warm-up, %.1f over the last third", c.name, first, last)
		if last > 1.25*first {
			t.Errorf("%s grows: max %.1f over the last third vs %.1f over the first third after warm-up", c.name, last, first)
		}
	}

	// Everything arrived.
	acked, n := p.snapshot()
	waitAcked(t, acked, 3*time.Minute, a, b)
	ref := waitSame(t, up, scrapedSelector, end, end.Sub(begin), 3*time.Minute, a, b)
	checkFerryClean(t, f, "a", "b")
	t.Logf("soak: %d pushed samples and %d upstream samples (%d series) all in both downstreams", n, ref.count(), len(ref))
	up.stop(30 * time.Second)
	f.stop()
}

func soakTable(points []soakPoint) string {
	var b strings.Builder
	b.WriteString("| elapsed | RSS (MiB) | goroutines | CPU (% of a core) | WAL (MiB) | samples received | lag a (s) | lag b (s) |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range points {
		fmt.Fprintf(&b, "| %v | %.1f | %.0f | %.1f | %.1f | %.0f | %.1f | %.1f |\n",
			p.at, float64(p.rss)/(1<<20), p.goroutines, p.cpu, p.walBytes/(1<<20), p.received, p.lagA, p.lagB)
	}
	return b.String()
}
