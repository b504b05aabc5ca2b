package integration

// Ferry as a scraper (scrape_configs, run by Prometheus' own scrape and
// discovery packages), checked against real peers: a node exporter scraped
// side by side with a real Prometheus, kill -9 mid-scrape, staleness when a
// target or a job goes, a downstream outage, targets that misbehave, and
// scraping beside remote-write pushes. The tests run in parallel with one
// another (after the suite's sequential tests).

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// knownScrapeDiffs are the known differences between the series that
// Prometheus 2.42 and Ferry (Prometheus 3.15's scrape package) store from
// the same node exporter, both with their defaults. Each rewrites a label
// set as 2.42 stores it into the one 3.15 stores, and reports whether it
// changed it; after them the two sets of series must be equal. Not
// differences: the report series are up, scrape_duration_seconds,
// scrape_samples_scraped, scrape_samples_post_metric_relabeling and
// scrape_series_added in both (3.x adds scrape_timeout_seconds,
// scrape_sample_limit and scrape_body_size_bytes only with
// extra_scrape_metrics, 2.42 only with --enable-feature=extra-scrape-metrics);
// Debian's node exporter answers both in text format 0.0.4 (no OpenMetrics
// _created series) and has no native histograms.
var knownScrapeDiffs = []struct {
	why     string
	rewrite func(map[string]string) bool
}{
	{`Prometheus 3 writes the quantile label of summaries and the le label of histograms as floats ("0" → "0.0", "1" → "1.0")`,
		func(m map[string]string) bool {
			changed := false
			for _, l := range []string{"quantile", "le"} {
				v, ok := m[l]
				if !ok {
					continue
				}
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					if n := labels.FormatOpenMetricsFloat(f); n != v {
						m[l] = n
						changed = true
					}
				}
			}
			return changed
		}},
}

// as315 rewrites a label set (a labelKey) as Prometheus 2.42 stored it into
// the one 3.15 stores; hits counts the rewrites by knownScrapeDiffs index.
func as315(key string, hits map[int]int) string {
	m := capLabels(key)
	changed := false
	for i, d := range knownScrapeDiffs {
		if d.rewrite(m) {
			hits[i]++
			changed = true
		}
	}
	if !changed {
		return key
	}
	return labelKey(m)
}

