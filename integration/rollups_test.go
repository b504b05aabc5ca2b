package integration

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// Ferry forwards raw samples to one real Prometheus and 5m rollups to
// another. increase(x[1h]) over the rollups equals increase(x[1h]) over the
// raw samples at window boundaries, for counters with random increments
// and resets.
func TestRollupsAgreeWithRawInRealPrometheus(t *testing.T) {
	requireIntegration(t)
	raw := startProm(t, "raw", promReceiver, "")
	rolled := startProm(t, "rolled-5m", promReceiver, "")
	f := newFerry(t, "", "raw="+raw.writeURL(),
		"rolled="+rolled.writeURL()+"|storage_policy: {resolution: 5m, retention: 720h}")
	f.start()

	const step, series = 15_000, 3
	const window = 300_000
	now := time.Now().UnixMilli()
	base := (now - 85*60_000) / window * window
	last := now - 5*60_000
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float64, series)
	for ts := base; ts <= last; ts += step {
		var wr prompb.WriteRequest
		for s := range series {
			if rng.IntN(40) == 0 {
				vals[s] = float64(rng.IntN(3)) // reset
			} else {
				vals[s] += float64(rng.IntN(100))
			}
			wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
				Labels:  []prompb.Label{{Name: "__name__", Value: "ferry_rollup_test_total"}, {Name: "id", Value: fmt.Sprint(s)}},
				Samples: []prompb.Sample{{Timestamp: ts, Value: vals[s]}},
			})
		}
		if code := postWriteRequest(t, f.addr, &wr); code != http.StatusNoContent {
			t.Fatalf("push at %d: %d", ts, code)
		}
	}
	// Windows closed by data: every one but the last. A window's rollup
	// sits at its last raw sample, start+285s.
	lastClosed := (last/window - 1) * window
	at := func(k int64) time.Time { return time.UnixMilli(base + k*window + window - step) }
	kMax := (lastClosed - base) / window
	waitUntil(t, 2*time.Minute, func() bool {
		v, err := rolled.vector(`ferry_rollup_test_total`, at(kMax))
		return err == nil && len(v) == series
	})
	checked := 0
	for k := int64(12); k <= kMax; k++ { // the hour before at(k) is covered by data
		q := `increase(ferry_rollup_test_total[1h])`
		want, err := raw.vector(q, at(k))
		if err != nil {
			t.Fatal(err)
		}
		got, err := rolled.vector(q, at(k))
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != series || len(got) != series {
			t.Fatalf("at %s: %d raw and %d rolled results, want %d", at(k), len(want), len(got), series)
		}
		for key, w := range want {
			g, ok := got[key]
			if !ok || math.Abs(g-w) > 1e-9*math.Max(1, math.Abs(w)) {
				t.Fatalf("increase(x[1h]) at %s for %s: rollups %v, raw %v", at(k), key, g, w)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("nothing compared")
	}
	t.Logf("increase(x[1h]) agreed at %d (series, window boundary) pairs", checked)
	if n := f.metric("ferry_downsample_late_samples_total"); n != 0 {
		t.Errorf("%v late samples", n)
	}
	f.stop()
}
