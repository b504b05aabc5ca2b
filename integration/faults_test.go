package integration

// Faults, each verified in real Prometheus downstreams: a downstream
// outage, kill -9 of Ferry in a loop, a full disk, a damaged WAL, a slow
// endpoint, and duplicates refused with 400 after a replay.

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// refusedMessages returns the endpoint messages ferry logged for refused
// samples (ferry rate-limits that log line, so this is not a count).
func refusedMessages(log string) []string {
	var msgs []string
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, "refused") {
			continue
		}
		if m := messageRE.FindStringSubmatch(l); m != nil && len(msgs) < 3 {
			msgs = append(msgs, m[1])
		}
	}
	return msgs
}

var messageRE = regexp.MustCompile(`"message": "((?:[^"\\]|\\.)*)"`)

// Ferry is killed with SIGKILL 20 times, at random moments, while a real
// Prometheus remote-writes to it and the pusher pushes. Two things are
// checked in both downstreams (each behind a recording proxy):
//
//  1. durability: every sample ferry acknowledged to the pusher, and every
//     sample in the upstream's TSDB (the upstream retries until Ferry is
//     back), either arrived or was in a batch the downstream refused with
//     a 4xx (nothing vanished inside ferry);
//  2. the README's guarantee: every one of them arrived, although samples
//     re-sent after each restart make Prometheus refuse whole requests with
//     400 "out of order sample" (see TestReplayMixedBatchKeepsAcknowledgedSamples).
func TestKill9LoopRealDownstreams(t *testing.T) {
	requireIntegration(t)
	const cycles = 20
	a := startProm(t, "downstream-a", promReceiver, "")
	b := startProm(t, "downstream-b", promReceiver, "")
	pa, pb := newRWProxy(t, a.writeURL()), newRWProxy(t, b.writeURL())
	f := newFerry(t, "", "a="+pa.url(), "b="+pb.url())
	f.start()
	l := startLoad(t, f, promServer, nil, 100, 20*time.Millisecond, 50)
	up, p, begin := l.up, l.p, l.begin

	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for cycle := 0; cycle < cycles; cycle++ {
		_, before := p.snapshot()
		waitUntil(t, 30*time.Second, func() bool { _, n := p.snapshot(); return n >= before+1000 })
		time.Sleep(time.Duration(rnd.IntN(1500)) * time.Millisecond) // a random moment, not a synchronisation
		f.kill9()
		f.start()
	}
	l.stopPushing()
	end := time.Now()
	rng := end.Sub(begin) + time.Second
	acked, n := p.snapshot()
	t.Logf("%d kill -9 cycles: %d samples acknowledged to the pusher, pusher status counts %v", cycles, n, p.status)

	type verdict struct {
		name              string
		lost, unexplained int
		examples          []string
	}
	// check compares a downstream with the acknowledged samples and the
	// upstream's TSDB; lost samples in refused batches are explained.
	check := func(d *prom, px *rwProxy) verdict {
		v := verdict{name: d.name}
		miss, _, list, err := ackedMissingList(d, acked, end, rng)
		if err != nil {
			t.Fatal(err)
		}
		v.lost += miss
		for id, tss := range list {
			for _, ts := range tss {
				if !px.wasRefused("id="+id, ts) {
					v.unexplained++
					if len(v.examples) < 5 {
						v.examples = append(v.examples, fmt.Sprintf("pushed id=%s @%d", id, ts))
					}
				}
			}
		}
		want, err := up.raw(scrapedSelector, end, rng)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.raw(scrapedSelector, end, rng)
		if err != nil {
			t.Fatal(err)
		}
		diff := diffSamples(want, got)
		v.lost += diff.missingSamples
		for k, tss := range diff.missing {
			for _, ts := range tss {
				if !px.wasRefused(k, ts) {
					v.unexplained++
					if len(v.examples) < 5 {
						v.examples = append(v.examples, fmt.Sprintf("scraped %s @%d", k, ts))
					}
				}
			}
		}
		v.unexplained += diff.wrongValues + diff.extraSeries + diff.extraSamples
		if diff.wrongValues+diff.extraSeries+diff.extraSamples > 0 {
			v.examples = append(v.examples, diff.String())
		}
		return v
	}
	// Wait until everything arrived, or give up after 2 minutes and tell
	// what is missing.
	var verdicts []verdict
	deadline := time.Now().Add(2 * time.Minute)
	for {
		verdicts = []verdict{check(a, pa), check(b, pb)}
		if (verdicts[0].lost == 0 && verdicts[1].lost == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for i, v := range verdicts {
		ok, refused, st := []*rwProxy{pa, pb}[i].counts()
		t.Logf("%s: %d samples stored, %d in refused requests (HTTP statuses %v); ferry logged endpoint messages such as %q; acknowledged samples lost: %d (never refused: %d)",
			v.name, ok, refused, st, refusedMessages(f.logText()), v.lost, v.unexplained)
		switch {
		case v.unexplained > 0:
			t.Errorf("FERRY BUG: after %d kill -9 cycles, %s lacks %d acknowledged samples that it never refused (lost inside ferry), e.g. %v",
				cycles, v.name, v.unexplained, v.examples)
		case v.lost > 0:
			t.Errorf("FERRY BUG: after %d kill -9 cycles, %s lacks %d acknowledged samples (pushed or scraped); each was in a request "+
				"Prometheus refused with 400 (it refuses a whole request when any sample is older than what it holds, as samples "+
				"re-sent after a restart are) and ferry dropped it with the re-sent ones", cycles, v.name, v.lost)
		}
	}
	up.stop(30 * time.Second)
	f.stop()
}

// crashAfterDelivery pushes one request of 100 series × 2 samples through
// ferry to the Prometheus behind px, which stores it while px withholds the
// 2xx from ferry; then ferry is killed with SIGKILL. Ferry therefore cannot
// have persisted a checkpoint past the batch: exactly "kill -9 after
// delivery but before the checkpoint persisted", made deterministic. before
// runs while the answer is withheld, before the kill. It returns the base
// timestamp.
func crashAfterDelivery(t *testing.T, f *ferry, px *rwProxy, p *pusher, before func(base int64)) int64 {
	t.Helper()
	px.setHang()
	base := time.Now().UnixMilli()
	if code, _ := p.pushSamples([]int64{base, base + 1}, 0, p.series); code/100 != 2 {
		t.Fatalf("push: status %d", code)
	}
	waitUntil(t, 30*time.Second, func() bool { return px.heldSamples() >= 2*p.series })
	if before != nil {
		before(base)
	}
	f.kill9()
	px.unhang()
	return base
}

// proxiedFerry starts a Prometheus receiver, a proxy in front of it, ferry
// forwarding to the proxy as endpoint "a", and a pusher of 100 series.
func proxiedFerry(t *testing.T) (*prom, *rwProxy, *ferry, *pusher) {
	a := startProm(t, "downstream-a", promReceiver, "")
	pa := newRWProxy(t, a.writeURL())
	f := newFerry(t, "", "a="+pa.url())
	f.start()
	return a, pa, f, newPusher(f.addr, 100)
}

// A batch Prometheus already stored is re-sent after a crash (kill -9 after
// delivery, before the checkpoint persisted); real Prometheus refuses it
// with 400 "out of order sample". Ferry splits the refused batch until each
// duplicate is refused on its own, counts those in
// ferry_sender_samples_failed_total, logs the message and moves on: later
// samples arrive, and nothing acknowledged is missing.
func TestDuplicatesAfterReplayRefused400(t *testing.T) {
	requireIntegration(t)
	a, pa, f, p := proxiedFerry(t)
	base := crashAfterDelivery(t, f, pa, p, nil)
	f.start()
	// Of each series' two re-sent samples, Prometheus refuses the older
	// (out of order) and silently accepts the newer (same timestamp, same
	// value).
	waitUntil(t, time.Minute, func() bool { return f.metric("ferry_sender_samples_failed_total", `endpoint="a"`) >= 100 })
	if v := f.metric("ferry_sender_samples_failed_total", `endpoint="a"`); v != 100 {
		t.Errorf("ferry_sender_samples_failed_total = %v, want 100 (one out-of-order duplicate per series)", v)
	}
	if _, _, st := pa.counts(); st[400] == 0 {
		t.Errorf("Prometheus never refused the re-sent batch (statuses %v)", st)
	}
	if !strings.Contains(f.logText(), "out of order sample") {
		t.Errorf("Prometheus' message is not in ferry's log")
	}
	// The stream moves on.
	p.pushRounds(t, base+2, base+20, 100)
	acked, n := p.snapshot()
	waitAcked(t, acked, time.Minute, a)
	t.Logf("%d acknowledged samples all in Prometheus; the re-sent duplicates were refused, counted and skipped", n)
	f.stop()
}

// Samples Ferry acknowledged but had not sent before a crash share a batch,
// after the restart, with re-sent samples Prometheus already holds:
// Prometheus refuses the whole batch with 400 "out of order sample". Ferry
// splits it until only the duplicates are refused, so every acknowledged
// sample still arrives.
//
// Deterministic set-up: 100 series × 2 samples are stored by Prometheus but
// the 2xx is withheld; 3 more rounds (300 samples) are acknowledged by ferry
// and wait in the WAL behind the in-flight request; kill -9; on restart the
// sender replays from its checkpoint and batches the 200 re-sent and the 300
// new samples together (max_samples_per_send 500).
func TestReplayMixedBatchKeepsAcknowledgedSamples(t *testing.T) {
	requireIntegration(t)
	a, pa, f, p := proxiedFerry(t)
	crashAfterDelivery(t, f, pa, p, func(base int64) {
		p.pushRounds(t, base+2, base+4, 100) // acknowledged, in the WAL, not sent yet
	})
	f.start()
	acked, n := p.snapshot()
	waitAcked(t, acked, 2*time.Minute, a)
	failed := f.metric("ferry_sender_samples_failed_total", `endpoint="a"`)
	_, refused, st := pa.counts()
	if failed > float64(2*p.series) {
		t.Errorf("ferry_sender_samples_failed_total = %v, more than the %d re-sent duplicates", failed, 2*p.series)
	}
	t.Logf("all %d acknowledged samples arrived (proxy: %d samples in refused requests, statuses %v; %v duplicates dropped)", n, refused, st, failed)
	f.stop()
}

// envDuration reads a duration from the environment, with a default.
func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 90s or 10m", name, v)
	}
	return d
}

