package integration

// Power loss: ferry runs with its data dir on lazyfs, a FUSE filesystem
// that keeps only what was fsynced (file data at fsync, directory entries
// at fsync of their directory). Each cycle kills ferry with SIGKILL at a
// random moment under load, rewrites the data dir to its durable state
// (the power cut) and starts ferry again. With wal.sync: always nothing
// acknowledged may be lost; with wal.sync: interval only samples
// acknowledged within sync_interval of a cut may be (README, "The delivery
// guarantee"). Besides, after every cut ferry must come up ready, and the
// raw endpoint's checkpoint, once ferry reported it persisted, must be in
// the durable state (read by `ferry endpoint list` from a copy of it); at
// the end, after a clean stop and again after a power cut that follows
// it, `ferry wal verify` passes and the raw checkpoint has no backlog.
//
// Run by make test-powerloss (FERRY_POWERLOSS=1; root and /dev/fuse).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymetrics/ferry/integration/lazyfs"
)

// requirePowerLoss skips the test unless FERRY_POWERLOSS=1 (make
// test-powerloss); asked for, it fails without root or /dev/fuse rather
// than pass without having run.
func requirePowerLoss(t *testing.T) {
	t.Helper()
	if os.Getenv("FERRY_POWERLOSS") != "1" {
		t.Skip("power-loss test (ferry on a FUSE filesystem that drops what was not fsynced; root and /dev/fuse): set FERRY_POWERLOSS=1 (make test-powerloss) to run it")
	}
	if os.Geteuid() != 0 {
		t.Fatal("FERRY_POWERLOSS=1: the power-loss test mounts FUSE and needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("FERRY_POWERLOSS=1: the power-loss test needs /dev/fuse: %v", err)
	}
}

func powerLossCount(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return v
}

// With wal.sync: always, every acknowledged sample survives power cuts:
// it reaches the raw endpoint, and the 5m rollups of the rollup endpoint
// equal those of the acknowledged samples. FERRY_POWERLOSS_CUTS sets the
// number of cuts (default 50).
func TestPowerLossSyncAlways(t *testing.T) {
	requirePowerLoss(t)
	runPowerLoss(t, powerLossMode{
		name:    "always",
		walYAML: "sync: always\nsegment_size: 1MiB",
		cuts:    powerLossCount(t, "FERRY_POWERLOSS_CUTS", 50),
		rollups: true,
	})
}

// With wal.sync: interval, a power cut may lose acknowledged samples, but
// only those acknowledged within sync_interval (plus the time an fsync
// takes) before it. FERRY_POWERLOSS_INTERVAL_CUTS sets the number of cuts
// (default 20).
func TestPowerLossSyncInterval(t *testing.T) {
	requirePowerLoss(t)
	const interval = 200 * time.Millisecond
	runPowerLoss(t, powerLossMode{
		name:     "interval",
		walYAML:  fmt.Sprintf("sync: interval\nsync_interval: %s\nsegment_size: 1MiB", interval),
		interval: interval,
		margin:   100 * time.Millisecond,
		cuts:     powerLossCount(t, "FERRY_POWERLOSS_INTERVAL_CUTS", 20),
	})
}

type powerLossMode struct {
	name    string
	walYAML string
	// interval is sync_interval (0 with sync: always); margin is the time
	// allowed beyond it for the fsync itself and the timer's lateness.
	interval, margin time.Duration
	cuts             int
	rollups          bool // add a rollup endpoint and check it
}

// powerCut is what the test knows of one cut.
type powerCut struct {
	at      time.Time // ferry was dead from here on
	bytes   int64     // unsynced bytes lazyfs dropped
	entries int64     // directory entries lazyfs dropped or restored
	report  []string
}

func runPowerLoss(t *testing.T, mode powerLossMode) {
	const (
		series, batch, workers = 40, 10, 2
		step                   = 1000    // ms between rounds
		res                    = 300_000 // the rollup resolution, 5m, in ms
	)
	raw := newSink(t, nil)
	rawTap := tapSink(raw)
	endpoints := []string{"raw=" + raw.url()}
	var rolled *sink
	var rolledTap *sampleTap
	if mode.rollups {
		rolled = newSink(t, nil)
		rolledTap = tapSink(rolled)
		endpoints = append(endpoints, "rolled="+rolled.url()+"|storage_policy: {resolution: 5m, retention: 720h}")
	}
	f := newFerry(t, mode.walYAML, endpoints...)
	f.keep = 1 << 20
	if mode.rollups {
		f.appendConfig(fmt.Sprintf(`downsample:
  commit_interval: 1s
  mapping_rules:
    - name: powerloss
      filter: e2e_metric
      aggregations: [%s]
      storage_policies: ["5m:720h"]
`, strings.Join(rollupAggs, ", ")))
	}
	lfs, backing := mountLazyDataDir(t, f)
	f.start()

	p := newPusher(f.addr, series)
	base := time.Now().Add(-7*24*time.Hour).UnixMilli() / res * res
	load := startPowerLoad(t, p, base, step, batch, workers)

	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 11))
	begin := time.Now()
	var cuts []powerCut
	var cpBack []string // checkpoints a cut moved back
	cpKept := 0         // cuts after which a checkpoint persisted before was found
	cp := rawCheckpoint(f)
	for i := range mode.cuts {
		// A random moment, not a synchronisation: one cut in five soon
		// after the start (senders re-sending, the compactor re-reading the
		// WAL), the others after some load and once the raw endpoint
		// persisted a checkpoint in this run of ferry.
		if rnd.IntN(5) == 0 {
			time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
		} else {
			from := load.pushes.Load()
			waitUntil(t, time.Minute, func() bool {
				return t.Failed() || (load.pushes.Load() >= from+200 && rawCheckpoint(f) != cp)
			})
			if t.Failed() {
				t.FailNow()
			}
			time.Sleep(time.Duration(rnd.IntN(800)) * time.Millisecond)
		}
		persisted := rawCheckpoint(f)
		f.kill9()
		c := powerCut{at: time.Now()}
		if err := lfs.PowerCut(); err != nil {
			t.Fatalf("cut %d: %v", i+1, err)
		}
		st := lfs.Stats()
		c.bytes, c.entries, c.report = st.LastDroppedBytes, st.LastDroppedEntries, lfs.LastCut()
		cuts = append(cuts, c)
		// A checkpoint ferry reported persisted (fsynced) survives.
		if durable := durableCheckpoint(t, f, backing); durable.less(persisted) {
			cpBack = append(cpBack, fmt.Sprintf("cut %d: from %v to %v", i+1, persisted, durable))
		} else if persisted != (walPos{}) {
			cpKept++
		}
		if err := lfs.Remount(); err != nil {
			t.Fatalf("cut %d: %v", i+1, err)
		}
		f.start() // fails the test unless ferry comes up ready
		cp = rawCheckpoint(f)
		if i%10 == 9 {
			t.Logf("cut %d: %v", i+1, time.Since(begin).Round(time.Second))
		}
	}
	load.stop()
	acked, n := p.snapshot()
	loadTime := time.Since(begin)

	// Wait until every acknowledged sample arrived, or the raw endpoint's
	// checkpoint is at the WAL head with nothing in flight and nothing has
	// arrived for two seconds.
	want := rawWant(acked)
	var st tapStats
	lastDelivered, since := -1, time.Now()
	waitUntil(t, 3*time.Minute, func() bool {
		st = rawTap.compare(want, nil)
		if len(st.missing) == 0 {
			return true
		}
		if st.delivered != lastDelivered {
			lastDelivered, since = st.delivered, time.Now()
			return false
		}
		lag, ok := f.metricOK("ferry_sender_lag_bytes", `endpoint="raw"`)
		return ok && lag == 0 && f.metric("ferry_sender_batches_in_flight", `endpoint="raw"`) == 0 &&
			time.Since(since) > 2*time.Second
	})
	lst := lfs.Stats()
	summary := fmt.Sprintf("powerloss mode=%s cuts=%d acknowledged=%d delivered=%d lost=%d duplicated=%d",
		mode.name, len(cuts), n, st.delivered, len(st.missing), st.duplicated)
	t.Log(summary)
	fmt.Println(summary)
	t.Logf("%d cuts in %v (seed %d): lazyfs saw %d fsyncs (%d MiB) and %d directory fsyncs, and dropped %d unsynced bytes and %d directory entries; the raw endpoint's persisted checkpoint survived %d cuts; pusher status counts %v",
		len(cuts), loadTime.Round(time.Second), seed, lst.Fsyncs, lst.SyncedBytes>>20, lst.DirFsyncs, lst.DroppedBytes, lst.DroppedEntries, cpKept, p.status)

	if len(st.wrong)+len(st.unexpected)+len(st.conflicts) > 0 {
		t.Errorf("FERRY BUG: the raw endpoint received wrong values %v, samples never pushed %v, values changed on re-delivery %v",
			first(st.wrong, 10), first(st.unexpected, 10), st.conflicts)
	}
	if len(st.missing) > 0 {
		checkPowerLosses(t, mode, st.missing, load, cuts)
	}
	if len(cpBack) > 0 {
		t.Errorf("FERRY BUG: %d of %d cuts moved the raw endpoint's persisted checkpoint back (segment:offset, as ferry_sender_checkpoint_* reported before the cut, and as `ferry endpoint list` read it after): %s",
			len(cpBack), len(cuts), strings.Join(first(cpBack, 10), "; "))
	}
	raw.checkOrder()

	if mode.rollups {
		closed, open := rollupWant(acked, res)
		within := 2 * time.Minute
		if t.Failed() {
			within = 15 * time.Second // raw samples are lost: so are rollups
		}
		rst := waitTap(within, func() tapStats { return rolledTap.compare(closed, open) })
		t.Logf("rollups: %d closed 5m windows × %d aggregations; %d delivered, %d duplicated", len(closed)/len(rollupAggs), len(rollupAggs), rst.delivered, rst.duplicated)
		if !rst.ok() {
			var ex []string
			for _, k := range rst.missing[:min(len(rst.missing), 10)] {
				ex = append(ex, fmt.Sprintf("%s @%d", k.series, k.t))
			}
			t.Errorf("FERRY BUG: after %d power cuts the rollup endpoint lacks %d samples, e.g. %v; %d wrong values, e.g. %v; %d unexpected, e.g. %v; values changed on re-delivery: %v",
				len(cuts), len(rst.missing), ex, len(rst.wrong), first(rst.wrong, 10), len(rst.unexpected), first(rst.unexpected, 10), rst.conflicts)
		}
	}

	// A clean stop leaves a consistent data dir, and so does a power cut
	// right after it: the WAL verifies and every raw checkpoint is at the
	// WAL head (all delivered).
	f.stop()
	checkStoppedDataDir(t, f, "after a clean stop")
	if err := lfs.PowerCut(); err != nil {
		t.Fatal(err)
	}
	if c := lfs.LastCut(); len(c) > 0 {
		t.Logf("a power cut after the clean stop dropped: %s", strings.Join(first(c, 20), "; "))
		for _, l := range c {
			if strings.HasPrefix(l, "ferry.lock: back") {
				t.Logf("the lock file's removal at the clean stop was not durable: after this power cut ferry would report an unclean shutdown (ferry_unclean_shutdown 1)")
			}
		}
	}
	if err := lfs.Remount(); err != nil {
		t.Fatal(err)
	}
	checkStoppedDataDir(t, f, "after a power cut following the clean stop")
	f.start()
	f.stop()
}

