package integration

// Helpers for the Remote-Write 2.0 suite: Prometheus 3 (built by
// peers/prometheus3.sh), VictoriaMetrics (Debian's victoria-metrics), a
// capturing remote-write receiver that decodes both protocol versions, and
// a Remote-Write 2.0 client.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// The Content-Type of a Remote-Write 2.0 request.
const contentTypeV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"

// ---------------------------------------------------------------------------
// Prometheus 3.

// prometheus3Binary is $FERRY_PROMETHEUS3, or the binary peers/prometheus3.sh
// caches. With FERRY_INTEGRATION=1 a missing binary is a failure.
func prometheus3Binary(t testing.TB) string {
	t.Helper()
	p := os.Getenv("FERRY_PROMETHEUS3")
	if p == "" {
		dir := os.Getenv("FERRY_PEERS_DIR")
		if dir == "" {
			home, _ := os.UserHomeDir()
			dir = filepath.Join(home, ".cache", "ferry-peers")
		}
		p = filepath.Join(dir, "prometheus-v0.315.0")
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("Prometheus 3 not found at %s: build it with `bash integration/peers/prometheus3.sh` "+
			"(it prints the path; export it as FERRY_PROMETHEUS3; .ci/run does)", p)
	}
	return p
}

// startProm3 runs Prometheus 3 like startProm runs 2.42; extra flags (e.g.
// --enable-feature=exemplar-storage) are appended.
func startProm3(t testing.TB, name string, mode promMode, config string, extra ...string) *prom {
	t.Helper()
	return startPromBin(t, prometheus3Binary(t), true, name, mode, config, extra...)
}

