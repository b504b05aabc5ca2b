package sender

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	wm "github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// appendSeries appends one record per round ts in from..to holding a
// sample of each series, valued ts.
func (e *env) appendSeries(series []labels.Labels, from, to int64) {
	e.t.Helper()
	for ts := from; ts <= to; ts++ {
		b := &wm.Batch{}
		for _, ls := range series {
			s := wm.Series{LabelsStart: int32(len(b.Labels)), SamplesStart: int32(len(b.Samples))}
			ls.Range(func(l labels.Label) { b.Labels = append(b.Labels, wlabel(l.Name, l.Value)) })
			s.LabelsEnd = int32(len(b.Labels))
			b.Samples = append(b.Samples, wm.Sample{Timestamp: ts, Value: float64(ts)})
			s.SamplesEnd = int32(len(b.Samples))
			b.Series = append(b.Series, s)
		}
		if err := e.w.Append(b); err != nil {
			e.t.Fatal(err)
		}
	}
}

// tenantSeries returns n series m{id="<i>"}, with tenant="<tenantOf(i)>"
// where that is not empty.
func tenantSeries(n int, tenantOf func(i int) string) []labels.Labels {
	out := make([]labels.Labels, n)
	for i := range out {
		b := labels.NewBuilder(labels.FromStrings("__name__", "m", "id", fmt.Sprint(i)))
		if t := tenantOf(i); t != "" {
			b.Set("tenant", t)
		}
		out[i] = b.Labels()
	}
	return out
}

// Every series arrives under the tenant its label names (the default
// tenant, or no header, without the label), with the label dropped when
// the endpoint asks, complete and in order; each tenant's samples are
// counted; the checkpoint reaches the head.
func TestTenantSplit(t *testing.T) {
	const series, rounds = 24, 10
	labelOf := func(i int) string {
		if i%4 == 0 {
			return "" // no tenant label
		}
		return fmt.Sprintf("t%d", i%3)
	}
	for _, p := range []Protocol{RemoteWrite1, RemoteWrite2} {
		for _, tc := range []struct {
			name     string
			dflt     string
			drop     bool
			relabels bool
		}{
			{name: "drop label, default tenant", dflt: "anonymous", drop: true},
			{name: "keep label, no default", dflt: ""},
			{name: "with external labels", dflt: "anonymous", drop: true, relabels: true},
		} {
			t.Run(p.String()+"/"+tc.name, func(t *testing.T) {
				e := newEnv(t)
				defer e.close()
				r := newReceiver(t, func(int) int { return 0 })
				r.tenantHeader = "X-Scope-OrgID"
				s := e.sender("a", r.srv.URL, func(c *Config) {
					c.Protocol = p
					c.Queue.MinShards, c.Queue.MaxShards = 2, 2
					c.Tenant = &Tenant{Label: "tenant", Header: "X-Scope-OrgID", Default: tc.dflt, DropLabel: tc.drop}
					if tc.relabels {
						c.ExternalLabels = labels.FromStrings("site", "edge1")
					}
				})
				e.appendSeries(tenantSeries(series, labelOf), 1, rounds)
				r.waitTotal(series * rounds)
				waitFor(t, func() bool { return s.Checkpoint() == e.head() })
				stop(t, s)
				r.checkComplete(series, rounds)
				r.mu.Lock()
				defer r.mu.Unlock()
				perTenant := map[string]int{}
				for i := range series {
					id := fmt.Sprint(i)
					want := labelOf(i)
					if want == "" {
						want = tc.dflt
					}
					if got := r.tenants[id]; len(got) != 1 || got[want] != rounds {
						t.Errorf("series %s arrived under tenants %v, want %d samples under %q", id, got, rounds, want)
					}
					perTenant[want] += rounds
					wantLabel := labelOf(i)
					if tc.drop {
						wantLabel = ""
					}
					if got := r.lsets[id].Get("tenant"); got != wantLabel {
						t.Errorf("series %s arrived with tenant label %q, want %q", id, got, wantLabel)
					}
					if tc.relabels && r.lsets[id].Get("site") != "edge1" {
						t.Errorf("series %s arrived without its external label: %s", id, r.lsets[id])
					}
				}
				for name, n := range perTenant {
					if got := testutil.ToFloat64(e.m.tenantSent.WithLabelValues("a", name)); got != float64(n) {
						t.Errorf("ferry_sender_tenant_samples_sent_total{tenant=%q} = %v, want %d", name, got, n)
					}
				}
				if got := testutil.CollectAndCount(e.m.tenantSent); got != len(perTenant) {
					t.Errorf("%d tenant series, want %d", got, len(perTenant))
				}
				if got := testutil.ToFloat64(e.m.sent.WithLabelValues("a")); got != series*rounds {
					t.Errorf("sent %v, want %d", got, series*rounds)
				}
			})
		}
	}
}

