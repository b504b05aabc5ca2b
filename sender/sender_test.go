package sender

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ferrymetrics/ferry/wal"
	wm "github.com/ferrymetrics/ferry/wal/model"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2.(*DB).maybeScheduleFlush"))
}

// receiver is a remote-write endpoint (1.0 and 2.0) that records what it
// accepted and answers with status(n) for the n-th request (0 = 204).
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	status func(n int) int
	// refuse, if set, answers 400 to a 1.0 request it returns true for, as
	// Prometheus does to a batch with one duplicate sample.
	refuse func(wr *prompb.WriteRequest) bool
	// v1Only answers 415 to 2.0 requests, as a Prometheus that accepts
	// only prometheus.WriteRequest does.
	v1Only bool
	// blind decodes every body as 1.0 and answers without Written headers,
	// as a 1.0 receiver that ignores Content-Type does.
	blind bool
	// written, if set, gives the Written headers of a 2.0 answer from the
	// samples, histograms and exemplars the request carried (by default
	// those numbers).
	written func(s, h, x int) (int, int, int)
	mu      sync.Mutex
	n       int
	got     map[string][]int64 // series id → timestamps accepted, in arrival order
	total   int                // samples and histograms accepted
	cond    *sync.Cond
	hdr     http.Header
	// What arrived besides float samples, by series id or metric name.
	versions  map[string]int // accepted requests by X-Prometheus-Remote-Write-Version
	starts    map[string][]int64
	hists     map[string]int
	exemplars map[string][]labels.Labels
	meta      map[string]wal.Metadata  // 1.0: by family; 2.0: by series' metric name
	lsets     map[string]labels.Labels // the last labels each series id arrived with
	// unwritten is what the Written headers said was not written.
	unwritten int
	// tenantHeader, if set, names the header whose value (the tenant) is
	// recorded in tenants for every series of an accepted request, and
	// passed to tenantStatus, which, if set, answers for a tenant
	// (0 = accept).
	tenantHeader string
	tenantStatus func(tenant string) int
	tenants      map[string]map[string]int // series id → tenant → samples accepted
	tenant       string                    // of the request being served
}

func newReceiver(t testing.TB, status func(n int) int) *receiver {
	r := &receiver{t: t, status: status, got: map[string][]int64{}, versions: map[string]int{},
		starts: map[string][]int64{}, hists: map[string]int{}, exemplars: map[string][]labels.Labels{},
		meta: map[string]wal.Metadata{}, lsets: map[string]labels.Labels{}, tenants: map[string]map[string]int{}}
	r.cond = sync.NewCond(&r.mu)
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.n
	r.n++
	r.hdr = req.Header.Clone()
	if st := r.status(n); st != 0 {
		w.WriteHeader(st)
		fmt.Fprintf(w, "status %d for request %d", st, n)
		return
	}
	r.tenant = req.Header.Get(r.tenantHeader)
	if r.tenantStatus != nil {
		if st := r.tenantStatus(r.tenant); st != 0 {
			w.WriteHeader(st)
			fmt.Fprintf(w, "status %d for tenant %q", st, r.tenant)
			return
		}
	}
	v2 := req.Header.Get("Content-Type") == "application/x-protobuf;proto="+MessageV2 && !r.blind
	if v2 && r.v1Only {
		http.Error(w, "unsupported proto", http.StatusUnsupportedMediaType)
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		r.t.Errorf("snappy: %v", err)
		w.WriteHeader(400)
		return
	}
	if v2 {
		if !r.accept2(w, req, raw) {
			return
		}
	} else if !r.accept1(w, raw) {
		return
	}
	r.versions[req.Header.Get("X-Prometheus-Remote-Write-Version")]++
	r.cond.Broadcast()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) accept1(w http.ResponseWriter, raw []byte) bool {
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		r.t.Errorf("protobuf: %v", err)
		w.WriteHeader(400)
		return false
	}
	if r.refuse != nil && r.refuse(&wr) {
		http.Error(w, "out of order sample", http.StatusBadRequest)
		return false
	}
	for _, ts := range wr.Timeseries {
		var sb labels.ScratchBuilder
		for _, l := range ts.Labels {
			sb.Add(l.Name, l.Value)
		}
		id := sb.Labels().Get("id")
		r.lsets[id] = sb.Labels()
		for _, s := range ts.Samples {
			r.got[id] = append(r.got[id], s.Timestamp)
			r.total++
		}
		r.noteTenant(id, len(ts.Samples)+len(ts.Histograms))
		r.hists[id] += len(ts.Histograms)
		r.total += len(ts.Histograms)
		for _, x := range ts.Exemplars {
			var eb labels.ScratchBuilder
			for _, l := range x.Labels {
				eb.Add(l.Name, l.Value)
			}
			r.exemplars[id] = append(r.exemplars[id], eb.Labels())
		}
	}
	for _, m := range wr.Metadata {
		r.meta[m.MetricFamilyName] = wal.Metadata{Family: m.MetricFamilyName, Type: wm.MetricType(m.Type), Help: m.Help, Unit: m.Unit}
	}
	return true
}

