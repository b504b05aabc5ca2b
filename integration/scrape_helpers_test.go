package integration

// Helpers for the scraping suite (scrape_test.go): scrape targets served
// from the test process that number the scrapes they serve, Ferry configs
// with scrape_configs, and views of what the downstreams hold by scrape
// number.

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/value"
)

// seqTarget is a scrape target that numbers the scrapes it serves: every
// request gets the next number n (from 1), and every series it exposes,
// the gauge `seq` and fillers `seq_filler{i="…"}`, has the value n. A
// downstream that holds `seq` = n holds scrape n; the fillers show whether
// a scrape arrived whole.
type seqTarget struct {
	srv     *httptest.Server
	fillers int

	mu     sync.Mutex
	n      int
	served []time.Time // when scrape n+1 was numbered
	// hold, if set, runs before the body of scrape n is written (wrote
	// false) and after it was written and flushed (wrote true).
	hold func(n int, wrote bool)
}

func newSeqTarget(t testing.TB, fillers int) *seqTarget {
	s := &seqTarget{fillers: fillers}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *seqTarget) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.n++
	n, hold := s.n, s.hold
	s.served = append(s.served, time.Now())
	s.mu.Unlock()
	if hold != nil {
		hold(n, false)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP seq Number of this scrape of the target, from 1.\n# TYPE seq gauge\nseq %d\n", n)
	b.WriteString("# HELP seq_filler The scrape number again, once per series.\n# TYPE seq_filler gauge\n")
	for i := range s.fillers {
		fmt.Fprintf(&b, "seq_filler{i=\"%03d\"} %d\n", i, n)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	// With a length, the scraper has the whole body once it is flushed.
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	_, _ = w.Write([]byte(b.String()))
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if hold != nil {
		hold(n, true)
	}
}

// addr is the target's host:port, its instance label.
func (s *seqTarget) addr() string { return strings.TrimPrefix(s.srv.URL, "http://") }

// count returns how many scrapes it served (numbered) so far.
func (s *seqTarget) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// setHold installs (or, with nil, removes) the hook run around each body.
func (s *seqTarget) setHold(h func(n int, wrote bool)) {
	s.mu.Lock()
	s.hold = h
	s.mu.Unlock()
}

// staticTarget serves body with contentType on every request.
func staticTarget(t testing.TB, contentType, body string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// scrapeFerry is newFerry with scrape (top-level YAML: global and
// scrape_configs) appended to its config, started. walYAML goes under wal:.
func scrapeFerry(t testing.TB, walYAML, scrape string, endpoints ...string) *ferry {
	t.Helper()
	f := newFerry(t, walYAML, endpoints...)
	f.appendConfig(scrape)
	f.start()
	return f
}

// sighup asks the running ferry to reload its config.
func (f *ferry) sighup() {
	f.t.Helper()
	if err := f.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		f.t.Fatalf("SIGHUP: %v", err)
	}
}

// writeFileAtomic replaces path with data through a rename, as a
// configuration management tool would (file_sd's documented way).
func writeFileAtomic(t testing.TB, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// crash kills the Prometheus with SIGKILL; start brings it back on the same
// port and storage.
func (p *prom) crash() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

// ---------------------------------------------------------------------------
// Scrape numbers downstream.

// seqSet is a set of scrape numbers.
type seqSet map[int]bool

// seqsOf returns the scrape numbers in the values of raw samples (as the
// query API formats them).
func seqsOf(samples promSamples) seqSet {
	out := seqSet{}
	for _, m := range samples {
		for _, v := range m {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				out[int(f)] = true
			}
		}
	}
	return out
}

// promSeqs returns the scrape numbers of selector (a `seq` series) that the
// Prometheus at p holds in the window (end-rng, end].
func promSeqs(p *prom, selector string, end time.Time, rng time.Duration) (seqSet, error) {
	s, err := p.raw(selector, end, rng)
	if err != nil {
		return nil, err
	}
	return seqsOf(s), nil
}

// gaps returns the numbers in [1, upto] that are neither in have nor in
// allowed, sorted.
func (have seqSet) gaps(upto int, allowed seqSet) []int {
	var out []int
	for n := 1; n <= upto; n++ {
		if !have[n] && !allowed[n] {
			out = append(out, n)
		}
	}
	return out
}

// waitSeqs polls fetch until it holds every scrape number in [1, upto] but
// those allowed to be missing; after within it fails, naming the gaps.
func waitSeqs(t testing.TB, what string, upto int, allowed seqSet, within time.Duration, fetch func() (seqSet, error)) seqSet {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		have, err := fetch()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		g := have.gaps(upto, allowed)
		if len(g) == 0 {
			return have
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of the scrapes 1..%d the target served never arrived (allowed missing: %v): %v",
				what, len(g), upto, sortedInts(allowed), firstInts(g, 20))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func sortedInts(s seqSet) []int {
	out := make([]int, 0, len(s))
	for n := range s {
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

func firstInts(s []int, n int) []int {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// ---------------------------------------------------------------------------
// What a capturing receiver (rwCapture) holds, by labels.

// capLabelRE matches one label of labels.Labels.String().
var capLabelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// capLabels parses a key of rwCapture.series (labels.Labels.String()).
func capLabels(key string) map[string]string {
	m := map[string]string{}
	for _, sm := range capLabelRE.FindAllStringSubmatch(key, -1) {
		v, err := strconv.Unquote(`"` + sm[2] + `"`)
		if err != nil {
			v = sm[2]
		}
		m[sm[1]] = v
	}
	return m
}

// capSelect returns the float samples of the captured series whose labels
// contain all of match: labelKey → timestamp → value.
func capSelect(c *rwCapture, match map[string]string) map[string]map[int64]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]map[int64]float64{}
	for key, s := range c.series {
		ls := capLabels(key)
		ok := true
		for k, v := range match {
			if ls[k] != v {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		m := make(map[int64]float64, len(s.floats))
		for ts, v := range s.floats {
			m[ts] = v
		}
		out[labelKey(ls)] = m
	}
	return out
}

// capSeqs returns the scrape numbers of the captured `seq` series of
// instance (its stale markers aside).
func capSeqs(c *rwCapture, instance string) seqSet {
	out := seqSet{}
	for _, m := range capSelect(c, map[string]string{"__name__": "seq", "instance": instance}) {
		for _, v := range m {
			if !value.IsStaleNaN(v) {
				out[int(v)] = true
			}
		}
	}
	return out
}

// staleness summarises the stale markers of a set of captured series.
type staleness struct {
	series, stale int // series, and those with a stale marker
	after         int // samples later than their series' stale marker
	without       []string
}

func staleOf(series map[string]map[int64]float64) staleness {
	var st staleness
	for k, m := range series {
		st.series++
		staleAt := int64(math.MaxInt64)
		for ts, v := range m {
			if value.IsStaleNaN(v) {
				staleAt = min(staleAt, ts)
			}
		}
		if staleAt == math.MaxInt64 {
			st.without = append(st.without, k)
			continue
		}
		st.stale++
		for ts, v := range m {
			if ts > staleAt && !value.IsStaleNaN(v) {
				st.after++
			}
		}
	}
	sort.Strings(st.without)
	return st
}
