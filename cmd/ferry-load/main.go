// Command ferry-load measures a Prometheus remote-write (1.0) forwarder, such
// as Ferry or vmagent, end to end on one machine.
//
// It pushes synthetic series to --target and, at the same time, runs its own
// remote-write receiver that the forwarder under test delivers to. It reports
// the acknowledged ingest rate, the delivery rate, how long delivery took to
// catch up after pushing stopped and, with --pid, the CPU time and memory the
// measured process used per million samples. With --verify it also checks
// that every acknowledged (series, timestamp) pair was delivered at least once
// and that each series' timestamps arrived in non-decreasing order.
//
// Typical use, with Ferry listening on :9201 and forwarding to
// http://127.0.0.1:19291/api/v1/write:
//
//	ferry-load --target http://127.0.0.1:9201/api/v1/write --pid $(pidof ferry) --verify --json
//
// --shape picks the load: B (the default) pushes 100,000 series of 7 labels,
// 1,000 per request, from 4 clients; A pushes 50,000 series of 9-10
// Kubernetes-style labels, 500 per request, from 8 clients, as Prometheus
// sends them; A1M is A with 1,000,000 series. --series, --batch and
// --concurrency override a shape's values.
//
// --churn F replaces the next F of the series by new ones every time the
// synthetic clock (--ts-step per round) passes a multiple of --churn-every,
// as pods being replaced do; --verify then also checks that each round of a
// series slot came in the series that was active in that round.
//
// --rss-log and --rss-svg record the RSS of --pid over time, and the result
// compares the peak RSS of the first and the last third of the run after
// --warmup (rss_flat_ratio), which stays near 1 when memory does not grow
// with the series churned through.
//
// Use --target self to push straight at the tool's own receiver (to measure
// the tool itself), --receiver-only to run just the receiver and
// --no-receiver to measure ingest only.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config holds the parsed command line.
type config struct {
	target         string
	shapeName      string
	shape          shape // resolved from shapeName by parseFlags
	series         int
	batch          int
	concurrency    int
	duration       time.Duration
	samples        int64
	rounds         int
	rate           float64
	tsStep         time.Duration
	receiverListen string
	receiverOnly   bool
	noReceiver     bool
	verify         bool
	pid            string
	drainTimeout   time.Duration
	requestTimeout time.Duration
	progress       time.Duration
	json           bool
	proto          string
	churn          float64
	churnEvery     time.Duration
	warmup         time.Duration
	rssLog         string
	rssSVG         string
	rssTitle       string

	durationSet bool          // --duration was given explicitly
	minBackoff  time.Duration // first retry backoff; tests shorten it
	listener    net.Listener  // if set, the receiver serves on it (tests)
}

const selfTarget = "self"

// errHelp is returned by parseFlags for -h/--help.
var errHelp = flag.ErrHelp

