package wal

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/model/labels"
)

// readAll reads entries until none arrives for a moment.
func readAll(t *testing.T, r *Reader) []Entry {
	t.Helper()
	var out []Entry
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		e, err := r.Next(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		c := *e
		c.Samples = append(c.Samples[:0:0], e.Samples...)
		c.Wire = append(c.Wire[:0:0], e.Wire...)
		c.Histograms = append(c.Histograms[:0:0], e.Histograms...)
		for i := range c.Histograms {
			c.Histograms[i].Data = append([]byte(nil), c.Histograms[i].Data...)
		}
		c.Exemplars = append(c.Exemplars[:0:0], e.Exemplars...)
		c.Metadata = append(c.Metadata[:0:0], e.Metadata...)
		out = append(out, c)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o750)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReplaysWALOfEarlierRelease opens a WAL written by the release before
// exemplars, metadata and start timestamps were kept (testdata/wal-v0: a
// checkpoint of 50 series, three segments with float samples, raw
// histograms and metric-type records) and reads everything back.
func TestReplaysWALOfEarlierRelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	copyDir(t, "testdata/wal-v0", dir)
	w := openTest(t, dir, DefaultOptions())
	defer w.Close()
	r, err := w.NewReader("upgrade", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var samples, hists, unknown int
	types := map[string]model.MetricType{}
	for _, e := range readAll(t, r) {
		samples += len(e.Samples)
		hists += len(e.Histograms)
		unknown += e.Unknown
		for i, s := range e.Samples {
			if e.SeriesLabels(i).Get("job") != "test" || s.ST != 0 {
				t.Fatalf("sample %v of %v", s, e.SeriesLabels(i))
			}
		}
		for _, m := range e.Metadata {
			types[m.Family] = m.Type
		}
	}
	if samples != 7600 || hists != 7 || unknown != 0 {
		t.Fatalf("read %d samples, %d histograms, %d of unknown series; the earlier release wrote 7600, 7 and 0", samples, hists, unknown)
	}
	if types["m"] != model.TypeCounter || types["g"] != model.TypeGauge {
		t.Fatalf("metric types %v", types)
	}
	if m, ok := w.Metadata("m"); !ok || m.Type != model.TypeCounter {
		t.Fatalf("current metadata of m: %v %v", m, ok)
	}
	if got := w.HighestTimestamp(); got != 1700005985000 {
		t.Fatalf("highest timestamp %d", got)
	}
}

// richBatch is one series with a float sample carrying a start timestamp,
// a second series with a histogram and an exemplar, and metadata.
func richBatch(ts int64, help string) *model.Batch {
	b := &model.Batch{}
	add := func(name string) int {
		b.Series = append(b.Series, model.Series{LabelsStart: int32(len(b.Labels))})
		b.Labels = append(b.Labels, model.Label{Name: []byte("__name__"), Value: []byte(name)}, model.Label{Name: []byte("job"), Value: []byte("j")})
		s := &b.Series[len(b.Series)-1]
		s.LabelsEnd = int32(len(b.Labels))
		s.SamplesStart, s.SamplesEnd = int32(len(b.Samples)), int32(len(b.Samples))
		s.HistogramsStart, s.HistogramsEnd = int32(len(b.Histograms)), int32(len(b.Histograms))
		s.ExemplarsStart, s.ExemplarsEnd = int32(len(b.Exemplars)), int32(len(b.Exemplars))
		return len(b.Series) - 1
	}
	i := add("requests_total")
	b.Samples = append(b.Samples, model.Sample{Value: 42, Timestamp: ts, Start: ts - 60_000})
	b.Series[i].SamplesEnd++
	i = add("latency_seconds")
	b.Histograms = append(b.Histograms, []byte{0x08, 0x03, 0x20, 0x06})
	b.Series[i].HistogramsEnd++
	ex := model.Exemplar{LabelsStart: int32(len(b.Labels)), Value: 0.25, Timestamp: ts - 5}
	b.Labels = append(b.Labels, model.Label{Name: []byte("trace_id"), Value: []byte("abc123")})
	ex.LabelsEnd = int32(len(b.Labels))
	b.Exemplars = append(b.Exemplars, ex)
	b.Series[i].ExemplarsEnd++
	b.Metadata = append(b.Metadata,
		model.Metadata{Family: []byte("requests_total"), Type: model.TypeCounter, Help: []byte(help), Unit: []byte("")},
		model.Metadata{Family: []byte("latency_seconds"), Type: model.TypeHistogram, Help: []byte("Latency."), Unit: []byte("seconds")})
	return b
}

func TestExemplarsMetadataStartTimestamps(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, dir, DefaultOptions())
	for k := 0; k < 3; k++ {
		help := "Requests."
		if k == 2 {
			help = "Requests served."
		}
		if err := w.Append(richBatch(int64(1000+k*15_000), help)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(w *WAL, wantMetaRecords int) {
		t.Helper()
		r, err := w.NewReader("c", w.Oldest(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var samples, hists, exemplars, metas int
		for _, e := range readAll(t, r) {
			for i, s := range e.Samples {
				samples++
				if s.ST != s.T-60_000 || s.V != 42 || e.SeriesLabels(i).Get("__name__") != "requests_total" {
					t.Fatalf("sample %+v of %v", s, e.SeriesLabels(i))
				}
			}
			for _, h := range e.Histograms {
				hists++
				if string(h.Data) != "\x08\x03\x20\x06" || LabelsOfWire(h.Wire).Get("__name__") != "latency_seconds" {
					t.Fatalf("histogram %+v", h)
				}
			}
			for _, x := range e.Exemplars {
				exemplars++
				if x.V != 0.25 || !labels.Equal(x.Exemplar, labels.FromStrings("trace_id", "abc123")) || LabelsOfWire(x.Wire).Get("__name__") != "latency_seconds" {
					t.Fatalf("exemplar %+v", x)
				}
			}
			metas += len(e.Metadata)
		}
		if samples != 3 || hists != 3 || exemplars != 3 || metas != wantMetaRecords {
			t.Fatalf("read %d samples, %d histograms, %d exemplars, %d metadata entries", samples, hists, exemplars, metas)
		}
		m, ok := w.Metadata("requests_total")
		if !ok || m.Type != model.TypeCounter || m.Help != "Requests served." {
			t.Fatalf("current metadata %+v %v", m, ok)
		}
		m, ok = w.Metadata("latency_seconds")
		if !ok || m.Type != model.TypeHistogram || m.Unit != "seconds" {
			t.Fatalf("current metadata %+v %v", m, ok)
		}
	}
	// Metadata is written when it changes: both families once, then
	// requests_total again when its help changed.
	check(w, 3)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = openTest(t, dir, DefaultOptions())
	check(w, 3)
	if err := w.Append(richBatch(100_000, "Requests served.")); err != nil {
		t.Fatal(err)
	}
	if st, _ := Inspect(dir); st.Segments[len(st.Segments)-1].Metadata != 0 {
		t.Fatalf("unchanged metadata was written again: %+v", st.Segments)
	}
	w.Close()
}

// TestMetadataSurvivesTruncation: after the segments holding the metadata
// records are deleted, the checkpoint carries it to the next start, for the
// families that still have live series; the others are forgotten.
func TestMetadataSurvivesTruncation(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.SegmentSize = pageSize
	w := openTest(t, dir, o)
	first := richBatch(1000, "Requests.")
	first.Metadata = append(first.Metadata, model.Metadata{Family: []byte("gone"), Type: model.TypeGauge})
	if err := w.Append(first); err != nil {
		t.Fatal(err)
	}
	for k := 0; w.Head().Segment < 3; k++ {
		if err := w.Append(batchOf(0, 100, int64(2000+k))); err != nil {
			t.Fatal(err)
		}
	}
	again := richBatch(500_000, "Requests.")
	again.Metadata = nil
	if err := w.Append(again); err != nil {
		t.Fatal(err)
	}
	w.truncMu.Lock()
	err := w.truncate(w.Head().Segment)
	w.truncMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = openTest(t, dir, o)
	defer w.Close()
	m, ok := w.Metadata("latency_seconds")
	if !ok || m.Type != model.TypeHistogram || m.Help != "Latency." || m.Unit != "seconds" {
		t.Fatalf("metadata after truncation and restart: %+v %v", m, ok)
	}
	if m, ok := w.Metadata("gone"); ok {
		t.Fatalf("metadata of a family without series kept: %+v", m)
	}
	if w.HighestTimestamp() == math.MinInt64 {
		t.Fatal("no samples replayed")
	}
}

// The disk cap counts what a consumer loses by kind: samples and
// histograms, and exemplars.
func TestCountLost(t *testing.T) {
	o := DefaultOptions()
	o.SegmentSize = pageSize
	w := openTest(t, t.TempDir(), o)
	defer w.Close()
	n := 0
	for ; w.Head().Segment < 2; n++ {
		if err := w.Append(richBatch(int64(1000+n), "Requests.")); err != nil {
			t.Fatal(err)
		}
	}
	got, err := w.countLost(Position{}, w.Head().Segment+1)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Lost{Samples: 2 * n, Exemplars: n}); got != want {
		t.Fatalf("counted %+v, want %+v", got, want)
	}
}

// A series finds its family's metadata under its own name or, for the
// series of histograms, summaries and OpenMetrics counters, without the
// suffix.
func TestMetadataOfSeries(t *testing.T) {
	w := openTest(t, t.TempDir(), DefaultOptions())
	defer w.Close()
	if err := w.Append(richBatch(1000, "Requests.")); err != nil {
		t.Fatal(err)
	}
	for name, family := range map[string]string{
		"latency_seconds": "latency_seconds", "latency_seconds_bucket": "latency_seconds",
		"latency_seconds_count": "latency_seconds", "requests_total": "requests_total",
	} {
		if m, ok := w.Metadata(name); !ok || m.Family != family {
			t.Errorf("%s: %+v %v, want family %s", name, m, ok, family)
		}
	}
	for _, name := range []string{"", "_bucket", "other_bucket"} {
		if m, ok := w.Metadata(name); ok {
			t.Errorf("%q: found %+v", name, m)
		}
	}
}