// exemplars returns the exemplars of the series selected by query whose
// timestamps are in [start, end], through /api/v1/query_exemplars, as
// "series labels exemplar labels value @ms" keys.
func (p *prom) exemplars(query string, start, end time.Time) (map[string]bool, error) {
	data, err := p.api("/api/v1/query_exemplars", url.Values{"query": {query}, "start": {fmtTime(start)}, "end": {fmtTime(end)}})
	if err != nil {
		return nil, err
	}
	var res []struct {
		SeriesLabels map[string]string `json:"seriesLabels"`
		Exemplars    []struct {
			Labels    map[string]string `json:"labels"`
			Value     string            `json:"value"`
			Timestamp float64           `json:"timestamp"`
		} `json:"exemplars"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, s := range res {
		for _, e := range s.Exemplars {
			out[fmt.Sprintf("%s %s %s @%d", labelKey(s.SeriesLabels), labelKey(e.Labels), e.Value, msOf(e.Timestamp))] = true
		}
	}
	return out, nil
}

// promHistogram is a native histogram sample as the query API returns it.
type promHistogram struct {
	Count   string          `json:"count"`
	Sum     string          `json:"sum"`
	Buckets json.RawMessage `json:"buckets"`
}

// rawHistograms returns the native histogram samples of selector in the
// window (end-rng, end]: series → timestamp in ms → histogram.
func (p *prom) rawHistograms(selector string, end time.Time, rng time.Duration) (map[string]map[int64]promHistogram, error) {
	q := fmt.Sprintf("%s[%dms]", selector, rng.Milliseconds())
	data, err := p.api("/api/v1/query", url.Values{"query": {q}, "time": {fmtTime(end)}})
	if err != nil {
		return nil, err
	}
	var res struct {
		Result []struct {
			Metric     map[string]string    `json:"metric"`
			Histograms [][2]json.RawMessage `json:"histograms"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	out := map[string]map[int64]promHistogram{}
	for _, r := range res.Result {
		if len(r.Histograms) == 0 {
			continue
		}
		m := map[int64]promHistogram{}
		for _, h := range r.Histograms {
			var ts float64
			var v promHistogram
			if err := json.Unmarshal(h[0], &ts); err != nil {
				return nil, err
			}
			if err := json.Unmarshal(h[1], &v); err != nil {
				return nil, err
			}
			m[msOf(ts)] = v
		}
		out[labelKey(r.Metric)] = m
	}
	return out, nil
}

// diffHistograms describes how got differs from want (empty if it does
// not); withBuckets compares the buckets too, not only count and sum.
func diffHistograms(want, got map[string]map[int64]promHistogram, withBuckets bool) string {
	var diffs []string
	add := func(format string, args ...any) {
		if len(diffs) < 8 {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	n := 0
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			add("series %s (%d histograms) missing", k, len(w))
			n++
			continue
		}
		for ts, wh := range w {
			gh, ok := g[ts]
			switch {
			case !ok:
				add("%s @%d missing", k, ts)
				n++
			case gh.Count != wh.Count || gh.Sum != wh.Sum || (withBuckets && !bytes.Equal(gh.Buckets, wh.Buckets)):
				add("%s @%d: count %s sum %s buckets %s, want %s %s %s", k, ts, gh.Count, gh.Sum, gh.Buckets, wh.Count, wh.Sum, wh.Buckets)
				n++
			}
		}
		for ts := range g {
			if _, ok := w[ts]; !ok {
				add("%s @%d unexpected", k, ts)
				n++
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			add("series %s unexpected", k)
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d differences, e.g.\n  %s", n, strings.Join(diffs, "\n  "))
}

// ---------------------------------------------------------------------------
// VictoriaMetrics.

type victoria struct {
	proc
	addr string
}

// startVictoriaMetrics runs Debian's victoria-metrics on a free port with
// its storage in a temp dir; it is stopped at cleanup.
func startVictoriaMetrics(t testing.TB) *victoria {
	t.Helper()
	v := &victoria{addr: freeAddr(t)}
	v.proc = proc{t: t, name: "victoria-metrics", bin: lookBinary(t, "victoria-metrics", "victoria-metrics"), keep: 64 << 10,
		args: []string{"-httpListenAddr=" + v.addr, "-storageDataPath=" + filepath.Join(t.TempDir(), "vm"), "-retentionPeriod=1d"}}
	t.Cleanup(func() {
		v.stop(10 * time.Second)
		if t.Failed() {
			t.Logf("victoria-metrics log (tail):\n%s", tailLines(v.logText(), 40))
		}
	})
	v.start()
	v.waitHTTP200("http://"+v.addr+"/health", 30*time.Second)
	return v
}

func (v *victoria) writeURL() string { return "http://" + v.addr + "/api/v1/write" }

// export returns the raw samples of the series matching match through
// /api/v1/export: series → timestamp in ms → value.
func (v *victoria) export(match string, start, end time.Time) (map[string]map[int64]float64, error) {
	resp, err := apiClient.PostForm("http://"+v.addr+"/api/v1/export", url.Values{
		"match[]": {match}, "start": {fmtTime(start)}, "end": {fmtTime(end)}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("export: HTTP %d: %s", resp.StatusCode, truncate(string(b), 300))
	}
	out := map[string]map[int64]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var line struct {
			Metric     map[string]string `json:"metric"`
			Values     []float64         `json:"values"`
			Timestamps []int64           `json:"timestamps"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, fmt.Errorf("export line %q: %w", truncate(sc.Text(), 200), err)
		}
		k := labelKey(line.Metric)
		m := out[k]
		if m == nil {
			m = map[int64]float64{}
			out[k] = m
		}
		for i, ts := range line.Timestamps {
			m[ts] = line.Values[i]
		}
	}
	return out, sc.Err()
}

// ---------------------------------------------------------------------------
// A capturing remote-write receiver for both protocol versions.

// capMeta is the metadata of a metric as an endpoint received it.
type capMeta struct{ Type, Help, Unit string }

// capSeries is what arrived for one series.
type capSeries struct {
	floats    map[int64]float64
	starts    map[int64]int64 // sample timestamp → start timestamp (2.0 only)
	hists     map[int64][2]float64
	exemplars map[string]bool // "labels value @ms"
}

// rwCapture accepts every Remote-Write 1.0 and 2.0 request, keeps what it
// carried, and answers 2.0 requests with the Written headers a compliant
// receiver sends.
type rwCapture struct {
	t        testing.TB
	srv      *httptest.Server
	mu       sync.Mutex
	requests map[string]int // "1.0" / "2.0" → requests
	badHdr   []string       // X-Prometheus-Remote-Write-Version not matching the Content-Type
	series   map[string]*capSeries
	metaV1   map[string]capMeta // WriteRequest.metadata: family → metadata
	metaV2   map[string]capMeta // per series: metric name → metadata
	noMetaV2 map[string]int     // metric name → 2.0 series that carried no metadata
}

func newRWCapture(t testing.TB) *rwCapture {
	c := &rwCapture{t: t, requests: map[string]int{}, series: map[string]*capSeries{},
		metaV1: map[string]capMeta{}, metaV2: map[string]capMeta{}, noMetaV2: map[string]int{}}
	c.srv = httptest.NewServer(c)
	t.Cleanup(c.srv.Close)
	return c
}

func (c *rwCapture) url() string { return c.srv.URL + "/api/v1/write" }

func (c *rwCapture) seriesLocked(key string) *capSeries {
	s := c.series[key]
	if s == nil {
		s = &capSeries{floats: map[int64]float64{}, starts: map[int64]int64{}, hists: map[int64][2]float64{}, exemplars: map[string]bool{}}
		c.series[key] = s
	}
	return s
}

func (c *rwCapture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		c.t.Errorf("capture: snappy: %v", err)
		http.Error(w, err.Error(), 400)
		return
	}
	ver := r.Header.Get("X-Prometheus-Remote-Write-Version")
	if strings.Contains(r.Header.Get("Content-Type"), "io.prometheus.write.v2.Request") {
		if !strings.HasPrefix(ver, "2.") {
			c.mu.Lock()
			c.badHdr = append(c.badHdr, fmt.Sprintf("2.0 request with X-Prometheus-Remote-Write-Version %q", ver))
			c.mu.Unlock()
		}
		c.serveV2(w, raw)
		return
	}
	if ver != "0.1.0" {
		c.mu.Lock()
		c.badHdr = append(c.badHdr, fmt.Sprintf("1.0 request with X-Prometheus-Remote-Write-Version %q", ver))
		c.mu.Unlock()
	}
	c.serveV1(w, raw)
}

func (c *rwCapture) serveV1(w http.ResponseWriter, raw []byte) {
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		c.t.Errorf("capture: 1.0 protobuf: %v", err)
		http.Error(w, err.Error(), 400)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests["1.0"]++
	for _, ts := range req.Timeseries {
		var b labels.ScratchBuilder
		for _, l := range ts.Labels {
			b.Add(l.Name, l.Value)
		}
		b.Sort()
		s := c.seriesLocked(b.Labels().String())
		for _, smp := range ts.Samples {
			s.floats[smp.Timestamp] = smp.Value
		}
		for _, h := range ts.Histograms {
			s.hists[h.Timestamp] = [2]float64{histCountV1(h), h.Sum}
		}
		for _, e := range ts.Exemplars {
			var eb labels.ScratchBuilder
			for _, l := range e.Labels {
				eb.Add(l.Name, l.Value)
			}
			eb.Sort()
			s.exemplars[exemplarKey(eb.Labels(), e.Value, e.Timestamp)] = true
		}
	}
	for _, m := range req.Metadata {
		c.metaV1[m.MetricFamilyName] = capMeta{Type: strings.ToLower(m.Type.String()), Help: m.Help, Unit: m.Unit}
	}
	w.WriteHeader(http.StatusNoContent)
}

func histCountV1(h prompb.Histogram) float64 {
	if h.IsFloatHistogram() {
		return h.GetCountFloat()
	}
	return float64(h.GetCountInt())
}

func exemplarKey(l labels.Labels, v float64, ts int64) string {
	return fmt.Sprintf("%s %s @%d", l.String(), strconv.FormatFloat(v, 'g', -1, 64), ts)
}

func (c *rwCapture) serveV2(w http.ResponseWriter, raw []byte) {
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		c.t.Errorf("capture: 2.0 protobuf: %v", err)
		http.Error(w, err.Error(), 400)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests["2.0"]++
	var samples, hists, exs int
	var b labels.ScratchBuilder
	for _, ts := range req.Timeseries {
		lbls, err := ts.ToLabels(&b, req.Symbols)
		if err != nil {
			c.t.Errorf("capture: 2.0 labels: %v", err)
			http.Error(w, err.Error(), 400)
			return
		}
		s := c.seriesLocked(lbls.String())
		for _, smp := range ts.Samples {
			s.floats[smp.Timestamp] = smp.Value
			if smp.StartTimestamp != 0 {
				s.starts[smp.Timestamp] = smp.StartTimestamp
			}
			samples++
		}
		for _, h := range ts.Histograms {
			if h.IsFloatHistogram() {
				fh := h.ToFloatHistogram()
				s.hists[h.Timestamp] = [2]float64{fh.Count, fh.Sum}
			} else {
				ih := h.ToIntHistogram()
				s.hists[h.Timestamp] = [2]float64{float64(ih.Count), ih.Sum}
			}
			hists++
		}
		var eb labels.ScratchBuilder
		for _, e := range ts.Exemplars {
			ex, err := e.ToExemplar(&eb, req.Symbols)
			if err != nil {
				c.t.Errorf("capture: 2.0 exemplar: %v", err)
				http.Error(w, err.Error(), 400)
				return
			}
			s.exemplars[exemplarKey(ex.Labels, ex.Value, ex.Ts)] = true
			exs++
		}
		md, err := ts.ToMetadata(req.Symbols)
		if err != nil {
			c.t.Errorf("capture: 2.0 metadata: %v", err)
			http.Error(w, err.Error(), 400)
			return
		}
		name := lbls.Get("__name__")
		if md.Type != "unknown" || md.Help != "" || md.Unit != "" {
			c.metaV2[name] = capMeta{Type: string(md.Type), Help: md.Help, Unit: md.Unit}
		} else {
			c.noMetaV2[name]++
		}
	}
	w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(samples))
	w.Header().Set("X-Prometheus-Remote-Write-Histograms-Written", strconv.Itoa(hists))
	w.Header().Set("X-Prometheus-Remote-Write-Exemplars-Written", strconv.Itoa(exs))
	w.WriteHeader(http.StatusNoContent)
}

// counts returns the requests received per protocol version.
func (c *rwCapture) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.requests {
		out[k] = v
	}
	return out
}

// meta returns the metadata received for name: per series (2.0) or per
// family (1.0).
func (c *rwCapture) meta(v2 bool, name string) (capMeta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.metaV1[name]
	if v2 {
		m, ok = c.metaV2[name]
	}
	return m, ok
}

// ---------------------------------------------------------------------------
// A Remote-Write 2.0 client.

// rw2Builder builds a Remote-Write 2.0 request.
type rw2Builder struct {
	syms writev2.SymbolsTable
	ts   []writev2.TimeSeries
}

func newRW2Builder() *rw2Builder { return &rw2Builder{syms: writev2.NewSymbolTable()} }

// rw2Meta is the metadata a series carries.
type rw2Meta struct {
	typ        writev2.Metadata_MetricType
	help, unit string
}

// series adds a series (labels as name, value pairs) with its metadata and
// returns it for samples, histograms and exemplars to be appended.
func (b *rw2Builder) series(md rw2Meta, lv ...string) *writev2.TimeSeries {
	lbls := labels.FromStrings(lv...)
	b.ts = append(b.ts, writev2.TimeSeries{
		LabelsRefs: b.syms.SymbolizeLabels(lbls, nil),
		Metadata:   writev2.Metadata{Type: md.typ, HelpRef: b.syms.Symbolize(md.help), UnitRef: b.syms.Symbolize(md.unit)},
	})
	return &b.ts[len(b.ts)-1]
}

// exemplar returns an exemplar with the given labels (name, value pairs).
func (b *rw2Builder) exemplar(v float64, ts int64, lv ...string) writev2.Exemplar {
	return writev2.Exemplar{LabelsRefs: b.syms.SymbolizeLabels(labels.FromStrings(lv...), nil), Value: v, Timestamp: ts}
}

// body returns the snappy-compressed request.
func (b *rw2Builder) body() []byte {
	req := writev2.Request{Symbols: b.syms.Symbols(), Timeseries: b.ts}
	raw, err := req.Marshal()
	if err != nil {
		panic(err) // only a programming error makes marshalling fail
	}
	return snappy.Encode(nil, raw)
}

// postRW2 posts a snappy-compressed Remote-Write 2.0 body to ferry at addr;
// it returns the status (0 on a network error) and the answer's headers.
func postRW2(client *http.Client, addr string, body []byte) (int, http.Header) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentTypeV2)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	req.Header.Set("User-Agent", "ferry-integration-test")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// ---------------------------------------------------------------------------
// ferry wal inspect.

// walInspectTotals runs `ferry wal inspect dir` and sums each numeric
// column of its segment table over all segments: column name → total.
func walInspectTotals(t testing.TB, dir string) (map[string]int, string) {
	t.Helper()
	out, err := exec.Command(ferryBin, "wal", "inspect", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("ferry wal inspect %s: %v\n%s", dir, err, out)
	}
	lines := strings.Split(string(out), "\n")
	var cols []string
	totals := map[string]int{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if f[0] == "segment" {
			cols = f
			continue
		}
		if cols == nil || len(f) < len(cols)-1 {
			continue
		}
		if _, err := strconv.Atoi(f[0]); err != nil {
			continue
		}
		for i, c := range cols[1:] {
			if n, err := strconv.Atoi(f[i+1]); err == nil {
				totals[c] += n
			}
		}
	}
	if cols == nil {
		t.Fatalf("ferry wal inspect printed no segment table:\n%s", out)
	}
	return totals, string(out)
}

// sortedKeys returns m's keys in order, for stable failure messages.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// floatEq compares two sample values, NaN equal to NaN.
func floatEq(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }
