package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// tenantSink is a multi-tenant remote-write receiver (1.0 and 2.0) that
// checks every series it accepts against the tenant it must arrive under:
// the X-Scope-OrgID header of its request must be want(id) ("" for no
// header), and its tenant label must be label(id) ("" when the endpoint
// drops it). It records what it accepted per series, in arrival order,
// and the violations. Requests to tenant flaky are answered 503 now and
// then, so that one tenant's retries interleave with the others' and
// with the kills.
type tenantSink struct {
	t     testing.TB
	srv   *httptest.Server
	want  func(id string) string
	label func(id string) string
	flaky string
	// down, while set, is a tenant answered 503 to every request.
	down atomic.Pointer[string]

	mu         sync.Mutex
	n          map[string]int     // requests per tenant
	got        map[string][]int64 // series id → timestamps in arrival order
	total      int
	violations []string
	notify     chan struct{}
}

func newTenantSink(t testing.TB, want, label func(id string) string, flaky string) *tenantSink {
	s := &tenantSink{t: t, want: want, label: label, flaky: flaky, n: map[string]int{}, got: map[string][]int64{},
		notify: make(chan struct{}, 1)}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *tenantSink) url() string { return s.srv.URL + "/api/v1/push" }

func (s *tenantSink) violate(format string, args ...any) {
	if len(s.violations) < 20 {
		s.violations = append(s.violations, fmt.Sprintf(format, args...))
	}
}

func (s *tenantSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(500)
		return
	}
	tenant := r.Header.Get("X-Scope-OrgID")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(r.Header.Values("X-Scope-OrgID")) > 1 {
		s.violate("request with %d tenant headers", len(r.Header.Values("X-Scope-OrgID")))
	}
	n := s.n[tenant]
	s.n[tenant]++
	if tenant == s.flaky && n%5 == 4 {
		http.Error(w, "tenant "+tenant+" is busy", http.StatusServiceUnavailable)
		return
	}
	if down := s.down.Load(); down != nil && tenant == *down {
		http.Error(w, "tenant "+tenant+" is over its limits", http.StatusServiceUnavailable)
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		s.violate("snappy: %v", err)
		http.Error(w, err.Error(), 400)
		return
	}
	type series struct {
		ls  labels.Labels
		tss []int64
	}
	var all []series
	v2 := r.Header.Get("Content-Type") == contentTypeV2
	if v2 {
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			s.violate("2.0 protobuf: %v", err)
			http.Error(w, err.Error(), 400)
			return
		}
		var sb labels.ScratchBuilder
		for _, ts := range req.Timeseries {
			ls, err := ts.ToLabels(&sb, req.Symbols)
			if err != nil {
				s.violate("2.0 labels: %v", err)
				http.Error(w, err.Error(), 400)
				return
			}
			se := series{ls: ls}
			for _, smp := range ts.Samples {
				se.tss = append(se.tss, smp.Timestamp)
			}
			all = append(all, se)
		}
	} else {
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			s.violate("1.0 protobuf: %v", err)
			http.Error(w, err.Error(), 400)
			return
		}
		for _, ts := range req.Timeseries {
			var sb labels.ScratchBuilder
			for _, l := range ts.Labels {
				sb.Add(l.Name, l.Value)
			}
			se := series{ls: sb.Labels()}
			for _, smp := range ts.Samples {
				se.tss = append(se.tss, smp.Timestamp)
			}
			all = append(all, se)
		}
	}
	samples := 0
	for _, se := range all {
		id := se.ls.Get("id")
		if want := s.want(id); tenant != want {
			s.violate("series %s arrived under tenant %q, want %q", se.ls, tenant, want)
		}
		if got, want := se.ls.Get("tenant"), s.label(id); got != want {
			s.violate("series %s arrived with tenant label %q, want %q", se.ls, got, want)
		}
		s.got[id] = append(s.got[id], se.tss...)
		samples += len(se.tss)
	}
	s.total += samples
	select {
	case s.notify <- struct{}{}:
	default:
	}
	if v2 {
		w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(samples))
		w.Header().Set("X-Prometheus-Remote-Write-Histograms-Written", "0")
		w.Header().Set("X-Prometheus-Remote-Write-Exemplars-Written", "0")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *tenantSink) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// arrivedFrom returns how many samples of the series keep selects arrived.
func (s *tenantSink) arrivedFrom(keep func(id string) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, tss := range s.got {
		if keep(id) {
			n += len(tss)
		}
	}
	return n
}