func newFlagSet(cfg *config) *flag.FlagSet {
	fs := flag.NewFlagSet("ferry-load", flag.ContinueOnError)
	fs.StringVar(&cfg.target, "target", "", `remote-write URL to push to, e.g. http://127.0.0.1:9201/api/v1/write; "self" pushes to the tool's own receiver`)
	fs.StringVar(&cfg.shapeName, "shape", "B", `load shape: "B" (100k series of 7 labels, 1,000 per request, 4 pushers), "A" (50k series of 9-10 Kubernetes labels, 500 per request, 8 pushers) or "A1M" (A with 1M series); sets the series' labels and the defaults of --series, --batch and --concurrency`)
	// The shape sets these three unless they are given (parseFlags).
	fs.IntVar(&cfg.series, "series", 0, "number of active series (default: the shape's, A 50000, A1M 1000000, B 100000)")
	fs.IntVar(&cfg.batch, "batch", 0, "samples (= series) per request (default: the shape's, A and A1M 500, B 1000)")
	fs.IntVar(&cfg.concurrency, "concurrency", 0, "parallel pushers, each with one request in flight; each series is always pushed by the same pusher, in order (default: the shape's, A and A1M 8, B 4)")
	fs.DurationVar(&cfg.duration, "duration", 30*time.Second, "how long to push (0 = unlimited; then --samples or --rounds must be set)")
	fs.Int64Var(&cfg.samples, "samples", 0, "stop after pushing this many samples, in whole requests (0 = unlimited)")
	fs.IntVar(&cfg.rounds, "rounds", 0, "stop after this many rounds, each giving every series one sample (0 = unlimited)")
	fs.Float64Var(&cfg.rate, "rate", 0, "target push rate in samples/s, paced per request (0 = as fast as the target acknowledges)")
	fs.DurationVar(&cfg.tsStep, "ts-step", time.Millisecond, "synthetic clock step between rounds (timestamps start at the current time)")
	fs.StringVar(&cfg.receiverListen, "receiver.listen", "127.0.0.1:19291", "address of the built-in remote-write receiver")
	fs.BoolVar(&cfg.receiverOnly, "receiver-only", false, "only run the receiver and print counts every second")
	fs.BoolVar(&cfg.noReceiver, "no-receiver", false, "push without running the receiver (measures ingest only)")
	fs.BoolVar(&cfg.verify, "verify", false, "check that every acknowledged sample is delivered and timestamps arrive in order")
	fs.StringVar(&cfg.pid, "pid", "", `process to measure (CPU from /proc/PID/stat, RSS from /proc/PID/status); "self" for this tool`)
	fs.DurationVar(&cfg.drainTimeout, "drain-timeout", 60*time.Second, "after pushing, how long to wait for delivered >= acknowledged")
	fs.DurationVar(&cfg.requestTimeout, "request-timeout", 10*time.Second, "timeout of one push request")
	fs.DurationVar(&cfg.progress, "progress", 5*time.Second, "interval of progress lines on stderr (0 = none)")
	fs.BoolVar(&cfg.json, "json", false, "print the result as one JSON object on stdout (the summary goes to stderr)")
	fs.StringVar(&cfg.proto, "proto", "1.0", `Remote-Write version to push: "1.0" (prometheus.WriteRequest) or "2.0" (io.prometheus.write.v2.Request, one symbols table per request)`)
	fs.Float64Var(&cfg.churn, "churn", 0, "fraction of the series replaced by new series at each churn event (0 = no churn, 1 = all)")
	fs.DurationVar(&cfg.churnEvery, "churn-every", time.Minute, "synthetic time between churn events (a multiple of --ts-step)")
	fs.DurationVar(&cfg.warmup, "warmup", 0, "start of the RSS comparison: rss_first_third_bytes and rss_last_third_bytes are the peaks of the first and last third of the push after it")
	fs.StringVar(&cfg.rssLog, "rss-log", "", `with --pid: write "seconds_since_start rss_bytes" to this file every sample`)
	fs.StringVar(&cfg.rssSVG, "rss-svg", "", "with --pid: write a chart of RSS over time to this SVG file at the end")
	fs.StringVar(&cfg.rssTitle, "rss-title", "", "title of the --rss-svg chart (default: RSS of the process)")
	return fs
}

// parseFlags parses and validates args. It returns errHelp for -h.
func parseFlags(args []string, usage io.Writer) (config, error) {
	cfg := config{minBackoff: 50 * time.Millisecond}
	fs := newFlagSet(&cfg)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(usage)
			fmt.Fprintln(usage, "usage: ferry-load [flags]")
			fs.PrintDefaults()
			return cfg, errHelp
		}
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg.durationSet = set["duration"]
	sh, ok := shapeByName(cfg.shapeName)
	if !ok {
		return cfg, fmt.Errorf("--shape %q: must be A, A1M or B", cfg.shapeName)
	}
	cfg.shape = sh
	if !set["series"] {
		cfg.series = sh.series
	}
	if !set["batch"] {
		cfg.batch = sh.batch
	}
	if !set["concurrency"] {
		cfg.concurrency = sh.concurrency
	}
	return cfg, cfg.validate()
}

