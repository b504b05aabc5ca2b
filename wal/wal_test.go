package wal

import (
	"context"
	"errors"
	"fmt"
	"github.com/ferrymetrics/ferry/wal/model"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// batchOf builds a batch with one sample per series at timestamp ts, for
// series ids [from, to).
func batchOf(from, to int, ts int64) *model.Batch {
	b := &model.Batch{}
	for i := from; i < to; i++ {
		ls := []model.Label{
			{Name: []byte("__name__"), Value: []byte("metric")},
			{Name: []byte("id"), Value: []byte(fmt.Sprint(i))},
			{Name: []byte("job"), Value: []byte("test")},
		}
		s := model.Series{LabelsStart: int32(len(b.Labels)), SamplesStart: int32(len(b.Samples))}
		b.Labels = append(b.Labels, ls...)
		b.Samples = append(b.Samples, model.Sample{Value: float64(ts*1000 + int64(i)), Timestamp: ts})
		s.LabelsEnd, s.SamplesEnd = int32(len(b.Labels)), int32(len(b.Samples))
		b.Series = append(b.Series, s)
	}
	return b
}

type got struct {
	id string
	ts int64
	v  float64
}

func openTest(t testing.TB, dir string, opts Options) *WAL {
	t.Helper()
	w, err := Open(dir, opts, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)), nil, time.Now)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return w
}

// readN reads until n samples have arrived or the context ends.
func readN(t testing.TB, r *Reader, n int) ([]got, Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []got
	var end Position
	for len(out) < n {
		e, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("read after %d of %d samples: %v", len(out), n, err)
		}
		for i, s := range e.Samples {
			out = append(out, got{id: e.SeriesLabels(i).Get("id"), ts: s.T, v: s.V})
		}
		end = e.End
	}
	return out, end
}

func checkRound(t *testing.T, gs []got, series int, ts int64) {
	t.Helper()
	if len(gs) != series {
		t.Fatalf("got %d samples, want %d", len(gs), series)
	}
	for i, g := range gs {
		want := got{id: fmt.Sprint(i), ts: ts, v: float64(ts*1000 + int64(i))}
		if g != want {
			t.Fatalf("sample %d: got %+v, want %+v", i, g, want)
		}
	}
}

