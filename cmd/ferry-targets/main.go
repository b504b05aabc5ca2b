// Command ferry-targets simulates many Prometheus scrape targets on one
// machine, to measure scrapers such as Ferry, the Prometheus agent and
// vmagent.
//
// Target i listens on 127.0.0.1:(--base-port + i), so each has its own
// instance label, and serves /metrics in the text exposition format 0.0.4:
// --series series per target in counters, gauges and two classic histograms,
// with HELP and TYPE lines. Values are a function of the target and the wall
// clock second: counters grow, gauges swing, and scrapers that hit a target
// in the same second see the same body. Each body is rendered at most once a
// second per target and, when the scraper accepts it, gzipped once.
//
// With --file-sd it writes the target list for file_sd_configs, atomically:
//
//	ferry-targets --targets 1000 --series 200 --file-sd /tmp/targets.json
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// config holds the parsed command line.
type config struct {
	targets  int
	series   int
	basePort int
	fileSD   string
	gzip     bool
}

func parseFlags(args []string, usage io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("ferry-targets", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.IntVar(&cfg.targets, "targets", 1000, "number of targets")
	fs.IntVar(&cfg.series, "series", 200, fmt.Sprintf("series per target (>= %d)", minSeries))
	fs.IntVar(&cfg.basePort, "base-port", 20000, "port of target 0 on 127.0.0.1; target i listens on base-port+i (0 = ephemeral ports)")
	fs.StringVar(&cfg.fileSD, "file-sd", "", "write the targets as a file_sd JSON file to this path")
	fs.BoolVar(&cfg.gzip, "gzip", true, "gzip bodies for scrapers that accept it, as exporters do")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.targets <= 0:
		return cfg, errors.New("--targets must be > 0")
	case cfg.series < minSeries:
		return cfg, fmt.Errorf("--series must be >= %d", minSeries)
	case cfg.basePort < 0 || cfg.basePort > 0 && cfg.basePort+cfg.targets > 65536:
		return cfg, fmt.Errorf("--base-port %d: ports up to %d do not exist", cfg.basePort, cfg.basePort+cfg.targets-1)
	}
	return cfg, nil
}

// run is main without os.Exit, for tests. It returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ferry-targets: %v\n", err)
		return 2
	}
	// Each target holds a listener and a connection per scraper.
	if n, err := raiseFileLimit(); err != nil {
		fmt.Fprintf(stderr, "ferry-targets: raising the open files limit: %v\n", err)
	} else if want := uint64(4*cfg.targets + 64); n < want {
		fmt.Fprintf(stderr, "ferry-targets: warning: open files limit %d; %d targets with 3 scrapers need about %d\n", n, cfg.targets, want)
	}
	sim, err := start(cfg, time.Now)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-targets: %v\n", err)
		return 1
	}
	addrs := sim.addrs()
	fmt.Fprintf(stderr, "ferry-targets: serving %d targets × %d series on %s .. %s\n",
		cfg.targets, cfg.series, addrs[0], addrs[len(addrs)-1])
	<-ctx.Done()
	if err := sim.Close(); err != nil {
		fmt.Fprintf(stderr, "ferry-targets: %v\n", err)
		return 1
	}
	return 0
}

// raiseFileLimit sets the soft RLIMIT_NOFILE to the hard limit and returns
// the new soft limit.
func raiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
	}
	return l.Cur, nil
}

// simulator serves the targets.
type simulator struct {
	lines   []line
	epoch   int64 // Unix second the simulator started
	now     func() time.Time
	gzip    bool
	gzPool  sync.Pool // *gzip.Writer
	targets []*target
}

// target is one simulated scrape target with its cached body.
type target struct {
	sim *simulator
	idx int
	ln  net.Listener
	srv *http.Server

	mu       sync.Mutex
	sec      int64 // Unix second body was rendered for
	body, gz []byte
}

// start listens on every target's port, serves them and writes the file_sd
// file if configured.
func start(cfg config, now func() time.Time) (*simulator, error) {
	s := newSimulator(cfg, now)
	for i := range cfg.targets {
		addr := "127.0.0.1:0"
		if cfg.basePort > 0 {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.basePort+i))
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("target %d: %w", i, err)
		}
		t := &target{sim: s, idx: i, ln: ln, sec: -1}
		t.srv = &http.Server{Handler: t, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
		s.targets = append(s.targets, t)
		go func() { _ = t.srv.Serve(ln) }()
	}
	if cfg.fileSD != "" {
		if err := writeFileSD(cfg.fileSD, s.addrs()); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// newSimulator returns a simulator without targets.
func newSimulator(cfg config, now func() time.Time) *simulator {
	s := &simulator{lines: newLayout(cfg.series), epoch: now().Unix(), now: now, gzip: cfg.gzip}
	s.gzPool.New = func() any {
		w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level: no error
		return w
	}
	return s
}

func (s *simulator) addrs() []string {
	a := make([]string, len(s.targets))
	for i, t := range s.targets {
		a[i] = t.ln.Addr().String()
	}
	return a
}

// Close stops every target and closes its connections.
func (s *simulator) Close() error {
	var errs []error
	for _, t := range s.targets {
		if err := t.srv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("target %d: %w", t.idx, err))
		}
	}
	return errors.Join(errs...)
}

// render appends the body of target idx at the given time.
func (s *simulator) render(dst []byte, idx int, at time.Time) []byte {
	return appendBody(dst, s.lines, idx, float64(at.Unix()-s.epoch))
}

func (s *simulator) compress(body []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(body) / 4)
	w := s.gzPool.Get().(*gzip.Writer)
	w.Reset(&buf)
	_, _ = w.Write(body) // a bytes.Buffer does not fail
	_ = w.Close()
	s.gzPool.Put(w)
	return buf.Bytes()
}

func (t *target) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	gz := t.sim.gzip && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
	body := t.cached(gz)
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if gz {
		h.Set("Content-Encoding", "gzip")
	}
	_, _ = w.Write(body)
}

// cached returns the body for the current second, rendering and compressing
// it only once per second. Returned slices are never modified.
func (t *target) cached(gz bool) []byte {
	now := t.sim.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if sec := now.Unix(); sec != t.sec {
		t.body = t.sim.render(make([]byte, 0, len(t.body)), t.idx, now)
		t.gz, t.sec = nil, sec
	}
	if !gz {
		return t.body
	}
	if t.gz == nil {
		t.gz = t.sim.compress(t.body)
	}
	return t.gz
}

// writeFileSD writes addrs as a file_sd JSON file: to a temporary file in
// the same directory, then renamed over path, so that a scraper watching it
// never reads a partial list.
func writeFileSD(path string, addrs []string) error {
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	b, err := json.Marshal([]group{{Targets: addrs, Labels: map[string]string{"sim": "1"}}})
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("file_sd: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("file_sd %s: %w", path, err)
	}
	return nil
}