func (c *config) validate() error {
	switch {
	case c.receiverOnly && c.noReceiver:
		return errors.New("--receiver-only and --no-receiver exclude each other")
	case c.receiverOnly:
		return nil
	case c.target == "":
		return errors.New(`--target is required (a remote-write URL, or "self")`)
	case c.series <= 0:
		return errors.New("--series must be > 0")
	case c.series > 1<<31-1:
		return errors.New("--series is too large")
	case c.batch <= 0:
		return errors.New("--batch must be > 0")
	case c.concurrency <= 0:
		return errors.New("--concurrency must be > 0")
	case c.duration < 0 || c.samples < 0 || c.rounds < 0 || c.rate < 0 || math.IsNaN(c.rate) || math.IsInf(c.rate, 0):
		return errors.New("--duration, --samples, --rounds and --rate must not be negative")
	case c.duration == 0 && c.samples == 0 && c.rounds == 0:
		return errors.New("with --duration 0 one of --samples or --rounds must be set")
	case c.tsStep < time.Millisecond || c.tsStep%time.Millisecond != 0:
		return errors.New("--ts-step must be a positive whole number of milliseconds")
	case c.drainTimeout < 0 || c.requestTimeout <= 0 || c.progress < 0:
		return errors.New("--drain-timeout, --request-timeout and --progress must not be negative (--request-timeout > 0)")
	case c.target == selfTarget && c.noReceiver:
		return errors.New("--target self needs the receiver (drop --no-receiver)")
	case c.verify && c.noReceiver:
		return errors.New("--verify needs the receiver (drop --no-receiver)")
	case c.proto != "1.0" && c.proto != "2.0":
		return fmt.Errorf("--proto %q: must be 1.0 or 2.0", c.proto)
	case !(c.churn >= 0 && c.churn <= 1):
		return fmt.Errorf("--churn %v: must be between 0 and 1", c.churn)
	case c.churn > 0 && (c.churnEvery <= 0 || c.churnEvery%c.tsStep != 0):
		return fmt.Errorf("--churn-every %v must be a positive multiple of --ts-step %v", c.churnEvery, c.tsStep)
	case c.churn > 0 && math.Round(c.churn*float64(c.series)) == 0:
		return fmt.Errorf("--churn %v of %d series replaces no series", c.churn, c.series)
	case c.warmup < 0:
		return errors.New("--warmup must not be negative")
	case (c.rssLog != "" || c.rssSVG != "") && c.pid == "":
		return errors.New("--rss-log and --rss-svg need --pid")
	}
	if c.target != selfTarget {
		u, err := url.Parse(c.target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--target %q is not an http(s) URL", c.target)
		}
	}
	if c.pid != "" && c.pid != "self" {
		if n, err := strconv.Atoi(c.pid); err != nil || n <= 0 {
			return fmt.Errorf("--pid %q is not a process id or \"self\"", c.pid)
		}
	}
	return nil
}

// run is main without os.Exit, for tests. It returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ferry-load: %v\n", err)
		return 2
	}
	if cfg.receiverOnly {
		return runReceiverOnly(ctx, cfg, stdout, stderr)
	}
	res, err := runLoad(ctx, cfg, stderr)
	if res == nil {
		fmt.Fprintf(stderr, "ferry-load: %v\n", err)
		return 1
	}
	if cfg.json {
		writeSummary(stderr, res)
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "ferry-load: %v\n", err)
			return 1
		}
	} else {
		writeSummary(stdout, res)
	}
	if err != nil { // the result stands; a file it was to be written to failed
		fmt.Fprintf(stderr, "ferry-load: %v\n", err)
		return 1
	}
	return 0
}

