package wal

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/model/labels"
)

// refBatch has one sample at ts for each of n series given by refs.
func refBatch(n int, ts int64) *model.Batch {
	b := &model.Batch{}
	for i := 0; i < n; i++ {
		b.Series = append(b.Series, model.Series{SamplesStart: int32(i), SamplesEnd: int32(i + 1)})
		b.Samples = append(b.Samples, model.Sample{Value: float64(i), Timestamp: ts})
	}
	return b
}

func TestResolveAndAppendRefs(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions()
	opts.SegmentSize = pageSize
	opts.SeriesGrace = 0 // forget at once
	w := openTest(t, dir, opts)
	r, err := w.NewReader("a", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// Refs from Resolve agree with the ones Append finds by labels.
	if err := w.Append(batchOf(0, 2, 1)); err != nil {
		t.Fatal(err)
	}
	lsets := []labels.Labels{
		labels.FromStrings("__name__", "metric", "id", "0", "job", "test"), // written by Append above
		labels.FromStrings("__name__", "metric", "id", "1", "job", "test"),
		labels.FromStrings("__name__", "metric", "id", "2", "job", "test"),
	}
	refs := make([]Ref, len(lsets))
	for i, ls := range lsets {
		if refs[i], err = w.Resolve(ls); err != nil {
			t.Fatal(err)
		}
	}
	if refs[0] != 1 || refs[1] != 2 || refs[2] != 3 {
		t.Fatalf("refs %v, want [1 2 3]", refs)
	}
	if again, _ := w.Resolve(lsets[2]); again != refs[2] {
		t.Fatalf("second Resolve of a series gave %d, want %d", again, refs[2])
	}
	before := w.seq.Load()
	if err := w.AppendRefs(refBatch(3, 2), refs); err != nil {
		t.Fatal(err)
	}
	if n := w.seq.Load() - before; n != 1 {
		t.Fatalf("AppendRefs made %d writes, want 1", n)
	}
	gs, _ := readN(t, r, 2+3)
	checkRound(t, gs[:2], 2, 1)
	for i, g := range gs[2:] {
		if want := (got{id: fmt.Sprint(i), ts: 2, v: float64(i)}); g != want {
			t.Fatalf("sample %d read back as %+v, want %+v", i, g, want)
		}
	}
	if err := w.AppendRefs(refBatch(2, 3), refs); err == nil {
		t.Fatal("AppendRefs with fewer series than refs succeeded")
	}

	// Truncation forgets series 0 and 2 (no samples in the kept segments):
	// AppendRefs refuses their refs and writes nothing; Resolve gives new ones.
	n := 0
	for ts := int64(10); w.Head().Segment < 2; ts++ {
		if err := w.AppendRefs(refBatch(1, ts), refs[1:2]); err != nil {
			t.Fatal(err)
		}
		n++
	}
	_, end := readN(t, r, n)
	r.Commit(end)
	w.maintain()
	if w.Holds(refs[0]) || !w.Holds(refs[1]) || w.Holds(refs[2]) {
		t.Fatalf("after truncation Holds = %v %v %v, want false true false", w.Holds(refs[0]), w.Holds(refs[1]), w.Holds(refs[2]))
	}
	head := w.Head()
	err = w.AppendRefs(refBatch(3, 100), refs)
	var unknown *UnknownRefError
	if !errors.As(err, &unknown) || unknown.Index != 0 || unknown.Ref != refs[0] {
		t.Fatalf("AppendRefs with a forgotten ref: %v, want UnknownRefError for index 0", err)
	}
	if w.Head() != head {
		t.Fatalf("a refused AppendRefs wrote: head %s → %s", head, w.Head())
	}
	fresh, err := w.Resolve(lsets[0])
	if err != nil || fresh <= refs[2] {
		t.Fatalf("Resolve after truncation: %d, %v; want a new ref above %d", fresh, err, refs[2])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Resolve(labels.FromStrings("__name__", "after_close")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Resolve after Close: %v, want ErrClosed", err)
	}
}

// AppendChecked asks about the series the log does not hold, and only
// them; a refusal writes nothing of the batch.
func TestAppendCheckedChecksOnlyNewSeries(t *testing.T) {
	w := openTest(t, t.TempDir(), DefaultOptions())
	defer w.Close()
	r, err := w.NewReader("a", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := w.Append(batchOf(0, 3, 1)); err != nil {
		t.Fatal(err)
	}
	var asked []int
	refuse := errors.New("series 4 refused")
	check := func(i int) error {
		asked = append(asked, i)
		if i == 4 {
			return refuse
		}
		return nil
	}
	// Series 0-2 are held; 3 and 4 are new, and 4 is refused.
	if err := w.AppendChecked(batchOf(0, 5, 2), check); !errors.Is(err, refuse) {
		t.Fatalf("append with a refused series: %v", err)
	}
	if fmt.Sprint(asked) != "[3 4]" {
		t.Fatalf("checked series %v, want [3 4]", asked)
	}
	asked = nil
	if err := w.AppendChecked(batchOf(0, 4, 3), check); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(asked) != "[3]" {
		t.Fatalf("checked series %v, want [3]", asked)
	}
	// The reader sees the first batch, then the third: nothing of the
	// refused one.
	out, _ := readN(t, r, 7)
	for i, g := range out {
		if g.ts == 2 {
			t.Fatalf("sample %d of the refused batch was written: %+v", i, g)
		}
	}
	if w.series.len() != 4 {
		t.Fatalf("log holds %d series, want 4", w.series.len())
	}
}

// A series is the same series whether its labels come as pairs, in wire
// form (a Remote-Write 1.0 request's bytes) or as labels.Labels.
func TestWireLabelsNameTheSameSeries(t *testing.T) {
	w := openTest(t, t.TempDir(), DefaultOptions())
	defer w.Close()
	if err := w.Append(batchOf(0, 2, 1)); err != nil { // pairs
		t.Fatal(err)
	}
	wired := batchOf(0, 3, 2)
	for i := range wired.Series {
		s := &wired.Series[i]
		s.WireStart = int32(len(wired.Wire))
		for _, l := range wired.SeriesLabels(i) {
			wired.Wire = model.AppendWireLabel(wired.Wire, l.Name, l.Value)
		}
		s.WireEnd = int32(len(wired.Wire))
	}
	if err := w.Append(wired); err != nil {
		t.Fatal(err)
	}
	if n := w.series.len(); n != 3 {
		t.Fatalf("log holds %d series after the wire-form batch, want 3", n)
	}
	ref, err := w.Resolve(labels.FromStrings("__name__", "metric", "id", "2", "job", "test"))
	if err != nil {
		t.Fatal(err)
	}
	if n := w.series.len(); n != 3 || ref != 3 {
		t.Fatalf("Resolve of the series the wire-form batch created: ref %d, %d series", ref, n)
	}
	// A value of 200 bytes has a two-byte length: still one series.
	long := strings.Repeat("v", 200)
	var b model.Batch
	b.Labels = []model.Label{{Name: []byte("__name__"), Value: []byte(long)}}
	b.Samples = []model.Sample{{Timestamp: 1}}
	b.Series = []model.Series{{LabelsEnd: 1, SamplesEnd: 1}}
	if err := w.Append(&b); err != nil {
		t.Fatal(err)
	}
	b.Wire = model.AppendWireLabel(nil, "__name__", long)
	b.Series[0].WireEnd = int32(len(b.Wire))
	if err := w.Append(&b); err != nil {
		t.Fatal(err)
	}
	if n := w.series.len(); n != 4 {
		t.Fatalf("log holds %d series, want 4", n)
	}
}
