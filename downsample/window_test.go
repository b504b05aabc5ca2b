package downsample

import (
	"math"
	"math/rand/v2"
	"testing"
)

// rawIncrease is Prometheus' increase() without extrapolation over the raw
// samples with timestamps in (from, to]: the sum of positive steps, a drop
// counting as a reset.
func rawIncrease(ts []int64, vs []float64, from, to int64) float64 {
	inc := 0.0
	prevSet := false
	var prev float64
	for i, t := range ts {
		if t > to {
			break
		}
		if t > from && prevSet {
			if vs[i] < prev {
				inc += vs[i]
			} else {
				inc += vs[i] - prev
			}
		}
		prev, prevSet = vs[i], true
	}
	return inc
}

// Property: for random counter streams with random resets, the increase
// between any two emitted rollup samples equals the raw increase between
// their timestamps, exactly.
func TestCounterRollupIncreaseMatchesRaw(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 500 {
		res := int64(1+rng.IntN(10)) * 1000
		n := 2 + rng.IntN(300)
		ts := make([]int64, n)
		vs := make([]float64, n)
		tcur, v := int64(rng.IntN(5000)), float64(rng.IntN(100))
		for i := range n {
			tcur += 1 + int64(rng.IntN(3000))
			if rng.IntN(10) == 0 {
				v = float64(rng.IntN(5)) // reset
			} else {
				v += float64(rng.IntN(20))
			}
			ts[i], vs[i] = tcur, v
		}
		var w window
		var out []closed
		for i := range n {
			c, o := w.add(ts[i], vs[i], res)
			if o != accepted {
				t.Fatalf("trial %d: sample %d not accepted: %v", trial, i, o)
			}
			if c != nil {
				out = append(out, *c)
			}
		}
		out = append(out, w.close(res))
		for i := range out {
			for j := i + 1; j < len(out); j++ {
				got := out[j].Total - out[i].Total
				want := rawIncrease(ts, vs, out[i].LastT, out[j].LastT)
				if got != want {
					t.Fatalf("trial %d: increase between windows %d and %d: rollup %v, raw %v", trial, i, j, got, want)
				}
			}
			// One sample per window, at its last sample's timestamp.
			if out[i].LastT < out[i].Start || out[i].LastT >= out[i].End {
				t.Fatalf("trial %d: sample at %d outside its window [%d,%d)", trial, out[i].LastT, out[i].Start, out[i].End)
			}
		}
	}
}

// Property: gauges' min, max, sum, count and avg per window are exact.
func TestGaugeAggregatesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 300 {
		res := int64(1+rng.IntN(10)) * 1000
		var w window
		type agg struct {
			n             uint64
			sum, min, max float64
			last          float64
		}
		want := map[int64]*agg{}
		var got []closed
		tcur := int64(rng.IntN(100000)) - 50000 // negative timestamps too
		for range 1 + rng.IntN(400) {
			tcur += 1 + int64(rng.IntN(2500))
			v := float64(rng.IntN(2000)-1000) / 8 // exact in binary
			start := floorDiv(tcur, res) * res
			a := want[start]
			if a == nil {
				a = &agg{min: v, max: v}
				want[start] = a
			}
			a.n++
			a.sum += v
			a.min, a.max, a.last = min(a.min, v), max(a.max, v), v
			if c, _ := w.add(tcur, v, res); c != nil {
				got = append(got, *c)
			}
		}
		got = append(got, w.close(res))
		if len(got) != len(want) {
			t.Fatalf("trial %d: %d windows, want %d", trial, len(got), len(want))
		}
		for _, c := range got {
			a := want[c.Start]
			if a == nil || c.Count != a.n || c.value("sum") != a.sum || c.value("min") != a.min ||
				c.value("max") != a.max || c.value("last") != a.last || c.value("count") != float64(a.n) ||
				c.value("avg") != a.sum/float64(a.n) {
				t.Fatalf("trial %d: window %d: got %+v, want %+v", trial, c.Start, c, a)
			}
		}
	}
}

func TestWindowLateAndStaleSamples(t *testing.T) {
	var w window
	const res = 1000
	w.add(1500, 1, res)
	if c, o := w.add(2500, 2, res); c == nil || c.Start != 1000 || o != accepted {
		t.Fatalf("crossing the window end: %v %v", c, o)
	}
	if _, o := w.add(1999, 3, res); o != late {
		t.Fatalf("a sample for a closed window: %v, want late", o)
	}
	if _, o := w.add(2500, 3, res); o != late {
		t.Fatalf("a duplicate timestamp: %v, want late", o)
	}
	if _, o := w.add(2600, math.Float64frombits(0x7ff0000000000002), res); o != stale {
		t.Fatalf("a staleness marker: %v, want stale", o)
	}
	if !w.due(3000+500, 2600, res, 500) || w.due(3499, 2600, res, 500) {
		t.Fatal("due: window [2000,3000) with max_delay 500 closes at 3500")
	}
	if w.due(10_000, 9_600, res, 500) {
		t.Fatal("due: a series whose samples still arrive stays open")
	}
	c := w.close(res)
	if c.Count != 1 || c.LastV != 2 {
		t.Fatalf("closed %+v", c)
	}
	if _, o := w.add(2999, 5, res); o != late {
		t.Fatalf("after a clock close: %v, want late", o)
	}
}