// One downstream is stopped for FERRY_OUTAGE (default 3m) while the
// upstream Prometheus and the pusher keep writing, then restarted on the
// same storage path. Meanwhile the other downstream keeps receiving
// promptly; afterwards both hold every upstream sample of the whole run
// (no gaps) and every acknowledged pushed sample.
func TestDownstreamOutageNoGaps(t *testing.T) {
	requireIntegration(t)
	outage := envDuration(t, "FERRY_OUTAGE", 3*time.Minute)
	a := startProm(t, "downstream-a", promReceiver, "")
	b := startProm(t, "downstream-b", promReceiver, "")
	pa := newRWProxy(t, a.writeURL())
	f := newFerry(t, "", "a="+pa.url(), "b="+b.writeURL())
	f.start()
	l := startLoad(t, f, promServer, nil, 100, 100*time.Millisecond, 100)
	up, p, begin := l.up, l.p, l.begin

	waitScrapes(t, up, 10, time.Minute)
	b.stop(30 * time.Second)
	down := time.Now()
	t.Logf("downstream-b stopped for %v", outage)
	// While b is down, a keeps up: every round pushed is stored in a
	// within a few seconds.
	var worst time.Duration
	for time.Since(down) < outage {
		time.Sleep(5 * time.Second)
		acked, _ := p.snapshot()
		var last int64
		for _, tss := range acked {
			if len(tss) > 0 {
				last = max(last, tss[len(tss)-1])
			}
		}
		start := time.Now()
		waitUntil(t, 30*time.Second, func() bool {
			for i := 0; i < p.series; i++ {
				if _, ok := pa.acceptedAt(seriesID(i), last); !ok {
					return false
				}
			}
			return true
		})
		worst = max(worst, time.Since(start))
	}
	lagB := f.metric("ferry_sender_lag_seconds", `endpoint="b"`)
	if lagB < outage.Seconds()/2 {
		t.Errorf("ferry_sender_lag_seconds{endpoint=\"b\"} = %v during a %v outage", lagB, outage)
	}
	b.start()
	t.Logf("downstream-b back after %v (lag %.0fs); slowest wait for the latest round at downstream-a during the outage: %v",
		time.Since(down).Round(time.Second), lagB, worst)
	waitUntil(t, 2*time.Minute, func() bool { return f.metric("ferry_sender_lag_seconds", `endpoint="b"`) < 5 })
	l.stopPushing()
	end := time.Now().Add(-2 * time.Second)
	rng := end.Sub(begin)
	ref := waitSame(t, up, scrapedSelector, end, rng, 2*time.Minute, a, b)
	acked, n := p.snapshot()
	waitAcked(t, acked, time.Minute, a, b)
	// No gaps: the node exporter's up series has a sample every scrape.
	for _, d := range []*prom{a, b} {
		v, err := d.vector(fmt.Sprintf(`max_over_time((time() - timestamp(up{job="node"}))[%dms:1s])`, rng.Milliseconds()-5000), end)
		if err != nil {
			t.Fatal(err)
		}
		for k, gap := range v {
			if gap > 3 {
				t.Errorf("%s: %s has a gap of %vs", d.name, k, gap)
			}
		}
	}
	checkFerryClean(t, f, "a", "b")
	t.Logf("whole run (%v, outage %v): %d upstream series / %d samples and %d pushed samples identical in both downstreams",
		rng.Round(time.Second), outage, len(ref), ref.count(), n)
	up.stop(30 * time.Second)
	f.stop()
}

