package sender

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a clock the test sets.
type fakeClock struct{ ms atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.UnixMilli(c.ms.Load()) }

// An outage outlasts sample_age_limit: the batch being retried drops what
// aged past it at its next attempt, batches built afterwards drop what is
// already too old, and once the endpoint is back only the recent samples
// arrive, in order. The old ones (and their exemplars) are counted as
// too_old, and the checkpoint moves past them.
func TestSampleAgeLimitDropsWhatAgedDuringAnOutage(t *testing.T) {
	clock := &fakeClock{}
	clock.ms.Store(1_000_000)
	e := &env{t: t, dir: t.TempDir(), exemplars: true, now: clock.now}
	e.open()
	defer e.close()
	r, down := newDownReceiver(t, http.StatusServiceUnavailable)
	s := e.sender("a", r.srv.URL, func(c *Config) { c.Queue.SampleAgeLimit = 10 * time.Second })
	const series = 10
	// 5s old: sent, and retried while the endpoint is down.
	e.append(series, 995_001, 995_005)
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.retried.WithLabelValues("a")) > 0 })
	if got := testutil.ToFloat64(e.m.dropped.WithLabelValues("a", "too_old")); got != 0 {
		t.Fatalf("%v samples dropped as too old before they were", got)
	}
	// 15s pass: those samples are now too old, and so are these two
	// rounds, written late; the last five rounds are recent.
	clock.ms.Store(1_010_000)
	e.append(series, 996_001, 996_002)
	e.append(series, 1_005_001, 1_005_005)
	dropped := func(m *Metrics) float64 { return testutil.ToFloat64(m.dropped.WithLabelValues("a", "too_old")) }
	exDropped := func(m *Metrics) float64 {
		return testutil.ToFloat64(m.exemplarsDropped.WithLabelValues("a", "too_old"))
	}
	// The retried batch drops its items at its next attempt, without the
	// endpoint's help.
	waitFor(t, func() bool { return dropped(e.m) >= series*5 })
	down.Store(false)
	r.waitTotal(series * 5)
	waitFor(t, func() bool { return dropped(e.m) == series*7 && exDropped(e.m) == series*7 })
	waitFor(t, func() bool { return s.Checkpoint() == e.head() })
	stop(t, s)
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, ts := range r.got {
		if len(ts) != 5 || ts[0] != 1_005_001 || ts[4] != 1_005_005 {
			t.Errorf("series %s got %v, want the 5 recent samples in order", id, ts)
		}
	}
	if len(r.got) != series || r.total != series*5 {
		t.Fatalf("%d series, %d samples arrived; want %d and %d", len(r.got), r.total, series, series*5)
	}
	if got := testutil.ToFloat64(e.m.failed.WithLabelValues("a")); got != 0 {
		t.Fatalf("%v samples counted as failed", got)
	}
}

// Without a limit, nothing is too old.
func TestNoSampleAgeLimitKeepsOldSamples(t *testing.T) {
	clock := &fakeClock{}
	clock.ms.Store(time.Now().UnixMilli())
	e := &env{t: t, dir: t.TempDir(), now: clock.now}
	e.open()
	defer e.close()
	r := newReceiver(t, func(int) int { return 0 })
	s := e.sender("a", r.srv.URL, nil)
	e.append(5, 1, 3) // 1970
	r.waitTotal(15)
	stop(t, s)
	r.checkComplete(5, 3)
}

func TestHistogramTimestamp(t *testing.T) {
	v2, v1 := testHistogram(t, 1_700_000_000_123, 42)
	for name, tc := range map[string]struct {
		h    []byte
		want int64
	}{
		"2.0 with start timestamp": {v2, 1_700_000_000_123},
		"1.0":                      {v1, 1_700_000_000_123},
		"empty":                    {nil, 0},
		"unparsable":               {[]byte{0x0a, 0xff}, 0},
	} {
		if got := histogramTimestamp(tc.h); got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}
}