// result is the JSON output. Fields that were not measured are null.
type result struct {
	Target      string  `json:"target"`
	Shape       string  `json:"shape"`
	Series      int     `json:"series"`
	Batch       int     `json:"batch"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate"`
	TSStepMS    int64   `json:"ts_step_ms"`

	Churn             float64 `json:"churn"`
	ChurnEverySeconds float64 `json:"churn_every_seconds"`
	SeriesCreated     int64   `json:"series_created"` // distinct series pushed: active and replacements

	DurationSeconds   float64          `json:"duration_seconds"`
	Rounds            int64            `json:"rounds"`
	Requests          int64            `json:"requests"`
	Retries           int64            `json:"retries"`
	TransportErrors   int64            `json:"transport_errors"`
	HTTPStatus        map[string]int64 `json:"http_status"`
	AckedSamples      int64            `json:"acked_samples"`
	AckedPerSecond    float64          `json:"acked_per_second"`
	RejectedSamples   int64            `json:"rejected_samples"`
	AbandonedSamples  int64            `json:"abandoned_samples"`
	AckedBytes        int64            `json:"acked_bytes"`
	FirstRejectReason string           `json:"first_reject_reason,omitempty"`

	DeliveredSamples    *int64   `json:"delivered_samples"`
	DeliveredRequests   *int64   `json:"delivered_requests"`
	DeliveredPerSecond  *float64 `json:"delivered_per_second"`
	DrainSeconds        *float64 `json:"drain_seconds"`
	DrainComplete       *bool    `json:"drain_complete"`
	DeliveryRejected    *int64   `json:"delivery_rejected_requests"`
	DeliveredHistograms *int64   `json:"delivered_histograms"`

	PID                  *int     `json:"pid"`
	CPUSeconds           *float64 `json:"cpu_seconds"`
	CPUPushSeconds       *float64 `json:"cpu_push_seconds"`
	CPUSecondsPerMillion *float64 `json:"cpu_seconds_per_million"`
	PeakRSSBytes         *int64   `json:"peak_rss_bytes"`
	VmHWMBytes           *int64   `json:"vmhwm_bytes"`
	WarmupSeconds        float64  `json:"warmup_seconds"`
	RSSFirstThirdBytes   *int64   `json:"rss_first_third_bytes"` // peak over [W, W+(D-W)/3]
	RSSLastThirdBytes    *int64   `json:"rss_last_third_bytes"`  // peak over [D-(D-W)/3, D]
	RSSFlatRatio         *float64 `json:"rss_flat_ratio"`        // last third / first third

	VerifyMissing     *int64 `json:"verify_missing"`
	VerifyOutOfOrder  *int64 `json:"verify_out_of_order"`
	VerifyDuplicates  *int64 `json:"verify_duplicates"`
	VerifyForeign     *int64 `json:"verify_foreign"`
	VerifyWrongGen    *int64 `json:"verify_wrong_generation"` // of verify_foreign: a slot's series of another generation
	VerifyBadValue    *int64 `json:"verify_bad_value"`
	VerifyUniqueDeliv *int64 `json:"verify_unique_delivered"`
}

func ptr[T any](v T) *T { return &v }