// mountSmallFS mounts a small filesystem on dir: a loop-mounted ext4 image
// of size bytes, or else a tmpfs of that size. It skips the test if
// mounting is not permitted. At cleanup it calls before (to stop the
// processes using dir) and unmounts.
func mountSmallFS(t *testing.T, dir string, size int64, before func()) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("disk-full test: mounting a small filesystem needs root")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	kind := "ext4 on a loop device"
	var errs []string
	run := func(name string, args ...string) bool {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out)))
			return false
		}
		return true
	}
	ok := os.WriteFile(img, nil, 0o600) == nil && os.Truncate(img, size) == nil &&
		run("mkfs.ext4", "-q", "-F", "-m", "0", img) && run("mount", "-o", "loop", img, dir)
	if !ok {
		kind = "tmpfs"
		if !run("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir) {
			t.Skipf("disk-full test: mounting a small filesystem is not permitted here:\n%s", strings.Join(errs, "\n"))
		}
	}
	t.Cleanup(func() {
		if before != nil {
			before()
		}
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s; detaching lazily", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
	return kind
}

// freeSpaceAgain removes the filler that made the disk full and pushes
// rounds from ts on until ferry accepts one; it returns the next ts.
func freeSpaceAgain(t *testing.T, filler string, p *pusher, ts int64) int64 {
	t.Helper()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, func() bool {
		code, _ := p.push(ts, 0, p.series)
		ts++
		return code/100 == 2
	})
	return ts
}