func (r *receiver) accept2(w http.ResponseWriter, req *http.Request, raw []byte) bool {
	if v := req.Header.Get("X-Prometheus-Remote-Write-Version"); v != "2.0.0" {
		r.t.Errorf("2.0 request with version header %q", v)
	}
	var wr writev2.Request
	if err := wr.Unmarshal(raw); err != nil {
		r.t.Errorf("protobuf: %v", err)
		w.WriteHeader(400)
		return false
	}
	var ns, nh, nx int
	var sb labels.ScratchBuilder
	for _, ts := range wr.Timeseries {
		ls, err := ts.ToLabels(&sb, wr.Symbols)
		if err != nil {
			r.t.Errorf("labels: %v", err)
			w.WriteHeader(400)
			return false
		}
		if len(ts.Samples) == 0 && len(ts.Histograms) == 0 {
			http.Error(w, "TimeSeries must contain at least one sample or histogram", http.StatusBadRequest)
			return false
		}
		id := ls.Get("id")
		r.lsets[id] = ls
		for _, s := range ts.Samples {
			r.got[id] = append(r.got[id], s.Timestamp)
			r.starts[id] = append(r.starts[id], s.StartTimestamp)
		}
		r.noteTenant(id, len(ts.Samples)+len(ts.Histograms))
		r.hists[id] += len(ts.Histograms)
		for _, x := range ts.Exemplars {
			ex, err := x.ToExemplar(&sb, wr.Symbols)
			if err != nil {
				r.t.Errorf("exemplar: %v", err)
			}
			r.exemplars[id] = append(r.exemplars[id], ex.Labels)
		}
		m := ts.Metadata
		name := ls.Get("__name__")
		r.meta[name] = wal.Metadata{Family: name, Type: wm.MetricType(m.Type), Help: wr.Symbols[m.HelpRef], Unit: wr.Symbols[m.UnitRef]}
		ns, nh, nx = ns+len(ts.Samples), nh+len(ts.Histograms), nx+len(ts.Exemplars)
	}
	r.total += ns + nh
	ws, wh, wx := ns, nh, nx
	if r.written != nil {
		ws, wh, wx = r.written(ns, nh, nx)
	}
	r.unwritten += ns - ws + nh - wh + nx - wx
	h := w.Header()
	h.Set("X-Prometheus-Remote-Write-Samples-Written", fmt.Sprint(ws))
	h.Set("X-Prometheus-Remote-Write-Histograms-Written", fmt.Sprint(wh))
	h.Set("X-Prometheus-Remote-Write-Exemplars-Written", fmt.Sprint(wx))
	return true
}

// noteTenant records that n samples of series id arrived for the tenant of
// the request being served. r.mu is held.
func (r *receiver) noteTenant(id string, n int) {
	if r.tenantHeader == "" {
		return
	}
	if r.tenants[id] == nil {
		r.tenants[id] = map[string]int{}
	}
	r.tenants[id][r.tenant] += n
}

// newDownReceiver returns a receiver that answers status while down is set,
// as it is at first.
func newDownReceiver(t testing.TB, status int) (*receiver, *atomic.Bool) {
	down := &atomic.Bool{}
	down.Store(true)
	return newReceiver(t, func(int) int {
		if down.Load() {
			return status
		}
		return 0
	}), down
}