// only returns the samples of acked whose series keep selects.
func only(acked map[string][]int64, keep func(id string) bool) map[string][]int64 {
	out := map[string][]int64{}
	for id, tss := range acked {
		if keep(id) {
			out[id] = tss
		}
	}
	return out
}

// missing returns how many acknowledged samples have not arrived.
func (s *tenantSink) missing(acked map[string][]int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return missingSamples(s.got, acked)
}

// waitDelivered waits, woken by each accepted request, until every
// acknowledged sample arrived.
func (s *tenantSink) waitDelivered(name string, acked map[string][]int64, within time.Duration) {
	s.t.Helper()
	waitNoneMissing(s.t, s.notify, func() int { return s.missing(acked) }, within, "FERRY BUG: endpoint "+name)
}

// check asserts that nothing arrived under the wrong tenant or with the
// wrong labels, and that per series new samples arrived in timestamp
// order (re-sent duplicates allowed: at-least-once).
func (s *tenantSink) check(name string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.violations) > 0 {
		s.t.Errorf("FERRY BUG: endpoint %s: %s", name, strings.Join(s.violations, "; "))
	}
	for id, tss := range s.got {
		seen := map[int64]bool{}
		var hi int64
		for _, t := range tss {
			if !seen[t] && t < hi {
				s.t.Errorf("FERRY BUG: endpoint %s: series %s: new sample %d arrived after %d", name, id, t, hi)
				break
			}
			seen[t] = true
			hi = max(hi, t)
		}
	}
}

// Ferry forwards to two multi-tenant endpoints, one per Remote-Write
// version, while a pusher writes series of several tenants without pause,
// and is killed with SIGKILL and restarted mid-stream. Every series
// arrives under the tenant its label names, with the label dropped where
// the endpoint asks, in order per series, and every acknowledged sample
// arrives at least once. One tenant answers 503 now and then.
//
// The 1.0 endpoint drops the tenant label and sends series without it to
// tenant "anonymous"; the 2.0 endpoint keeps the label and sends such
// series without a tenant header.
func TestTenantSplitAcrossKill9(t *testing.T) {
	requireIntegration(t)
	const (
		series, batch = 30, 10
		step          = 1000 // ms between rounds
		kills         = 5
	)
	labelOf := func(id string) string {
		i, _ := strconv.Atoi(id)
		if i%5 == 0 {
			return ""
		}
		return fmt.Sprintf("team-%d", i%3)
	}
	or := func(dflt string) func(string) string {
		return func(id string) string {
			if l := labelOf(id); l != "" {
				return l
			}
			return dflt
		}
	}
	v1 := newTenantSink(t, or("anonymous"), func(string) string { return "" }, "team-1")
	v2 := newTenantSink(t, or(""), labelOf, "team-1")
	f := newFerry(t, "segment_size: 1MiB",
		"v1="+v1.url()+"|tenant: {label: tenant, default: anonymous, drop_label: true}",
		"v2="+v2.url()+"|protobuf_message: io.prometheus.write.v2.Request\ntenant: {label: tenant}")
	// `ferry check config` accepts the configuration.
	if out, err := exec.Command(ferryBin, "check", "config", f.cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("ferry check config: %v\n%s", err, out)
	}
	f.start()

	p := newPusher(f.addr, series)
	p.extra = func(i int) []prompb.Label {
		if l := labelOf(seriesID(i)); l != "" {
			return []prompb.Label{{Name: "tenant", Value: l}}
		}
		return nil
	}
	base := time.Now().Add(-24*time.Hour).UnixMilli() / step * step
	load := startAckedLoad(t, p, base, step, batch)
	begin := time.Now()
	for range kills {
		// Mid-stream: the load is pushing and both endpoints are receiving
		// what this run of ferry sends.
		from, r1, r2 := load.cur.Load(), v1.received(), v2.received()
		waitUntil(t, 30*time.Second, func() bool {
			return load.cur.Load() >= from+300*step && v1.received() > r1 && v2.received() > r2 || t.Failed()
		})
		if t.Failed() {
			t.FailNow()
		}
		f.kill9()
		f.start()
	}
	// The last run delivers too before the load stops.
	from, r1, r2 := load.cur.Load(), v1.received(), v2.received()
	waitUntil(t, 30*time.Second, func() bool {
		return load.cur.Load() >= from+300*step && v1.received() > r1 && v2.received() > r2
	})
	load.stop()
	acked, n := p.snapshot()
	v1.waitDelivered("v1", acked, 30*time.Second)
	v2.waitDelivered("v2", acked, 30*time.Second)
	v1.check("v1")
	v2.check("v2")

	tenants := map[string]bool{}
	for i := range series {
		tenants[or("anonymous")(seriesID(i))] = true
	}
	var counted []string
	for tn := range tenants {
		if f.metric("ferry_sender_tenant_samples_sent_total", `endpoint="v1"`, fmt.Sprintf("tenant=%q", tn)) > 0 {
			counted = append(counted, tn)
		}
	}
	sort.Strings(counted)
	if len(counted) != len(tenants) {
		t.Errorf("ferry_sender_tenant_samples_sent_total{endpoint=\"v1\"} counts tenants %v since the last start, want all of %v", counted, tenants)
	}
	v1.mu.Lock()
	t.Logf("%d kill -9 cycles in %v: %d samples acknowledged, v1 got %d and v2 %d (with re-sends); requests per tenant at v1: %v",
		kills, time.Since(begin).Round(time.Millisecond), n, v1.total, v2.received(), v1.n)
	v1.mu.Unlock()
	f.stop()
}

