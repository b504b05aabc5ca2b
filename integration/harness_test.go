package integration

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// ferryBin is the binary under test, built once by TestMain.
var ferryBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ferryBin = filepath.Join(dir, "ferry")
	cmd := exec.Command("go", "build", "-race", "-o", ferryBin, "../cmd/ferry")
	if os.Getenv("FERRY_E2E_NORACE") != "" {
		cmd = exec.Command("go", "build", "-o", ferryBin, "../cmd/ferry")
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ferry:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// A remote-write receiver standing in for an endpoint.

// sink records every sample it accepts, per series, and answers with what
// behave returns (0: accept with 204). It can be taken down (connections
// refused) and brought back on the same address.
type sink struct {
	t      testing.TB
	addr   string
	behave func(n int) int
	// refuse, if set, answers 400 to a request it returns true for.
	refuse func(*prompb.WriteRequest) bool
	mu     sync.Mutex
	n      int
	got    map[string][]int64 // series id → timestamps in arrival order
	total  int
	srv    *http.Server
	ln     net.Listener
	notify chan struct{}
}

func newSink(t testing.TB, behave func(n int) int) *sink {
	s := &sink{t: t, behave: behave, got: map[string][]int64{}, notify: make(chan struct{}, 1)}
	if s.behave == nil {
		s.behave = func(int) int { return 0 }
	}
	s.up()
	t.Cleanup(s.down)
	return s
}

func (s *sink) url() string { return "http://" + s.addr + "/api/v1/write" }

func (s *sink) up() {
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ { // the port may linger briefly after down
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("sink listen: %v", err)
	}
	s.addr = ln.Addr().String()
	s.ln = ln
	s.srv = &http.Server{Handler: s}
	go s.srv.Serve(ln)
}

func (s *sink) down() {
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(500)
		return
	}
	s.mu.Lock()
	n := s.n
	s.n++
	s.mu.Unlock()
	if st := s.behave(n); st != 0 {
		http.Error(w, fmt.Sprintf("sink refuses request %d", n), st)
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		s.t.Errorf("sink: snappy: %v", err)
		http.Error(w, err.Error(), 400)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		s.t.Errorf("sink: protobuf: %v", err)
		http.Error(w, err.Error(), 400)
		return
	}
	if s.refuse != nil && s.refuse(&req) {
		http.Error(w, "sink refuses this batch", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for _, ts := range req.Timeseries {
		id := ""
		for _, l := range ts.Labels {
			if l.Name == "id" {
				id = l.Value
			}
		}
		for _, smp := range ts.Samples {
			s.got[id] = append(s.got[id], smp.Timestamp)
			s.total++
		}
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

// missing returns how many acknowledged samples have not arrived.
func (s *sink) missing(acked map[string][]int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return missingSamples(s.got, acked)
}

// missingSamples returns how many of the acknowledged timestamps, per series
// id, are not among those that arrived.
func missingSamples(got, acked map[string][]int64) int {
	miss := 0
	for id, tss := range acked {
		have := map[int64]bool{}
		for _, t := range got[id] {
			have[t] = true
		}
		for _, t := range tss {
			if !have[t] {
				miss++
			}
		}
	}
	return miss
}

// waitDelivered waits until every acknowledged sample arrived.
func (s *sink) waitDelivered(acked map[string][]int64, within time.Duration) {
	s.t.Helper()
	waitNoneMissing(s.t, s.notify, func() int { return s.missing(acked) }, within, "sink "+s.addr)
}

// waitNoneMissing waits, woken by notify (each accepted request) or every
// 100 ms (a request that only re-sent what had arrived), until missing
// returns 0, and fails the test naming what after within.
func waitNoneMissing(t testing.TB, notify <-chan struct{}, missing func() int, within time.Duration, what string) {
	t.Helper()
	deadline := time.After(within)
	for {
		miss := missing()
		if miss == 0 {
			return
		}
		select {
		case <-notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: %d acknowledged samples never arrived", what, miss)
		}
	}
}

// checkOrder asserts that, per series, samples arrived in timestamp order,
// ignoring re-sent duplicates (at-least-once).
func (s *sink) checkOrder() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, tss := range s.got {
		seen := map[int64]bool{}
		var hi int64
		for _, t := range tss {
			if !seen[t] && t < hi {
				s.t.Fatalf("series %s: new sample %d arrived after %d", id, t, hi)
			}
			seen[t] = true
			hi = max(hi, t)
		}
	}
}

// ---------------------------------------------------------------------------
// The ferry process.

type ferry struct {
	proc
	dir     string
	cfgPath string
	addr    string
	binary  string // "" for ferryBin
}

// newFerry writes a config with the given endpoints and extra YAML under
// wal:, and a fixed port.
func newFerry(t testing.TB, walYAML string, endpoints ...string) *ferry {
	f := &ferry{proc: proc{t: t, name: "ferry"}, dir: t.TempDir()}
	f.addr = freeAddr(t)
	f.cfgPath = filepath.Join(f.dir, "ferry.yml")
	f.writeConfig(walYAML, endpoints...)
	t.Cleanup(func() {
		f.kill()
		if t.Failed() {
			t.Logf("ferry log:\n%s", f.logText())
		}
	})
	return f
}

// writeConfig writes the config; endpoints are "name=url" or
// "name=url|extra yaml lines" (which replace the default queue_config if
// they hold one).
func (f *ferry) writeConfig(walYAML string, endpoints ...string) {
	var b strings.Builder
	fmt.Fprintf(&b, "listen_address: %s\ndata_dir: %s\nshutdown_timeout: 2s\n", f.addr, filepath.Join(f.dir, "data"))
	if walYAML != "" {
		fmt.Fprintf(&b, "wal:\n%s\n", indent(walYAML, "  "))
	}
	b.WriteString("remote_write:\n")
	for _, ep := range endpoints {
		name, rest, _ := strings.Cut(ep, "=")
		u, extra, _ := strings.Cut(rest, "|")
		fmt.Fprintf(&b, "  - name: %s\n    url: %s\n", name, u)
		if !strings.Contains(extra, "queue_config:") {
			b.WriteString("    queue_config: {max_samples_per_send: 500, batch_send_deadline: 50ms, min_backoff: 10ms, max_backoff: 200ms}\n")
		}
		if extra != "" {
			b.WriteString(indent(extra, "    ") + "\n")
		}
	}
	if err := os.WriteFile(f.cfgPath, []byte(b.String()), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func indent(s, by string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = by + l
	}
	return strings.Join(lines, "\n")
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs ferry and waits until it is ready, failing the test otherwise.
func (f *ferry) start() {
	f.t.Helper()
	f.spawn()
	if !f.ready(60 * time.Second) {
		select {
		case <-f.exited:
			f.t.Fatalf("ferry exited during start:\n%s", f.logText())
		default:
		}
		f.t.Fatalf("ferry not ready after 60s:\n%s", f.logText())
	}
}

// spawn starts the ferry process, collecting its log.
func (f *ferry) spawn() {
	f.t.Helper()
	f.bin = cmp.Or(f.binary, ferryBin)
	f.args = []string{"run", "--config", f.cfgPath, "--log.level", "info"}
	f.proc.start()
}

// ready polls /-/ready until it answers 200 (true), the process exits or
// within passes (false).
func (f *ferry) ready(within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-f.exited:
			return false
		default:
		}
		if resp, err := http.Get("http://" + f.addr + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// kill9 kills the process without warning.
func (f *ferry) kill9() {
	if f.cmd == nil || f.cmd.Process == nil {
		return
	}
	_ = f.cmd.Process.Signal(syscall.SIGKILL)
	<-f.exited
	f.cmd = nil
}

// stop sends SIGTERM and waits for a clean exit.
func (f *ferry) stop() {
	f.t.Helper()
	if f.cmd == nil {
		return
	}
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.exited:
	case <-time.After(30 * time.Second):
		f.t.Fatalf("ferry did not stop within 30s of SIGTERM")
	}
	if code := f.cmd.ProcessState.ExitCode(); code != 0 {
		f.t.Fatalf("ferry exited with %d after SIGTERM:\n%s", code, f.logText())
	}
	f.cmd = nil
}

func (f *ferry) kill() {
	if f.cmd != nil {
		f.kill9()
	}
}

// metric returns the sum of a metric's samples whose labels contain all of
// match (e.g. `endpoint="a"`).
func (f *ferry) metric(name string, match ...string) float64 {
	f.t.Helper()
	sum, _ := scrapeSum(f.t, "http://"+f.addr+"/metrics", name, match...)
	return sum
}

// ---------------------------------------------------------------------------
// A remote-write client pushing at ferry.

// pusher sends rounds of one sample per series and remembers which samples
// ferry acknowledged.
type pusher struct {
	url    string
	series int
	client *http.Client
	mu     sync.Mutex
	acked  map[string][]int64
	ackedN int
	status map[int]int
	// extra, if set, gives series i labels besides __name__, id and job;
	// their names must sort after "job".
	extra func(i int) []prompb.Label
}

func newPusher(addr string, series int) *pusher {
	return &pusher{url: "http://" + addr + "/api/v1/write", series: series,
		client: &http.Client{Timeout: 10 * time.Second}, acked: map[string][]int64{}, status: map[int]int{}}
}

func seriesID(i int) string { return strconv.Itoa(i) }

// push sends one round at timestamp ts for series [from, to); it returns the
// HTTP status (0 on a network error).
func (p *pusher) push(ts int64, from, to int) (int, http.Header) {
	return p.pushSamples([]int64{ts}, from, to)
}

// pushSamples sends one request holding, for each series in [from, to),
// one sample per timestamp in tss (one WAL record), and records them as
// acknowledged on a 2xx. It returns the status (0 on a network error).
func (p *pusher) pushSamples(tss []int64, from, to int) (int, http.Header) {
	req := prompb.WriteRequest{}
	for i := from; i < to; i++ {
		ts := prompb.TimeSeries{Labels: []prompb.Label{
			{Name: "__name__", Value: "e2e_metric"},
			{Name: "id", Value: seriesID(i)},
			{Name: "job", Value: "e2e"},
		}}
		if p.extra != nil {
			ts.Labels = append(ts.Labels, p.extra(i)...)
		}
		for _, t := range tss {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t, Value: float64(t)})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	raw, err := req.Marshal()
	if err != nil {
		panic(err)
	}
	hreq, _ := http.NewRequest(http.MethodPost, p.url, bytes.NewReader(snappy.Encode(nil, raw)))
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := p.client.Do(hreq)
	if err != nil {
		p.mu.Lock()
		p.status[0]++
		p.mu.Unlock()
		return 0, nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status[resp.StatusCode]++
	if resp.StatusCode/100 == 2 {
		for i := from; i < to; i++ {
			p.acked[seriesID(i)] = append(p.acked[seriesID(i)], tss...)
			p.ackedN += len(tss)
		}
	}
	return resp.StatusCode, resp.Header
}

// pushRounds pushes rounds [from, to] for all series in batches.
func (p *pusher) pushRounds(t testing.TB, from, to int64, batch int) {
	t.Helper()
	for ts := from; ts <= to; ts++ {
		for s := 0; s < p.series; s += batch {
			if code, _ := p.push(ts, s, min(s+batch, p.series)); code/100 != 2 {
				t.Fatalf("push round %d: status %d", ts, code)
			}
		}
	}
}

// run pushes rounds from ts on, in the background, until ctx ends; failed
// pushes are not retried (the samples are simply not acknowledged).
func (p *pusher) run(ctx context.Context, ts int64, batch int) (done <-chan int64) {
	out := make(chan int64, 1)
	go func() {
		for ; ctx.Err() == nil; ts++ {
			for s := 0; s < p.series && ctx.Err() == nil; s += batch {
				p.push(ts, s, min(s+batch, p.series))
			}
		}
		out <- ts
	}()
	return out
}

func (p *pusher) snapshot() (map[string][]int64, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := make(map[string][]int64, len(p.acked))
	for k, v := range p.acked {
		c[k] = append([]int64(nil), v...)
	}
	return c, p.ackedN
}
