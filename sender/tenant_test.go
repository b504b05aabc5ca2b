package sender

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/ferrymetrics/ferry/wal"
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

// failingTenant returns a receiver that splits by X-Scope-OrgID and
// answers 503 to tenant "a" while the returned flag is set, as it is at
// first.
func failingTenant(t *testing.T) (*receiver, *atomic.Bool) {
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
	return r, &aDown
}

// abc puts series i under tenant a, b or c in turn.
func abc(i int) string { return []string{"a", "b", "c"}[i%3] }

// A tenant whose requests fail while the others' are delivered is set
// aside. The others, on the same shards, get every sample meanwhile, far
// more than the shards' queues hold. The endpoint stays failing and the
// checkpoint waits for the tenant. Once it accepts, its catch-up delivers
// everything, each series in order, and it rejoins the shards, which
// then carry it again.
func TestFailingTenantIsSetAside(t *testing.T) {
	const series, rounds = 18, 120 // 6 series per tenant
	for _, shards := range []int{1, 3} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			e := &env{t: t, dir: t.TempDir(), logger: zap.New(core)}
			e.open()
			defer e.close()
			r, aDown := failingTenant(t)
			s := e.sender("ep", r.srv.URL, func(c *Config) {
				c.Queue.MinShards, c.Queue.MaxShards = shards, shards
				c.Queue.Capacity, c.Queue.MaxSamplesPerSend = 60, 30
				c.Tenant = &Tenant{Label: "tenant", Header: "X-Scope-OrgID"}
			})
			ls := tenantSeries(series, abc)
			start := e.head()
			e.appendSeries(ls, 1, rounds/2)
			r.waitTotal(2 * series / 3 * rounds / 2) // all of b's and c's
			catching := func() float64 { return testutil.ToFloat64(e.m.tenantsCatching.WithLabelValues("ep")) }
			waitFor(t, func() bool { return catching() == 1 })
			// Appended while a is set aside: the shards skip its samples.
			e.appendSeries(ls, rounds/2+1, rounds)
			r.waitTotal(2 * series / 3 * rounds)
			r.mu.Lock()
			for _, l := range ls {
				if got := r.tenants[l.Get("id")]; l.Get("tenant") == "a" && len(got) > 0 {
					t.Errorf("series %s of the failing tenant arrived: %v", l, got)
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
			r.waitTotal(series * rounds)
			waitFor(t, func() bool { return catching() == 0 })
			// Back in the shards.
			e.appendSeries(ls, rounds+1, rounds+10)
			r.waitTotal(series * (rounds + 10))
			waitFor(t, func() bool { return s.Checkpoint() == e.head() && s.Status().State == StateHealthy })
			stop(t, s)
			r.checkComplete(series, rounds+10)
			for name := range 3 {
				want := float64(series / 3 * (rounds + 10))
				if got := testutil.ToFloat64(e.m.tenantSent.WithLabelValues("ep", abc(name))); got != want {
					t.Errorf("tenant %s: %v samples counted, want %v (each once)", abc(name), got, want)
				}
			}
			if n := testutil.ToFloat64(e.m.tenantCatchUps.WithLabelValues("ep")); n != 1 {
				t.Errorf("ferry_sender_tenant_catch_ups_total = %v, want 1", n)
			}
			for _, msg := range []string{"Endpoint recovered", "Tenant caught up; its samples go through the shards again"} {
				if n := logs.FilterMessage(msg).Len(); n != 1 {
					t.Errorf("%q logged %d times, want once", msg, n)
				}
			}
		})
	}
}

// When every tenant fails, none is set aside: the endpoint is down, and
// re-reading the log once per tenant would only multiply the work of
// catching up.
func TestDownEndpointSetsNoTenantAside(t *testing.T) {
	const series, rounds = 9, 40
	e := newEnv(t)
	defer e.close()
	r, down := newDownReceiver(t, http.StatusServiceUnavailable)
	r.tenantHeader = "X-Scope-OrgID"
	s := e.sender("ep", r.srv.URL, func(c *Config) {
		c.Queue.MinShards, c.Queue.MaxShards = 2, 2
		c.Queue.Capacity, c.Queue.MaxSamplesPerSend = 30, 15
		c.Tenant = &Tenant{Label: "tenant", Header: "X-Scope-OrgID"}
	})
	e.appendSeries(tenantSeries(series, abc), 1, rounds)
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.retried.WithLabelValues("ep")) > 100 })
	down.Store(false)
	r.waitTotal(series * rounds)
	waitFor(t, func() bool { return s.Checkpoint() == e.head() })
	stop(t, s)
	r.checkComplete(series, rounds)
	if n := testutil.ToFloat64(e.m.tenantCatchUps.WithLabelValues("ep")); n != 0 {
		t.Errorf("ferry_sender_tenant_catch_ups_total = %v while the whole endpoint was down, want 0", n)
	}
}