// fillDisk writes a file in dir until the filesystem is full and returns
// its path and size.
func fillDisk(t *testing.T, dir string) (string, int64) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var n int64
	chunk := bytes.Repeat([]byte{0xAB}, 1<<20)
	for _, size := range []int{1 << 20, 64 << 10, 4 << 10} {
		for {
			k, err := fh.Write(chunk[:size])
			n += int64(k)
			if err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", path, err)
				}
				break
			}
		}
	}
	fh.Sync()
	return path, n
}

// The data dir is a small filesystem (64 MiB) that fills up under load:
// ferry answers 5xx or 429 and acknowledges nothing it did not write
// (every acknowledged sample arrives downstream), then accepts again once
// space returns.
func TestDiskFull(t *testing.T) {
	requireIntegration(t)
	a := startProm(t, "downstream-a", promReceiver, "")
	f := newFerry(t, "segment_size: 1MiB", "a="+a.writeURL())
	dataDir := filepath.Join(f.dir, "data")
	kind := mountSmallFS(t, dataDir, 64<<20, f.kill)
	f.start()
	p := newPusher(f.addr, 500)
	ts := time.Now().UnixMilli()
	p.pushRounds(t, ts, ts+9, 500)
	ts += 10

	filler, size := fillDisk(t, dataDir)
	t.Logf("%s: filled with %d MiB", kind, size>>20)
	// Push until ferry refuses for lack of space.
	refusals := 0
	deadline := time.Now().Add(time.Minute)
	for refusals < 20 && time.Now().Before(deadline) {
		code, _ := p.push(ts, 0, p.series)
		ts++
		switch {
		case code/100 == 2:
		case code/100 == 5 || code == 429:
			refusals++
		default:
			t.Fatalf("disk full: push answered %d, want 2xx, 5xx or 429", code)
		}
	}
	if refusals == 0 {
		t.Fatalf("ferry never refused a write on a full disk (status counts %v)", p.status)
	}
	if !f.running() {
		t.Fatalf("ferry exited on a full disk:\n%s", f.logText())
	}
	t.Logf("full disk: status counts %v, ferry_wal_write_errors_total %v, ferry_wal_fsync_errors_total %v",
		p.status, f.metric("ferry_wal_write_errors_total"), f.metric("ferry_wal_fsync_errors_total"))

	// Space returns: ferry accepts again.
	ts = freeSpaceAgain(t, filler, p, ts)
	p.pushRounds(t, ts, ts+19, 500)
	ts += 20
	// A crash now replays the segment sealed after the write error (its
	// tail may hold the partial write): ferry starts and carries on.
	f.kill9()
	f.start()
	t.Logf("restart after the full disk: ferry_wal_corruptions_total %v, ferry_wal_repair_cut_bytes_total %v",
		f.metric("ferry_wal_corruptions_total"), f.metric("ferry_wal_repair_cut_bytes_total"))
	p.pushRounds(t, ts, ts+9, 500)
	acked, n := p.snapshot()
	waitAcked(t, acked, 2*time.Minute, a)
	t.Logf("%d acknowledged samples, all in Prometheus; status counts %v", n, p.status)
	f.stop()
}

