package integration

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// Every acknowledged sample reaches both endpoints although ferry is killed
// with SIGKILL again and again under load.
func TestKill9UnderLoadLosesNothing(t *testing.T) {
	a, b := newSink(t, nil), newSink(t, nil)
	f := newFerry(t, "", "a="+a.url(), "b="+b.url())
	p := newPusher(f.addr, 200)
	f.start()
	ts := int64(1)
	for cycle := 0; cycle < 5; cycle++ {
		ctx, cancel := context.WithCancel(context.Background())
		done := p.run(ctx, ts, 100)
		// Let some load through, then kill mid-stream.
		_, before := p.snapshot()
		waitUntil(t, 30*time.Second, func() bool { _, n := p.snapshot(); return n >= before+2000 })
		f.kill9()
		cancel()
		ts = <-done + 1
		f.start()
	}
	acked, n := p.snapshot()
	t.Logf("%d samples acknowledged over 5 kill -9 cycles; status counts %v", n, p.status)
	a.waitDelivered(acked, 60*time.Second)
	b.waitDelivered(acked, 60*time.Second)
	a.checkOrder()
	b.checkOrder()
	f.stop()
}

// An endpoint that answers 503 for a while gets everything, each series in
// order, once it recovers.
func TestEndpoint503ThenRecovers(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	s := newSink(t, func(int) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	f := newFerry(t, "", "a="+s.url())
	f.start()
	p := newPusher(f.addr, 100)
	p.pushRounds(t, 1, 20, 50)
	waitUntil(t, 30*time.Second, func() bool { return f.metric("ferry_sender_samples_retried_total", `endpoint="a"`) > 0 })
	failing.Store(false)
	acked, _ := p.snapshot()
	s.waitDelivered(acked, 60*time.Second)
	s.checkOrder()
	f.stop()
}

// Connections refused, ferry restarted with SIGTERM during the outage, the
// endpoint returns: everything is delivered.
func TestRestartDuringOutage(t *testing.T) {
	s := newSink(t, nil)
	s.down()
	f := newFerry(t, "", "a="+s.url())
	f.start()
	p := newPusher(f.addr, 100)
	p.pushRounds(t, 1, 10, 100)
	f.stop()
	f.start()
	p.pushRounds(t, 11, 15, 100)
	s.up()
	acked, _ := p.snapshot()
	s.waitDelivered(acked, 60*time.Second)
	s.checkOrder()
	f.stop()
}

// With one endpoint down, the other keeps receiving promptly; the down one
// catches up later.
func TestOneEndpointDownDoesNotSlowTheOther(t *testing.T) {
	good := newSink(t, nil)
	bad := newSink(t, nil)
	bad.down()
	f := newFerry(t, "", "good="+good.url(), "bad="+bad.url())
	f.start()
	p := newPusher(f.addr, 100)
	var worst time.Duration
	for ts := int64(1); ts <= 30; ts++ {
		p.pushRounds(t, ts, ts, 100)
		start := time.Now()
		acked, _ := p.snapshot()
		good.waitDelivered(acked, 30*time.Second)
		worst = max(worst, time.Since(start))
	}
	t.Logf("slowest delivery to the healthy endpoint while the other was down: %v", worst)
	bad.up()
	acked, _ := p.snapshot()
	bad.waitDelivered(acked, 60*time.Second)
	bad.checkOrder()
	good.checkOrder()
	f.stop()
}

// An endpoint that refuses with 400 every batch holding one particular
// sample: the batch is split until that sample is isolated; it alone is
// dropped, counted and logged, and everything else arrives.
func TestEndpoint400DropsOnlyTheRefusedSample(t *testing.T) {
	s := newSink(t, nil)
	s.refuse = func(wr *prompb.WriteRequest) bool {
		for _, ts := range wr.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "id" && l.Value == "42" && len(ts.Samples) > 0 && ts.Samples[0].Timestamp == 1 {
					return true
				}
			}
		}
		return false
	}
	f := newFerry(t, "", "a="+s.url())
	f.start()
	p := newPusher(f.addr, 100)
	p.pushRounds(t, 1, 5, 100)
	waitUntil(t, 30*time.Second, func() bool { return f.metric("ferry_sender_samples_failed_total", `endpoint="a"`) == 1 })
	acked, _ := p.snapshot()
	acked["42"] = acked["42"][1:] // the refused sample
	s.waitDelivered(acked, 30*time.Second)
	if !strings.Contains(f.logText(), "sink refuses this batch") {
		t.Fatalf("the endpoint's message was not logged:\n%s", f.logText())
	}
	f.stop()
}