// walPos is a WAL position, segment and byte offset.
type walPos struct{ seg, off int64 }

func (p walPos) less(q walPos) bool { return p.seg < q.seg || (p.seg == q.seg && p.off < q.off) }

func (p walPos) String() string { return fmt.Sprintf("%08d:%d", p.seg, p.off) }

// rawCheckpoint returns the raw endpoint's last persisted checkpoint, as
// ferry reports it (0:0 until the first this run of ferry persisted).
func rawCheckpoint(f *ferry) walPos {
	return walPos{int64(f.metric("ferry_sender_checkpoint_segment", `endpoint="raw"`)),
		int64(f.metric("ferry_sender_checkpoint_offset_bytes", `endpoint="raw"`))}
}

// checkPowerLosses reports missing acknowledged samples: with sync: always
// every one is a ferry bug; with sync: interval, those acknowledged within
// the interval (and margin) before a cut are allowed.
func checkPowerLosses(t *testing.T, mode powerLossMode, missing []tapKey, load *powerLoad, cuts []powerCut) {
	t.Helper()
	window := mode.interval + mode.margin
	type loss struct {
		k      tapKey
		cut    int           // index of the first cut after the ack, -1 if none
		before time.Duration // ack to cut
	}
	var unexplained []loss
	cutsHit := map[int]int{}
	var worst time.Duration
	for _, k := range missing {
		id, _ := strings.CutPrefix(k.series, "e2e_metric ")
		at, ok := load.ackTime(id, k.t)
		l := loss{k: k, cut: -1}
		if ok {
			i := sort.Search(len(cuts), func(i int) bool { return !cuts[i].at.Before(at) })
			if i < len(cuts) {
				l.cut, l.before = i, cuts[i].at.Sub(at)
			}
		}
		if l.cut >= 0 {
			cutsHit[l.cut]++
			worst = max(worst, l.before)
		}
		if mode.interval == 0 || l.cut < 0 || l.before > window {
			unexplained = append(unexplained, l)
		}
	}
	if mode.interval > 0 {
		t.Logf("sync: interval (%v): %d acknowledged samples lost at %d of %d cuts, acknowledged at most %v before their cut (allowed: %v)",
			mode.interval, len(missing), len(cutsHit), len(cuts), worst.Round(time.Millisecond), window)
	}
	if len(unexplained) == 0 {
		return
	}
	var ex []string
	reported := map[int]bool{}
	var reports []string
	for _, l := range unexplained[:min(len(unexplained), 10)] {
		if l.cut < 0 {
			ex = append(ex, fmt.Sprintf("%s @%d (acknowledged after the last cut)", l.k.series, l.k.t))
			continue
		}
		ex = append(ex, fmt.Sprintf("%s @%d (acknowledged %v before cut %d)", l.k.series, l.k.t, l.before.Round(time.Millisecond), l.cut+1))
		if !reported[l.cut] {
			reported[l.cut] = true
			c := cuts[l.cut]
			reports = append(reports, fmt.Sprintf("cut %d dropped %d unsynced bytes and %d entries: %s", l.cut+1, c.bytes, c.entries, strings.Join(first(c.report, 30), "; ")))
		}
	}
	rule := "every acknowledged sample must survive (sync: always)"
	if mode.interval > 0 {
		rule = fmt.Sprintf("only samples acknowledged within %v of a cut may be lost (sync_interval %v)", window, mode.interval)
	}
	t.Errorf("FERRY BUG: %d of %d lost acknowledged samples break the rule: %s; e.g. %s\n%s",
		len(unexplained), len(missing), rule, strings.Join(ex, ", "), strings.Join(reports, "\n"))
}

