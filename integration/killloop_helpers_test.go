package integration

// Helpers of TestKill9Loop: a load that pushes until every request is
// acknowledged, a tap that keeps the values a sink received, and the
// rollups the acknowledged samples must produce.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// killCycles returns how many kill -9 cycles TestKill9Loop runs, skipping
// the test unless FERRY_INTEGRATION=1 (the short form, in
// `make test-integration`) or FERRY_FAULTS=1 (the long form, in
// `make test-faults`); FERRY_KILL_CYCLES overrides the number.
func killCycles(t *testing.T, short, long int) int {
	t.Helper()
	n := short
	switch {
	case os.Getenv("FERRY_FAULTS") == "1":
		n = long
	case os.Getenv("FERRY_INTEGRATION") != "1":
		t.Skip("kill -9 loop: set FERRY_INTEGRATION=1 (make test-integration) for the short form, FERRY_FAULTS=1 (make test-faults) for the long one")
	}
	if s := os.Getenv("FERRY_KILL_CYCLES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("FERRY_KILL_CYCLES=%q: want a positive number", s)
		}
		n = v
	}
	return n
}

// ackedLoad pushes rounds of one sample per series of a pusher, round r
// at base+r*step, in requests of batch series, and retries each request
// until ferry acknowledges it, so that every sample pushed is acknowledged
// whenever ferry is killed. cur holds the timestamp of the round being
// pushed.
type ackedLoad struct {
	cur        atomic.Int64
	last       int64 // the last round pushed, once done is closed
	stopRounds context.CancelFunc
	abort      context.CancelFunc
	done       chan struct{}
}

// startAckedLoad starts the load; an answer other than 2xx, 5xx or 429,
// or no acknowledgment for two minutes, fails t. The test's cleanup
// stops it, also when the test failed before stopping it.
func startAckedLoad(t *testing.T, p *pusher, base, step int64, batch int) *ackedLoad {
	l := &ackedLoad{done: make(chan struct{})}
	rounds, stopRounds := context.WithCancel(context.Background())
	hard, abort := context.WithCancel(context.Background())
	l.stopRounds, l.abort = stopRounds, abort
	t.Cleanup(func() { stopRounds(); abort(); <-l.done })
	go func() {
		defer close(l.done)
		for ts := base; rounds.Err() == nil; ts += step {
			l.cur.Store(ts)
			for s := 0; s < p.series; s += batch {
				giveUp := time.Now().Add(2 * time.Minute)
				for {
					code, _ := p.push(ts, s, min(s+batch, p.series))
					if code/100 == 2 {
						break
					}
					if hard.Err() != nil || !retryPush(t, ts, code, giveUp) {
						return
					}
					time.Sleep(10 * time.Millisecond) // ferry is down or busy: try again
				}
			}
			l.last = ts
		}
	}()
	return l
}

// retryPush reports whether a push of round ts that got code (not 2xx)
// should be sent again: ferry was down (0), busy or out of space (5xx,
// 429). Any other answer, or no acknowledgment before giveUp, fails t.
func retryPush(t *testing.T, ts int64, code int, giveUp time.Time) bool {
	switch {
	case code != 0 && code/100 != 5 && code != http.StatusTooManyRequests:
		t.Errorf("push at %d: status %d", ts, code)
		return false
	case time.Now().After(giveUp):
		t.Errorf("push at %d: not acknowledged for 2 minutes (last status %d)", ts, code)
		return false
	}
	return true
}

// stop ends the load after the round being pushed and returns the
// timestamp of the last round.
func (l *ackedLoad) stop() int64 {
	l.stopRounds()
	<-l.done
	return l.last
}

// tapKey names one sample: series "name id" and timestamp.
type tapKey struct {
	series string
	t      int64
}

// tapVal is a sample's value and how many times it arrived.
type tapVal struct {
	v float64
	n int
}

// sampleTap keeps every sample a sink accepts with its value, keyed by
// metric name and id label, and the samples that arrived again with
// another value.
type sampleTap struct {
	mu        sync.Mutex
	got       map[tapKey]tapVal
	conflicts []string
}

// tapSink makes s record, besides timestamps, the values it accepts. It
// uses the sink's refuse hook, which sees every request and refuses none.
// Call it before anything writes to s.
func tapSink(s *sink) *sampleTap {
	tp := &sampleTap{got: map[tapKey]tapVal{}}
	s.refuse = func(req *prompb.WriteRequest) bool {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		for _, ts := range req.Timeseries {
			var name, id string
			for _, l := range ts.Labels {
				switch l.Name {
				case "__name__":
					name = l.Value
				case "id":
					id = l.Value
				}
			}
			for _, smp := range ts.Samples {
				k := tapKey{name + " " + id, smp.Timestamp}
				v, ok := tp.got[k]
				if ok && v.v != smp.Value && len(tp.conflicts) < 20 {
					tp.conflicts = append(tp.conflicts, fmt.Sprintf("%s{id=%q} @%d: %v, then %v", name, id, smp.Timestamp, v.v, smp.Value))
				}
				if !ok {
					v.v = smp.Value
				}
				v.n++
				tp.got[k] = v
			}
		}
		return false
	}
	return tp
}

