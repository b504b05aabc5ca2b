package downsample

import (
	"context"
	"errors"
	"fmt"
	ferrymodel "github.com/ferrymetrics/ferry/wal/model"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ferrymetrics/ferry/sender"
	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2.(*DB).maybeScheduleFlush"))
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)         {}
func (quietPebble) Errorf(string, ...any)        {}
func (quietPebble) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

type env struct {
	t     *testing.T
	dir   string
	w     *wal.WAL
	db    *pebble.DB
	clock atomic.Int64 // ms
	// walOpts, if set, changes the WAL's options.
	walOpts func(*wal.Options)
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir()}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	var err error
	opts := wal.DefaultOptions()
	opts.Sync = wal.SyncInterval
	if e.walOpts != nil {
		e.walOpts(&opts)
	}
	if e.w, err = wal.Open(filepath.Join(e.dir, "wal"), opts, zap.NewNop(), nil, time.Now); err != nil {
		e.t.Fatal(err)
	}
	if e.db, err = pebble.Open(filepath.Join(e.dir, "state"), &pebble.Options{Logger: quietPebble{}}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	if e.w != nil {
		e.w.Close()
		e.db.Close()
		e.w = nil
	}
}

func (e *env) now() time.Time { return time.UnixMilli(e.clock.Load()) }

func policy(res, ret time.Duration, all bool) StoragePolicy {
	p := StoragePolicy{Resolution: model.Duration(res), Retention: model.Duration(ret)}
	p.Downsample.All = &all
	return p
}

