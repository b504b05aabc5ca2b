package wal

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// checkpointSeries counts the Series records in checkpoint cp alone.
func checkpointSeries(t *testing.T, dir string, cp int) int {
	t.Helper()
	d := checkpointName(dir, cp)
	segs, err := listSegments(vfs.Default, d)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range segs {
		ss, err := inspectSegment(d, s)
		if err != nil {
			t.Fatal(err)
		}
		n += ss.Series
	}
	return n
}

// smallSegments returns options with one-page segments, so that a few
// rounds fill several.
func smallSegments(grace time.Duration) Options {
	opts := DefaultOptions()
	opts.SegmentSize = pageSize
	opts.SeriesGrace = grace
	return opts
}

// openWithReader opens a WAL in dir with a reader "a" from its oldest
// segment.
func openWithReader(t *testing.T, dir string, opts Options) (*WAL, *Reader) {
	t.Helper()
	w := openTest(t, dir, opts)
	r, err := w.NewReader("a", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return w, r
}

// truncateRounds appends rounds of one sample to each of series [from, to),
// then has a reader commit everything and truncates. It returns the
// resulting checkpoint chain.
func truncateRounds(t *testing.T, w *WAL, r *Reader, from, to int, ts0 int64, rounds int) []int {
	t.Helper()
	for ts := ts0; ts < ts0+int64(rounds); ts++ {
		if err := w.Append(batchOf(from, to, ts)); err != nil {
			t.Fatal(err)
		}
	}
	_, end := readN(t, r, (to-from)*rounds)
	r.Commit(end)
	w.maintain()
	st, err := Inspect(w.dir)
	if err != nil {
		t.Fatal(err)
	}
	return st.CheckpointChain
}

func TestCheckpointChainHoldsOnlyNewSeries(t *testing.T) {
	dir := t.TempDir()
	opts := smallSegments(DefaultOptions().SeriesGrace)
	w, r := openWithReader(t, dir, opts)

	// 100 series: the first checkpoint is full.
	chain := truncateRounds(t, w, r, 0, 100, 1, 40)
	if len(chain) != 1 || checkpointSeries(t, dir, chain[0]) != 100 {
		t.Fatalf("first checkpoint: chain %v with %d series, want one of 100", chain, checkpointSeries(t, dir, chain[0]))
	}
	// 20 more: the next checkpoint holds just them and extends the first.
	chain2 := truncateRounds(t, w, r, 0, 120, 100, 40)
	if len(chain2) != 2 || chain2[0] != chain[0] {
		t.Fatalf("second checkpoint: chain %v, want %d and a delta", chain2, chain[0])
	}
	if n := checkpointSeries(t, dir, chain2[1]); n != 20 {
		t.Fatalf("delta checkpoint holds %d series, want the 20 new ones", n)
	}
	// Nothing new: the delta is empty.
	chain3 := truncateRounds(t, w, r, 0, 120, 200, 40)
	if len(chain3) != 3 || checkpointSeries(t, dir, chain3[2]) != 0 {
		t.Fatalf("third checkpoint: chain %v, want an empty delta added", chain3)
	}
	r.Close()
	w.Close()

	// A restart reads the chain: a reader from the oldest segment knows
	// every series, and truncation goes on extending the same chain.
	w, r = openWithReader(t, dir, opts)
	defer w.Close()
	defer r.Close()
	if n := w.series.len(); n != 120 {
		t.Fatalf("series after restart: %d, want 120", n)
	}
	if err := w.Append(batchOf(0, 130, 300)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seen := 0
	for seen < 130 {
		e, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.Unknown > 0 {
			t.Fatalf("%d samples of unknown series at %s", e.Unknown, e.Start)
		}
		for i := range e.Samples {
			if e.Samples[i].T == 300 {
				if got, want := e.SeriesLabels(i).Get("id"), fmt.Sprint(seen); got != want {
					t.Fatalf("sample %d of the last round is series %s, want %s", seen, got, want)
				}
				seen++
			}
		}
	}
	chain4 := truncateRounds(t, w, r, 0, 130, 400, 40)
	if !slices.Equal(chain4[:3], chain3) || len(chain4) != 4 || checkpointSeries(t, dir, chain4[3]) != 10 {
		t.Fatalf("after restart: chain %v, want %v and a delta of the 10 new series", chain4, chain3)
	}
	// Only the chain's checkpoints are on disk.
	cps, _, err := listCheckpoints(vfs.Default, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cps, chain4) {
		t.Fatalf("checkpoints on disk %v, want the chain %v", cps, chain4)
	}
}

func TestCheckpointChainRewrittenWhenMostlyForgotten(t *testing.T) {
	dir := t.TempDir()
	w, r := openWithReader(t, dir, smallSegments(0)) // forget at once
	defer w.Close()
	defer r.Close()
	// Series churn: each step replaces 20 of 100 active series.
	var chains [][]int
	for step := 0; step < 12; step++ {
		chains = append(chains, truncateRounds(t, w, r, 20*step, 20*step+100, int64(100*step), 40))
		chain := chains[len(chains)-1]
		total := 0
		for _, cp := range chain {
			total += checkpointSeries(t, dir, cp)
		}
		// The chain holds every active series whose record went, and
		// never more than twice as many records as series it must hold.
		if live := w.series.len(); total > 2*live+20 {
			t.Fatalf("step %d: chain %v holds %d series records for %d live series", step, chain, total, live)
		}
	}
	rewrites := 0
	for k := 1; k < len(chains); k++ {
		if len(chains[k]) < len(chains[k-1]) {
			rewrites++
		}
	}
	if rewrites == 0 {
		t.Fatalf("the chain was never rewritten whole: %v", chains)
	}
	// Forgotten series' checkpoints are gone from disk.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	last := chains[len(chains)-1]
	for _, e := range entries {
		var k int
		if _, err := fmt.Sscanf(e.Name(), "checkpoint.%d", &k); err == nil && !slices.Contains(last, k) {
			t.Fatalf("%s is on disk but not in the chain %v", e.Name(), last)
		}
	}
}

func TestOpenRejectsChainWithMissingMember(t *testing.T) {
	dir := t.TempDir()
	opts := smallSegments(DefaultOptions().SeriesGrace)
	w, r := openWithReader(t, dir, opts)
	truncateRounds(t, w, r, 0, 50, 1, 100)
	chain := truncateRounds(t, w, r, 0, 60, 200, 100)
	r.Close()
	w.Close()
	if len(chain) != 2 {
		t.Fatalf("chain %v, want two members", chain)
	}
	if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("checkpoint.%08d", chain[0]))); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, opts, nil, nil, time.Now); err == nil {
		t.Fatal("opened a WAL whose checkpoint chain lacks a member")
	}
}