// A sender stopped while a tenant is set aside keeps its checkpoint before
// the tenant's undelivered samples: after a restart, the tenant gets them
// all, and the others lose nothing.
func TestRestartWhileTenantSetAside(t *testing.T) {
	const series, rounds = 9, 60
	e := newEnv(t)
	r, aDown := failingTenant(t)
	cfg := func(c *Config) {
		c.Queue.MinShards, c.Queue.MaxShards = 1, 1
		c.Queue.Capacity, c.Queue.MaxSamplesPerSend = 30, 15
		c.Tenant = &Tenant{Label: "tenant", Header: "X-Scope-OrgID"}
	}
	s := e.sender("ep", r.srv.URL, cfg)
	e.appendSeries(tenantSeries(series, abc), 1, rounds)
	r.waitTotal(2 * series / 3 * rounds)
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.tenantsCatching.WithLabelValues("ep")) == 1 })
	e.reopen(s, time.Millisecond)
	defer e.close()
	aDown.Store(false)
	s = e.sender("ep", r.srv.URL, cfg)
	e.appendSeries(tenantSeries(series, abc), rounds+1, rounds+5)
	waitFor(t, func() bool { return s.Checkpoint() == e.head() })
	stop(t, s)
	r.checkComplete(series, rounds+5)
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

// The disk cap deletes segments holding samples of a tenant set aside:
// they are counted once, as any undelivered sample, and the rest arrives.
// Delivered plus counted is exactly what was appended.
func TestDiskCapWhileTenantSetAside(t *testing.T) {
	const series = 9
	e := &env{t: t, dir: t.TempDir(), walOpts: func(o *wal.Options) {
		o.Sync = wal.SyncInterval
		o.SegmentSize = 32 << 10
		o.MaxSize = 128 << 10
		o.MaintenanceInterval = 5 * time.Millisecond
	}}
	e.open()
	r, aDown := failingTenant(t)
	// Every tenant fails while the disk cap drops: a request delivered
	// while its segment is dropped would be both delivered and counted.
	var allDown atomic.Bool
	r.status = func(int) int {
		if allDown.Load() {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	cfg := func(c *Config) {
		c.Queue.MinShards, c.Queue.MaxShards = 2, 2
		c.Tenant = &Tenant{Label: "tenant", Header: "X-Scope-OrgID"}
	}
	s := e.sender("ep", r.srv.URL, cfg)
	e.w.Start()
	dropped := func() int { return int(testutil.ToFloat64(e.m.dropped.WithLabelValues("ep", "disk_cap"))) }
	ls := tenantSeries(series, abc)
	e.appendSeries(ls, 1, 10)
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.tenantsCatching.WithLabelValues("ep")) == 1 })
	r.waitTotal(2 * series / 3 * 10)
	allDown.Store(true)
	e.appendSeries(ls, 11, 3000)
	waitFor(t, func() bool { return dropped() > 0 && e.w.Size() <= 128<<10 })
	before := dropped()
	if got := testutil.ToFloat64(e.m.tenantsCatching.WithLabelValues("ep")); got != 1 {
		t.Fatalf("%v tenants catching up when the disk cap dropped, want 1", got)
	}
	// Restarted with room, so that no drop races a delivery.
	e.walOpts = func(o *wal.Options) { o.Sync = wal.SyncInterval; o.SegmentSize = 32 << 10 }
	e.reopen(s, time.Millisecond)
	defer e.close()
	aDown.Store(false)
	allDown.Store(false)
	s = e.sender("ep", r.srv.URL, cfg)
	e.w.Start()
	e.appendSeries(ls, 3001, 3010)
	appended := series * 3010
	waitFor(t, func() bool { return distinct(r)+before+dropped() == appended })
	stop(t, s)
	if got := distinct(r) + before + dropped(); got != appended {
		t.Fatalf("%d delivered + %d + %d counted as dropped, want %d appended", distinct(r), before, dropped(), appended)
	}
	if before < series*100 {
		t.Fatalf("only %d samples dropped: the test did not exercise the disk cap", before)
	}
}