func (e *env) compactor(cfg Config, policies ...StoragePolicy) *Compactor {
	e.t.Helper()
	c, err := New(cfg, policies, e.db, e.w, Options{Now: e.now})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// point is one sample of one named series.
type point struct {
	name string
	id   int
	t    int64
	v    float64
}

func (e *env) append(pts []point) {
	e.t.Helper()
	for _, p := range pts {
		b := &ferrymodel.Batch{
			Series:  []ferrymodel.Series{{LabelsStart: 0, LabelsEnd: 2, SamplesStart: 0, SamplesEnd: 1}},
			Labels:  []ferrymodel.Label{{Name: []byte("__name__"), Value: []byte(p.name)}, {Name: []byte("id"), Value: []byte(fmt.Sprint(p.id))}},
			Samples: []ferrymodel.Sample{{Timestamp: p.t, Value: p.v}},
		}
		if err := e.w.Append(b); err != nil {
			e.t.Fatal(err)
		}
	}
}

// drain applies WAL records until the compactor has read everything, then
// commits.
func drain(t *testing.T, c *Compactor, records int) int {
	t.Helper()
	n := 0
	for records < 0 || n < records {
		if c.reader.Position() == c.log.Head() {
			break // caught up
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		e, err := c.reader.Next(ctx)
		cancel()
		if err != nil {
			break
		}
		c.mu.Lock()
		c.apply(e)
		c.mu.Unlock()
		n++
	}
	return n
}

type rollup struct {
	labels string
	t      int64
	v      float64
}

// rollups reads a resolution's log from the oldest retained entry.
func rollups(t *testing.T, c *Compactor, res time.Duration) []rollup {
	t.Helper()
	l := c.Log(res)
	src, _ := l.Open("test", l.Oldest(), nil)
	r := src.(*Reader)
	var out []rollup
	for {
		e, err := r.tryNext()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			return out
		}
		for i, s := range e.Samples {
			out = append(out, rollup{labels: e.SeriesLabels(i).String(), t: s.T, v: s.V})
		}
	}
}

// counterStream makes points for `series` counters over n steps of step ms
// with random increments and resets.
func counterStream(rng *rand.Rand, series, n int, step int64) []point {
	var pts []point
	vals := make([]float64, series)
	for i := range n {
		for s := range series {
			if rng.IntN(15) == 0 {
				vals[s] = float64(rng.IntN(3))
			} else {
				vals[s] += float64(rng.IntN(10))
			}
			pts = append(pts, point{name: "reqs_total", id: s, t: int64(i+1) * step, v: vals[s]})
		}
	}
	return pts
}

// Rollups of a compactor killed (its uncommitted work thrown away) again and
// again equal those of an uninterrupted run, sample for sample.
func TestCrashesDoNotChangeRollups(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	pts := counterStream(rng, 5, 400, 1000)
	for i := range 5 {
		for j := range 400 {
			pts = append(pts, point{name: "temp", id: i, t: int64(j+1) * 1000, v: float64(rng.IntN(100))})
		}
	}
	slices.SortStableFunc(pts, func(a, b point) int { return int(a.t - b.t) })
	cfg := Config{
		MappingRules: []MappingRule{{Name: "temp-max", Filter: `{__name__="temp"}`, Aggregations: []string{"max", "min"}, StoragePolicies: []string{"10s:1h"}}},
		RollupRules: []RollupRule{
			{Name: "reqs", Filter: `{__name__="reqs_total"}`, Aggregation: "sum", NewName: "reqs:sum", StoragePolicies: []string{"1m:24h"}},
			{Name: "temp", Filter: `{__name__="temp"}`, Aggregation: "avg", NewName: "temp:avg", StoragePolicies: []string{"10s:1h"}},
		},
	}
	pols := []StoragePolicy{policy(10*time.Second, time.Hour, true), policy(time.Minute, 24*time.Hour, true)}

	clean := newEnv(t)
	clean.append(pts)
	c := clean.compactor(cfg, pols...)
	drain(t, c, -1)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	want10, want60 := rollups(t, c, 10*time.Second), rollups(t, c, time.Minute)
	if len(want10) == 0 || len(want60) == 0 {
		t.Fatalf("no rollups: %d, %d", len(want10), len(want60))
	}

	crashy := newEnv(t)
	crashy.append(pts)
	for crash := 0; ; crash++ {
		c := crashy.compactor(cfg, pols...)
		n := drain(t, c, 1+rng.IntN(300))
		if n == 0 {
			if err := c.Stop(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d crashes", crash)
			break
		}
		if rng.IntN(2) == 0 {
			if err := c.Commit(); err != nil {
				t.Fatal(err)
			}
			drain(t, c, rng.IntN(50)) // uncommitted work, lost in the crash
		}
		c.reader.Close() // kill -9: nothing more is committed
	}
	c = crashy.compactor(cfg, pols...)
	got10, got60 := rollups(t, c, 10*time.Second), rollups(t, c, time.Minute)
	c.reader.Close()
	if !slices.Equal(got10, want10) || !slices.Equal(got60, want60) {
		t.Fatalf("rollups after crashes differ:\n10s: %d vs %d samples\n1m: %d vs %d samples", len(got10), len(want10), len(got60), len(want60))
	}
}

// increase() over the rollups equals increase() over the raw samples at
// window boundaries, whatever the resets.
func TestCounterRollupsMatchRawIncrease(t *testing.T) {
	e := newEnv(t)
	rng := rand.New(rand.NewPCG(9, 10))
	pts := counterStream(rng, 1, 1000, 700)
	e.append(pts)
	c := e.compactor(Config{}, policy(5*time.Second, time.Hour, true))
	drain(t, c, -1)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	got := rollups(t, c, 5*time.Second)
	ts := make([]int64, len(pts))
	vs := make([]float64, len(pts))
	for i, p := range pts {
		ts[i], vs[i] = p.t, p.v
	}
	for i := 1; i < len(got); i++ {
		if d, raw := got[i].v-got[0].v, rawIncrease(ts, vs, got[0].t, got[i].t); d != raw {
			t.Fatalf("increase to window %d: rollup %v, raw %v", i, d, raw)
		}
		if got[i].labels != `{__name__="reqs_total", id="0"}` {
			t.Fatalf("rollup labels %s", got[i].labels)
		}
	}
}

// A series that stops is closed by the clock after max_delay; a sample
// for a closed window is dropped and counted; restarting mid-window keeps
// the window.
func TestClockCloseLateSamplesAndRestartMidWindow(t *testing.T) {
	e := newEnv(t)
	cfg := Config{MaxDelay: model.Duration(30 * time.Second)}
	pol := policy(time.Minute, time.Hour, true)
	e.append([]point{{"g", 1, 10_000, 1}, {"g", 1, 20_000, 5}})
	c := e.compactor(cfg, pol)
	drain(t, c, -1)
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	// Restart mid-window: the open window [0, 60s) survives.
	c = e.compactor(cfg, pol)
	e.append([]point{{"g", 1, 40_000, 3}})
	drain(t, c, -1)
	e.clock.Store(60_000 + 29_999)
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := rollups(t, c, time.Minute); len(got) != 0 {
		t.Fatalf("window closed before max_delay: %v", got)
	}
	e.clock.Store(90_000)
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	got := rollups(t, c, time.Minute)
	if len(got) != 1 || got[0].t != 40_000 || got[0].v != 3 {
		t.Fatalf("after the clock passed: %v, want the last value 3 at 40s", got)
	}
	e.append([]point{{"g", 1, 50_000, 9}})
	drain(t, c, -1)
	if n := testutil.ToFloat64(c.m.late); n != 1 {
		t.Fatalf("late samples counted: %v, want 1", n)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
}

// Aggregations asked for by a mapping rule become series named
// <metric>:<aggregation>; downsample.all: false takes only what rules route.
func TestMappingRulesAndSelectivePolicy(t *testing.T) {
	e := newEnv(t)
	cfg := Config{MappingRules: []MappingRule{{Name: "load", Filter: `{__name__=~"node_load.*"}`,
		Aggregations: []string{"max", "avg"}, StoragePolicies: []string{"1m:24h"}}}}
	e.append([]point{{"node_load1", 0, 1000, 2}, {"node_load1", 0, 2000, 4}, {"other", 0, 1000, 7}, {"node_load1", 0, 61_000, 1}, {"other", 0, 61_000, 7}})
	c := e.compactor(cfg, policy(time.Minute, 24*time.Hour, false))
	drain(t, c, -1)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	got := rollups(t, c, time.Minute)
	want := []rollup{{`{__name__="node_load1:max", id="0"}`, 2000, 4}, {`{__name__="node_load1:avg", id="0"}`, 2000, 3}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// Retention deletes old rollups; a reader that starts at the oldest entry
// (a new endpoint with start_from: oldest) gets everything retained.
func TestRetentionAndBackfill(t *testing.T) {
	e := newEnv(t)
	pol := policy(10*time.Second, 100*time.Second, true)
	var pts []point
	for i := range 60 {
		pts = append(pts, point{"g", 0, int64(i) * 5000, float64(i)})
	}
	e.append(pts)
	c := e.compactor(Config{CommitInterval: model.Duration(time.Hour), MaxDelay: model.Duration(time.Hour)}, pol)
	// Commit every 10 records so the log has many entries.
	for drain(t, c, 10) > 0 {
		if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	all := rollups(t, c, 10*time.Second)
	e.clock.Store(250_000 + 100_000) // entries whose newest sample is before 250s expire
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	kept := rollups(t, c, 10*time.Second)
	if len(kept) == 0 || len(kept) >= len(all) {
		t.Fatalf("retention kept %d of %d", len(kept), len(all))
	}
	for _, r := range all[:len(all)-len(kept)] {
		if r.t >= 250_000 {
			t.Fatalf("sample at %d deleted within its retention", r.t)
		}
	}
	if !slices.Equal(kept, all[len(all)-len(kept):]) {
		t.Fatal("retention did not keep the newest rollups intact")
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidation(t *testing.T) {
	pols := []StoragePolicy{policy(5*time.Minute, 1440*time.Hour, true)}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad matcher", Config{MappingRules: []MappingRule{{Name: "x", Filter: `{job=~"(" }`, StoragePolicies: []string{"5m:1440h"}}}}, "filter"},
		{"unknown aggregation", Config{MappingRules: []MappingRule{{Name: "x", Filter: `{job="a"}`, Aggregations: []string{"p99"}, StoragePolicies: []string{"5m:1440h"}}}}, "unknown aggregation"},
		{"policy no endpoint uses", Config{MappingRules: []MappingRule{{Name: "x", Filter: `{job="a"}`, StoragePolicies: []string{"1h:8760h"}}}}, "used by no endpoint"},
		{"bad policy", Config{MappingRules: []MappingRule{{Name: "x", Filter: `{job="a"}`, StoragePolicies: []string{"5m"}}}}, "resolution:retention"},
		{"rollup by and without", Config{RollupRules: []RollupRule{{Name: "r", Filter: `{job="a"}`, By: []string{"a"}, Without: []string{"b"}, Aggregation: "sum", NewName: "x", StoragePolicies: []string{"5m:1440h"}}}}, "not both"},
		{"rollup bad aggregation", Config{RollupRules: []RollupRule{{Name: "r", Filter: `{job="a"}`, Aggregation: "last", NewName: "x", StoragePolicies: []string{"5m:1440h"}}}}, "takes sum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := tc.cfg.Validate(pols)
			if len(errs) == 0 || !containsAny(errs, tc.want) {
				t.Fatalf("errors %v, want one mentioning %q", errs, tc.want)
			}
		})
	}
	// The M3 coordinator's "historical" policy before any rule routes to it
	// is valid, with a warning that spells it as written.
	historical := []StoragePolicy{policy(time.Hour, 8760*time.Hour, false)}
	if errs := (&Config{}).Validate(historical); len(errs) > 0 {
		t.Fatalf("all: false without rules: %v", errs)
	}
	if ws := (&Config{}).Warnings(historical); len(ws) != 1 || !strings.Contains(ws[0], "1h:8760h") || !strings.Contains(ws[0], "no mapping or rollup rule") {
		t.Fatalf("warnings %q", ws)
	}
	routed := Config{MappingRules: []MappingRule{{Name: "x", Filter: `{job="a"}`, StoragePolicies: []string{"1h:8760h"}}}}
	if errs := routed.Validate(historical); len(errs) > 0 {
		t.Fatal(errs)
	}
	if ws := routed.Warnings(historical); len(ws) > 0 {
		t.Fatalf("warnings with a rule routing to the policy: %q", ws)
	}
}

func containsAny(errs []error, s string) bool {
	for _, e := range errs {
		if e != nil && strings.Contains(e.Error(), s) {
			return true
		}
	}
	return false
}

// A rollup rule's counter sum never goes backwards when members reset,
// vanish or appear, and adds up to the members' increases.
func TestRollupRuleCounterSumMonotonic(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for trial := range 20 {
		e := newEnv(t)
		cfg := Config{RollupRules: []RollupRule{{Name: "all", Filter: `{__name__="reqs_total"}`, Aggregation: "sum",
			NewName: "reqs:sum", StoragePolicies: []string{"10s:1h"}}}}
		var pts []point
		wantIncrease := 0.0
		for m := range 6 {
			from, to := rng.IntN(100), 100+rng.IntN(200) // members appear and vanish
			v, first := float64(rng.IntN(50)), true
			for i := from; i < to; i++ {
				prev := v
				if rng.IntN(12) == 0 {
					v = float64(rng.IntN(3))
				} else {
					v += float64(rng.IntN(9))
				}
				if !first {
					if v < prev {
						wantIncrease += v
					} else {
						wantIncrease += v - prev
					}
				}
				first = false
				pts = append(pts, point{"reqs_total", m, int64(i+1) * 1000, v})
			}
		}
		slices.SortStableFunc(pts, func(a, b point) int { return int(a.t - b.t) })
		// The first point of each member only sets its base.
		e.append(pts)
		c := e.compactor(cfg, policy(10*time.Second, time.Hour, false))
		drain(t, c, -1)
		e.clock.Store(int64(time.Hour / time.Millisecond)) // close everything
		if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
		got := rollups(t, c, 10*time.Second)
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			t.Fatalf("trial %d: no rollups", trial)
		}
		for i := 1; i < len(got); i++ {
			if got[i].v < got[i-1].v {
				t.Fatalf("trial %d: sum went backwards at %d: %v after %v", trial, got[i].t, got[i].v, got[i-1].v)
			}
			if got[i].labels != `{__name__="reqs:sum"}` {
				t.Fatalf("labels %s", got[i].labels)
			}
		}
		if last := got[len(got)-1].v; last != wantIncrease {
			t.Fatalf("trial %d: total %v, want the members' increases %v", trial, last, wantIncrease)
		}
		e.close()
	}
}

// Gauge groups aggregate the members' last values per window; by keeps the
// grouping labels.
func TestRollupRuleGaugeBy(t *testing.T) {
	e := newEnv(t)
	cfg := Config{RollupRules: []RollupRule{{Name: "mx", Filter: `{__name__="temp"}`, By: []string{"id"}, Aggregation: "max",
		NewName: "temp:max_by_id", StoragePolicies: []string{"10s:1h"}}}}
	// Members id=0 and id=1, two series each (distinguished by name only in
	// this helper, so use ids 0/1 twice with different values in turn).
	e.append([]point{{"temp", 0, 1000, 3}, {"temp", 1, 1000, 8}, {"temp", 0, 5000, 4}, {"temp", 1, 6000, 2}})
	c := e.compactor(cfg, policy(10*time.Second, time.Hour, false))
	drain(t, c, -1)
	e.clock.Store(int64(time.Hour / time.Millisecond))
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	got := rollups(t, c, 10*time.Second)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b rollup) int { return strings.Compare(a.labels, b.labels) })
	want := []rollup{{`{__name__="temp:max_by_id", id="0"}`, 5000, 4}, {`{__name__="temp:max_by_id", id="1"}`, 6000, 2}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// Metadata decides a series' type when present; names decide otherwise.
func TestMetadataTypes(t *testing.T) {
	e := newEnv(t)
	if err := e.w.Append(&ferrymodel.Batch{Series: []ferrymodel.Series{}, Metadata: []ferrymodel.Metadata{
		{Type: ferrymodel.MetricType(typeGauge), Family: []byte("queue_total")}, {Type: ferrymodel.MetricType(typeCounter), Family: []byte("requests")},
		{Type: ferrymodel.MetricType(typeHistogram), Family: []byte("latency")},
		// Remote-Write 2.0 metadata names each series, not its family.
		{Type: ferrymodel.MetricType(typeHistogram), Family: []byte("rpc_bucket")},
		{Type: ferrymodel.MetricType(typeSummary), Family: []byte("gc_pause")},
	}}); err != nil {
		t.Fatal(err)
	}
	// Series must come with a batch that has them; the types record above
	// was written by an append without series, as metadata-only requests do.
	e.append([]point{
		{"queue_total", 0, 1000, 5}, {"requests", 0, 1000, 5}, {"latency_count", 0, 1000, 5}, {"plain_total", 0, 1000, 5},
		{"queue_total", 0, 2000, 2}, {"requests", 0, 2000, 2}, {"latency_count", 0, 2000, 2}, {"plain_total", 0, 2000, 2},
		{"queue_total", 0, 11000, 1}, {"requests", 0, 11000, 1}, {"latency_count", 0, 11000, 1}, {"plain_total", 0, 11000, 1},
		{"rpc_bucket", 0, 1000, 5}, {"rpc_bucket", 0, 2000, 2}, {"rpc_bucket", 0, 11000, 1},
		{"gc_pause", 0, 1000, 5}, {"gc_pause", 0, 2000, 2}, {"gc_pause", 0, 11000, 1},
	})
	c := e.compactor(Config{}, policy(10*time.Second, time.Hour, true))
	drain(t, c, -1)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, r := range rollups(t, c, 10*time.Second) {
		got[r.labels] = r.v
	}
	// The first window holds 5 then 2: a counter reset (5 + 2 = 7), or a
	// gauge's last value (2).
	want := map[string]float64{
		`{__name__="queue_total", id="0"}`:   2, // gauge by metadata despite its name
		`{__name__="requests", id="0"}`:      7, // counter by metadata
		`{__name__="latency_count", id="0"}`: 7, // a histogram's _count is a counter
		`{__name__="plain_total", id="0"}`:   7, // counter by name
		`{__name__="rpc_bucket", id="0"}`:    7, // a histogram's bucket series, typed per series
		`{__name__="gc_pause", id="0"}`:      2, // a summary's quantile series is not a counter
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %v, want %v", k, got[k], w)
		}
	}
}

// When the disk cap drops segments the compactor has aggregated but not
// committed, it commits first: a crash right after the drop loses none of
// its rollups, although the restart cannot read those segments again.
func TestDiskCapDropCommitsFirst(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pts := counterStream(rng, 5, 300, 1000)
	pol := policy(10*time.Second, time.Hour, true)

	clean := newEnv(t)
	clean.append(pts)
	c := clean.compactor(Config{}, pol)
	drain(t, c, -1)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	want := rollups(t, c, 10*time.Second)
	if len(want) == 0 {
		t.Fatal("no rollups")
	}

	e := &env{t: t, dir: t.TempDir(), walOpts: func(o *wal.Options) {
		o.SegmentSize = 32 << 10
		o.MaxSize = 128 << 10
		o.MaintenanceInterval = time.Millisecond
	}}
	e.open()
	t.Cleanup(e.close)
	e.append(pts)
	c = e.compactor(Config{}, pol)
	drain(t, c, -1) // aggregated, not committed
	e.w.Start()
	// Other data fills the WAL past its cap: the segments holding pts go.
	filler := &ferrymodel.Batch{}
	for i := range 100 {
		filler.Series = append(filler.Series, ferrymodel.Series{LabelsStart: int32(2 * i), LabelsEnd: int32(2*i + 2), SamplesStart: int32(i), SamplesEnd: int32(i + 1)})
		filler.Labels = append(filler.Labels, ferrymodel.Label{Name: []byte("__name__"), Value: []byte("filler")}, ferrymodel.Label{Name: []byte("id"), Value: []byte(fmt.Sprint(i))})
		filler.Samples = append(filler.Samples, ferrymodel.Sample{})
	}
	deadline := time.Now().Add(20 * time.Second)
	for ts := int64(1); e.w.Oldest().Segment == 0; ts++ {
		for i := range filler.Samples {
			filler.Samples[i] = ferrymodel.Sample{Timestamp: 1_000_000 + ts, Value: float64(ts)}
		}
		if err := e.w.Append(filler); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the disk cap dropped nothing in 20s")
		}
	}
	c.reader.Close() // kill -9 right after the drop

	c = e.compactor(Config{}, pol)
	drain(t, c, -1)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	var got []rollup
	for _, r := range rollups(t, c, 10*time.Second) {
		if strings.Contains(r.labels, "reqs_total") {
			got = append(got, r)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("rollups of the dropped segments after a crash: %d samples, want %d", len(got), len(want))
	}
}

// Rollup series carry their raw family's metadata: a counter stays a
// counter under its own name, another aggregation is a gauge, and help
// says which rollup it is.
func TestRollupMetadata(t *testing.T) {
	e := newEnv(t)
	if err := e.w.Append(&ferrymodel.Batch{Metadata: []ferrymodel.Metadata{
		{Type: ferrymodel.TypeCounter, Family: []byte("requests"), Help: []byte("Requests served."), Unit: []byte("requests")},
	}}); err != nil {
		t.Fatal(err)
	}
	c := e.compactor(Config{}, policy(10*time.Second, time.Hour, true))
	defer c.Stop()
	l := c.Log(10 * time.Second)
	m, ok := l.Metadata("requests")
	if !ok || m.Type != ferrymodel.TypeCounter || m.Unit != "requests" || m.Help != "Requests served. Ferry rollup (default per 10s window)." {
		t.Fatalf("requests: %+v %v", m, ok)
	}
	m, ok = l.Metadata("requests:max")
	if !ok || m.Type != ferrymodel.TypeGauge || m.Family != "requests:max" || m.Help != "Requests served. Ferry rollup (max per 10s window)." {
		t.Fatalf("requests:max: %+v %v", m, ok)
	}
	if m, ok := l.Metadata("unknown:max"); ok {
		t.Fatalf("unknown family: %+v", m)
	}
}

// rolledUpGauge compacts 40 samples of a gauge, 5 s apart, into the 10s
// rollup log, committing every 8 records.
func rolledUpGauge(t *testing.T) (*env, *Compactor, *RollupLog) {
	e := newEnv(t)
	var pts []point
	for i := range 40 {
		pts = append(pts, point{"g", 0, int64(i) * 5000, float64(i)})
	}
	e.append(pts)
	c := e.compactor(Config{CommitInterval: model.Duration(time.Hour), MaxDelay: model.Duration(time.Hour)}, policy(10*time.Second, time.Hour, true))
	for drain(t, c, 8) > 0 {
		if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	l := c.Log(10 * time.Second)
	return e, c, l
}

// A rollup log is a sender.Log: cursors name entries, lag counts them, a
// checkpoint stores zero and the next entry's sequence number, and a closed
// log tells its readers so.
func TestRollupLogAsSenderLog(t *testing.T) {
	e, c, l := rolledUpGauge(t)
	first, next := cursorSeq(l.Oldest()), cursorSeq(l.Head())
	if n := l.Lag(l.Oldest()); n != int64(next-first) || n < 4 || l.Lag(l.Head()) != 0 || l.LagUnit() != sender.LagEntries {
		t.Fatalf("lag %d from the oldest of entries %d..%d, %d from the head", n, first, next, l.Lag(l.Head()))
	}

	// A checkpoint stored as version 1, segment 0, offset = seq resumes at
	// that entry.
	cps := sender.PebbleCheckpoints{DB: e.db}
	stored := append([]byte{1}, u64(u64(nil, 0), first+2)...)
	if err := e.db.Set([]byte("sender/checkpoint/r"), stored, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	at, ok, err := cps.Load("r")
	if err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	src, err := l.Open("r", at, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := first + 3
	for src.Cursor() != l.Head() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		en, err := src.Next(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got := cursorSeq(en.End); got != want || en.End != src.Cursor() || len(en.Data.Samples) == 0 {
			t.Fatalf("entry ends at %d (reader at %d), want %d", got, cursorSeq(src.Cursor()), want)
		}
		want++
	}
	if got := l.Describe(src.Cursor()); got != fmt.Sprintf("next entry %d", next) {
		t.Fatalf("described as %q", got)
	}
	if err := cps.Save("r", src.Cursor()); err != nil {
		t.Fatal(err)
	}
	v, closer, err := e.db.Get([]byte("sender/checkpoint/r"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(v, append([]byte{1}, u64(u64(nil, 0), next)...)) {
		t.Fatalf("stored %x", v)
	}
	closer.Close()

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Next(context.Background()); !errors.Is(err, sender.ErrSourceClosed) {
		t.Fatalf("Next on a closed log: %v, want sender.ErrSourceClosed", err)
	}
}

// TestCommitSplitsLogEntries checks that a commit closing more windows than
// an entry holds writes several entries, and that readers get every sample.
func TestCommitSplitsLogEntries(t *testing.T) {
	e := newEnv(t)
	const series = 2*maxEntrySamples + 7
	for _, ts := range []int64{1000, 11000} { // the second closes every series' first window
		b := &ferrymodel.Batch{}
		for i := range series {
			n, j := int32(len(b.Labels)), int32(i)
			b.Labels = append(b.Labels, ferrymodel.Label{Name: []byte("__name__"), Value: []byte("g")}, ferrymodel.Label{Name: []byte("id"), Value: []byte(fmt.Sprint(i))})
			b.Series = append(b.Series, ferrymodel.Series{LabelsStart: n, LabelsEnd: n + 2, SamplesStart: j, SamplesEnd: j + 1})
			b.Samples = append(b.Samples, ferrymodel.Sample{Timestamp: ts, Value: float64(i)})
		}
		if err := e.w.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	c := e.compactor(Config{CommitInterval: model.Duration(time.Hour), MaxDelay: model.Duration(time.Hour)}, policy(10*time.Second, time.Hour, true))
	drain(t, c, -1)
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	l := c.Log(10 * time.Second)
	if n := l.Lag(l.Oldest()); n != 3 {
		t.Fatalf("%d entries, want 3 for %d samples", n, series)
	}
	got := rollups(t, c, 10*time.Second)
	if len(got) != series {
		t.Fatalf("read %d rollup samples, want %d", len(got), series)
	}
	seen := map[string]bool{}
	for _, r := range got {
		if r.t != 1000 || seen[r.labels] {
			t.Fatalf("rollup %+v (seen before: %v)", r, seen[r.labels])
		}
		seen[r.labels] = true
	}
	// Every series has its second sample's window open.
	st := c.Status()
	if st.Series != series || st.OpenWindows != series || st.LagBytes != 0 || len(st.Logs) != 1 ||
		st.Logs[0].Resolution != "10s" || st.Logs[0].Entries != 3 || st.Logs[0].Series != series || st.Logs[0].Newest.UnixMilli() != 1000 {
		t.Errorf("status %+v", st)
	}
}

// Rollups that pass their retention before an endpoint reads them are
// counted as lost, with reason "retention", once per reader, and the
// reader goes on from the oldest retained entry.
func TestExpiredRollupsAreCountedAsLost(t *testing.T) {
	_, _, l := rolledUpGauge(t)
	total := 0
	all, err := l.Open("all", l.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for all.Cursor() != l.Head() {
		en, err := all.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total += len(en.Data.Samples)
	}
	all.Close()

	// One reader read two entries, the other none.
	type drop struct {
		lost     wal.Lost
		from, to uint64
	}
	var drops []drop
	onDrop := func(lost wal.Lost, from, to sender.Cursor) {
		drops = append(drops, drop{lost, cursorSeq(from), cursorSeq(to)})
	}
	idle, _ := l.Open("idle", l.Oldest(), onDrop)
	busy, _ := l.Open("busy", l.Oldest(), onDrop)
	read := 0
	for range 2 {
		en, err := busy.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		read += len(en.Data.Samples)
	}
	n, _, err := l.applyRetention(math.MaxInt64 / 2)
	if err != nil || n == 0 {
		t.Fatalf("retention deleted %d entries: %v", n, err)
	}
	slices.SortFunc(drops, func(a, b drop) int { return int(a.from) - int(b.from) })
	if len(drops) != 2 || drops[0].lost.Samples != total || drops[1].lost.Samples != total-read ||
		drops[0].lost.Reason != "retention" || drops[1].to != cursorSeq(l.Oldest()) {
		t.Fatalf("drops %+v, want %d samples lost by the idle reader and %d by the busy one, reason retention, up to %d",
			drops, total, total-read, cursorSeq(l.Oldest()))
	}
	if _, _, err := l.applyRetention(math.MaxInt64 / 2); err != nil || len(drops) != 2 {
		t.Fatalf("a second retention pass told readers again: %+v (%v)", drops, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if en, err := idle.Next(ctx); err == nil {
		t.Fatalf("an expired entry was read after the drop: %+v", en)
	}
}

// Rollup series that no retained entry uses any more are freed, in memory
// and in the state database; a series that comes back is interned again
// under a new id, and readers resolve its labels.
func TestRollupSeriesFreedAfterRetention(t *testing.T) {
	e, c, l := rolledUpGauge(t)
	l.mu.RLock()
	interned := len(l.wire)
	oldMax := l.nextID - 1
	l.mu.RUnlock()
	if interned == 0 {
		t.Fatal("no rollup series interned")
	}
	n, freed, err := l.applyRetention(math.MaxInt64 / 2)
	if err != nil || n == 0 || freed != interned {
		t.Fatalf("retention deleted %d entries and freed %d of %d series: %v", n, freed, interned, err)
	}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: seriesKey(l.res, 0), UpperBound: seriesKey(l.res, math.MaxUint64)})
	if err != nil {
		t.Fatal(err)
	}
	if it.First() {
		t.Errorf("rollup series %x still in the state database after being freed", it.Key())
	}
	it.Close()

	// The gauge goes on: its rollup series come back under new ids.
	var pts []point
	for i := 40; i < 80; i++ {
		pts = append(pts, point{"g", 0, int64(i) * 5000, float64(i)})
	}
	e.append(pts)
	for drain(t, c, 8) > 0 {
		if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	src, err := l.Open("r", l.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	read := 0
	for src.Cursor() != l.Head() {
		en, err := src.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if en.Data.Unknown > 0 {
			t.Fatalf("%d rollup samples with unknown series after the series were freed", en.Data.Unknown)
		}
		for i, s := range en.Data.Samples {
			if uint64(s.Ref) <= oldMax || wal.LabelsOfWire(en.Data.Wire[i]).Get("__name__") == "" {
				t.Fatalf("rollup sample of series %d (freed ids end at %d), labels %q", s.Ref, oldMax, en.Data.Wire[i])
			}
		}
		read += len(en.Data.Samples)
	}
	if read == 0 {
		t.Fatal("no rollups after the series came back")
	}
}

// A rollup series that stopped is dropped from memory once every reader
// read its entries and two windows passed; its labels stay on disk for
// readers that read the entries again, and go with retention.
func TestDepartedRollupSeriesReleasedAfterDelivery(t *testing.T) {
	e, c, l := rolledUpGauge(t)
	l.mu.RLock()
	var gone []uint64
	for id := range l.wire {
		gone = append(gone, id)
	}
	l.mu.RUnlock()
	if len(gone) == 0 {
		t.Fatal("no rollup series interned")
	}
	// An endpoint reads everything so far.
	r1, err := l.Open("r1", l.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	for r1.Cursor() != l.Head() {
		if _, err := r1.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Another series goes on long after g stopped.
	var pts []point
	for i := 100; i < 140; i++ {
		pts = append(pts, point{"h", 1, int64(i) * 5000, float64(i)})
	}
	e.append(pts)
	for drain(t, c, 8) > 0 {
		if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range gone {
		if l.has(id) {
			t.Fatalf("rollup series %d of the departed gauge still in memory", id)
		}
	}
	if n := testutil.ToFloat64(c.m.released.WithLabelValues((10 * time.Second).String())); n != float64(len(gone)) {
		t.Fatalf("released counter %v, want %d", n, len(gone))
	}
	// Their labels moved out of what start-up loads.
	for _, id := range gone {
		if _, closer, err := e.db.Get(seriesKey(l.res, id)); err == nil {
			closer.Close()
			t.Fatalf("released rollup series %d still under ds/series/", id)
		}
		if _, closer, err := e.db.Get(releasedSeriesKey(l.res, id)); err != nil {
			t.Fatalf("released rollup series %d not under ds/rseries/: %v", id, err)
		} else {
			closer.Close()
		}
	}

	// A new endpoint backfilling from the oldest entry gets every label.
	r2, err := l.Open("r2", l.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	names := map[string]int{}
	for r2.Cursor() != l.Head() {
		en, err := r2.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if en.Data.Unknown > 0 {
			t.Fatalf("%d rollup samples with unknown series after release", en.Data.Unknown)
		}
		for i := range en.Data.Samples {
			names[wal.LabelsOfWire(en.Data.Wire[i]).Get("__name__")]++
		}
	}
	if names["g"] == 0 || names["h"] == 0 {
		t.Fatalf("backfill read rollups by name %v, want g and h", names)
	}

	// A restart does not load the released series.
	l2, err := openRollupLog(e.db, l.res, l.retention)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range gone {
		if _, ok := l2.wire[id]; ok {
			t.Fatalf("released rollup series %d loaded at start", id)
		}
	}
	if l2.nextID < l.nextID {
		t.Fatalf("after restart ids start at %d, below the %d in use", l2.nextID, l.nextID)
	}

	// Retention frees them on disk.
	if _, freed, err := l.applyRetention(math.MaxInt64 / 2); err != nil || freed < len(gone) {
		t.Fatalf("retention freed %d series, want at least %d: %v", freed, len(gone), err)
	}
	for _, id := range gone {
		if _, closer, err := e.db.Get(releasedSeriesKey(l.res, id)); err == nil {
			closer.Close()
			t.Fatalf("released rollup series %d still in the state database after retention", id)
		}
	}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: releasedKey(l.res, 0, 0), UpperBound: releasedKey(l.res, math.MaxUint64, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if it.First() {
		t.Errorf("release marker %x left after retention", it.Key())
	}
	it.Close()
}

// A series that stopped keeps its window state until its windows closed and
// two windows plus max_delay passed without a sample, and then leaves
// memory and the state database; one that goes on keeps its state.
func TestDepartedSeriesStateDropped(t *testing.T) {
	e := newEnv(t)
	e.clock.Store(10_000)
	var pts []point
	for i := range 10 {
		pts = append(pts, point{"gone", 0, int64(i) * 1000, float64(i)}, point{"stays", 1, int64(i) * 1000, float64(i)})
	}
	e.append(pts)
	c := e.compactor(Config{CommitInterval: model.Duration(time.Hour), MaxDelay: model.Duration(time.Second)}, policy(10*time.Second, time.Hour, true))
	commit := func() {
		t.Helper()
		for drain(t, c, 8) > 0 {
			if err := c.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	commit()
	if n := c.series.len(); n != 2 {
		t.Fatalf("%d series with state, want 2", n)
	}
	// 15 s on (less than two windows plus max_delay): both kept, though
	// the stopped series' windows closed.
	e.clock.Store(25_000)
	e.append([]point{{"stays", 1, 25_000, 25}})
	commit()
	if n := c.series.len(); n != 2 {
		t.Fatalf("within two windows: %d series with state, want 2", n)
	}
	// 30 s on: the stopped series goes, with its keys.
	e.clock.Store(40_000)
	e.append([]point{{"stays", 1, 40_000, 40}})
	commit()
	if n := c.series.len(); n != 1 {
		t.Fatalf("after two windows: %d series with state, want 1", n)
	}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: prefixState, UpperBound: append(slices.Clone(prefixState), 0xff)})
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for it.First(); it.Valid(); it.Next() {
		keys++
	}
	it.Close()
	if keys != 1 {
		t.Fatalf("%d window states in the state database, want 1", keys)
	}
}
