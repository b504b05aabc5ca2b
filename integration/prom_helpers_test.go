package integration

// Helpers for the suites against real peers (FERRY_INTEGRATION=1): a real
// Prometheus (Debian's /usr/bin/prometheus) as upstream, agent or
// remote-write receiver, a real node exporter, and the Prometheus HTTP API.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireIntegration skips the test unless FERRY_INTEGRATION=1, so that
// `make test` stays fast; `make test-integration` sets it.
func requireIntegration(t testing.TB) {
	t.Helper()
	if os.Getenv("FERRY_INTEGRATION") != "1" {
		t.Skip("suite against real Prometheus, node exporter, loop mounts and long runs: set FERRY_INTEGRATION=1 (make test-integration) to run it")
	}
}

// lookBinary finds a peer binary; with FERRY_INTEGRATION=1 a missing peer is
// a failure, not a skip, so that CI cannot pass without having run the suite.
func lookBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/" + name, "/usr/local/bin/" + name} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("%s not found: install it with `apt-get install %s` (.ci/run does)", name, pkg)
	return ""
}

// ---------------------------------------------------------------------------
// A child process with its output kept for failure reports.

type proc struct {
	t      testing.TB
	name   string
	bin    string
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
	logMu  sync.Mutex
	log    bytes.Buffer
	keep   int // bytes of log kept (the tail)
}

func (p *proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	// Die with the test binary even if it is killed before its cleanups run.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.exited = make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.logMu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			if p.keep > 0 && p.log.Len() > 2*p.keep {
				tail := append([]byte(nil), p.log.Bytes()[p.log.Len()-p.keep:]...)
				p.log.Reset()
				p.log.WriteString("[...]\n")
				p.log.Write(tail)
			}
			p.logMu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	go func(cmd *exec.Cmd, pw *io.PipeWriter, done chan struct{}) {
		_ = cmd.Wait()
		pw.Close()
		close(done)
	}(p.cmd, pw, p.exited)
}

func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) logText() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// stop sends SIGTERM and waits; after within it kills. It reports whether
// the process stopped on its own.
func (p *proc) stop(within time.Duration) bool {
	if !p.running() {
		p.cmd = nil
		return true
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	clean := true
	select {
	case <-p.exited:
	case <-time.After(within):
		p.t.Logf("%s did not stop within %v of SIGTERM; killing it", p.name, within)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		clean = false
	}
	p.cmd = nil
	return clean
}

// waitHTTP200 polls url until it answers 200, failing if the process exits.
func (p *proc) waitHTTP200(u string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	c := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			p.t.Fatalf("%s exited during start:\n%s", p.name, p.logText())
		default:
		}
		if resp, err := c.Get(u); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("%s not ready at %s after %v:\n%s", p.name, u, within, p.logText())
}

// ---------------------------------------------------------------------------
// Prometheus.

type promMode int

const (
	promServer   promMode = iota // scrapes and stores (the upstream's TSDB is the reference)
	promAgent                    // --enable-feature=agent: scrapes and remote-writes, no queries
	promReceiver                 // --web.enable-remote-write-receiver, no scraping: a downstream
)

type prom struct {
	proc
	addr    string
	dir     string
	cfgPath string
}

// startProm runs /usr/bin/prometheus on a free 127.0.0.1 port with its own
// storage under a temp dir (or storage, to restart on the same data). In
// config, "$SELF" stands for its own address. It is stopped at cleanup.
func startProm(t testing.TB, name string, mode promMode, config string) *prom {
	t.Helper()
	return startPromBin(t, lookBinary(t, "prometheus", "prometheus"), false, name, mode, config)
}