// A series sampled less often than its segments are consumed keeps its ref
// through truncation within SeriesGrace, and is forgotten after.
func TestSeriesKeptWithinGrace(t *testing.T) {
	dir := t.TempDir()
	opts := smallSegments(time.Minute)
	clock := time.Unix(1_700_000_000, 0)
	w, err := Open(dir, opts, nil, nil, func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := w.NewReader("a", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	created := func() float64 { return testutil.ToFloat64(w.m.seriesCreated) }

	// Series 0..99 once, then only 100..149 for many segments, all consumed.
	truncateRounds(t, w, r, 0, 100, 1, 1)
	truncateRounds(t, w, r, 100, 150, 2, 100)
	if n := w.series.len(); n != 150 {
		t.Fatalf("within the grace period %d series are held, want 150", n)
	}
	// Series 0..99 come back: no new series records.
	truncateRounds(t, w, r, 0, 150, 200, 1)
	if c := created(); c != 150 {
		t.Fatalf("%v series created, want 150: the returning ones were written anew", c)
	}
	// A minute after the segment with their last samples is sealed,
	// series 0..99 go once truncation runs.
	truncateRounds(t, w, r, 100, 150, 300, 100)
	if n := w.series.len(); n != 150 {
		t.Fatalf("within the grace period %d series are held, want 150", n)
	}
	clock = clock.Add(2 * time.Minute)
	truncateRounds(t, w, r, 100, 150, 400, 100)
	if n := w.series.len(); n != 50 {
		t.Fatalf("after the grace period %d series are held, want 50", n)
	}
	// Series 0..99 coming back now are written anew.
	if err := w.Append(batchOf(0, 150, 1000)); err != nil {
		t.Fatal(err)
	}
	if c := created(); c != 250 {
		t.Fatalf("%v series created, want 250 (series 0..99 anew)", c)
	}
}