// waitTotal waits until at least n samples were accepted.
func (r *receiver) waitTotal(n int) {
	r.t.Helper()
	done := make(chan struct{})
	timer := time.AfterFunc(20*time.Second, func() {
		r.mu.Lock()
		close(done)
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer timer.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.total < n {
		select {
		case <-done:
			r.t.Fatalf("timed out: %d of %d samples arrived", r.total, n)
		default:
		}
		r.cond.Wait()
	}
}

// checkComplete asserts every series has every timestamp 1..rounds, and
// that each series' first arrivals are in order.
func (r *receiver) checkComplete(series, rounds int) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != series {
		r.t.Fatalf("got %d series, want %d", len(r.got), series)
	}
	for id, ts := range r.got {
		seen := map[int64]bool{}
		var last int64
		for _, t := range ts {
			if !seen[t] && t < last {
				r.t.Fatalf("series %s: new sample %d after %d", id, t, last)
			}
			seen[t] = true
			last = max(last, t)
		}
		for t := int64(1); t <= int64(rounds); t++ {
			if !seen[t] {
				r.t.Fatalf("series %s: sample %d missing", id, t)
			}
		}
	}
}

type env struct {
	t   *testing.T
	dir string
	w   *wal.WAL
	db  *pebble.DB
	m   *Metrics
	// walOpts, if set, changes the WAL's options.
	walOpts func(*wal.Options)
	// exemplars makes append give every sample an exemplar labelled
	// trace_id=<timestamp>.
	exemplars bool
	// logger, if set, is the senders' logger.
	logger *zap.Logger
	// now, if set, is the senders' clock.
	now func() time.Time
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir()}
	e.open()
	return e
}