// A real node exporter is scraped every second by Ferry and by a real
// Prometheus 2.42 (in agent mode, Ferry's counterpart), each forwarding to
// its own real Prometheus 2.42 downstream. Over a 40 s window that ends
// well before now, both downstreams hold the same series (same label sets,
// external labels included) and, per series, the same number of samples
// give or take one (the two scrape at different phases of the second);
// samples per scrape agree within 0.5%.
func TestScrapeSideBySideWithPrometheus(t *testing.T) {
	requireIntegration(t)
	t.Parallel()
	node := startNodeExporter(t)
	downF := startProm(t, "downstream-of-ferry", promReceiver, "")
	downP := startProm(t, "downstream-of-prometheus", promReceiver, "")
	scrape := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  external_labels: {site: edge1}
scrape_configs:
  - job_name: node
    static_configs: [{targets: [%q]}]
`, node)
	f := scrapeFerry(t, "", scrape, "down="+downF.writeURL())
	startProm(t, "agent", promAgent, scrape+fmt.Sprintf(`remote_write:
  - url: %s
    queue_config: {batch_send_deadline: 1s, min_backoff: 50ms, max_backoff: 1s}
`, downP.writeURL()))

	// Both ran for 60 scrapes; the window is the 40 s that end 10 s ago.
	waitScrapes(t, downF, 60, 3*time.Minute)
	waitScrapes(t, downP, 60, 3*time.Minute)
	const rng = 40 * time.Second
	end := time.Now().Add(-10 * time.Second)
	const sel = `{job="node"}`

	type view struct {
		series  map[string]bool
		samples promSamples
		scrapes int
	}
	load := func(p *prom) view {
		s, err := p.series(sel, end.Add(-rng).Add(time.Millisecond), end)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := p.raw(sel, end, rng)
		if err != nil {
			t.Fatal(err)
		}
		v := view{series: s, samples: raw}
		for k, m := range raw {
			if strings.HasPrefix(k, `{__name__="up",`) {
				v.scrapes = len(m)
			}
		}
		return v
	}
	var vf, vp view
	// What ended 10 s ago has normally arrived; give slow senders 30 s.
	waitUntil(t, 30*time.Second, func() bool {
		vf, vp = load(downF), load(downP)
		return vf.scrapes >= 39 && vp.scrapes >= 39
	})

	// The 2.42 side as 3.15 would store it.
	hits := map[int]int{}
	rewritten := map[string]bool{}
	for k := range vp.series {
		rewritten[as315(k, hits)] = true
	}
	vp.series = rewritten
	samples := promSamples{}
	for k, m := range vp.samples {
		samples[as315(k, map[int]int{})] = m
	}
	vp.samples = samples
	var unknown []string
	for _, k := range sortedKeys(vf.series) {
		if !vp.series[k] {
			unknown = append(unknown, k+" only in the downstream of ferry")
		}
	}
	for _, k := range sortedKeys(vp.series) {
		if !vf.series[k] {
			unknown = append(unknown, k+" only in the downstream of prometheus")
		}
	}
	for k := range vf.series {
		if !strings.Contains(k, `site="edge1"`) {
			t.Errorf("ferry forwarded %s without the external label site=\"edge1\"", k)
			break
		}
	}

	byDiff := map[int]int{} // |count difference| → series
	var worst []string
	totalF, totalP := 0, 0
	for k, mf := range vf.samples {
		mp, ok := vp.samples[k]
		if !ok {
			continue
		}
		totalF += len(mf)
		totalP += len(mp)
		d := len(mf) - len(mp)
		byDiff[abs(d)]++
		if abs(d) > 1 && len(worst) < 8 {
			worst = append(worst, fmt.Sprintf("%s: ferry %d, prometheus %d", k, len(mf), len(mp)))
		}
	}
	perScrapeF := float64(totalF) / float64(vf.scrapes)
	perScrapeP := float64(totalP) / float64(vp.scrapes)
	t.Logf("window %v ending %s: series ferry %d, prometheus %d (common %d); scrapes ferry %d, prometheus %d; samples of the common series ferry %d, prometheus %d (%.1f vs %.1f per scrape); series by |count difference|: %v",
		rng, end.Format(time.TimeOnly), len(vf.series), len(vp.series), len(vf.samples)-countMissing(vf.samples, vp.samples),
		vf.scrapes, vp.scrapes, totalF, totalP, perScrapeF, perScrapeP, byDiff)
	for i, d := range knownScrapeDiffs {
		t.Logf("known difference between the 2.42 and 3.15 scrape libraries, applied to %d series: %s", hits[i], d.why)
	}
	if len(vf.series) < 300 {
		t.Errorf("only %d node exporter series in ferry's downstream: too few for a meaningful comparison", len(vf.series))
	}
	if len(unknown) > 0 {
		t.Errorf("%d series differ and are not known differences between the 2.42 and 3.15 scrape libraries:\n  %s",
			len(unknown), strings.Join(first(unknown, 20), "\n  "))
	}
	if len(worst) > 0 {
		t.Errorf("per-series sample counts over %v differ by more than 1 for %d series, e.g.\n  %s", rng, len(vf.samples)-byDiff[0]-byDiff[1], strings.Join(worst, "\n  "))
	}
	if abs(vf.scrapes-vp.scrapes) > 1 {
		t.Errorf("scrapes in the window: ferry %d, prometheus %d", vf.scrapes, vp.scrapes)
	}
	if math.Abs(perScrapeF-perScrapeP) > 0.005*perScrapeP {
		t.Errorf("samples per scrape: ferry %.1f, prometheus %.1f (more than 0.5%% apart)", perScrapeF, perScrapeP)
	}
	f.stop()
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// countMissing returns how many series of a are not in b.
func countMissing(a, b promSamples) int {
	n := 0
	for k := range a {
		if _, ok := b[k]; !ok {
			n++
		}
	}
	return n
}

// Ferry (wal.sync: always) scrapes a target that numbers its scrapes every
// 250 ms and is killed with SIGKILL three times: at a random moment, while
// the target is answering (the scrape in flight cannot be committed), and
// right after the target sent a whole body (commit and kill race). After
// each restart on the same data dir it scrapes on. Every scrape the target
// served arrives, whole (all 51 series at one timestamp), in a capturing
// receiver and in a real Prometheus, except at most the one in flight at
// each kill.
//
// The capturing receiver gives the exact set whatever Ferry re-sends after
// a restart (at-least-once, duplicates allowed); the real Prometheus,
// which refuses re-sent samples older than what it holds with 400, shows
// that such refusals cost no scrape that had not arrived yet.
func TestScrapeKillNineLosesNoCommittedScrape(t *testing.T) {
	requireIntegration(t)
	t.Parallel()
	tgt := newSeqTarget(t, 50)
	capt := newRWCapture(t)
	down := startProm(t, "downstream", promReceiver, "")
	begin := time.Now()
	f := scrapeFerry(t, "sync: always", seqJob("250ms", tgt.addr()), "capture="+capt.url(), "prom="+down.writeURL())

	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	allowed := seqSet{} // the scrape in flight at each kill
	var kills []string
	for i, how := range []string{"at a random moment", "while the target answered", "right after the target sent the body"} {
		base := tgt.count()
		waitUntil(t, time.Minute, func() bool { return tgt.count() >= base+8 })
		switch i {
		case 0:
			time.Sleep(time.Duration(rnd.IntN(250)) * time.Millisecond) // a random moment, not a synchronisation
			f.kill9()
		default:
			reached := make(chan struct{})
			release := make(chan struct{})
			var fired atomic.Bool
			wrote := i == 2
			tgt.setHold(func(n int, w bool) {
				if w != wrote || !fired.CompareAndSwap(false, true) {
					return
				}
				close(reached)
				if !w {
					select {
					case <-release:
					case <-time.After(10 * time.Second):
					}
				}
			})
			select {
			case <-reached:
			case <-time.After(time.Minute):
				t.Fatal("no scrape reached the hook")
			}
			f.kill9()
			close(release)
			tgt.setHold(nil)
		}
		n := tgt.count()
		allowed[n] = true
		kills = append(kills, fmt.Sprintf("kill %d %s: scrape %d in flight", i+1, how, n))
		f.start()
	}
	base := tgt.count()
	waitUntil(t, time.Minute, func() bool { return tgt.count() >= base+8 })
	upto := tgt.count()

	got := waitSeqs(t, "capturing receiver", upto, allowed, time.Minute, func() (seqSet, error) {
		return capSeqs(capt, tgt.addr()), nil
	})
	gotProm := waitSeqs(t, "prometheus", upto, allowed, time.Minute, func() (seqSet, error) {
		return promSeqs(down, `seq{job="seq"}`, time.Now(), time.Since(begin)+time.Minute)
	})
	for i, n := range sortedInts(allowed) {
		kills[i] += fmt.Sprintf(" (arrived: capture %v, prometheus %v)", got[n], gotProm[n])
	}

	// Each scrape arrived whole: every filler and up hold, at the
	// timestamp of each `seq` sample, its value.
	seqTS := map[int64]float64{}
	for _, m := range capSelect(capt, map[string]string{"__name__": "seq"}) {
		seqTS = m
	}
	fillers := capSelect(capt, map[string]string{"__name__": "seq_filler"})
	ups := capSelect(capt, map[string]string{"__name__": "up", "job": "seq"})
	if len(fillers) != 50 || len(ups) != 1 {
		t.Fatalf("captured %d filler and %d up series, want 50 and 1", len(fillers), len(ups))
	}
	partial := 0
	for ts, v := range seqTS {
		for _, m := range fillers {
			if fv, ok := m[ts]; !ok || fv != v {
				partial++
				if partial <= 3 {
					t.Errorf("scrape %v (@%d) arrived without all its series: a filler has %v (present %v)", v, ts, fv, ok)
				}
			}
		}
		for _, m := range ups {
			if m[ts] != 1 {
				t.Errorf("scrape %v (@%d): up = %v, want 1", v, ts, m[ts])
			}
		}
	}
	for k, m := range fillers {
		for ts := range m {
			if _, ok := seqTS[ts]; !ok {
				t.Errorf("%s has a sample @%d with no seq sample: a scrape arrived in part", k, ts)
				break
			}
		}
	}
	t.Logf("%d scrapes served, %d arrived at the capture (%d at prometheus); %s; ferry counted %v samples failed at prometheus (re-sent, refused 400)",
		upto, len(got), len(gotProm), strings.Join(kills, "; "), f.metric("ferry_sender_samples_failed_total", `endpoint="prom"`))
	f.stop()
}

// A file_sd target list loses a target (the file replaced through a
// rename): every series of that target, its report series included, gets a
// stale marker (value.StaleNaN) downstream, and is not scraped after.
// Then a whole job is removed from the config and SIGHUP reloads it: its
// target's series get stale markers too. The target that stays gets none,
// and none of its scrapes is missing across both changes.
func TestScrapeStalenessWhenTargetGoes(t *testing.T) {
	requireIntegration(t)
	t.Parallel()
	a, b, c := newSeqTarget(t, 5), newSeqTarget(t, 5), newSeqTarget(t, 5)
	capt := newRWCapture(t)
	sd := filepath.Join(t.TempDir(), "targets.json")
	writeFileAtomic(t, sd, fmt.Sprintf(`[{"targets": [%q, %q]}]`, a.addr(), b.addr()))
	scrape := func(withGone bool) string {
		s := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: files
    file_sd_configs: [{files: [%q]}]
`, sd)
		if withGone {
			s += fmt.Sprintf("  - job_name: gone\n    static_configs: [{targets: [%q]}]\n", c.addr())
		}
		return s
	}
	f := scrapeFerry(t, "", scrape(true), "capture="+capt.url())
	begin := time.Now()
	waitUntil(t, time.Minute, func() bool {
		return len(capSeqs(capt, a.addr())) >= 3 && len(capSeqs(capt, b.addr())) >= 3 && len(capSeqs(capt, c.addr())) >= 3
	})
	// A target's series: seq, 5 fillers, up and 4 scrape_* series.
	const perTarget = 11
	waitStale := func(what string, tgt *seqTarget) time.Duration {
		t.Helper()
		from := time.Now()
		var st staleness
		inst := map[string]string{"instance": tgt.addr()}
		ok := waitFor(time.Minute, func() bool {
			st = staleOf(capSelect(capt, inst))
			return st.series == perTarget && st.stale == perTarget
		})
		if !ok {
			t.Fatalf("%s: %d of its %d series got a stale marker within a minute; without: %v", what, st.stale, st.series, first(st.without, 11))
		}
		return time.Since(from)
	}

	// 1. b leaves the file.
	writeFileAtomic(t, sd, fmt.Sprintf(`[{"targets": [%q]}]`, a.addr()))
	tookB := waitStale("target removed from the file_sd file", b)
	servedB := b.count()

	// 2. Job "gone" leaves the config; SIGHUP.
	f.writeConfig("", "capture="+capt.url())
	f.appendConfig(scrape(false))
	f.sighup()
	tookC := waitStale("job removed by a reload", c)
	servedC := c.count()

	// a goes on; wait for a few more of its scrapes to arrive.
	upto := a.count() + 3
	waitUntil(t, 30*time.Second, func() bool { return a.count() >= upto })
	waitSeqs(t, "target that stays", upto, nil, 30*time.Second, func() (seqSet, error) { return capSeqs(capt, a.addr()), nil })
	stA := staleOf(capSelect(capt, map[string]string{"instance": a.addr()}))
	stB2 := staleOf(capSelect(capt, map[string]string{"instance": b.addr()}))
	stC2 := staleOf(capSelect(capt, map[string]string{"instance": c.addr()}))

	t.Logf("stale markers for all %d series: removed from the file after %v, job removed by SIGHUP after %v (run began %v earlier)",
		perTarget, tookB.Round(100*time.Millisecond), tookC.Round(100*time.Millisecond), time.Since(begin).Round(time.Second))
	if stA.stale > 0 {
		t.Errorf("the target that stayed got stale markers on %d of its %d series", stA.stale, stA.series)
	}
	for _, x := range []struct {
		what          string
		st            staleness
		served, after int
	}{{"target removed from the file", stB2, servedB, b.count()}, {"job removed", stC2, servedC, c.count()}} {
		if x.st.after > 0 {
			t.Errorf("%s: %d samples after its stale markers", x.what, x.st.after)
		}
		if x.after != x.served {
			t.Errorf("%s: scraped %d more times after its stale markers arrived", x.what, x.after-x.served)
		}
	}
	if strings.Contains(f.logText(), "Reload on SIGHUP failed") {
		t.Errorf("reload failed:\n%s", f.logText())
	}
	f.stop()
}

