package integration

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// Ferry is killed with SIGKILL again and again, at random moments, while a
// pusher writes to it without pause, and restarted on the same data dir.
// It forwards raw samples to two endpoints and 5m rollups to a third. At
// the end every acknowledged sample has reached both raw endpoints with its
// value, and every 5m window of every series that a later sample closed
// has reached the rollup endpoint with its last, count, sum, min and max
// equal to those of the acknowledged samples in it (the last window of a
// series closes only when the clock passes it: it is checked if it
// arrived). Duplicates are allowed (at-least-once); other values, extra
// samples and missing ones are not, nor raw samples out of order per
// series.
//
// The pusher retries a request until ferry acknowledges it, so the samples
// in the WAL are exactly the acknowledged ones (a request ferry wrote but
// could not answer is sent again with the same samples), which makes the
// rollups exact. Timestamps are spread 1s apart from 7 days ago, so a 5m
// window closes every 300 rounds, a few times a cycle.
//
// FERRY_INTEGRATION=1 runs 15 cycles, FERRY_FAULTS=1 100 (with
// FERRY_E2E_NORACE=1, as make test-faults does), FERRY_KILL_CYCLES any
// number.
func TestKill9Loop(t *testing.T) {
	cycles := killCycles(t, 15, 100)
	const (
		series, batch = 40, 20
		step          = 1000    // ms between rounds
		res           = 300_000 // the rollup resolution, 5m, in ms
		perCycle      = 600     // rounds between kills: at least two windows
	)
	// b and the rollup endpoint answer 503 now and then, so that their
	// senders retry and their checkpoints trail a's.
	flaky := func(every int) func(int) int {
		return func(n int) int {
			if n%every == every-1 {
				return http.StatusServiceUnavailable
			}
			return 0
		}
	}
	a, b, r := newSink(t, nil), newSink(t, flaky(13)), newSink(t, flaky(7))
	taps := []*sampleTap{tapSink(a), tapSink(b), tapSink(r)}
	names := []string{"a", "b", "rolled"}
	f := newFerry(t, "segment_size: 1MiB", "a="+a.url(), "b="+b.url(),
		"rolled="+r.url()+"|storage_policy: {resolution: 5m, retention: 720h}")
	cfg, err := os.ReadFile(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, `downsample:
  commit_interval: 1s
  mapping_rules:
    - name: killloop
      filter: e2e_metric
      aggregations: [last, count, sum, min, max]
      storage_policies: ["5m:720h"]
`...)
	if err := os.WriteFile(f.cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	f.start()

	p := newPusher(f.addr, series)
	base := time.Now().Add(-7*24*time.Hour).UnixMilli() / res * res
	load := startAckedLoad(t, p, base, step, batch)

	begin := time.Now()
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 9))
	kills := make([]int64, 0, cycles) // the round being pushed at each kill
	for cycle := range cycles {
		// A random moment, not a synchronisation: one cycle in five while
		// ferry catches up after the restart (senders re-sending, the
		// compactor re-reading the WAL), the others under steady load.
		if rnd.IntN(5) == 0 {
			time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
		} else {
			from := load.cur.Load()
			waitUntil(t, time.Minute, func() bool { return load.cur.Load() >= from+perCycle*step || t.Failed() })
			if t.Failed() {
				t.FailNow()
			}
			time.Sleep(time.Duration(rnd.IntN(1000)) * time.Millisecond)
		}
		kills = append(kills, load.cur.Load())
		f.kill9()
		f.start()
		if cycle%10 == 9 {
			t.Logf("cycle %d: %v", cycle+1, time.Since(begin).Round(time.Second))
		}
	}
	last := load.stop()
	acked, n := p.snapshot()
	loadTime := time.Since(begin)

	rawWanted := rawWant(acked)
	closed, open := rollupWant(acked, res)
	stats := waitTaps(3*time.Minute, func() []tapStats {
		return []tapStats{taps[0].compare(rawWanted, nil), taps[1].compare(rawWanted, nil), taps[2].compare(closed, open)}
	})
	var summary []string
	for i, st := range stats {
		summary = append(summary, fmt.Sprintf("%s %d delivered, %d lost, %d duplicated", names[i], st.delivered, len(st.missing), st.duplicated))
	}
	t.Logf("kill -9 loop: %d cycles in %v (seed %d), %d samples acknowledged (%d rounds), %d closed 5m windows × %d aggregations; %s; pusher status counts %v",
		cycles, loadTime.Round(time.Second), seed, n, (last-base)/step+1, len(closed)/len(rollupAggs), len(rollupAggs), strings.Join(summary, "; "), p.status)

	// cycleOf names the cycle in whose kill a sample pushed at ts was
	// in flight or before.
	cycleOf := func(ts int64) string {
		i := sort.Search(len(kills), func(i int) bool { return kills[i] >= ts })
		if i == len(kills) {
			return "after the last kill"
		}
		return fmt.Sprintf("cycle %d (round %d before its kill)", i+1, (kills[i]-ts)/step)
	}
	for i, st := range stats {
		if st.ok() {
			continue
		}
		// The missing samples by timestamp (the pusher's round).
		byT := map[int64][]string{}
		for _, k := range st.missing {
			byT[k.t] = append(byT[k.t], k.series)
		}
		var ex []string
		for _, ts := range slices.Sorted(maps.Keys(byT))[:min(len(byT), 10)] {
			ids := byT[ts]
			ex = append(ex, fmt.Sprintf("@%d, %s: %d series (%s)", ts, cycleOf(ts), len(ids), strings.Join(ids[:min(len(ids), 5)], ", ")))
		}
		t.Errorf("FERRY BUG: after %d kill -9 cycles endpoint %s lacks %d samples (%d timestamps), e.g. %v; %d wrong values, e.g. %v; %d unexpected samples, e.g. %v; values changed on re-delivery: %v",
			cycles, names[i], len(st.missing), len(byT), ex, len(st.wrong), st.wrong[:min(len(st.wrong), 10)],
			len(st.unexpected), st.unexpected[:min(len(st.unexpected), 10)], st.conflicts)
	}
	a.checkOrder()
	b.checkOrder()
	f.stop()
}