func (e *env) open() {
	var err error
	opts := wal.DefaultOptions()
	if e.walOpts != nil {
		e.walOpts(&opts)
	}
	e.w, err = wal.Open(filepath.Join(e.dir, "wal"), opts, zaptest.NewLogger(e.t, zaptest.Level(zap.WarnLevel)), nil, time.Now)
	if err != nil {
		e.t.Fatal(err)
	}
	e.db, err = pebble.Open(filepath.Join(e.dir, "state"), &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.m = NewMetrics(nil)
}

func (e *env) close() {
	if err := e.w.Close(); err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.Close(); err != nil {
		e.t.Fatal(err)
	}
}

// reopen stops s within drain (a short drain is a crash: the queues are
// lost, the checkpoint and the WAL stay) and reopens the WAL and the state
// database.
func (e *env) reopen(s *Sender, drain time.Duration) {
	e.t.Helper()
	stopWithin(e.t, s, drain)
	e.close()
	e.open()
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func (e *env) sender(name, u string, mod func(*Config)) *Sender {
	e.t.Helper()
	pu, _ := url.Parse(u)
	client, err := config.NewClientFromConfig(config.HTTPClientConfig{}, "remote_write_"+name, config.WithUserAgent("ferry"))
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := Config{
		Name: name, CheckpointKey: name, URL: pu, Client: client, Timeout: 30 * time.Second, Protocol: RemoteWrite1,
		SendExemplars: true, SendHistograms: true, SendMetadata: true, MaxMetadataPerSend: 2000,
		Queue: Queue{
			Capacity: 10000, MinShards: 1, MaxShards: 50, MaxSamplesPerSend: 100,
			BatchSendDeadline: 5 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
			RetryOnRateLimit: true,
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	logger := e.logger
	if logger == nil {
		logger = zaptest.NewLogger(e.t, zaptest.Level(zap.WarnLevel))
	}
	s, err := New(cfg, WALLog{e.w}, Options{
		Logger: logger, Metrics: e.m,
		Checkpoints: PebbleCheckpoints{DB: e.db}, CheckpointInterval: 5 * time.Millisecond, Now: e.now,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	s.Run()
	return s
}

// head is the WAL's head as a cursor.
func (e *env) head() Cursor { return walCursor(e.w.Head()) }

func (e *env) append(series int, from, to int64) {
	e.t.Helper()
	for ts := from; ts <= to; ts++ {
		b := &wm.Batch{}
		for i := range series {
			b.Series = append(b.Series, wm.Series{
				LabelsStart: int32(len(b.Labels)), LabelsEnd: int32(len(b.Labels) + 2),
				SamplesStart: int32(len(b.Samples)), SamplesEnd: int32(len(b.Samples) + 1),
			})
			b.Labels = append(b.Labels, wm.Label{Name: []byte("__name__"), Value: []byte("m")},
				wm.Label{Name: []byte("id"), Value: []byte(fmt.Sprint(i))})
			b.Samples = append(b.Samples, wm.Sample{Timestamp: ts, Value: float64(ts)})
			if e.exemplars {
				s := &b.Series[len(b.Series)-1]
				s.ExemplarsStart, s.ExemplarsEnd = int32(len(b.Exemplars)), int32(len(b.Exemplars)+1)
				b.Exemplars = append(b.Exemplars, wm.Exemplar{LabelsStart: int32(len(b.Labels)), LabelsEnd: int32(len(b.Labels) + 1), Value: 1, Timestamp: ts})
				b.Labels = append(b.Labels, wm.Label{Name: []byte("trace_id"), Value: []byte(fmt.Sprint(ts))})
			}
		}
		if err := e.w.Append(b); err != nil {
			e.t.Fatal(err)
		}
	}
}

func stop(t *testing.T, s *Sender) { stopWithin(t, s, 5*time.Second) }

func stopWithin(t *testing.T, s *Sender, drain time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDeliversEverythingInOrderWithHeaders(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	r := newReceiver(t, func(int) int { return 0 })
	s := e.sender("a", r.srv.URL, func(c *Config) { c.Headers = map[string]string{"X-Scope-OrgID": "edge"} })
	e.append(50, 1, 20)
	r.waitTotal(50 * 20)
	stop(t, s)
	r.checkComplete(50, 20)
	for k, want := range map[string]string{
		"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
		"X-Prometheus-Remote-Write-Version": "0.1.0", "User-Agent": "ferry", "X-Scope-Orgid": "edge",
	} {
		if got := r.hdr.Get(k); got != want {
			t.Errorf("header %s: %q, want %q", k, got, want)
		}
	}
	if got := testutil.ToFloat64(e.m.sent.WithLabelValues("a")); got != 1000 {
		t.Fatalf("sent metric %v, want 1000", got)
	}
	// The checkpoint is persisted at the end of the WAL.
	p, ok, err := PebbleCheckpoints{DB: e.db}.Load("a")
	if err != nil || !ok || p != e.head() {
		t.Fatalf("checkpoint %v %v %v, want %v", p, ok, err, e.head())
	}
}

func TestRetries503And429ThenDeliversInOrder(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	r := newReceiver(t, func(n int) int {
		switch {
		case n < 5:
			return http.StatusServiceUnavailable
		case n < 8:
			return http.StatusTooManyRequests
		}
		return 0
	})
	s := e.sender("a", r.srv.URL, nil)
	e.append(30, 1, 10)
	r.waitTotal(300)
	stop(t, s)
	r.checkComplete(30, 10)
	if got := testutil.ToFloat64(e.m.retried.WithLabelValues("a")); got == 0 {
		t.Fatal("no retries counted")
	}
	if got := testutil.ToFloat64(e.m.failed.WithLabelValues("a")); got != 0 {
		t.Fatalf("%v samples counted failed", got)
	}
}

func TestRefused400IsDroppedCountedAndStreamGoesOn(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	// The endpoint refuses every request holding a sample of series 7 at
	// timestamp 2, like Prometheus refusing a batch with one duplicate.
	r := newReceiver(t, func(int) int { return 0 })
	r.refuse = func(wr *prompb.WriteRequest) bool {
		for _, ts := range wr.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "id" && l.Value == "7" {
					for _, smp := range ts.Samples {
						if smp.Timestamp == 2 {
							return true
						}
					}
				}
			}
		}
		return false
	}
	s := e.sender("a", r.srv.URL, nil)
	e.append(100, 1, 3)
	// Everything but that one sample arrives: the refused batch is split
	// until the refusal is isolated.
	r.waitTotal(299)
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.failed.WithLabelValues("a")) == 1 })
	e.append(100, 4, 4)
	r.waitTotal(399)
	stop(t, s)
	r.mu.Lock()
	if ts := r.got["7"]; len(ts) != 3 || ts[0] != 1 || ts[1] != 3 || ts[2] != 4 {
		t.Errorf("series 7 got %v, want [1 3 4]", ts)
	}
	r.mu.Unlock()
	if p, _, _ := (PebbleCheckpoints{DB: e.db}).Load("a"); p != e.head() {
		t.Fatalf("checkpoint %v did not move past the refused sample to %v", p, e.head())
	}
}

func TestSplitPoint(t *testing.T) {
	mk := func(refs ...uint64) []item {
		out := make([]item, len(refs))
		for i, r := range refs {
			out[i].ref = r
		}
		return out
	}
	for _, tc := range []struct {
		refs []uint64
		want int
	}{
		{[]uint64{1, 2}, 1},
		{[]uint64{1, 1, 1, 2}, 3},
		{[]uint64{1, 2, 2, 2}, 1},
		{[]uint64{5, 5, 5, 5}, 2}, // one series: the middle
		{[]uint64{1, 2, 3, 4, 5, 6}, 3},
	} {
		if got := splitPoint(mk(tc.refs...)); got != tc.want {
			t.Errorf("splitPoint(%v) = %d, want %d", tc.refs, got, tc.want)
		}
	}
}

func TestRestartDuringOutageLosesNothing(t *testing.T) {
	e := newEnv(t)
	r, down := newDownReceiver(t, http.StatusBadGateway)
	s := e.sender("a", r.srv.URL, nil)
	e.append(20, 1, 10)
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.retried.WithLabelValues("a")) > 0 })
	e.reopen(s, 50*time.Millisecond)
	defer e.close()
	down.Store(false)
	s = e.sender("a", r.srv.URL, nil)
	e.append(20, 11, 12)
	r.waitTotal(20 * 12)
	stop(t, s)
	r.checkComplete(20, 12)
}