// runLoad runs one measurement: start the receiver, push, drain, report.
// When only writing --rss-log or --rss-svg fails it returns the result
// with the error.
func runLoad(ctx context.Context, cfg config, stderr io.Writer) (*result, error) {
	base := time.Now().UnixMilli()
	step := cfg.tsStep.Milliseconds()
	set := newSeriesSet(cfg.series, cfg.shape.labels)
	layout := newBatchLayout(cfg.series, cfg.batch)
	churn := newChurnSchedule(cfg.series, cfg.churn, cfg.churnEvery, cfg.tsStep)

	var rcv *receiver
	if !cfg.noReceiver {
		var ver *verifier
		if cfg.verify {
			ver = newVerifier(cfg.series, base, step, churn)
			var err error
			if ver.names, err = newSeriesNames(cfg.series, cfg.shape); err != nil {
				return nil, err
			}
		}
		if cfg.listener != nil {
			rcv = serveReceiver(cfg.listener, ver)
		} else {
			var err error
			if rcv, err = startReceiver(cfg.receiverListen, ver); err != nil {
				return nil, err
			}
		}
		defer rcv.Close()
	}
	target := cfg.target
	if target == selfTarget {
		target = rcv.URL()
	}
	if err := preflight(target, 2*time.Second); err != nil {
		return nil, fmt.Errorf("target %s unreachable: %v", target, err)
	}
	if layout.numBatches() < cfg.concurrency {
		fmt.Fprintf(stderr, "ferry-load: warning: only %d batches for %d pushers; %d pushers idle\n",
			layout.numBatches(), cfg.concurrency, cfg.concurrency-layout.numBatches())
	}

	var verMarker skipMarker
	if rcv != nil && rcv.ver != nil {
		verMarker = rcv.ver
	}
	p := newPushRun(cfg, target, set, layout, base, step, verMarker)

	// The RSS timeline starts with the push.
	start := time.Now()
	var (
		proc   *procWatch
		rssLog *os.File
	)
	if cfg.pid != "" {
		pid := os.Getpid()
		if cfg.pid != "self" {
			pid, _ = strconv.Atoi(cfg.pid)
		}
		var logW io.Writer
		if cfg.rssLog != "" {
			var err error
			if rssLog, err = os.Create(cfg.rssLog); err != nil {
				return nil, fmt.Errorf("--rss-log: %w", err)
			}
			defer rssLog.Close()
			logW = rssLog
		}
		var err error
		if proc, err = startProcWatch(pid, 200*time.Millisecond, start, logW); err != nil {
			return nil, err
		}
		defer proc.Stop()
	}

	stopProgress := startProgress(cfg.progress, stderr, start, p, rcv)
	p.run(ctx)
	pushEnd := time.Now()
	var cpuPush float64
	if proc != nil {
		cpuPush = proc.CPUSince()
	}

	res := &result{
		Target:            target,
		Shape:             cfg.shape.name,
		Series:            cfg.series,
		Batch:             cfg.batch,
		Concurrency:       cfg.concurrency,
		Rate:              cfg.rate,
		TSStepMS:          step,
		Churn:             cfg.churn,
		ChurnEverySeconds: cfg.churnEvery.Seconds(),
		SeriesCreated:     p.seriesCreated(),
	}
	p.fill(res, pushEnd.Sub(start))

	end := pushEnd
	if rcv != nil {
		complete := drain(ctx, cfg.drainTimeout, rcv, p)
		end = time.Now()
		delivered := rcv.samples.Load()
		res.DeliveredSamples = ptr(delivered)
		res.DeliveredRequests = ptr(rcv.requests.Load())
		res.DeliveredHistograms = ptr(rcv.histograms.Load())
		res.DeliveryRejected = ptr(rcv.badRequests.Load())
		res.DrainSeconds = ptr(round3(end.Sub(pushEnd).Seconds()))
		res.DrainComplete = ptr(complete)
		res.DeliveredPerSecond = ptr(round1(float64(delivered) / end.Sub(start).Seconds()))
		if v := rcv.ver; v != nil {
			st := v.stats(p.expectedRounds)
			res.VerifyMissing = ptr(st.missing)
			res.VerifyOutOfOrder = ptr(st.outOfOrder)
			res.VerifyDuplicates = ptr(st.duplicates)
			res.VerifyForeign = ptr(st.foreign)
			res.VerifyWrongGen = ptr(st.wrongGen)
			res.VerifyBadValue = ptr(st.badValue)
			res.VerifyUniqueDeliv = ptr(st.unique)
		}
	}
	stopProgress()

	if proc == nil {
		return res, nil
	}
	cpu := proc.CPUSince()
	proc.Stop()
	res.PID = ptr(proc.pid)
	res.CPUSeconds = ptr(round3(cpu))
	res.CPUPushSeconds = ptr(round3(cpuPush))
	// Per million delivered samples; without a receiver, per million acknowledged.
	n := res.AckedSamples
	if res.DeliveredSamples != nil {
		n = *res.DeliveredSamples
	}
	if n > 0 {
		res.CPUSecondsPerMillion = ptr(round3(cpu / (float64(n) / 1e6)))
	}
	res.PeakRSSBytes = ptr(proc.PeakRSS())
	if hwm, err := proc.VmHWM(); err == nil {
		res.VmHWMBytes = ptr(hwm)
	}
	samples := proc.Samples()
	pushDur := pushEnd.Sub(start)
	res.WarmupSeconds = cfg.warmup.Seconds()
	first, last := rssThirds(samples, cfg.warmup, pushDur)
	if first > 0 {
		res.RSSFirstThirdBytes = ptr(first)
	}
	if last > 0 {
		res.RSSLastThirdBytes = ptr(last)
	}
	if first > 0 && last > 0 {
		res.RSSFlatRatio = ptr(round3(float64(last) / float64(first)))
	}

	var errs []error
	if rssLog != nil {
		if err := proc.LogErr(); err != nil {
			errs = append(errs, fmt.Errorf("--rss-log: %w", err))
		}
		if err := rssLog.Close(); err != nil {
			errs = append(errs, fmt.Errorf("--rss-log: %w", err))
		}
	}
	if cfg.rssSVG != "" {
		title := cfg.rssTitle
		if title == "" {
			title = fmt.Sprintf("RSS of pid %d", proc.pid)
		}
		chart := rssChart{title: title, samples: samples, warmup: cfg.warmup, push: pushDur}
		if err := chart.writeFile(cfg.rssSVG); err != nil {
			errs = append(errs, fmt.Errorf("--rss-svg: %w", err))
		}
	}
	return res, errors.Join(errs...)
}