// startPromBin is startProm for any Prometheus binary: v3 selects the flags
// of Prometheus 3 (--agent instead of --enable-feature=agent); extra flags
// are appended.
func startPromBin(t testing.TB, bin string, v3 bool, name string, mode promMode, config string, extra ...string) *prom {
	t.Helper()
	base := t.TempDir()
	p := &prom{addr: freeAddr(t), dir: filepath.Join(base, "data"), cfgPath: filepath.Join(base, "prometheus.yml")}
	p.proc = proc{t: t, name: "prometheus " + name, bin: bin, keep: 256 << 10}
	if config == "" {
		config = "global:\n  scrape_interval: 15s\n"
	}
	config = strings.ReplaceAll(config, "$SELF", p.addr)
	if err := os.WriteFile(p.cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p.args = []string{
		"--config.file=" + p.cfgPath,
		"--web.listen-address=" + p.addr,
		"--log.level=info",
		// A sender whose endpoint is gone (Ferry stopped first) must not
		// hold the shutdown for the default minute.
		"--storage.remote.flush-deadline=5s",
	}
	switch mode {
	case promAgent:
		if v3 {
			p.args = append(p.args, "--agent", "--storage.agent.path="+p.dir)
		} else {
			p.args = append(p.args, "--enable-feature=agent", "--storage.agent.path="+p.dir)
		}
	case promReceiver:
		p.args = append(p.args, "--web.enable-remote-write-receiver", "--storage.tsdb.path="+p.dir,
			"--storage.tsdb.retention.time=1d")
	default:
		p.args = append(p.args, "--storage.tsdb.path="+p.dir, "--storage.tsdb.retention.time=1d")
	}
	p.args = append(p.args, extra...)
	t.Cleanup(func() {
		p.stop(30 * time.Second)
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", p.name, tailLines(p.logText(), 60))
		}
	})
	p.start()
	return p
}

func (p *prom) start() {
	p.t.Helper()
	p.proc.start()
	p.waitHTTP200("http://"+p.addr+"/-/ready", 60*time.Second)
}

// writeURL is its remote-write receiver.
func (p *prom) writeURL() string { return "http://" + p.addr + "/api/v1/write" }

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------------------
// The Prometheus HTTP API.

var apiClient = &http.Client{Timeout: 60 * time.Second}

type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func (p *prom) api(path string, params url.Values) (json.RawMessage, error) {
	resp, err := apiClient.PostForm("http://"+p.addr+path, params)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, truncate(string(body), 300))
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s %v: %s: %s", path, params, r.ErrorType, r.Error)
	}
	return r.Data, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// promSamples maps a series (its labels, as labelKey) to its samples:
// timestamp in ms → value as Prometheus formats it.
type promSamples map[string]map[int64]string

func (s promSamples) count() int {
	n := 0
	for _, v := range s {
		n += len(v)
	}
	return n
}

// labelKey is a canonical string for a label set.
func labelKey(m map[string]string) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	b.WriteByte('}')
	return b.String()
}

func msOf(f float64) int64 { return int64(math.Round(f * 1000)) }

// raw returns the raw samples of selector in the window (end-rng, end]
// through `/api/v1/query?query=selector[rng]&time=end`.
func (p *prom) raw(selector string, end time.Time, rng time.Duration) (promSamples, error) {
	q := fmt.Sprintf("%s[%dms]", selector, rng.Milliseconds())
	data, err := p.api("/api/v1/query", url.Values{"query": {q}, "time": {fmtTime(end)}})
	if err != nil {
		return nil, err
	}
	var res struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	out := promSamples{}
	for _, r := range res.Result {
		k := labelKey(r.Metric)
		m := out[k]
		if m == nil {
			m = map[int64]string{}
			out[k] = m
		}
		for _, v := range r.Values {
			ts, _ := v[0].(float64)
			val, _ := v[1].(string)
			m[msOf(ts)] = val
		}
	}
	return out, nil
}

// vector runs an instant query and returns labelKey → value.
func (p *prom) vector(query string, at time.Time) (map[string]float64, error) {
	data, err := p.api("/api/v1/query", url.Values{"query": {query}, "time": {fmtTime(at)}})
	if err != nil {
		return nil, err
	}
	var res struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, r := range res.Result {
		s, _ := r.Value[1].(string)
		f, _ := strconv.ParseFloat(s, 64)
		out[labelKey(r.Metric)] = f
	}
	return out, nil
}

