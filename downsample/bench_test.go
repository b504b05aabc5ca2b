package downsample

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ferrymetrics/ferry/wal"
	model "github.com/ferrymetrics/ferry/wal/model"
)

// appendRounds appends rounds of one sample per series (counters and
// gauges, half each) every step ms.
func appendRounds(tb testing.TB, w *wal.WAL, series, rounds int, step int64) {
	tb.Helper()
	for r := range rounds {
		b := &model.Batch{}
		for i := range series {
			name := "node_cpu_seconds_total"
			if i%2 == 1 {
				name = "node_memory_free_bytes"
			}
			s := model.Series{LabelsStart: int32(len(b.Labels)), SamplesStart: int32(len(b.Samples))}
			b.Labels = append(b.Labels,
				model.Label{Name: []byte("__name__"), Value: []byte(name)},
				model.Label{Name: []byte("id"), Value: []byte(fmt.Sprint(i))},
				model.Label{Name: []byte("instance"), Value: []byte("edge-host-042:9100")})
			b.Samples = append(b.Samples, model.Sample{Timestamp: int64(r+1) * step, Value: float64(r * (i + 1))})
			s.LabelsEnd, s.SamplesEnd = int32(len(b.Labels)), int32(len(b.Samples))
			b.Series = append(b.Series, s)
			if len(b.Series) == 1000 {
				if err := w.Append(b); err != nil {
					tb.Fatal(err)
				}
				b = &model.Batch{}
			}
		}
		if len(b.Series) > 0 {
			if err := w.Append(b); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// BenchmarkCompactor measures the compactor reading the WAL, aggregating
// into 5m and 1h windows and committing every million samples, per
// sample.
func BenchmarkCompactor(b *testing.B) {
	const series, rounds = 10_000, 60
	e := &env{t: &testing.T{}, dir: b.TempDir()}
	e.open()
	defer e.close()
	appendRounds(b, e.w, series, rounds, 15_000)
	b.ResetTimer()
	n := 0
	for range b.N {
		b.StopTimer()
		e2 := &env{t: &testing.T{}, dir: b.TempDir()}
		e2.open()
		appendRounds(b, e2.w, series, rounds, 15_000)
		c, err := New(Config{CommitInterval: 0}, []StoragePolicy{policy(5*time.Minute, 24*time.Hour, true), policy(time.Hour, 24*time.Hour, true)},
			e2.db, e2.w, Options{Now: e2.now})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for {
			k := drain(&testing.T{}, c, 1000)
			if k == 0 {
				break
			}
			if err := c.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		n += series * rounds
		b.StopTimer()
		c.reader.Close()
		e2.close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/sample")
}

// BenchmarkRollupStorage reports the Pebble bytes a day of rollups takes per
// series and resolution (15s scrapes, 1,000 series, half counters).
func BenchmarkRollupStorage(b *testing.B) {
	for _, res := range []time.Duration{5 * time.Minute, time.Hour} {
		b.Run(res.String(), func(b *testing.B) {
			for range b.N {
				rollupStorage(b, res)
			}
		})
	}
}

func rollupStorage(b *testing.B, res time.Duration) {
	{
		t := &testing.T{}
		e := &env{t: t, dir: b.TempDir()}
		e.open()
		const series = 1000
		appendRounds(b, e.w, series, 5760, 15_000) // one day
		c := e.compactor(Config{}, policy(res, 30*24*time.Hour, true))
		for drain(t, c, 2000) > 0 {
			if err := c.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := e.db.Flush(); err != nil {
			t.Fatal(err)
		}
		m := e.db.Metrics()
		perSeries := float64(m.DiskSpaceUsage()) / series
		b.ReportMetric(perSeries, "bytes/series/day")
		e.close()
	}
}

// BenchmarkCompactorMemory reports the heap the compactor holds per series
// (window state, routes, rollup series) once 50,000 series each closed a 5m
// window, after a garbage collection.
func BenchmarkCompactorMemory(b *testing.B) {
	const series = 50_000
	for range b.N {
		e := &env{t: &testing.T{}, dir: b.TempDir()}
		e.open()
		appendRounds(b, e.w, series, 3, int64(5*time.Minute/time.Millisecond))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c, err := New(Config{CommitInterval: 0}, []StoragePolicy{policy(5*time.Minute, 24*time.Hour, true)}, e.db, e.w, Options{Now: e.now})
		if err != nil {
			b.Fatal(err)
		}
		for drain(&testing.T{}, c, 1000) > 0 {
			if err := c.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.Commit(); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/series, "heap-B/series")
		runtime.KeepAlive(c)
		c.reader.Close()
		e.close()
	}
}