// preflight checks that the target accepts TCP connections.
func preflight(target string, timeout time.Duration) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			host = net.JoinHostPort(u.Hostname(), "443")
		} else {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	c, err := net.DialTimeout("tcp", host, timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// drain waits until everything acknowledged was delivered, the timeout
// passes or ctx ends. It reports whether delivery completed.
func drain(ctx context.Context, timeout time.Duration, rcv *receiver, p *pushRun) bool {
	acked := p.acked.Load()
	done := func() bool {
		if rcv.ver == nil {
			return rcv.samples.Load() >= acked
		}
		// Unique pairs delivered can only reach acked when nothing acked is
		// missing, unless abandoned requests arrived too; the exact check is
		// O(series), so do it only when the cheap one passes.
		if rcv.ver.uniqueDelivered() < acked {
			return false
		}
		return rcv.ver.stats(p.expectedRounds).missing == 0
	}
	if done() {
		return true
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-rcv.notify:
			if done() {
				return true
			}
		case <-timer.C:
			return done()
		case <-ctx.Done():
			return done()
		}
	}
}

// startProgress prints a progress line every interval until the returned
// function is called.
func startProgress(every time.Duration, w io.Writer, start time.Time, p *pushRun, rcv *receiver) func() {
	if every <= 0 {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		var lastAcked, lastDelivered int64
		last := start
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				acked := p.acked.Load()
				dt := now.Sub(last).Seconds()
				line := fmt.Sprintf("ferry-load: t=%5.1fs acked=%d (%.0f/s) retries=%d rejected=%d",
					now.Sub(start).Seconds(), acked, float64(acked-lastAcked)/dt, p.retries.Load(), p.rejected.Load())
				if rcv != nil {
					d := rcv.samples.Load()
					line += fmt.Sprintf(" delivered=%d (%.0f/s) backlog=%d", d, float64(d-lastDelivered)/dt, acked-d)
					lastDelivered = d
				}
				fmt.Fprintln(w, line)
				lastAcked, last = acked, now
			}
		}
	}()
	return func() { close(stop); <-done }
}

// runReceiverOnly runs the receiver and prints counts every second until ctx
// ends (or --duration passes, if given).
func runReceiverOnly(ctx context.Context, cfg config, stdout, stderr io.Writer) int {
	rcv, err := startReceiver(cfg.receiverListen, nil)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-load: %v\n", err)
		return 1
	}
	defer rcv.Close()
	fmt.Fprintf(stderr, "ferry-load: receiving on %s\n", rcv.URL())
	if cfg.durationSet && cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	var last int64
	lastT := start
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(stdout, "total: requests=%d samples=%d histograms=%d bad_requests=%d\n",
				rcv.requests.Load(), rcv.samples.Load(), rcv.histograms.Load(), rcv.badRequests.Load())
			return 0
		case now := <-t.C:
			s := rcv.samples.Load()
			fmt.Fprintf(stdout, "t=%.0fs requests=%d samples=%d (%.0f/s) histograms=%d bad_requests=%d\n",
				now.Sub(start).Seconds(), rcv.requests.Load(), s, float64(s-last)/now.Sub(lastT).Seconds(),
				rcv.histograms.Load(), rcv.badRequests.Load())
			last, lastT = s, now
		}
	}
}