// series lists the series matching match in [start, end] through
// /api/v1/series.
func (p *prom) series(match string, start, end time.Time) (map[string]bool, error) {
	data, err := p.api("/api/v1/series", url.Values{"match[]": {match}, "start": {fmtTime(start)}, "end": {fmtTime(end)}})
	if err != nil {
		return nil, err
	}
	var res []map[string]string
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, m := range res {
		out[labelKey(m)] = true
	}
	return out, nil
}

func fmtTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// ---------------------------------------------------------------------------
// Comparing what reached Ferry with what the downstreams hold.

// sampleDiff compares want (the reference) with got.
type sampleDiff struct {
	wantSeries, wantSamples int
	missingSeries           int
	missingSamples          int
	wrongValues             int
	extraSeries             int
	extraSamples            int
	examples                []string
	missing                 map[string][]int64 // series → missing timestamps
}

func (d sampleDiff) equal() bool {
	return d.missingSeries == 0 && d.missingSamples == 0 && d.wrongValues == 0 && d.extraSeries == 0 && d.extraSamples == 0
}

func (d sampleDiff) String() string {
	s := fmt.Sprintf("reference %d series / %d samples: %d series and %d samples missing, %d wrong values, %d extra series, %d extra samples",
		d.wantSeries, d.wantSamples, d.missingSeries, d.missingSamples, d.wrongValues, d.extraSeries, d.extraSamples)
	if len(d.examples) > 0 {
		s += "; e.g.\n  " + strings.Join(d.examples, "\n  ")
	}
	return s
}

func diffSamples(want, got promSamples) sampleDiff {
	d := sampleDiff{wantSeries: len(want), wantSamples: want.count(), missing: map[string][]int64{}}
	ex := func(format string, args ...any) {
		if len(d.examples) < 8 {
			d.examples = append(d.examples, fmt.Sprintf(format, args...))
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w := want[k]
		g, ok := got[k]
		if !ok {
			d.missingSeries++
			d.missingSamples += len(w)
			ex("series %s (%d samples) missing", k, len(w))
			for ts := range w {
				d.missing[k] = append(d.missing[k], ts)
			}
			continue
		}
		for ts, v := range w {
			gv, ok := g[ts]
			switch {
			case !ok:
				d.missingSamples++
				d.missing[k] = append(d.missing[k], ts)
				ex("%s @%d missing", k, ts)
			case gv != v:
				d.wrongValues++
				ex("%s @%d: %s, want %s", k, ts, gv, v)
			}
		}
		for ts := range g {
			if _, ok := w[ts]; !ok {
				d.extraSamples++
				ex("%s @%d unexpected", k, ts)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			d.extraSeries++
			d.extraSamples += len(got[k])
			ex("series %s unexpected", k)
		}
	}
	return d
}

// waitSame polls until every downstream holds exactly the reference's raw
// samples of selector over the window (end-rng, end], and returns the
// reference. It fails with the last difference after within.
func waitSame(t testing.TB, ref *prom, selector string, end time.Time, rng, within time.Duration, downs ...*prom) promSamples {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		want, err := ref.raw(selector, end, rng)
		if err != nil {
			t.Fatalf("query reference %s: %v", ref.name, err)
		}
		ok := true
		last = ""
		for _, d := range downs {
			got, err := d.raw(selector, end, rng)
			if err != nil {
				t.Fatalf("query %s: %v", d.name, err)
			}
			if diff := diffSamples(want, got); !diff.equal() {
				ok = false
				last += fmt.Sprintf("\n%s vs %s: %v", d.name, ref.name, diff)
			}
		}
		if ok {
			return want
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the downstreams still differ from the reference over %s[%v] at %s:%s",
				within, selector, rng, end.Format(time.RFC3339Nano), last)
		}
		time.Sleep(time.Second)
	}
}

