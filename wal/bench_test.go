package wal

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

// benchBatches builds rounds of batches covering `series` series in batches
// of `size`, with realistic label sets.
func benchBatches(series, size int) []*model.Batch {
	var out []*model.Batch
	for from := 0; from < series; from += size {
		b := &model.Batch{}
		for i := from; i < min(from+size, series); i++ {
			ls := []model.Label{
				{Name: []byte("__name__"), Value: []byte(fmt.Sprintf("node_metric_%d_total", i%100))},
				{Name: []byte("cpu"), Value: []byte(fmt.Sprint(i % 64))},
				{Name: []byte("id"), Value: []byte(fmt.Sprint(i))},
				{Name: []byte("instance"), Value: []byte("edge-host-042.example.net:9100")},
				{Name: []byte("job"), Value: []byte("node")},
				{Name: []byte("mode"), Value: []byte("idle")},
			}
			s := model.Series{LabelsStart: int32(len(b.Labels)), SamplesStart: int32(len(b.Samples))}
			b.Labels = append(b.Labels, ls...)
			b.Samples = append(b.Samples, model.Sample{Value: float64(i), Timestamp: 1_700_000_000_000})
			s.LabelsEnd, s.SamplesEnd = int32(len(b.Labels)), int32(len(b.Samples))
			b.Series = append(b.Series, s)
		}
		out = append(out, b)
	}
	return out
}

// BenchmarkAppend measures WAL appends of 1,000-sample batches over 100k
// known series, with an fsync per append (SyncAlways, one writer: no group
// commit) and without (SyncInterval).
func BenchmarkAppend(b *testing.B) {
	for _, pol := range []struct {
		name    string
		p       SyncPolicy
		minFree int64
	}{
		{"sync=always", SyncAlways, 0},
		{"sync=interval", SyncInterval, 0},
		// As Ferry runs: the filesystem's free space checked before appends.
		{"sync=interval,min_free_disk", SyncInterval, 1 << 20},
	} {
		b.Run(pol.name, func(b *testing.B) {
			opts := DefaultOptions()
			opts.Sync = pol.p
			opts.MinFree = pol.minFree
			w, err := Open(b.TempDir(), opts, zap.NewNop(), nil, time.Now)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			batches := benchBatches(100_000, 1000)
			for _, bt := range batches { // create the series first
				if err := w.Append(bt); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				bt := batches[i%len(batches)]
				for j := range bt.Samples {
					bt.Samples[j].Timestamp += 15000
				}
				if err := w.Append(bt); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/sample")
		})
	}
}

// BenchmarkRead measures a reader decoding Samples records and resolving
// their labels.
func BenchmarkRead(b *testing.B) {
	opts := DefaultOptions()
	opts.Sync = SyncInterval
	w, err := Open(b.TempDir(), opts, zap.NewNop(), nil, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	batches := benchBatches(100_000, 1000)
	for range 3 {
		for _, bt := range batches {
			if err := w.Append(bt); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for range b.N {
		r, err := w.NewReader("bench", w.Oldest(), nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for got := 0; got < 300_000; {
			e, err := r.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			got += len(e.Samples)
			n += len(e.Samples)
		}
		cancel()
		r.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/sample")
}

// BenchmarkCheckSpace measures the free-space check every append makes.
func BenchmarkCheckSpace(b *testing.B) {
	opts := DefaultOptions()
	opts.MinFree = 1 << 20
	w, err := Open(b.TempDir(), opts, zap.NewNop(), nil, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := w.checkSpace(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateSeries measures appends of batches of 500 series the log
// has not seen (series churn), without fsync, and reports the heap the
// series table holds per series and the GC cycles it cost.
func BenchmarkCreateSeries(b *testing.B) {
	opts := DefaultOptions()
	opts.Sync = SyncInterval
	opts.SyncInterval = time.Hour
	w, err := Open(b.TempDir(), opts, zap.NewNop(), nil, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	const size = 500
	batches := benchBatches(size*b.N, size)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for _, bt := range batches {
		if err := w.Append(bt); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(batches)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/series")
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N*size), "heap-B/series")
	b.ReportMetric(float64(after.NumGC-before.NumGC), "gc-cycles")
}

// BenchmarkTruncate measures a truncation (checkpoint and segment deletion)
// with 200k active series of which 1% are new since the previous one: the
// cost of what changed, not of every active series.
func BenchmarkTruncate(b *testing.B) {
	const active, fresh = 200_000, 2_000
	opts := DefaultOptions()
	opts.Sync = SyncInterval
	opts.SegmentSize = 8 << 20
	w, err := Open(b.TempDir(), opts, zap.NewNop(), nil, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	r, err := w.NewReader("bench", w.Oldest(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	batches := benchBatches(active+(b.N+2)*fresh, 1000)
	// round appends one sample of each of the active series starting at
	// series lo in a segment of its own, and commits the rounds before it:
	// truncation keeps that segment, so the active series stay live.
	round := func(lo int) {
		for _, bt := range batches[lo/1000 : (lo+active)/1000] {
			if err := w.Append(bt); err != nil {
				b.Fatal(err)
			}
		}
		w.mu.Lock()
		if err := w.rotateLocked(); err != nil {
			b.Fatal(err)
		}
		w.mu.Unlock()
		r.Commit(Position{Segment: int(w.headSg.Load()) - 1})
	}
	round(0)
	round(fresh)
	w.maintain()
	cps := w.m.checkpointSeries
	before := testutil.ToFloat64(cps)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		round((i + 2) * fresh)
		b.StartTimer()
		w.maintain()
	}
	b.StopTimer()
	b.ReportMetric((testutil.ToFloat64(cps)-before)/float64(b.N), "checkpointed-series/op")
}