// The WAL itself fills the small data filesystem while the only endpoint
// is down (the disk is smaller than wal.max_size, as on an edge host whose
// disk is shared). The WAL stops at min_free_disk (default: 5% of the
// filesystem, at least 32 MiB), which keeps room for the state database and the WAL's own
// checkpoints, so ferry stays up and recovers by itself once the endpoint
// is back:
//   - backpressure: writes are refused with 503, also after a kill -9 and a
//     restart on the full disk; once the endpoint is back every
//     acknowledged sample is delivered, the delivered segments are deleted
//     and writes are accepted again;
//   - drop_oldest: the oldest segments are dropped instead, and the samples
//     missing downstream are exactly those counted as dropped.
func TestDiskFilledByWALDuringOutage(t *testing.T) {
	requireIntegration(t)
	for _, policy := range []string{"backpressure", "drop_oldest"} {
		t.Run(policy, func(t *testing.T) {
			a := startProm(t, "downstream-a", promReceiver, "")
			a.stop(30 * time.Second)
			f := newFerry(t, "segment_size: 1MiB\nwhen_full: "+policy, "a="+a.writeURL())
			dataDir := filepath.Join(f.dir, "data")
			kind := mountSmallFS(t, dataDir, 128<<20, f.kill)
			f.start()
			p := newPusher(f.addr, 2000)
			ts := time.Now().UnixMilli()
			// push sends one round and fails the test on an answer other
			// than 2xx or 503 with Retry-After.
			push := func() int {
				code, hdr := p.push(ts, 0, p.series)
				ts++
				if code/100 != 2 && (code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "") {
					t.Fatalf("WAL filling the disk: push answered %d (Retry-After %q), want 2xx or 503 with Retry-After", code, hdr.Get("Retry-After"))
				}
				return code
			}
			// checkFloor fails the test if the WAL ate into min_free_disk
			// (32 MiB) by more than the state database may use.
			checkFloor := func(when string) {
				if free := freeBytes(t, dataDir); free < 16<<20 {
					t.Fatalf("%s: %d KiB free on %s, want about min_free_disk (32 MiB)", when, free>>10, kind)
				}
			}
			deadline := time.Now().Add(3 * time.Minute)
			if policy == "backpressure" {
				refusals := 0
				for refusals < 20 && time.Now().Before(deadline) {
					if push() == http.StatusServiceUnavailable {
						refusals++
					}
				}
				if refusals == 0 {
					t.Fatalf("the WAL never filled %s (status counts %v)", kind, p.status)
				}
				if n := f.metric("ferry_wal_full_rejections_total", `limit="min_free_disk"`); n == 0 {
					t.Fatal(`refused, but not counted in ferry_wal_full_rejections_total{limit="min_free_disk"}`)
				}
			} else {
				for f.metric("ferry_wal_cap_dropped_segments_total") < 8 && time.Now().Before(deadline) {
					for range 20 {
						push()
					}
					checkFloor("dropping the oldest segments")
				}
				if f.metric("ferry_wal_cap_dropped_segments_total") < 8 {
					t.Fatalf("the WAL dropped no segments on %s within 3 minutes (status counts %v, %s)", kind, p.status, freeSpace(dataDir))
				}
				if !regexp.MustCompile(`disk cap.*"limit":\s*"min_free_disk"`).MatchString(f.logText()) {
					t.Errorf("the drop was not logged with its limit:\n%s", grepLines(f.logText(), "disk cap"))
				}
			}
			checkFloor("WAL full")
			_, n := p.snapshot()
			t.Logf("%s full of WAL after %d acknowledged samples: status counts %v, WAL %.1f MiB, %s",
				kind, n, p.status, f.metric("ferry_wal_size_bytes")/(1<<20), freeSpace(dataDir))

			// What a supervisor (systemd Restart=) does after a crash: the
			// restart on the full disk must work, and keep refusing or
			// dropping as before. Counters start again from zero.
			droppedBefore := int(f.metric("ferry_sender_samples_dropped_total", `endpoint="a"`, `reason="disk_cap"`))
			f.kill9()
			if !f.tryStart(30 * time.Second) {
				t.Fatalf("restarted on the full disk, ferry did not become ready within 30s (%s):\n%s",
					freeSpace(dataDir), tailLines(f.logText(), 20))
			}
			if policy == "backpressure" && push() != http.StatusServiceUnavailable {
				t.Fatal("restarted on the full disk, ferry acknowledged a write it has no room for")
			}
			checkFloor("after the restart")

			// The endpoint comes back: ferry delivers, deletes what it
			// delivered and accepts writes again, by itself.
			a.start()
			deadline = time.Now().Add(90 * time.Second)
			for push()/100 != 2 {
				if !f.running() {
					t.Fatalf("ferry exited on the full disk:\n%s", tailLines(f.logText(), 20))
				}
				if time.Now().After(deadline) {
					t.Fatalf("the endpoint is back for 90s but ferry still refuses writes (%s):\n%s",
						freeSpace(dataDir), grepLines(f.logText(), "ERROR", "FATAL"))
				}
				time.Sleep(500 * time.Millisecond)
			}
			p.pushRounds(t, ts, ts+9, 2000)
			ts += 10
			acked, n := p.snapshot()
			if policy == "backpressure" {
				waitAcked(t, acked, 3*time.Minute, a)
				t.Logf("%d acknowledged samples, all in Prometheus; status counts %v", n, p.status)
			} else {
				waitLossAccounted(t, f, a, acked, droppedBefore)
			}
			// Everything is delivered: the delivered segments must go.
			deadline = time.Now().Add(45 * time.Second)
			for f.metric("ferry_wal_size_bytes") > 8<<20 {
				if time.Now().After(deadline) {
					t.Fatalf("everything is delivered, yet 45s later the WAL still holds %.1f MiB (%s):\n%s",
						f.metric("ferry_wal_size_bytes")/(1<<20), freeSpace(dataDir), grepLines(f.logText(), "truncation failed"))
				}
				time.Sleep(time.Second)
			}
			if n := f.metric("ferry_wal_write_errors_total") + f.metric("ferry_wal_fsync_errors_total"); n != 0 {
				t.Errorf("%v WAL writes or fsyncs failed: the floor did not keep the disk from filling", n)
			}
			f.stop()
		})
	}
}