// tapStats compares what a tap holds with want (a value per sample): how
// many of want arrived, the missing ones, the wrong values, the samples
// that are not in want and how many arrivals were duplicates.
type tapStats struct {
	delivered, duplicated int
	missing               []tapKey
	wrong, unexpected     []string
	conflicts             []string
}

func (tp *sampleTap) compare(want map[tapKey]float64, optional map[tapKey]float64) tapStats {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var st tapStats
	st.conflicts = slices.Clone(tp.conflicts)
	for k, w := range want {
		g, ok := tp.got[k]
		switch {
		case !ok:
			st.missing = append(st.missing, k)
		case g.v != w:
			st.wrong = append(st.wrong, fmt.Sprintf("%s @%d: got %v, want %v", k.series, k.t, g.v, w))
		default:
			st.delivered++
		}
	}
	for k, g := range tp.got {
		st.duplicated += g.n - 1
		if _, ok := want[k]; ok {
			continue
		}
		if w, ok := optional[k]; !ok {
			st.unexpected = append(st.unexpected, fmt.Sprintf("%s @%d = %v", k.series, k.t, g.v))
		} else if g.v != w {
			st.wrong = append(st.wrong, fmt.Sprintf("%s @%d (open window): got %v, want %v", k.series, k.t, g.v, w))
		}
	}
	sort.Slice(st.missing, func(i, j int) bool {
		a, b := st.missing[i], st.missing[j]
		return a.series < b.series || (a.series == b.series && a.t < b.t)
	})
	sort.Strings(st.wrong)
	sort.Strings(st.unexpected)
	return st
}

// ok reports whether every wanted sample arrived with its value and
// nothing else arrived.
func (st tapStats) ok() bool {
	return len(st.missing)+len(st.wrong)+len(st.unexpected)+len(st.conflicts) == 0
}

// rawWant is what a raw endpoint must receive: every acknowledged sample
// of the pusher, whose value is its timestamp.
func rawWant(acked map[string][]int64) map[tapKey]float64 {
	want := map[tapKey]float64{}
	for id, tss := range acked {
		for _, t := range tss {
			want[tapKey{"e2e_metric " + id, t}] = float64(t)
		}
	}
	return want
}

// rollupAggs are the aggregations TestKill9Loop's mapping rule asks for;
// "last" keeps the series' name.
var rollupAggs = []string{"last", "count", "sum", "min", "max"}

// rollupWant is what an endpoint with a storage policy of resolution res
// (ms) must receive for the acknowledged samples, whose values are their
// timestamps: for every window of every series, at its last sample's
// timestamp, one sample per aggregation. closed holds the windows that a
// later sample of their series closed; open the last window of each series,
// which closes only when the clock passes it (max_delay), so it may or may
// not have arrived.
func rollupWant(acked map[string][]int64, res int64) (closed, open map[tapKey]float64) {
	closed, open = map[tapKey]float64{}, map[tapKey]float64{}
	for id, tss := range acked {
		tss = slices.Clone(tss)
		slices.Sort(tss)
		tss = slices.Compact(tss)
		for i := 0; i < len(tss); {
			start := tss[i] / res * res
			j := i
			var sum float64
			for ; j < len(tss) && tss[j] < start+res; j++ {
				sum += float64(tss[j])
			}
			last := tss[j-1]
			into := closed
			if j == len(tss) {
				into = open
			}
			for _, a := range rollupAggs {
				v := map[string]float64{"last": float64(last), "count": float64(j - i), "sum": sum,
					"min": float64(tss[i]), "max": float64(last)}[a]
				name := "e2e_metric"
				if a != "last" {
					name += ":" + a
				}
				into[tapKey{name + " " + id, last}] = v
			}
			i = j
		}
	}
	return closed, open
}

// waitTaps polls cmp until every answer is ok or within passes, and
// returns the last answers.
func waitTaps(within time.Duration, cmp func() []tapStats) []tapStats {
	deadline := time.Now().Add(within)
	for {
		sts := cmp()
		if !slices.ContainsFunc(sts, func(st tapStats) bool { return !st.ok() }) || time.Now().After(deadline) {
			return sts
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitTap is waitTaps for one tap.
func waitTap(within time.Duration, cmp func() tapStats) tapStats {
	return waitTaps(within, func() []tapStats { return []tapStats{cmp()} })[0]
}