// writeSummary prints the human-readable result.
func writeSummary(w io.Writer, r *result) {
	var b strings.Builder
	fmt.Fprintf(&b, "target       %s  shape=%s series=%d batch=%d concurrency=%d ts-step=%dms\n",
		r.Target, r.Shape, r.Series, r.Batch, r.Concurrency, r.TSStepMS)
	if r.Churn > 0 {
		fmt.Fprintf(&b, "churn        %g of the series every %v of synthetic time  %d series created\n",
			r.Churn, time.Duration(r.ChurnEverySeconds*float64(time.Second)), r.SeriesCreated)
	}
	fmt.Fprintf(&b, "push         %.2fs  acked %d samples (%.0f/s)  rejected %d  abandoned %d  rounds %d\n",
		r.DurationSeconds, r.AckedSamples, r.AckedPerSecond, r.RejectedSamples, r.AbandonedSamples, r.Rounds)
	fmt.Fprintf(&b, "requests     %d  retries %d  transport errors %d  status %s  %.1f MB acked (compressed)\n",
		r.Requests, r.Retries, r.TransportErrors, formatStatus(r.HTTPStatus), float64(r.AckedBytes)/1e6)
	if r.FirstRejectReason != "" {
		fmt.Fprintf(&b, "first reject %s\n", r.FirstRejectReason)
	}
	if r.DeliveredSamples != nil {
		state := "complete"
		if !*r.DrainComplete {
			state = "INCOMPLETE (drain timeout)"
		}
		fmt.Fprintf(&b, "delivery     %d samples in %d requests (%.0f/s over push+drain)  drain %.3fs  %s\n",
			*r.DeliveredSamples, *r.DeliveredRequests, *r.DeliveredPerSecond, *r.DrainSeconds, state)
	}
	if r.PID != nil {
		perM := "n/a"
		if r.CPUSecondsPerMillion != nil {
			perM = fmt.Sprintf("%.3f", *r.CPUSecondsPerMillion)
		}
		hwm := "n/a"
		if r.VmHWMBytes != nil {
			hwm = fmt.Sprintf("%.1f MiB", float64(*r.VmHWMBytes)/(1<<20))
		}
		fmt.Fprintf(&b, "process      pid %d  cpu %.2fs (push phase %.2fs)  %s cpu-s per million samples  peak RSS %.1f MiB  VmHWM %s\n",
			*r.PID, *r.CPUSeconds, *r.CPUPushSeconds, perM, float64(*r.PeakRSSBytes)/(1<<20), hwm)
		mib := func(p *int64) string {
			if p == nil {
				return "n/a"
			}
			return fmt.Sprintf("%.1f MiB", float64(*p)/(1<<20))
		}
		ratio := "n/a"
		if r.RSSFlatRatio != nil {
			ratio = fmt.Sprintf("%.3f", *r.RSSFlatRatio)
		}
		fmt.Fprintf(&b, "rss          peak after warm-up %v: first third %s  last third %s  ratio %s\n",
			time.Duration(r.WarmupSeconds*float64(time.Second)), mib(r.RSSFirstThirdBytes), mib(r.RSSLastThirdBytes), ratio)
	}
	if r.VerifyMissing != nil {
		wrong := ""
		if *r.VerifyWrongGen > 0 {
			wrong = fmt.Sprintf(" (%d of a wrong generation)", *r.VerifyWrongGen)
		}
		fmt.Fprintf(&b, "verify       missing %d  out-of-order %d  duplicates %d  foreign %d%s  bad-value %d\n",
			*r.VerifyMissing, *r.VerifyOutOfOrder, *r.VerifyDuplicates, *r.VerifyForeign, wrong, *r.VerifyBadValue)
	}
	io.WriteString(w, b.String())
}

func formatStatus(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