// waitLossAccounted waits until delivery to the Prometheus at a is done and
// checks that every acknowledged sample missing there was counted as
// dropped by the disk cap for endpoint a (by this process, or droppedBefore
// by an earlier one). The count may exceed what is missing by what was in
// flight when its segment was dropped and still got delivered: at most one
// batch per shard.
func waitLossAccounted(t *testing.T, f *ferry, a *prom, acked map[string][]int64, droppedBefore int) {
	t.Helper()
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, tss := range acked {
		for _, ts := range tss {
			lo, hi = min(lo, ts), max(hi, ts)
		}
	}
	end, rng := time.UnixMilli(hi), time.Duration(hi-lo+1)*time.Millisecond
	deadline := time.Now().Add(3 * time.Minute)
	last := -1
	for {
		dropped := droppedBefore + int(f.metric("ferry_sender_samples_dropped_total", `endpoint="a"`, `reason="disk_cap"`))
		miss, ex, err := ackedMissing(a, acked, end, rng)
		if err != nil {
			t.Fatalf("query %s: %v", a.name, err)
		}
		if miss <= dropped && miss == last { // delivery has settled
			const bound = 50 * 2000 // max_shards × max_samples_per_send
			if dropped == 0 || dropped-miss > bound {
				t.Fatalf("%d acknowledged samples missing in Prometheus, %d counted as dropped", miss, dropped)
			}
			t.Logf("%d acknowledged samples: %d missing in Prometheus, %d counted as dropped by the disk cap (%d delivered while in flight as their segment went)",
				ackedCount(acked), miss, dropped, dropped-miss)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged samples missing in Prometheus, only %d counted as dropped (e.g. %v)", miss, dropped, ex)
		}
		last = miss
		time.Sleep(3 * time.Second)
	}
}