// ackedMissing returns how many of the pusher's acknowledged samples are not
// in the Prometheus at p (metric e2e_metric, by its id label), with examples.
func ackedMissing(p *prom, acked map[string][]int64, end time.Time, rng time.Duration) (int, []string, error) {
	miss, ex, _, err := ackedMissingList(p, acked, end, rng)
	return miss, ex, err
}

// ackedMissingList is ackedMissing with the missing samples: id → timestamps.
func ackedMissingList(p *prom, acked map[string][]int64, end time.Time, rng time.Duration) (int, []string, map[string][]int64, error) {
	got, err := p.raw(`e2e_metric{job="e2e"}`, end, rng)
	if err != nil {
		return 0, nil, nil, err
	}
	list := map[string][]int64{}
	byID := map[string]map[int64]string{}
	for k, v := range got {
		m := idRE.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		byID[m[1]] = v
	}
	miss := 0
	var ex []string
	for id, tss := range acked {
		have := byID[id]
		for _, ts := range tss {
			v, ok := have[ts]
			if ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil && f == float64(ts) {
					continue
				}
			}
			miss++
			list[id] = append(list[id], ts)
			if len(ex) < 5 {
				ex = append(ex, fmt.Sprintf("id=%s @%d (present: %v, value %q)", id, ts, ok, v))
			}
		}
	}
	return miss, ex, list, nil
}

var idRE = regexp.MustCompile(`\bid="([^"]*)"`)