func TestAppendReadRestart(t *testing.T) {
	for _, pol := range []SyncPolicy{SyncAlways, SyncInterval} {
		t.Run(fmt.Sprint(pol), func(t *testing.T) {
			dir := t.TempDir()
			opts := DefaultOptions()
			opts.Sync = pol
			w := openTest(t, dir, opts)
			w.Start()
			r, err := w.NewReader("a", w.Oldest(), nil)
			if err != nil {
				t.Fatal(err)
			}
			for ts := int64(1); ts <= 3; ts++ {
				if err := w.Append(batchOf(0, 100, ts)); err != nil {
					t.Fatal(err)
				}
			}
			gs, pos := readN(t, r, 300)
			for ts := int64(1); ts <= 3; ts++ {
				checkRound(t, gs[(ts-1)*100:ts*100], 100, ts)
			}
			// Read two rounds, remember the position after the first.
			mid := Position{}
			_ = pos
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			r2, err := w.NewReader("b", w.Oldest(), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, mid = readN(t, r2, 100)
			r2.Close()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}

			w = openTest(t, dir, opts)
			defer w.Close()
			if n := w.series.len(); n != 100 {
				t.Fatalf("series after restart: %d, want 100", n)
			}
			r3, err := w.NewReader("b", mid, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r3.Close()
			if err := w.Append(batchOf(0, 100, 4)); err != nil {
				t.Fatal(err)
			}
			gs, _ = readN(t, r3, 300)
			checkRound(t, gs[:100], 100, 2)
			checkRound(t, gs[100:200], 100, 3)
			checkRound(t, gs[200:], 100, 4)
			if w.series.len() != 100 {
				t.Fatalf("a known series was created again: %d series", w.series.len())
			}
		})
	}
}

func TestConcurrentAppendersOneReader(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions()
	opts.SegmentSize = pageSize // many rotations
	w := openTest(t, dir, opts)
	defer w.Close()
	r, err := w.NewReader("a", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const writers, rounds, perWriter = 4, 50, 50
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ts := int64(1); ts <= rounds; ts++ {
				if err := w.Append(batchOf(g*perWriter, (g+1)*perWriter, ts)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	gs, _ := readN(t, r, writers*rounds*perWriter)
	wg.Wait()
	last := map[string]int64{}
	for _, g := range gs {
		if g.ts <= last[g.id] {
			t.Fatalf("series %s: timestamp %d after %d", g.id, g.ts, last[g.id])
		}
		last[g.id] = g.ts
	}
	if len(last) != writers*perWriter {
		t.Fatalf("saw %d series, want %d", len(last), writers*perWriter)
	}
	if first, head := w.segmentRange(); head-first < 3 {
		t.Fatalf("expected several rotations, segments %d..%d", first, head)
	}
}

func TestRepairDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string, segs []int)
		// rounds still readable after repair, of 6 written: 3 before the
		// damaged restart, 3 after.
		wantRounds []int64
	}{
		{
			name: "torn_last_record",
			damage: func(t *testing.T, dir string, segs []int) {
				last := wlog.SegmentName(dir, segs[len(segs)-1])
				fi, _ := os.Stat(last)
				if err := os.Truncate(last, fi.Size()-100); err != nil {
					t.Fatal(err)
				}
			},
			wantRounds: []int64{1, 2, 4, 5, 6},
		},
		{
			name: "bad_checksum_last_record",
			damage: func(t *testing.T, dir string, segs []int) {
				flipByte(t, wlog.SegmentName(dir, segs[len(segs)-1]), lastDataByte(t, wlog.SegmentName(dir, segs[len(segs)-1]))-50)
			},
			wantRounds: []int64{1, 2, 4, 5, 6},
		},
		{
			name: "bad_checksum_middle_segment",
			damage: func(t *testing.T, dir string, segs []int) {
				flipByte(t, wlog.SegmentName(dir, segs[0]), lastDataByte(t, wlog.SegmentName(dir, segs[0]))-50)
			},
			// The first segment holds the series record and round 1; the
			// flip hits round 1's samples.
			wantRounds: []int64{2, 3, 4, 5, 6},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := DefaultOptions()
			w := openTest(t, dir, opts)
			if err := w.Append(batchOf(0, 100, 1)); err != nil {
				t.Fatal(err)
			}
			w.Close()
			w = openTest(t, dir, opts) // second segment
			for ts := int64(2); ts <= 3; ts++ {
				if err := w.Append(batchOf(0, 100, ts)); err != nil {
					t.Fatal(err)
				}
			}
			// Simulate a crash: no Close, so the last page is not padded.
			w.isClosed.Store(true)
			segs, _ := listSegments(w.fs, dir)
			tc.damage(t, dir, segs)

			w2 := openTest(t, dir, opts)
			defer w2.Close()
			for ts := int64(4); ts <= 6; ts++ {
				if err := w2.Append(batchOf(0, 100, ts)); err != nil {
					t.Fatal(err)
				}
			}
			r, err := w2.NewReader("a", w2.Oldest(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			gs, _ := readN(t, r, 100*len(tc.wantRounds))
			for i, ts := range tc.wantRounds {
				checkRound(t, gs[i*100:(i+1)*100], 100, ts)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if e, err := r.Next(ctx); err == nil {
				t.Fatalf("unexpected extra record with %d samples", len(e.Samples))
			}
			w.segMu.Lock()
			w.seg.f.Close()
			w.segMu.Unlock()
		})
	}
}

// lastDataByte returns the offset just past the last non-zero byte of a
// file: the end of its records, before page padding.
func lastDataByte(t *testing.T, name string) int64 {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	i := len(b)
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return int64(i)
}

func flipByte(t *testing.T, name string, at int64) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func TestTruncationKeepsSeriesResolvable(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions()
	opts.SegmentSize = pageSize
	opts.SeriesGrace = 0 // forget at once
	w := openTest(t, dir, opts)
	r, err := w.NewReader("a", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Series 0..99 written once at the start, then only 0..49 keep going.
	if err := w.Append(batchOf(0, 100, 1)); err != nil {
		t.Fatal(err)
	}
	for ts := int64(2); ts <= 200; ts++ {
		if err := w.Append(batchOf(0, 50, ts)); err != nil {
			t.Fatal(err)
		}
	}
	_, end := readN(t, r, 100+199*50)
	r.Commit(end)
	w.maintain()
	first, head := w.segmentRange()
	if first != end.Segment || first == 0 {
		t.Fatalf("after truncation first segment %d, want %d (head %d)", first, end.Segment, head)
	}
	if n := w.series.len(); n != 50 {
		t.Fatalf("series after truncation: %d, want 50 (the stopped ones forgotten)", n)
	}
	if _, err := os.Stat(checkpointName(dir, first-1)); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	r.Close()
	w.Close()

	// After a restart, a reader starting at the oldest segment resolves
	// every ref through the checkpoint.
	w = openTest(t, dir, opts)
	defer w.Close()
	if n := w.series.len(); n != 50 {
		t.Fatalf("series after restart: %d, want 50", n)
	}
	if err := w.Append(batchOf(0, 100, 201)); err != nil {
		t.Fatal(err)
	}
	r, err = w.NewReader("b", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		e, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.Unknown > 0 {
			t.Fatalf("%d samples with unknown series at %s", e.Unknown, e.Start)
		}
		if e.Samples[0].T == 201 {
			if len(e.Samples) != 100 || e.SeriesLabels(99).Get("id") != "99" {
				t.Fatalf("last round: %d samples", len(e.Samples))
			}
			break
		}
	}
}

func TestDiskCapDropOldestCountsLosses(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions()
	opts.SegmentSize = pageSize
	opts.MaxSize = 4 * pageSize
	w := openTest(t, dir, opts)
	defer w.Close()
	r, dropped := countingReader(t, w)
	const rounds = 300
	for ts := int64(1); ts <= rounds; ts++ {
		if err := w.Append(batchOf(0, 100, ts)); err != nil {
			t.Fatal(err)
		}
		w.maintain()
	}
	if w.Size() > opts.MaxSize+opts.SegmentSize {
		t.Fatalf("size %d above cap %d", w.Size(), opts.MaxSize)
	}
	if dropped() == 0 {
		t.Fatal("nothing dropped")
	}
	checkRestAfterDrop(t, r, rounds, dropped())
}

// countingReader registers a reader at the oldest record that sums the
// samples the disk cap reports lost.
func countingReader(t *testing.T, w *WAL) (*Reader, func() int) {
	t.Helper()
	var mu sync.Mutex
	dropped := 0
	r, err := w.NewReader("endpoint", w.Oldest(), func(n Lost, from, to Position) {
		mu.Lock()
		dropped += n.Samples
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, func() int { mu.Lock(); defer mu.Unlock(); return dropped }
}

// checkRestAfterDrop reads what the disk cap left of rounds rounds of 100
// samples: exactly the samples not reported lost, in order, up to the last
// round.
func checkRestAfterDrop(t *testing.T, r *Reader, rounds int64, lost int) {
	t.Helper()
	gs, _ := readN(t, r, int(rounds)*100-lost)
	if gs[len(gs)-1].ts != rounds {
		t.Fatalf("last sample read at %d, want %d", gs[len(gs)-1].ts, rounds)
	}
	for i := 1; i < len(gs); i++ {
		if gs[i].ts < gs[i-1].ts {
			t.Fatalf("sample %d at %d after one at %d", i, gs[i].ts, gs[i-1].ts)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Next(ctx); err == nil {
		t.Fatal("read more than appended minus dropped")
	}
}

func TestDiskCapBackpressure(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions()
	opts.SegmentSize = pageSize
	opts.MaxSize = 4 * pageSize
	opts.WhenFull = Backpressure
	w := openTest(t, dir, opts)
	defer w.Close()
	r, err := w.NewReader("slow", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	acked := 0
	var full bool
	for ts := int64(1); ts <= 500; ts++ {
		err := w.Append(batchOf(0, 20, ts))
		if errors.Is(err, ErrFull) {
			full = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		acked += 20
	}
	if !full {
		t.Fatal("never full")
	}
	// Everything acknowledged is readable; after committing, appends resume.
	_, end := readN(t, r, acked)
	r.Commit(end)
	w.maintain()
	if err := w.Append(batchOf(0, 20, 1000)); err != nil {
		t.Fatalf("append after the consumer caught up: %v", err)
	}
}

func TestOpenRejectsDamagedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cp := checkpointName(dir, 3)
	if err := os.MkdirAll(cp, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cp, "00000000"), []byte{1, 0, 200, 0, 0, 0, 0, 9}, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, DefaultOptions(), zap.NewNop(), nil, time.Now)
	if err == nil {
		t.Fatal("opened a WAL with a damaged checkpoint")
	}
}

func TestStaleNaNBitsPreserved(t *testing.T) {
	w := openTest(t, t.TempDir(), DefaultOptions())
	defer w.Close()
	stale := math.Float64frombits(0x7ff0000000000002)
	b := batchOf(0, 1, 1)
	b.Samples[0].Value = stale
	if err := w.Append(b); err != nil {
		t.Fatal(err)
	}
	r, _ := w.NewReader("a", w.Oldest(), nil)
	defer r.Close()
	e, err := r.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if math.Float64bits(e.Samples[0].V) != 0x7ff0000000000002 {
		t.Fatalf("stale marker bits changed: %x", math.Float64bits(e.Samples[0].V))
	}
	if !labels.Equal(e.SeriesLabels(0), labels.FromStrings("__name__", "metric", "id", "0", "job", "test")) {
		t.Fatalf("labels %s", e.SeriesLabels(0))
	}
}

// Native histograms are kept as received, survive a restart, and come back
// with their series' labels.
func TestRawHistogramsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, dir, DefaultOptions())
	b := batchOf(0, 2, 1)
	b.Series[1].HistogramsStart, b.Series[1].HistogramsEnd = 0, 2
	b.Histograms = [][]byte{[]byte("histogram one"), []byte("histogram two")}
	if err := w.Append(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = openTest(t, dir, DefaultOptions())
	defer w.Close()
	r, err := w.NewReader("a", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var hs []string
	for len(hs) < 2 {
		e, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range e.Histograms {
			if LabelsOfWire(h.Wire).Get("id") != "1" {
				t.Fatalf("histogram of series %s", LabelsOfWire(h.Wire))
			}
			hs = append(hs, string(h.Data))
		}
	}
	if hs[0] != "histogram one" || hs[1] != "histogram two" {
		t.Fatalf("histograms %q", hs)
	}
	st, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Segments[0].Histograms != 2 {
		t.Fatalf("inspect counts %d histograms", st.Segments[0].Histograms)
	}
}