// freeBytes returns the bytes available on the filesystem holding dir.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// freeSpace describes the free space of the filesystem holding dir.
func freeSpace(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d KiB free of %d KiB, %d of %d inodes free", st.Bfree*uint64(st.Bsize)>>10, st.Blocks*uint64(st.Bsize)>>10, st.Ffree, st.Files)
}

// grepLines returns the lines of s containing any of subs (at most 10).
func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	if len(out) > 10 {
		out = append(out[:10], "...")
	}
	return strings.Join(out, "\n")
}

// percentile returns the p-th percentile (0..1) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// One endpoint answers only after 5 s (a proxy in front of a real
// Prometheus holds every request 5 s before forwarding it); the other,
// also a real Prometheus behind a recording proxy without delay, keeps
// getting every round within a fraction of a second, as fast as while both
// were healthy. The slow one catches up with everything afterwards.
func TestSlowEndpointDoesNotSlowTheOther(t *testing.T) {
	requireIntegration(t)
	a := startProm(t, "downstream-fast", promReceiver, "")
	b := startProm(t, "downstream-slow", promReceiver, "")
	pa, pb := newRWProxy(t, a.writeURL()), newRWProxy(t, b.writeURL())
	f := newFerry(t, "", "fast="+pa.url(), "slow="+pb.url())
	f.start()
	p := newPusher(f.addr, 100)

	// latencies pushes a round every 100ms for d and returns, per round,
	// the time from ferry's 2xx until the fast endpoint stored all of it.
	var last int64
	latencies := func(d time.Duration) []time.Duration {
		ackAt := map[int64]time.Time{}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
			ts := max(last+1, time.Now().UnixMilli())
			last = ts
			if code, _ := p.push(ts, 0, p.series); code/100 != 2 {
				t.Fatalf("push: status %d", code)
			}
			ackAt[ts] = time.Now()
		}
		var out []time.Duration
		for ts, acked := range ackAt {
			var worst time.Duration
			waitUntil(t, time.Minute, func() bool {
				for i := 0; i < p.series; i++ {
					at, ok := pa.acceptedAt(seriesID(i), ts)
					if !ok {
						return false
					}
					worst = max(worst, at.Sub(acked))
				}
				return true
			})
			out = append(out, worst)
		}
		return out
	}
	base := latencies(15 * time.Second)
	pb.delay.Store(int64(5 * time.Second))
	slow := latencies(30 * time.Second)
	t.Logf("delivery latency to the fast endpoint: both healthy p50 %v p99 %v max %v; other endpoint answering after 5s: p50 %v p99 %v max %v",
		percentile(base, .5), percentile(base, .99), percentile(base, 1), percentile(slow, .5), percentile(slow, .99), percentile(slow, 1))
	if p99 := percentile(slow, .99); p99 > time.Second || p99 > 4*percentile(base, .99)+200*time.Millisecond {
		t.Errorf("the slow endpoint slows the fast one: p99 %v (with both healthy: %v)", p99, percentile(base, .99))
	}
	if mx := percentile(slow, 1); mx > 2500*time.Millisecond {
		t.Errorf("the slow endpoint slows the fast one: a round took %v to arrive", mx)
	}
	ok, _, _ := pb.counts()
	_, n := p.snapshot()
	t.Logf("slow endpoint after 30s: %d of %d samples stored, ferry_sender_lag_seconds %v, shards %v", ok, n,
		f.metric("ferry_sender_lag_seconds", `endpoint="slow"`), f.metric("ferry_sender_shards", `endpoint="slow"`))
	// The slow endpoint becomes fast again (catching up at 5 s per request
	// would take minutes) and gets everything.
	pb.delay.Store(0)
	acked, n := p.snapshot()
	waitAcked(t, acked, 3*time.Minute, a, b)
	checkFerryClean(t, f, "fast", "slow")
	t.Logf("all %d acknowledged samples in both", n)
	f.stop()
}