// A WAL whose last segment was cut mid-record: ferry starts, repairs it, and
// everything before the cut is delivered.
func TestTornWALTail(t *testing.T) {
	s := newSink(t, nil)
	s.down()
	f := newFerry(t, "", "a="+s.url())
	f.start()
	p := newPusher(f.addr, 100)
	p.pushRounds(t, 1, 20, 100)
	f.kill9()
	segs, _ := filepath.Glob(filepath.Join(f.dir, "data", "wal", "0*"))
	sort.Strings(segs)
	last := segs[len(segs)-1]
	fi, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, fi.Size()-300); err != nil { // inside the last round's record
		t.Fatal(err)
	}
	f.start()
	if f.metric("ferry_wal_repair_cut_bytes_total") == 0 {
		t.Fatalf("repair not counted:\n%s", f.logText())
	}
	s.up()
	acked, _ := p.snapshot()
	delete(acked, "") // nothing special
	// Rounds 1..19 are intact; round 20's record was cut.
	for id, tss := range acked {
		acked[id] = tss[:len(tss)-1]
	}
	s.waitDelivered(acked, 60*time.Second)
	f.stop()
}

// drop_oldest: with the endpoint down past the cap, the oldest segments go,
// the loss is counted per endpoint and logged, and the rest is delivered.
func TestDiskCapDropOldest(t *testing.T) {
	s := newSink(t, nil)
	s.down()
	f := newFerry(t, "segment_size: 1MiB\nmax_size: 3MiB\nwhen_full: drop_oldest", "a="+s.url())
	f.start()
	p := newPusher(f.addr, 1000)
	p.pushRounds(t, 1, 600, 1000) // ~8 MB of WAL
	waitUntil(t, 30*time.Second, func() bool {
		return f.metric("ferry_sender_samples_dropped_total", `endpoint="a"`, `reason="disk_cap"`) > 0
	})
	if size := f.metric("ferry_wal_size_bytes"); size > 4<<20 {
		t.Fatalf("WAL uses %v bytes, cap 3MiB", size)
	}
	if !strings.Contains(f.logText(), "disk cap") {
		t.Fatalf("drop not logged:\n%s", f.logText())
	}
	s.up()
	_, n := p.snapshot()
	waitUntil(t, 60*time.Second, func() bool {
		dropped := f.metric("ferry_sender_samples_dropped_total", `endpoint="a"`, `reason="disk_cap"`)
		return float64(uniqueCount(s)) == float64(n)-dropped
	})
	// What arrived is the newest data, complete from some round on.
	s.checkOrder()
	f.stop()
}

func uniqueCount(s *sink) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, tss := range s.got {
		seen := map[int64]bool{}
		for _, t := range tss {
			seen[t] = true
		}
		n += len(seen)
	}
	return n
}

// backpressure: past the cap ferry answers 503 with Retry-After (Prometheus
// retries 5xx; it drops a batch answered 429 unless retry_on_http_429 is
// set) and acknowledges nothing it did not write; everything acknowledged
// arrives.
func TestDiskCapBackpressure(t *testing.T) {
	s := newSink(t, nil)
	s.down()
	f := newFerry(t, "segment_size: 1MiB\nmax_size: 3MiB\nwhen_full: backpressure", "a="+s.url())
	f.start()
	p := newPusher(f.addr, 1000)
	var refused bool
	for ts := int64(1); ts <= 2000 && !refused; ts++ {
		code, hdr := p.push(ts, 0, 1000)
		switch {
		case code == http.StatusServiceUnavailable:
			refused = true
			if hdr.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		case code/100 != 2:
			t.Fatalf("round %d: status %d", ts, code)
		}
	}
	if !refused {
		t.Fatal("never answered 503")
	}
	if n := f.metric("ferry_wal_full_rejections_total", `limit="max_size"`); n == 0 {
		t.Fatal("ferry_wal_full_rejections_total{limit=\"max_size\"} did not count the refusal")
	}
	if d := f.metric("ferry_sender_samples_dropped_total"); d != 0 {
		t.Fatalf("%v samples dropped under backpressure", d)
	}
	s.up()
	acked, _ := p.snapshot()
	s.waitDelivered(acked, 60*time.Second)
	// Space came back: ferry accepts again.
	waitUntil(t, 60*time.Second, func() bool { code, _ := p.push(99999, 0, 10); return code/100 == 2 })
	f.stop()
}

func waitUntil(t testing.TB, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
