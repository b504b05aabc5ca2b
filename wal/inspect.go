package wal

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// SegmentStats describes one segment.
type SegmentStats struct {
	Index       int
	Bytes       int64
	Records     int
	Series      int
	Samples     int
	Histograms  int
	Exemplars   int
	Metadata    int    // metric families whose metadata was written
	IntactBytes int64  // end of the last intact record
	Damage      string // why reading stopped early, if it did
}

// Stats describes a WAL directory.
type Stats struct {
	Segments         []SegmentStats
	Checkpoint       int    // the newest checkpoint; -1 if none
	CheckpointChain  []int  // the checkpoints replay reads, oldest first; Checkpoint is the last
	CheckpointSeries int    // Series records in the chain
	CheckpointDamage string // in which checkpoint, where and why reading the checkpoint stopped early, if it did
}

// Inspect reads a WAL directory without changing it: it neither repairs nor
// truncates, so it is safe on the directory of a running Ferry.
func Inspect(dir string) (Stats, error) {
	st := Stats{Checkpoint: -1}
	cps, _, err := listCheckpoints(vfs.Default, dir)
	if err != nil {
		return st, err
	}
	if len(cps) > 0 {
		st.Checkpoint = cps[len(cps)-1]
		if st.CheckpointChain, err = readChain(vfs.Default, dir, st.Checkpoint); err != nil {
			return st, err
		}
	}
	for _, k := range st.CheckpointChain {
		cp := checkpointName(dir, k)
		segs, err := listSegments(vfs.Default, cp)
		if err != nil {
			return st, fmt.Errorf("wal: list checkpoint %d: %w", k, err)
		}
		for _, s := range segs {
			ss, err := inspectSegment(cp, s)
			if err != nil {
				return st, err
			}
			st.CheckpointSeries += ss.Series
			if ss.Damage != "" && st.CheckpointDamage == "" {
				st.CheckpointDamage = fmt.Sprintf("checkpoint.%08d segment %08d at byte %d: %s", k, s, ss.IntactBytes, ss.Damage)
			}
		}
	}
	segs, err := listSegments(vfs.Default, dir)
	if err != nil {
		return st, fmt.Errorf("wal: list segments in %s: %w", dir, err)
	}
	for _, s := range segs {
		ss, err := inspectSegment(dir, s)
		if err != nil {
			return st, err
		}
		st.Segments = append(st.Segments, ss)
	}
	return st, nil
}

func inspectSegment(dir string, seg int) (SegmentStats, error) {
	ss := SegmentStats{Index: seg}
	f, err := os.Open(wlog.SegmentName(dir, seg))
	if err != nil {
		return ss, fmt.Errorf("wal: open segment %d: %w", seg, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ss, fmt.Errorf("wal: stat segment %d: %w", seg, err)
	}
	ss.Bytes = fi.Size()
	dec := newDecoder(slog.New(slog.DiscardHandler))
	r := wlog.NewReader(bufio.NewReaderSize(f, 1<<20))
	for r.Next() {
		ss.Records++
		k, err := dec.decode(r.Record())
		if err != nil {
			ss.Damage = "undecodable " + err.Error()
			return ss, nil
		}
		switch k {
		case kindSeries:
			ss.Series += len(dec.series)
		case kindSamples:
			ss.Samples += len(dec.samples)
		case kindHistograms:
			ss.Histograms += len(dec.histograms)
		case kindExemplars:
			ss.Exemplars += len(dec.exemplars)
		case kindMetadata:
			ss.Metadata += len(dec.metadata)
		}
		ss.IntactBytes = r.Offset()
	}
	if err := r.Err(); err != nil {
		ss.Damage = err.Error()
	} else {
		ss.IntactBytes = ss.Bytes
	}
	return ss, nil
}