// seriesOnShard returns n series m{id, tenant} of the tenant whose refs
// put them on shard k of shards. It creates series until it has them
// (those on other shards get no samples); next numbers the ids.
func (e *env) seriesOnShard(tenant string, k, shards, n int, next *int) []labels.Labels {
	e.t.Helper()
	var out []labels.Labels
	for len(out) < n {
		ls := labels.FromStrings("__name__", "m", "id", fmt.Sprint(*next), "tenant", tenant)
		*next++
		ref, err := e.w.Resolve(ls)
		if err != nil {
			e.t.Fatal(err)
		}
		if shardOf(uint64(ref), shards) == k {
			out = append(out, ls)
		}
	}
	return out
}

// A tenant whose requests fail with 503 holds up its own shard only: a
// tenant whose series are on the other shard gets every sample meanwhile.
// The endpoint stays failing (the other tenant's successes do not make it
// recover), the checkpoint waits for the failing tenant, and once it
// accepts it gets everything, each series in order.
func TestTenantFailureHoldsUpOnlyItsShard(t *testing.T) {
	const perTenant, rounds = 5, 20
	core, logs := observer.New(zap.InfoLevel)
	e := &env{t: t, dir: t.TempDir(), logger: zap.New(core)}
	e.open()
	defer e.close()
	var aDown atomic.Bool
	aDown.Store(true)
	r := newReceiver(t, func(int) int { return 0 })
	r.tenantHeader = "X-Scope-OrgID"
	r.tenantStatus = func(tenant string) int {
		if tenant == "a" && aDown.Load() {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	s := e.sender("a", r.srv.URL, func(c *Config) {
		c.Queue.MinShards, c.Queue.MaxShards = 2, 2
		c.Tenant = &Tenant{Label: "tenant", Header: "X-Scope-OrgID"}
	})
	next := 0
	a := e.seriesOnShard("a", 0, 2, perTenant, &next)
	b := e.seriesOnShard("b", 1, 2, perTenant, &next)
	start := e.head()
	// Each record holds both tenants' samples. Tenant a fails first...
	e.appendSeries(slices.Concat(a, b), 1, 1)
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.retried.WithLabelValues("a")) > 0 })
	// ...then b goes on receiving.
	e.appendSeries(slices.Concat(a, b), 2, rounds)
	r.waitTotal(perTenant * rounds) // all of b's
	r.mu.Lock()
	for _, ls := range a {
		if got := r.tenants[ls.Get("id")]; len(got) > 0 {
			t.Errorf("series %s of the failing tenant arrived: %v", ls, got)
		}
	}
	r.mu.Unlock()
	if st := s.Status(); st.State == StateHealthy || !strings.Contains(st.LastError, `tenant "a"`) {
		t.Errorf("status while tenant a fails: %s, last error %q; want not healthy, naming tenant a", st.State, st.LastError)
	}
	if n := logs.FilterMessage("Endpoint recovered").Len(); n > 0 {
		t.Errorf("endpoint logged it recovered %d times while tenant a was failing", n)
	}
	if c := s.Checkpoint(); start.Less(c) {
		t.Errorf("checkpoint moved to %v past records tenant a has not acknowledged", s.log.Describe(c))
	}
	aDown.Store(false)
	r.waitTotal(2 * perTenant * rounds)
	waitFor(t, func() bool { return s.Checkpoint() == e.head() && s.Status().State == StateHealthy })
	stop(t, s)
	r.checkComplete(2*perTenant, rounds)
	if n := logs.FilterMessage("Endpoint recovered").Len(); n != 1 {
		t.Errorf("endpoint logged it recovered %d times, want once", n)
	}
	for name, want := range map[string]float64{"a": perTenant * rounds, "b": perTenant * rounds} {
		if got := testutil.ToFloat64(e.m.tenantSent.WithLabelValues("a", name)); got != want {
			t.Errorf("tenant %s: %v samples counted, want %v", name, got, want)
		}
	}
}