func TestDownEndpointDoesNotHoldBackAnother(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	bad, down := newDownReceiver(t, http.StatusServiceUnavailable)
	good := newReceiver(t, func(int) int { return 0 })
	sb := e.sender("bad", bad.srv.URL, nil)
	sg := e.sender("good", good.srv.URL, nil)
	e.append(40, 1, 25)
	good.waitTotal(40 * 25)
	good.checkComplete(40, 25)
	down.Store(false)
	bad.waitTotal(40 * 25)
	bad.checkComplete(40, 25)
	stop(t, sb)
	stop(t, sg)
}

func TestWriteRelabelDropsAreCounted(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	r := newReceiver(t, func(int) int { return 0 })
	s := e.sender("a", r.srv.URL, func(c *Config) {
		c.WriteRelabelConfigs = []*relabel.Config{{
			SourceLabels: model.LabelNames{"id"}, Regex: relabel.MustNewRegexp("1.*"), Action: relabel.Drop,
			Separator: ";", Replacement: "$1",
		}}
	})
	e.append(20, 1, 3) // ids 1, 10..19 dropped: 11 series
	r.waitTotal(9 * 3)
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.dropped.WithLabelValues("a", "relabel")) == 33 })
	stop(t, s)
	r.checkComplete(9, 3)
}

func TestExternalLabels(t *testing.T) {
	for _, p := range []Protocol{RemoteWrite1, RemoteWrite2} {
		t.Run(p.String(), func(t *testing.T) {
			e := newEnv(t)
			defer e.close()
			r := newReceiver(t, func(int) int { return 0 })
			s := e.sender("a", r.srv.URL, func(c *Config) {
				c.Protocol = p
				c.ExternalLabels = labels.FromStrings("id", "external", "site", "edge1")
				// Relabelling sees the external labels, as in Prometheus.
				c.WriteRelabelConfigs = []*relabel.Config{{
					SourceLabels: model.LabelNames{"site", "id"}, Regex: relabel.MustNewRegexp("edge1;1"), Action: relabel.Drop,
					Separator: ";", Replacement: "$1",
				}}
			})
			e.append(3, 1, 2)
			r.waitTotal(2 * 2)
			stop(t, s)
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, id := range []string{"0", "2"} {
				// A series' own label wins over an external one.
				if want := labels.FromStrings("__name__", "m", "id", id, "site", "edge1"); !labels.Equal(r.lsets[id], want) {
					t.Errorf("series %s arrived as %s, want %s", id, r.lsets[id], want)
				}
			}
			if _, ok := r.lsets["1"]; ok || r.total != 4 {
				t.Errorf("series 1 arrived (%v) or %d samples, want it dropped and 4", ok, r.total)
			}
		})
	}
}

// Stopping does not wait for an endpoint that is down: the samples stay in
// the WAL, and the next start delivers them.
func TestStopDoesNotWaitForAFailingEndpoint(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	var up atomic.Bool
	r := newReceiver(t, func(int) int {
		if up.Load() {
			return 0
		}
		return http.StatusServiceUnavailable
	})
	s := e.sender("a", r.srv.URL, nil)
	e.append(10, 1, 3)
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.retried.WithLabelValues("a")) > 0 })
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background()) }() // no deadline: only the failure ends the drain
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	up.Store(true)
	s = e.sender("a", r.srv.URL, nil)
	r.waitTotal(30)
	stop(t, s)
	r.checkComplete(10, 3)
}

