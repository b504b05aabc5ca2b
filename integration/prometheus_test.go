package integration

// Ferry between real Prometheus servers: a Prometheus (server or agent mode)
// scraping itself and a node exporter remote-writes to Ferry, which forwards
// to two Prometheus servers with the remote-write receiver enabled. What the
// downstreams hold is compared, sample by sample, with what reached Ferry.

import (
	"fmt"
	"testing"
	"time"
)

// checkFerryClean asserts that ferry refused nothing and dropped nothing for
// the named endpoints.
func checkFerryClean(t *testing.T, f *ferry, endpoints ...string) {
	t.Helper()
	for _, ep := range endpoints {
		m := fmt.Sprintf(`endpoint="%s"`, ep)
		if v := f.metric("ferry_sender_samples_failed_total", m); v != 0 {
			t.Errorf("endpoint %s: ferry_sender_samples_failed_total = %v", ep, v)
		}
		if v := f.metric("ferry_sender_samples_dropped_total", m); v != 0 {
			t.Errorf("endpoint %s: ferry_sender_samples_dropped_total = %v", ep, v)
		}
	}
}

// countedMetrics are compared with count_over_time (which drops metric
// names, so it runs per metric).
var countedMetrics = []string{"up", "scrape_samples_scraped", "node_cpu_seconds_total", "node_memory_MemFree_bytes",
	"process_resident_memory_bytes", "prometheus_tsdb_head_series", "go_goroutines"}

// compareCounts checks count_over_time of some metrics and /api/v1/series
// of selector over the window against the reference, as a second view of
// the raw comparison.
func compareCounts(t *testing.T, ref *prom, selector string, end time.Time, rng time.Duration, downs ...*prom) {
	t.Helper()
	compared := 0
	for _, metric := range countedMetrics {
		q := fmt.Sprintf("count_over_time(%s%s[%dms])", metric, selector, rng.Milliseconds())
		want, err := ref.vector(q, end)
		if err != nil {
			t.Fatal(err)
		}
		compared += len(want)
		for _, d := range downs {
			got, err := d.vector(q, end)
			if err != nil {
				t.Fatal(err)
			}
			bad := 0
			for k, v := range want {
				if got[k] != v {
					if bad < 3 {
						t.Errorf("%s: %s%s = %v, reference %v", d.name, q, k, got[k], v)
					}
					bad++
				}
			}
			if bad > 0 || len(got) != len(want) {
				t.Errorf("%s: %s differs for %d of %d series (%d series returned)", d.name, q, bad, len(want), len(got))
			}
		}
	}
	if compared == 0 {
		t.Errorf("count_over_time compared nothing: none of %v in the reference", countedMetrics)
	}
	wantSeries, err := ref.series(selector, end.Add(-rng), end)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range downs {
		gotSeries, err := d.series(selector, end.Add(-rng), end)
		if err != nil {
			t.Fatal(err)
		}
		missing := 0
		for k := range wantSeries {
			if !gotSeries[k] {
				if missing == 0 {
					t.Errorf("%s: /api/v1/series lacks %s", d.name, k)
				}
				missing++
			}
		}
		if missing > 0 || len(gotSeries) != len(wantSeries) {
			t.Errorf("%s: /api/v1/series has %d series (%d missing), reference %d", d.name, len(gotSeries), missing, len(wantSeries))
		}
	}
}

// waitScrapes waits until the Prometheus at p (server mode) stored n scrapes
// of the node exporter.
func waitScrapes(t *testing.T, p *prom, n int, within time.Duration) {
	t.Helper()
	waitUntil(t, within, func() bool {
		v, err := p.vector(`count_over_time(up{job="node"}[10m])`, time.Now())
		if err != nil {
			return false
		}
		for _, c := range v {
			return c >= float64(n)
		}
		return false
	})
}

// A Prometheus server scraping itself and node-exporter every second
// remote-writes through Ferry to two Prometheus receivers, while the harness
// pusher adds synthetic series: both downstreams hold exactly the upstream's
// samples (every series, every timestamp, every value) and every sample
// Ferry acknowledged to the pusher.
func TestPrometheusServerThroughFerry(t *testing.T) { upstreamThroughFerry(t, promServer) }

// The same with the upstream in agent mode (--enable-feature=agent), which
// keeps no queryable TSDB: it also remote-writes directly to a third,
// reference Prometheus, and both downstreams behind Ferry must hold exactly
// what the reference holds.
func TestPrometheusAgentThroughFerry(t *testing.T) { upstreamThroughFerry(t, promAgent) }

func upstreamThroughFerry(t *testing.T, mode promMode) {
	requireIntegration(t)
	var ref *prom
	var extraRW []string
	if mode == promAgent {
		ref = startProm(t, "reference", promReceiver, "")
		extraRW = []string{ref.writeURL()}
	}
	a := startProm(t, "downstream-a", promReceiver, "")
	b := startProm(t, "downstream-b", promReceiver, "")
	f := newFerry(t, "", "a="+a.writeURL(), "b="+b.writeURL())
	f.start()
	l := startLoad(t, f, mode, extraRW, 50, 500*time.Millisecond, 50)
	if ref == nil {
		ref = l.up
	}

	// The reference receives the upstream's scrapes; wait for 30 of them.
	waitScrapes(t, ref, 30, 2*time.Minute)
	l.stopPushing()
	end := time.Now().Add(-2 * time.Second)
	rng := end.Sub(l.begin)

	want := waitSame(t, ref, scrapedSelector, end, rng, 2*time.Minute, a, b)
	if len(want) < 100 || want.count() < 100*25 {
		t.Fatalf("too little compared to be meaningful: %d series, %d samples", len(want), want.count())
	}
	compareCounts(t, ref, scrapedSelector, end, rng, a, b)
	acked, n := l.p.snapshot()
	waitAcked(t, acked, time.Minute, a, b)
	checkFerryClean(t, f, "a", "b")
	t.Logf("%s window %v: %d series, %d samples identical in %s and both downstreams; %d pushed samples acknowledged and delivered; ferry received %v samples",
		l.up.name, rng.Round(time.Second), len(want), want.count(), ref.name, n, f.metric("ferry_receiver_samples_total"))
	l.up.stop(30 * time.Second)
	f.stop()
}
