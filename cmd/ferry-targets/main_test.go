package main

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// exposition is a parsed body: each series' value and metric name, and
// each family's type and whether it had a HELP line.
type exposition struct {
	values map[string]float64
	names  map[string]string
	types  map[string]model.MetricType
	helps  map[string]bool
}

func parse(t *testing.T, body []byte, ct string) exposition {
	t.Helper()
	p, err := textparse.New(body, ct, nil, textparse.ParserOptions{})
	if err != nil {
		t.Fatalf("textparse.New(%q): %v", ct, err)
	}
	e := exposition{values: map[string]float64{}, names: map[string]string{}, types: map[string]model.MetricType{}, helps: map[string]bool{}}
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			return e
		}
		if err != nil {
			t.Fatalf("parse: %v\n%s", err, body)
		}
		switch entry {
		case textparse.EntryHelp:
			name, _ := p.Help()
			e.helps[string(name)] = true
		case textparse.EntryType:
			name, typ := p.Type()
			e.types[string(name)] = typ
		case textparse.EntrySeries:
			var l labels.Labels
			p.Labels(&l)
			_, ts, v := p.Series()
			if ts != nil {
				t.Errorf("%s has a timestamp", l)
			}
			if _, dup := e.values[l.String()]; dup {
				t.Errorf("duplicate series %s", l)
			}
			e.values[l.String()] = v
			e.names[l.String()] = l.Get(model.MetricNameLabel)
		}
	}
}

// family returns the family name of a series name.
func (e exposition) family(name string) string {
	if _, ok := e.types[name]; ok {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(name, suffix); ok && e.types[f] == model.MetricTypeHistogram {
			return f
		}
	}
	return ""
}

func TestTargetsServeExposition(t *testing.T) {
	const targets, series = 3, 20
	epoch := time.Unix(1_700_000_000, 0)
	fileSD := filepath.Join(t.TempDir(), "targets.json")
	sim, err := start(config{targets: targets, series: series, fileSD: fileSD, gzip: true},
		func() time.Time { return epoch.Add(90 * time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	b, err := os.ReadFile(fileSD)
	if err != nil {
		t.Fatal(err)
	}
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(b, &groups); err != nil {
		t.Fatalf("file_sd %s: %v", b, err)
	}
	if len(groups) != 1 || !slices.Equal(groups[0].Targets, sim.addrs()) || groups[0].Labels["sim"] != "1" {
		t.Fatalf("file_sd = %s, want the targets %v", b, sim.addrs())
	}

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	bodies := map[string]bool{}
	for _, addr := range sim.addrs() {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %v %v", addr, resp.Status, err)
		}
		if !resp.Uncompressed {
			t.Errorf("%s: body not gzipped", addr)
		}
		e := parse(t, body, resp.Header.Get("Content-Type"))
		if len(e.values) != series {
			t.Errorf("%s: %d series, want %d", addr, len(e.values), series)
		}
		for s, name := range e.names {
			f := e.family(name)
			if f == "" || !e.helps[f] {
				t.Errorf("%s: series %s lacks a TYPE or HELP line", addr, s)
			}
		}
		for _, typ := range []model.MetricType{model.MetricTypeCounter, model.MetricTypeGauge, model.MetricTypeHistogram} {
			if !slices.Contains(slices.Collect(maps.Values(e.types)), typ) {
				t.Errorf("%s: no %s family", addr, typ)
			}
		}
		bodies[string(body)] = true
	}
	if len(bodies) != targets {
		t.Errorf("%d distinct bodies among %d targets", len(bodies), targets)
	}
}

func TestCountersIncrease(t *testing.T) {
	epoch := time.Unix(1_700_000_000, 0)
	sim, err := start(config{targets: 2, series: 20}, func() time.Time { return epoch })
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	for target := range 2 {
		before := parse(t, sim.render(nil, target, epoch.Add(time.Minute)), contentType)
		after := parse(t, sim.render(nil, target, epoch.Add(2*time.Minute)), contentType)
		increased := 0
		for s, v := range before.values {
			if before.types[before.family(before.names[s])] == model.MetricTypeGauge {
				continue
			}
			switch w := after.values[s]; {
			case w < v:
				t.Errorf("target %d: %s went from %g to %g", target, s, v, w)
			case w > v:
				increased++
			}
		}
		first := `{__name__="sim_requests_total", code="200", handler="/api/v1/resource0", method="GET"}`
		if after.values[first] <= before.values[first] {
			t.Errorf("target %d: %s did not increase: %g then %g", target, first, before.values[first], after.values[first])
		}
		if increased == 0 {
			t.Errorf("target %d: no counter increased", target)
		}
	}
}

func TestLayoutSize(t *testing.T) {
	for _, n := range []int{minSeries, 11, 20, 57, 200, 1000} {
		body := appendBody(nil, newLayout(n), 0, 100)
		if got := len(parse(t, body, contentType).values); got != n {
			t.Errorf("newLayout(%d): %d series", n, got)
		}
	}
}

func TestRenderCached(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	sim, err := start(config{targets: 1, series: 50, gzip: true}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	tg := sim.targets[0]
	a, gz := tg.cached(false), tg.cached(true)
	if b := tg.cached(false); &a[0] != &b[0] {
		t.Error("body rendered twice within one second")
	}
	if b := tg.cached(true); &gz[0] != &b[0] {
		t.Error("body gzipped twice within one second")
	}
	now = now.Add(time.Second)
	if b := tg.cached(false); &a[0] == &b[0] {
		t.Error("body not rendered again a second later")
	}
}

// BenchmarkRender and BenchmarkCompress measure the work of one scrape that
// misses the cache, at the default 200 series.
func BenchmarkRender(b *testing.B) {
	lines := newLayout(200)
	var buf []byte
	for i := 0; b.Loop(); i++ {
		buf = appendBody(buf[:0], lines, i%1000, float64(i))
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkCompress(b *testing.B) {
	sim := newSimulator(config{series: 200, gzip: true}, time.Now)
	body := sim.render(nil, 3, time.Now().Add(time.Hour))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		sim.compress(body)
	}
}