// checkStoppedDataDir runs the admin commands on the stopped ferry's data dir:
// `ferry wal verify` must pass and `ferry endpoint list` must show a
// checkpoint with no backlog for the raw endpoint.
func checkStoppedDataDir(t *testing.T, f *ferry, when string) {
	t.Helper()
	out, err := exec.Command(ferryBin, "wal", "verify", "-c", f.cfgPath).CombinedOutput()
	if err != nil {
		t.Errorf("FERRY BUG: %s, `ferry wal verify` failed (%v):\n%s", when, err, out)
	}
	cmd := exec.Command(ferryBin, "endpoint", "list", "-o", "json", "-c", f.cfgPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	js, err := cmd.Output()
	if err != nil {
		t.Errorf("FERRY BUG: %s, `ferry endpoint list` failed (%v):\n%s", when, err, stderr.String())
		return
	}
	found := false
	for _, e := range parseEndpointList(t, js) {
		if e.Name != "raw" || e.Rollup != "" {
			continue
		}
		found = true
		if !e.Stored || e.Backlog != 0 {
			t.Errorf("FERRY BUG: %s, the raw endpoint's checkpoint is %q (stored: %v) with %d samples of backlog, though every sample was delivered:\n%s",
				when, e.Checkpoint, e.Stored, e.Backlog, js)
		}
	}
	if !found {
		t.Errorf("%s, `ferry endpoint list` does not list the raw endpoint:\n%s", when, js)
	}
}

// mountLazyDataDir mounts lazyfs on f's data dir, backed by a directory of
// the test, which it returns; the cleanup kills ferry and unmounts.
func mountLazyDataDir(t *testing.T, f *ferry) (*lazyfs.FS, string) {
	t.Helper()
	data := filepath.Join(f.dir, "data")
	if err := os.Mkdir(data, 0o750); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	backing := filepath.Join(dir, "backing")
	lfs, err := lazyfs.Mount(backing, filepath.Join(dir, "shadow"), data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.kill()
		if err := lfs.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return lfs, backing
}

// durableCheckpoint returns the raw endpoint's checkpoint in the durable
// state left by a cut, read by `ferry endpoint list` from a copy of the
// backing directory (so that ferry's next start still finds the state
// the cut left: the lock file, the torn WAL tail); 0:0 if there is none.
func durableCheckpoint(t *testing.T, f *ferry, backing string) walPos {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "data")
	if out, err := exec.Command("cp", "-a", backing, cp).CombinedOutput(); err != nil {
		t.Fatalf("copy the data dir after the cut: %v\n%s", err, out)
	}
	defer os.RemoveAll(cp)
	cmd := exec.Command(ferryBin, "endpoint", "list", "-o", "json", "-c", f.cfgPath, "--data-dir", cp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	js, err := cmd.Output()
	if err != nil {
		t.Fatalf("FERRY BUG: `ferry endpoint list` on the data dir a power cut left failed (%v):\n%s", err, stderr.String())
	}
	for _, e := range parseEndpointList(t, js) {
		if e.Name == "raw" && e.Rollup == "" && e.Stored {
			var p walPos
			if _, err := fmt.Sscanf(e.Checkpoint, "%d:%d", &p.seg, &p.off); err != nil {
				t.Fatalf("ferry endpoint list: checkpoint %q: %v", e.Checkpoint, err)
			}
			return p
		}
	}
	return walPos{}
}

// endpointInfo is an entry of `ferry endpoint list -o json`.
type endpointInfo struct {
	Name       string `json:"name"`
	Stored     bool   `json:"stored"`
	Rollup     string `json:"rollup"`
	Checkpoint string `json:"checkpoint"`
	Backlog    int64  `json:"backlog_samples"`
}

func parseEndpointList(t *testing.T, js []byte) []endpointInfo {
	t.Helper()
	var eps []endpointInfo
	if err := json.Unmarshal(js, &eps); err != nil {
		t.Fatalf("ferry endpoint list -o json: %v\n%s", err, js)
	}
	return eps
}

// powerLoad pushes rounds of one sample per series, round r at
// base+r*step, from workers goroutines that each own an equal share of
// the series and push it in requests of batch series. Each request is
// retried until ferry acknowledges it, so the samples ferry holds are
// exactly the acknowledged ones; the time of each acknowledgment is kept.
type powerLoad struct {
	pushes atomic.Int64 // acknowledged requests
	batch  int
	mu     sync.Mutex
	acks   map[powerAck]time.Time
	stopCh chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// powerAck names a request: its first series and its timestamp.
type powerAck struct {
	from int
	ts   int64
}

func startPowerLoad(t *testing.T, p *pusher, base, step int64, batch, workers int) *powerLoad {
	l := &powerLoad{batch: batch, acks: map[powerAck]time.Time{}, stopCh: make(chan struct{})}
	per := p.series / workers
	for w := range workers {
		l.wg.Add(1)
		go func(from, to int) {
			defer l.wg.Done()
			for ts := base; ; ts += step {
				for s := from; s < to; s += batch {
					giveUp := time.Now().Add(2 * time.Minute)
					for {
						code, _ := p.push(ts, s, min(s+batch, to))
						if code/100 == 2 {
							l.mu.Lock()
							l.acks[powerAck{s, ts}] = time.Now()
							l.mu.Unlock()
							l.pushes.Add(1)
							break
						}
						if !retryPush(t, ts, code, giveUp) {
							return
						}
						select {
						case <-l.stopCh:
							return // unacknowledged: not in the pusher's record
						case <-time.After(10 * time.Millisecond): // ferry is down or busy
						}
					}
				}
				select {
				case <-l.stopCh:
					return
				default:
				}
			}
		}(w*per, (w+1)*per)
	}
	t.Cleanup(l.stop)
	return l
}

// stop ends the load after the requests being pushed.
func (l *powerLoad) stop() {
	l.once.Do(func() { close(l.stopCh) })
	l.wg.Wait()
}

// ackTime returns when the sample of series id at ts was acknowledged.
func (l *powerLoad) ackTime(id string, ts int64) (time.Time, bool) {
	i, err := strconv.Atoi(id)
	if err != nil {
		return time.Time{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.acks[powerAck{i / l.batch * l.batch, ts}]
	return at, ok
}
