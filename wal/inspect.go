package wal

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/prometheus/tsdb/record"
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
	IntactBytes int64  // end of the last intact record
	Damage      string // why reading stopped early, if it did
}

// Stats describes a WAL directory.
type Stats struct {
	Segments         []SegmentStats
	Checkpoint       int // -1 if none
	CheckpointSeries int
}

// Inspect reads a WAL directory without changing it: it neither repairs nor
// truncates, so it is safe on the directory of a running Ferry.
func Inspect(dir string) (Stats, error) {
	st := Stats{Checkpoint: -1}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return st, fmt.Errorf("wal: read directory %s: %w", dir, err)
	}
	for _, e := range entries {
		var k int
		if _, err := fmt.Sscanf(e.Name(), "checkpoint.%d", &k); err == nil && e.IsDir() && len(e.Name()) == len("checkpoint.00000000") {
			st.Checkpoint = max(st.Checkpoint, k)
		}
	}
	if st.Checkpoint >= 0 {
		cp := checkpointName(dir, st.Checkpoint)
		segs, err := listSegments(cp)
		if err != nil {
			return st, fmt.Errorf("wal: list checkpoint %d: %w", st.Checkpoint, err)
		}
		for _, s := range segs {
			ss, err := inspectSegment(cp, s)
			if err != nil {
				return st, err
			}
			st.CheckpointSeries += ss.Series
		}
	}
	segs, err := listSegments(dir)
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
	dec := record.NewDecoder(nil, slog.New(slog.DiscardHandler))
	var series []record.RefSeries
	var samples []record.RefSample
	r := wlog.NewReader(bufio.NewReaderSize(f, 1<<20))
	for r.Next() {
		ss.Records++
		rec := r.Record()
		if len(rec) > 0 && rec[0] == recordRawHistograms {
			if err := forEachRaw(rec, func(Ref, []byte) { ss.Histograms++ }); err != nil {
				ss.Damage = "undecodable histogram record: " + err.Error()
				return ss, nil
			}
		}
		switch dec.Type(rec) {
		case record.Series:
			if series, err = dec.Series(rec, series[:0]); err != nil {
				ss.Damage = "undecodable series record: " + err.Error()
				return ss, nil
			}
			ss.Series += len(series)
		case record.Samples, record.SamplesV2:
			if samples, err = dec.Samples(rec, samples[:0]); err != nil {
				ss.Damage = "undecodable samples record: " + err.Error()
				return ss, nil
			}
			ss.Samples += len(samples)
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
