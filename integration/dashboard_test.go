package integration

// The Grafana dashboard the packages ship: every query of every panel runs
// without error and returns data against a real Prometheus that scraped a
// Ferry under load.

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func TestDashboardQueries(t *testing.T) {
	requireIntegration(t)
	raw, err := os.ReadFile("../packaging/monitoring/ferry-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("ferry-dashboard.json: %v", err)
	}

	s := newSink(t, nil)
	f := newFerry(t, "", "central="+s.url())
	f.start()
	prom := startProm(t, "scraping ferry", promServer, `global:
  scrape_interval: 1s
scrape_configs:
  - job_name: ferry
    static_configs: [{targets: ["`+f.addr+`"]}]
`)
	ctx, cancel := context.WithCancel(context.Background())
	p := newPusher(f.addr, 500)
	done := p.run(ctx, time.Now().UnixMilli(), 250)
	defer func() { cancel(); <-done }()

	// Rates over 1m need two scrapes; histograms need requests in them.
	ok := waitFor(60*time.Second, func() bool {
		v, err := prom.vector(`rate(ferry_sender_samples_sent_total[1m]) > 0`, time.Now())
		return err == nil && len(v) > 0
	})
	if !ok {
		t.Fatal("Prometheus never saw Ferry sending")
	}
	time.Sleep(3 * time.Second) // a few more scrapes for deriv and quantiles

	// The instance variable's query.
	vars, err := prom.series("ferry_wal_size_bytes", time.Now().Add(-time.Minute), time.Now())
	if err != nil || len(vars) != 1 {
		t.Errorf("label_values(ferry_wal_size_bytes, instance): %v, %v", vars, err)
	}
	n := 0
	for _, panel := range d.Panels {
		for _, target := range panel.Targets {
			q := strings.NewReplacer(`$instance`, ".+", `$__rate_interval`, "1m").Replace(target.Expr)
			res, err := prom.vector(q, time.Now())
			if err != nil {
				t.Errorf("panel %q: %s: %v", panel.Title, q, err)
				continue
			}
			if len(res) == 0 {
				t.Errorf("panel %q: %s: no data", panel.Title, q)
			}
			n++
		}
	}
	if n < 20 {
		t.Errorf("only %d queries checked", n)
	}
}