// The only downstream, a real Prometheus, is killed with SIGKILL for two
// minutes (FERRY_SCRAPE_OUTAGE) while Ferry scrapes a numbering target
// every second, then restarted on the same storage and port: every scrape
// served, before, during and after the outage, is in it, in order, each
// with its up sample.
func TestScrapeDownstreamOutage(t *testing.T) {
	requireIntegration(t)
	t.Parallel()
	outage := envDuration(t, "FERRY_SCRAPE_OUTAGE", 2*time.Minute)
	tgt := newSeqTarget(t, 20)
	down := startProm(t, "downstream", promReceiver, "")
	begin := time.Now()
	f := scrapeFerry(t, "", seqJob("1s", tgt.addr()), "down="+down.writeURL())
	fetch := func() (seqSet, error) {
		return promSeqs(down, `seq{job="seq"}`, time.Now(), time.Since(begin)+time.Minute)
	}
	waitUntil(t, time.Minute, func() bool { s, err := fetch(); return err == nil && len(s) >= 5 })

	down.crash()
	before, commits := tgt.count(), f.metric("ferry_scrape_commits_total", `result="ok"`)
	time.Sleep(outage) // the outage itself
	during := tgt.count() - before
	lag := f.metric("ferry_sender_lag_seconds", `endpoint="down"`)
	commitsDuring := f.metric("ferry_scrape_commits_total", `result="ok"`) - commits
	down.start()
	back := time.Now()
	if least := int(outage.Seconds()) - 5; during < least || commitsDuring < float64(least) {
		t.Errorf("during the %v outage the target was scraped %d times and ferry committed %v scrapes, want at least %d",
			outage, during, commitsDuring, least)
	}
	if lag < outage.Seconds()/2 {
		t.Errorf("ferry_sender_lag_seconds = %v during a %v outage", lag, outage)
	}

	upto := tgt.count()
	waitSeqs(t, "downstream after the outage", upto, nil, 2*time.Minute, fetch)
	caughtUp := time.Since(back)
	end := time.Now()
	rng := end.Sub(begin) + time.Minute
	seqs, err := down.raw(`seq{job="seq"}`, end, rng)
	if err != nil {
		t.Fatal(err)
	}
	ups, err := down.raw(`up{job="seq"}`, end, rng)
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 1 || len(ups) != 1 {
		t.Fatalf("%d seq and %d up series, want 1 each", len(seqs), len(ups))
	}
	var seqM, upM map[int64]string
	for _, m := range seqs {
		seqM = m
	}
	for _, m := range ups {
		upM = m
	}
	tss := make([]int64, 0, len(seqM))
	for ts := range seqM {
		tss = append(tss, ts)
	}
	sort.Slice(tss, func(i, j int) bool { return tss[i] < tss[j] })
	prev := 0.0
	for _, ts := range tss {
		v, _ := strconv.ParseFloat(seqM[ts], 64)
		if v <= prev {
			t.Errorf("scrape %v @%d comes after scrape %v: timestamps out of scrape order", v, ts, prev)
		}
		prev = v
		if upM[ts] != "1" {
			t.Errorf("scrape %v @%d: up = %q, want 1", v, ts, upM[ts])
		}
	}
	t.Logf("%d scrapes served, %d during the %v outage (lag reached %.0fs); all %d arrived in order, %v after the downstream came back; ferry counted %v samples failed (re-sent after the crash, refused 400)",
		upto, during, outage, lag, len(seqM), caughtUp.Round(time.Second), f.metric("ferry_sender_samples_failed_total", `endpoint="down"`))
	f.stop()
}