// waitAcked polls until every sample the pusher got a 2xx for is in each
// downstream.
func waitAcked(t testing.TB, acked map[string][]int64, within time.Duration, downs ...*prom) {
	t.Helper()
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, tss := range acked {
		for _, ts := range tss {
			lo, hi = min(lo, ts), max(hi, ts)
		}
	}
	if hi == math.MinInt64 {
		t.Fatal("nothing was acknowledged")
	}
	end := time.UnixMilli(hi)
	rng := time.Duration(hi-lo+1) * time.Millisecond
	deadline := time.Now().Add(within)
	for _, d := range downs {
		for {
			miss, ex, err := ackedMissing(d, acked, end, rng)
			if err != nil {
				t.Fatalf("query %s: %v", d.name, err)
			}
			if miss == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d acknowledged samples never arrived (after %v), e.g. %v", d.name, miss, within, ex)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

func ackedCount(acked map[string][]int64) int {
	n := 0
	for _, v := range acked {
		n += len(v)
	}
	return n
}

// ---------------------------------------------------------------------------
// Node exporter.

// startNodeExporter runs prometheus-node-exporter on a free port and
// returns its address.
func startNodeExporter(t testing.TB) string {
	t.Helper()
	bin := lookBinary(t, "prometheus-node-exporter", "prometheus-node-exporter")
	addr := freeAddr(t)
	p := &proc{t: t, name: "node exporter", bin: bin, keep: 64 << 10,
		args: []string{"--web.listen-address=" + addr, "--collector.textfile.directory=" + t.TempDir()}}
	t.Cleanup(func() { p.stop(10 * time.Second) })
	p.start()
	p.waitHTTP200("http://"+addr+"/metrics", 30*time.Second)
	return addr
}

// upstreamConfig scrapes the upstream itself and the node exporter every
// second and remote-writes to Ferry; extraRW adds remote_write entries.
func upstreamConfig(nodeAddr, ferryAddr string, extraRW ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["$SELF"]}]
  - job_name: node
    static_configs: [{targets: [%q]}]
remote_write:
  - url: http://%s/api/v1/write
    queue_config: {batch_send_deadline: 1s, min_backoff: 50ms, max_backoff: 1s}
`, nodeAddr, ferryAddr)
	for _, u := range extraRW {
		fmt.Fprintf(&b, "  - url: %s\n    queue_config: {batch_send_deadline: 1s, min_backoff: 50ms, max_backoff: 1s}\n", u)
	}
	return b.String()
}

// scrapedSelector selects what the upstream scraped (not the synthetic
// e2e_metric series pushed by the harness pusher).
const scrapedSelector = `{job=~"prometheus|node"}`

// ---------------------------------------------------------------------------
// Ferry helpers.

// pid returns the running ferry's process id.
func (f *ferry) pid() int {
	if f.cmd == nil || f.cmd.Process == nil {
		return 0
	}
	return f.cmd.Process.Pid
}

// rssBytes reads VmRSS of pid from /proc.
func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// metricOK is ferry.metric without failing the test when ferry is down.
func (f *ferry) metricOK(name string, match ...string) (float64, bool) {
	resp, err := http.Get("http://" + f.addr + "/metrics")
	if err != nil {
		return 0, false
	}
	resp.Body.Close()
	return f.metric(name, match...), true
}

// appendConfig adds top-level YAML (e.g. a receiver: section) to the config
// newFerry wrote.
func (f *ferry) appendConfig(yaml string) {
	f.t.Helper()
	fh, err := os.OpenFile(f.cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString(strings.TrimSpace(yaml) + "\n"); err != nil {
		f.t.Fatal(err)
	}
}

// ferryPlainBin is a ferry built without the race detector, for
// measurements of memory (the race detector's shadow memory would dominate
// RSS). Built once, on first use.
var (
	plainOnce sync.Once
	plainBin  string
	plainErr  error
)

func ferryPlainBinary(t testing.TB) string {
	t.Helper()
	plainOnce.Do(func() {
		plainBin = filepath.Join(filepath.Dir(ferryBin), "ferry-norace")
		cmd := exec.Command("go", "build", "-o", plainBin, "../cmd/ferry")
		out, err := cmd.CombinedOutput()
		if err != nil {
			plainErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return plainBin
}

// startWith starts ferry from another binary; later starts use ferryBin.
func (f *ferry) startWith(bin string) {
	f.t.Helper()
	f.binary = bin
	defer func() { f.binary = "" }()
	f.start()
}

// pushEvery pushes one round of all series every interval, with timestamp
// max(previous+1, now) in ms, until ctx ends; the returned channel closes
// when it has stopped. Pushes that fail are not retried.
// load is what the suite's real-Prometheus tests feed Ferry: an upstream
// Prometheus scraping itself and node-exporter every second and
// remote-writing to Ferry, and a pusher sending a round of its synthetic
// series at a steady interval.
type load struct {
	up     *prom
	p      *pusher
	begin  time.Time // before the first sample
	cancel context.CancelFunc
	done   <-chan struct{}
}

// startLoad starts node-exporter, the upstream (in mode, also
// remote-writing to extraRW) and a pusher of series series, pushed every
// interval in requests of batch, against the running ferry f. The pushing
// ends with stopPushing or the test.
func startLoad(t testing.TB, f *ferry, mode promMode, extraRW []string, series int, interval time.Duration, batch int) *load {
	t.Helper()
	node := startNodeExporter(t)
	l := &load{begin: time.Now().Add(-time.Second)}
	name := "upstream"
	if mode == promAgent {
		name = "agent"
	}
	l.up = startProm(t, name, mode, upstreamConfig(node, f.addr, extraRW...))
	l.p = newPusher(f.addr, series)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, pushEvery(ctx, l.p, interval, batch)
	t.Cleanup(l.stopPushing)
	return l
}

// stopPushing stops the pusher and waits for its last round.
func (l *load) stopPushing() {
	l.cancel()
	<-l.done
}

func pushEvery(ctx context.Context, p *pusher, interval time.Duration, batch int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		var last int64
		for {
			ts := max(last+1, time.Now().UnixMilli())
			last = ts
			for s := 0; s < p.series && ctx.Err() == nil; s += batch {
				p.push(ts, s, min(s+batch, p.series))
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return done
}

// tryStart is start without failing the test: it starts ferry and reports
// whether it became ready within the given time (the process is left
// running either way, unless it exited).
func (f *ferry) tryStart(within time.Duration) bool {
	f.t.Helper()
	f.spawn()
	return f.ready(within)
}