// One tenant of a multi-tenant endpoint answers 503 to everything for a
// long stretch, across a kill -9 of Ferry, while the pusher goes on and
// the other tenants' receivers accept. The other tenants get every
// acknowledged sample meanwhile: the failing tenant is set aside, not
// holding them up. Once it accepts again it catches up: every acknowledged
// sample arrives, under the right tenant, in order per series.
func TestFailingTenantDoesNotHoldUpOthers(t *testing.T) {
	requireIntegration(t)
	const (
		series, batch = 30, 10
		step          = 1000 // ms between rounds
	)
	tenantOf := func(id string) string {
		i, _ := strconv.Atoi(id)
		return fmt.Sprintf("team-%d", i%3)
	}
	failing := func(id string) bool { return tenantOf(id) == "team-2" }
	others := func(id string) bool { return !failing(id) }
	sink := newTenantSink(t, tenantOf, func(string) string { return "" }, "")
	down := "team-2"
	sink.down.Store(&down)
	// Small queues: without setting the tenant aside, its samples fill
	// them within a few requests and stop the others.
	f := newFerry(t, "segment_size: 1MiB",
		"ep="+sink.url()+"|tenant: {label: tenant, drop_label: true}\nqueue_config: {capacity: 200, max_samples_per_send: 50, min_shards: 2, max_shards: 2, batch_send_deadline: 50ms, min_backoff: 10ms, max_backoff: 200ms}")
	f.start()
	p := newPusher(f.addr, series)
	p.extra = func(i int) []prompb.Label { return []prompb.Label{{Name: "tenant", Value: tenantOf(seriesID(i))}} }
	base := time.Now().Add(-24*time.Hour).UnixMilli() / step * step
	load := startAckedLoad(t, p, base, step, batch)

	// othersCaughtUp waits until the other tenants have every sample
	// acknowledged after the load passed 300 more rounds, and then
	// the failing tenant still has nothing.
	othersCaughtUp := func(phase string) {
		t.Helper()
		from := load.cur.Load()
		waitUntil(t, 30*time.Second, func() bool { return load.cur.Load() >= from+300*step })
		acked, _ := p.snapshot()
		sink.waitDelivered("ep ("+phase+", tenants team-0 and team-1)", only(acked, others), 30*time.Second)
		if n := sink.arrivedFrom(failing); n > 0 {
			t.Fatalf("%s: %d samples of the failing tenant arrived", phase, n)
		}
		if got := f.metric("ferry_sender_tenants_catching_up", `endpoint="ep"`); got != 1 {
			t.Errorf("%s: ferry_sender_tenants_catching_up = %v, want 1", phase, got)
		}
	}
	othersCaughtUp("tenant down")
	f.kill9()
	f.start()
	othersCaughtUp("tenant down, after kill -9")

	sink.down.Store(nil)
	from := load.cur.Load()
	waitUntil(t, 30*time.Second, func() bool { return load.cur.Load() >= from+100*step })
	load.stop()
	acked, n := p.snapshot()
	sink.waitDelivered("ep", acked, 60*time.Second)
	sink.check("ep")
	waitUntil(t, 30*time.Second, func() bool { return f.metric("ferry_sender_tenants_catching_up", `endpoint="ep"`) == 0 })
	t.Logf("%d samples acknowledged; all arrived, the failing tenant's after it recovered; catch-ups since the last start: %v",
		n, f.metric("ferry_sender_tenant_catch_ups_total", `endpoint="ep"`))
	f.stop()
}