// Three bad targets next to a healthy one in one Ferry: one answers
// garbage, one a body beyond body_size_limit, one more samples than
// sample_limit. Downstream (a real Prometheus) each bad target has up = 0
// on every scrape and none of its samples (the sample_limit one reports
// the 500 samples it scraped); the healthy one has up = 1 on every scrape
// and no scrape missing. Ferry stays healthy, counts the limits in
// Prometheus' own metrics and logs no panic.
func TestScrapeBadTargets(t *testing.T) {
	requireIntegration(t)
	t.Parallel()
	healthy := newSeqTarget(t, 20)
	const text = "text/plain; version=0.0.4; charset=utf-8"
	garbage := staticTarget(t, text, "this is not {{ the exposition format\n\x00\xff}} at all\n")
	var huge, many strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&huge, "huge_series{i=\"%05d\"} %d\n", i, i) // ~130 kB
	}
	for i := range 500 {
		fmt.Fprintf(&many, "many_series{i=\"%03d\"} %d\n", i, i)
	}
	hugeAddr := staticTarget(t, text, huge.String())
	manyAddr := staticTarget(t, text, many.String())
	down := startProm(t, "downstream", promReceiver, "")
	begin := time.Now()
	f := scrapeFerry(t, "", fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: healthy
    static_configs: [{targets: [%q]}]
  - job_name: garbage
    static_configs: [{targets: [%q]}]
  - job_name: huge
    body_size_limit: 16KB
    static_configs: [{targets: [%q]}]
  - job_name: many
    sample_limit: 100
    static_configs: [{targets: [%q]}]
`, healthy.addr(), garbage, hugeAddr, manyAddr), "down="+down.writeURL())

	waitUntil(t, 2*time.Minute, func() bool {
		v, err := down.vector(`count_over_time(up[10m])`, time.Now())
		if err != nil || len(v) != 4 {
			return false
		}
		for _, n := range v {
			if n < 15 {
				return false
			}
		}
		return true
	})
	upto := healthy.count()
	waitSeqs(t, "healthy target", upto, nil, 30*time.Second, func() (seqSet, error) {
		return promSeqs(down, `seq{job="healthy"}`, time.Now(), time.Since(begin)+time.Minute)
	})
	end := time.Now()
	rng := end.Sub(begin) + time.Minute

	// values returns the distinct values of selector's samples in the run.
	values := func(selector string) (map[string]int, int) {
		t.Helper()
		s, err := down.raw(selector, end, rng)
		if err != nil {
			t.Fatal(err)
		}
		out, n := map[string]int{}, 0
		for _, m := range s {
			for _, v := range m {
				out[v]++
				n++
			}
		}
		return out, n
	}
	for job, want := range map[string]struct{ up, scraped string }{
		"healthy": {"1", "21"}, "garbage": {"0", "0"}, "huge": {"0", "0"}, "many": {"0", "500"},
	} {
		ups, n := values(fmt.Sprintf(`up{job=%q}`, job))
		if len(ups) != 1 || ups[want.up] != n {
			t.Errorf("job %s: up values %v over %d scrapes, want all %s", job, ups, n, want.up)
		}
		sc, _ := values(fmt.Sprintf(`scrape_samples_scraped{job=%q}`, job))
		if len(sc) != 1 || sc[want.scraped] == 0 {
			t.Errorf("job %s: scrape_samples_scraped values %v, want all %s", job, sc, want.scraped)
		}
		t.Logf("job %s: %d scrapes, up %v, scrape_samples_scraped %v", job, n, ups, sc)
	}
	leaked, err := down.series(`{job=~"garbage|huge|many",__name__!~"up|scrape_.+"}`, begin, end)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaked) > 0 {
		t.Errorf("%d series of failed scrapes reached the downstream, e.g. %v", len(leaked), first(sortedKeys(leaked), 3))
	}

	for name, least := range map[string]float64{
		"prometheus_target_scrapes_exceeded_sample_limit_total":    10,
		"prometheus_target_scrapes_exceeded_body_size_limit_total": 10,
	} {
		if v := f.metric(name); v < least {
			t.Errorf("ferry's %s = %v, want at least %v", name, v, least)
		}
	}
	if v := f.metric("ferry_scrape_commits_total", `result="error"`); v != 0 {
		t.Errorf("ferry_scrape_commits_total{result=\"error\"} = %v: failed scrapes are not WAL errors", v)
	}
	resp, err := http.Get("http://" + f.addr + "/-/healthy")
	if err != nil {
		t.Fatalf("/-/healthy: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/-/healthy: %d", resp.StatusCode)
	}
	if log := f.logText(); strings.Contains(strings.ToLower(log), "panic") || strings.Contains(log, "goroutine ") {
		t.Errorf("ferry's log shows a panic:\n%s", log)
	}
	t.Logf("healthy target: all %d scrapes arrived with up = 1", upto)
	f.stop()
}

// Ferry scrapes a target while a client pushes remote write (1.0, and one
// 2.0 request) at it: both arrive downstream (a real Prometheus), every
// scrape and every acknowledged pushed sample, and global.external_labels
// is on every series of both, except a pushed series that carries the
// label itself (as in Prometheus, an external label does not override).
func TestScrapeAndPushTogether(t *testing.T) {
	requireIntegration(t)
	t.Parallel()
	tgt := newSeqTarget(t, 10)
	down := startProm(t, "downstream", promReceiver, "")
	begin := time.Now()
	f := scrapeFerry(t, "", fmt.Sprintf(`global:
  scrape_interval: 500ms
  scrape_timeout: 500ms
  external_labels: {site: edge1}
scrape_configs:
  - job_name: scraped
    static_configs: [{targets: [%q]}]
`, tgt.addr()), "down="+down.writeURL())

	p := newPusher(f.addr, 20)
	ctx, cancel := context.WithCancel(context.Background())
	done := pushEvery(ctx, p, 200*time.Millisecond, 20)
	b := newRW2Builder()
	own := b.series(rw2Meta{typ: writev2.Metadata_METRIC_TYPE_GAUGE, help: "Pushed with its own site."},
		"__name__", "pushed_own_site", "job", "e2e", "site", "own")
	own.Samples = append(own.Samples, writev2.Sample{Value: 1, Timestamp: time.Now().UnixMilli()})
	if code, _ := postRW2(&http.Client{Timeout: 10 * time.Second}, f.addr, b.body()); code/100 != 2 {
		t.Fatalf("2.0 push: status %d", code)
	}
	fetch := func() (seqSet, error) {
		return promSeqs(down, `seq{job="scraped",site="edge1"}`, time.Now(), time.Since(begin)+time.Minute)
	}
	waitUntil(t, time.Minute, func() bool { s, err := fetch(); return err == nil && len(s) >= 10 })
	cancel()
	<-done
	upto := tgt.count()
	waitSeqs(t, "scraped", upto, nil, 30*time.Second, fetch)
	acked, n := p.snapshot()
	waitAcked(t, acked, 30*time.Second, down)

	all, err := down.series(`{__name__=~".+"}`, begin, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bySite := map[string]int{}
	byJob := map[string]int{}
	for k := range all {
		m := siteRE.FindStringSubmatch(k)
		site := "(none)"
		if m != nil {
			site = m[1]
		}
		bySite[site]++
		if j := jobRE.FindStringSubmatch(k); j != nil {
			byJob[j[1]+" site="+site]++
		}
	}
	// scraped: seq, 10 fillers, up and 4 scrape_* series; e2e: 20 pushed
	// over 1.0 and one over 2.0 with site="own".
	want := map[string]int{"scraped site=edge1": 16, "e2e site=edge1": 20, "e2e site=own": 1}
	if fmt.Sprint(byJob) != fmt.Sprint(want) {
		t.Errorf("series by job and site: %v, want %v", byJob, want)
	}
	ownKey := labelKey(labels.FromStrings("__name__", "pushed_own_site", "job", "e2e", "site", "own").Map())
	if !all[ownKey] {
		t.Errorf("the pushed series with its own site label is missing: %v", first(sortedKeys(all), 40))
	}
	t.Logf("series by site %v; %d scrapes and %d pushed samples arrived", bySite, upto, n)
	f.stop()
}

var (
	siteRE = regexp.MustCompile(`\bsite="([^"]*)"`)
	jobRE  = regexp.MustCompile(`\bjob="([^"]*)"`)
)

// seqJob scrapes the target at addr as job "seq" every interval.
func seqJob(interval, addr string) string {
	return fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
scrape_configs:
  - job_name: seq
    static_configs: [{targets: [%q]}]
`, interval, interval, addr)
}