func TestStartFromNowSkipsHistory(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	e.append(5, 1, 3)
	r := newReceiver(t, func(int) int { return 0 })
	s := e.sender("a", r.srv.URL, func(c *Config) { c.StartAtHead = true })
	e.append(5, 4, 4)
	r.waitTotal(5)
	stop(t, s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.total != 5 || r.got["0"][0] != 4 {
		t.Fatalf("got %d samples starting at %v; want only round 4", r.total, r.got["0"])
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {"-1", 0}, {"junk", 0}, {"100000", 5 * time.Minute},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
	} {
		if got := retryAfter(tc.h, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// The disk cap drops segments the endpoint has not delivered: the sender
// writes off what it had read with what it had not, counts each sample
// once, and delivers the rest, also after a restart. Delivered plus counted
// is exactly what was appended.
func TestDiskCapLossIsCountedOnce(t *testing.T) {
	e := &env{t: t, dir: t.TempDir(), exemplars: true, walOpts: func(o *wal.Options) {
		o.Sync = wal.SyncInterval
		o.SegmentSize = 32 << 10
		o.MaxSize = 128 << 10
		o.MaintenanceInterval = 5 * time.Millisecond
	}}
	e.open()
	r, down := newDownReceiver(t, http.StatusServiceUnavailable)
	s := e.sender("a", r.srv.URL, nil)
	e.w.Start()
	dropped := func() int { return int(testutil.ToFloat64(e.m.dropped.WithLabelValues("a", "disk_cap"))) }
	exDropped := func() int { return int(testutil.ToFloat64(e.m.exemplarsDropped.WithLabelValues("a", "disk_cap"))) }
	const series = 50
	e.append(series, 1, 2000)
	waitFor(t, func() bool { return dropped() > 0 && e.w.Size() <= 128<<10 })
	before, exBefore := dropped(), exDropped()
	if st := s.Status(); st.State != StateDiskCap || st.CapDropped < int64(before) || st.CapDropped == 0 {
		t.Errorf("status after disk-cap drops: %+v, want %s with %d dropped", st, StateDiskCap, before)
	}
	// Restarted with room, so that no drop races the deliveries (a request
	// in flight when its segment is dropped may be both delivered and
	// counted). What a crash leaves: the checkpoint and the WAL, not the
	// queues.
	e.walOpts = func(o *wal.Options) { o.Sync = wal.SyncInterval; o.SegmentSize = 32 << 10 }
	e.reopen(s, time.Millisecond)
	defer e.close()
	down.Store(false)
	s = e.sender("a", r.srv.URL, nil)
	e.w.Start()
	e.append(series, 2001, 2010)
	appended := series * 2010
	waitFor(t, func() bool { return distinct(r)+before+dropped() == appended })
	stop(t, s)
	if distinct(r)+before+dropped() != appended {
		t.Fatalf("%d delivered + %d + %d counted as dropped, want %d appended", distinct(r), before, dropped(), appended)
	}
	if before == 0 || distinct(r) < series*10 {
		t.Fatalf("%d dropped before the restart, %d delivered: the test did not exercise the disk cap", before, distinct(r))
	}
	// Exemplars are accounted for the same way.
	waitFor(t, func() bool { return distinctExemplars(r)+exBefore+exDropped() >= appended })
	if got := distinctExemplars(r) + exBefore + exDropped(); got != appended || exBefore == 0 {
		t.Fatalf("exemplars: %d delivered + %d + %d counted as dropped, want %d appended", distinctExemplars(r), exBefore, exDropped(), appended)
	}
}

// distinctExemplars counts the different exemplars the receiver accepted.
func distinctExemplars(r *receiver) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, exs := range r.exemplars {
		seen := map[string]bool{}
		for _, ls := range exs {
			seen[ls.String()] = true
		}
		n += len(seen)
	}
	return n
}

// distinct counts the different samples the receiver accepted.
func distinct(r *receiver) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ts := range r.got {
		n += len(slices.Compact(slices.Sorted(slices.Values(ts))))
	}
	return n
}