// A 4xx for one tenant's request fails only that tenant's samples.
func TestTenantRefusedFailsOnlyThatTenant(t *testing.T) {
	const series, rounds = 10, 5
	for _, p := range []Protocol{RemoteWrite1, RemoteWrite2} {
		t.Run(p.String(), func(t *testing.T) {
			e := newEnv(t)
			defer e.close()
			r := newReceiver(t, func(int) int { return 0 })
			r.tenantHeader = "X-Scope-OrgID"
			r.tenantStatus = func(tenant string) int {
				if tenant == "bad" {
					return http.StatusForbidden
				}
				return 0
			}
			s := e.sender("a", r.srv.URL, func(c *Config) {
				c.Protocol = p
				c.Tenant = &Tenant{Label: "tenant", Header: "X-Scope-OrgID"}
			})
			e.appendSeries(tenantSeries(series, func(i int) string { return []string{"good", "bad"}[i%2] }), 1, rounds)
			waitFor(t, func() bool { return s.Checkpoint() == e.head() })
			stop(t, s)
			if got := testutil.ToFloat64(e.m.failed.WithLabelValues("a")); got != series/2*rounds {
				t.Errorf("%v samples failed, want %d", got, series/2*rounds)
			}
			if got := testutil.ToFloat64(e.m.tenantSent.WithLabelValues("a", "good")); got != series/2*rounds {
				t.Errorf("tenant good: %v samples sent, want %d", got, series/2*rounds)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.total != series/2*rounds {
				t.Errorf("%d samples arrived, want tenant good's %d", r.total, series/2*rounds)
			}
		})
	}
}

// A tenant label value that a header cannot carry drops its series,
// counted, instead of failing its requests forever.
func TestTenantThatCannotBeAHeaderIsDropped(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	r := newReceiver(t, func(int) int { return 0 })
	s := e.sender("a", r.srv.URL, func(c *Config) { c.Tenant = &Tenant{Label: "tenant", Header: "X-Scope-OrgID"} })
	e.appendSeries(tenantSeries(4, func(i int) string { return []string{"ok", "bad\nname"}[i%2] }), 1, 3)
	waitFor(t, func() bool { return s.Checkpoint() == e.head() })
	stop(t, s)
	if got := testutil.ToFloat64(e.m.dropped.WithLabelValues("a", "tenant")); got != 6 {
		t.Errorf("%v samples dropped for their tenant, want 6", got)
	}
	r.checkComplete(2, 3)
}

// ferry_sender_tenant_samples_sent_total names the first 100 tenants of an
// endpoint and counts the others together.
func TestTenantCounterCardinalityIsBounded(t *testing.T) {
	const tenants, rounds = maxTenantSeries + 3, 2
	e := newEnv(t)
	defer e.close()
	r := newReceiver(t, func(int) int { return 0 })
	s := e.sender("a", r.srv.URL, func(c *Config) { c.Tenant = &Tenant{Label: "tenant", Header: "X-Scope-OrgID"} })
	e.appendSeries(tenantSeries(tenants, func(i int) string { return fmt.Sprintf("t%03d", i) }), 1, rounds)
	r.waitTotal(tenants * rounds)
	waitFor(t, func() bool { return s.Checkpoint() == e.head() })
	stop(t, s)
	if got := testutil.CollectAndCount(e.m.tenantSent); got != maxTenantSeries+1 {
		t.Errorf("%d series of ferry_sender_tenant_samples_sent_total, want %d", got, maxTenantSeries+1)
	}
	for i := range maxTenantSeries {
		if got := testutil.ToFloat64(e.m.tenantSent.WithLabelValues("a", fmt.Sprintf("t%03d", i))); got != rounds {
			t.Errorf("tenant t%03d: %v, want %d", i, got, rounds)
		}
	}
	if got := testutil.ToFloat64(e.m.tenantSent.WithLabelValues("a", otherTenant)); got != 3*rounds {
		t.Errorf("%s: %v, want %d", otherTenant, got, 3*rounds)
	}
	// Removing the endpoint forgets its tenants' series.
	e.m.forget("a")
	if got := testutil.CollectAndCount(e.m.tenantSent); got != 0 {
		t.Errorf("%d tenant series left after the endpoint was removed", got)
	}
}

func TestSplitByTenant(t *testing.T) {
	tt := newTenantTable(NewMetrics(nil).tenantSent, "a")
	for _, name := range []string{"x", "y", "z"} {
		tt.intern(name)
	}
	sh := &shard{s: &Sender{tenants: tt}}
	mk := func(pairs ...[2]int) []item { // ref, tenant
		out := make([]item, len(pairs))
		for i, p := range pairs {
			out[i] = item{ref: uint64(p[0]), tenant: uint32(p[1]), t: int64(i)}
		}
		return out
	}
	type group struct {
		tenant string
		items  []item
	}
	for _, tc := range []struct {
		name string
		in   []item
		want []group
	}{
		{"one tenant", mk([2]int{1, 1}, [2]int{2, 1}, [2]int{1, 1}), []group{{"y", mk([2]int{1, 1}, [2]int{2, 1}, [2]int{1, 1})}}},
		{"three tenants", mk([2]int{1, 0}, [2]int{2, 1}, [2]int{1, 0}, [2]int{3, 0}, [2]int{2, 1}, [2]int{4, 2}),
			[]group{
				{"x", []item{{ref: 1, t: 0}, {ref: 1, t: 2}, {ref: 3, t: 3}}},
				{"y", []item{{ref: 2, tenant: 1, t: 1}, {ref: 2, tenant: 1, t: 4}}},
				{"z", []item{{ref: 4, tenant: 2, t: 5}}},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 2 { // buffers reused
				got := sh.splitByTenant(slices.Clone(tc.in))
				if len(got) != len(tc.want) {
					t.Fatalf("round %d: %d groups, want %d", round, len(got), len(tc.want))
				}
				for i, g := range got {
					if g.tenant.name != tc.want[i].tenant || !slices.EqualFunc(g.items, tc.want[i].items, func(a, b item) bool {
						return a.ref == b.ref && a.t == b.t && a.tenant == b.tenant
					}) {
						t.Errorf("round %d: group %d is %q %+v, want %+v", round, i, g.tenant.name, g.items, tc.want[i])
					}
				}
			}
		})
	}
}

// The tenant index fits in what would be an item's padding: queues of
// endpoints without tenants cost no more.
func TestItemSizeWithTenant(t *testing.T) {
	if got := unsafe.Sizeof(item{}); unsafe.Sizeof(uintptr(0)) == 8 && got != 80 {
		t.Errorf("item is %d bytes, want 80", got)
	}
}
