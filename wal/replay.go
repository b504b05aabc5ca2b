package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"go.uber.org/zap"
)

// CorruptionError says where a segment is damaged.
type CorruptionError struct {
	Dir     string
	Segment int
	Offset  int64 // end of the last intact record
	Err     error
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: segment %d in %s damaged after offset %d: %v", e.Segment, e.Dir, e.Offset, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }

// lastCheckpoint finds the newest complete checkpoint and removes leftovers
// of interrupted ones. It returns -1 if there is none.
func (w *WAL) lastCheckpoint() (int, error) {
	names, err := w.fs.List(w.dir)
	if err != nil {
		return -1, fmt.Errorf("wal: read directory %s: %w", w.dir, err)
	}
	last := -1
	var all []int
	for _, name := range names {
		if strings.HasSuffix(name, repairSuffix) {
			// A repair interrupted before its rename: the segment is intact.
			if err := w.fs.Remove(w.fs.PathJoin(w.dir, name)); err != nil {
				return -1, fmt.Errorf("wal: remove incomplete repair %s: %w", name, err)
			}
			continue
		}
		if !strings.HasPrefix(name, "checkpoint.") {
			continue
		}
		if strings.HasSuffix(name, ".tmp") {
			if err := w.fs.RemoveAll(w.fs.PathJoin(w.dir, name)); err != nil {
				return -1, fmt.Errorf("wal: remove incomplete checkpoint %s: %w", name, err)
			}
			continue
		}
		k, err := strconv.Atoi(strings.TrimPrefix(name, "checkpoint."))
		if err != nil {
			continue
		}
		all = append(all, k)
		last = max(last, k)
	}
	for _, k := range all {
		if k < last {
			if err := w.fs.RemoveAll(checkpointName(w.dir, k)); err != nil {
				return -1, fmt.Errorf("wal: remove old checkpoint %d: %w", k, err)
			}
		}
	}
	return last, nil
}

// replay rebuilds the series table from the checkpoint and the segments,
// finishing an interrupted truncation and repairing damaged tails.
func (w *WAL) replay() error {
	cp, err := w.lastCheckpoint()
	if err != nil {
		return err
	}
	segs, err := listSegments(w.fs, w.dir)
	if err != nil {
		return fmt.Errorf("wal: list segments in %s: %w", w.dir, err)
	}
	// Segments covered by the checkpoint were due for deletion.
	for len(segs) > 0 && segs[0] <= cp {
		if err := w.fs.Remove(wlog.SegmentName(w.dir, segs[0])); err != nil {
			return fmt.Errorf("wal: remove segment %d covered by checkpoint %d: %w", segs[0], cp, err)
		}
		segs = segs[1:]
	}
	if cp >= 0 {
		n, size, err := w.loadCheckpoint(cp)
		if err != nil {
			return err
		}
		w.cpSize = size
		w.logger.Info("Loaded WAL checkpoint", zap.Int("checkpoint", cp), zap.Int("series", n))
	}
	dec := newDecoder(w.slog)
	orphans := 0
	for i, seg := range segs {
		if i == 0 {
			w.first = seg
		}
		size, err := w.replaySegment(seg, func(rec []byte) error {
			k, err := dec.decode(rec)
			if err != nil {
				return err
			}
			live := w.liveSet(seg)
			mark := func(ref Ref) bool {
				if !w.series.has(ref) {
					orphans++
					return false
				}
				live.add(ref)
				return true
			}
			switch k {
			case kindSeries:
				for _, s := range dec.series {
					if !w.series.valid(s.Ref) {
						return fmt.Errorf("series ref %d is out of sequence (known refs start at %d)", s.Ref, w.series.base)
					}
					live.add(s.Ref)
					if w.series.has(s.Ref) {
						continue
					}
					w.series.insert(s.Ref, s.Wire, w.series.fingerprintWire(s.Wire))
				}
			case kindSamples:
				for _, s := range dec.samples {
					if mark(s.Ref) && s.T > w.highestTs.Load() {
						w.highestTs.Store(s.T)
					}
				}
				w.m.replayedSamples.Add(float64(len(dec.samples)))
			case kindHistograms:
				for _, h := range dec.histograms {
					mark(h.ref)
				}
			case kindExemplars:
				for _, x := range dec.exemplars {
					mark(x.Ref)
				}
			case kindMetadata:
				for _, m := range dec.metadata {
					w.meta.put(m)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		w.sizes[seg] = size
	}
	if orphans > 0 {
		w.logger.Warn("WAL samples reference series whose record is lost; they cannot be forwarded", zap.Int("samples", orphans))
	}
	if cp >= 0 && len(segs) == 0 {
		w.first = cp + 1
	}
	if w.highestTs.Load() == math.MinInt64 {
		w.highestTs.Store(math.MinInt64)
	}
	return nil
}

// replaySegment calls fn for every record of segment seg. A damaged record
// ends the segment: the file is cut after the last intact record. It
// returns the segment's size after any repair.
func (w *WAL) replaySegment(seg int, fn func(rec []byte) error) (int64, error) {
	name := wlog.SegmentName(w.dir, seg)
	f, err := w.fs.Open(name)
	if err != nil {
		return 0, fmt.Errorf("wal: open segment %d: %w", seg, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("wal: stat segment %d: %w", seg, err)
	}
	r := wlog.NewReader(bufio.NewReaderSize(f, 1<<20))
	var good int64
	var damage error
	for r.Next() {
		if err := fn(r.Record()); err != nil {
			damage = fmt.Errorf("decode record: %w", err)
			break
		}
		good = r.Offset()
	}
	if damage == nil {
		damage = r.Err()
	}
	if damage == nil {
		return fi.Size(), nil
	}
	if errors.Is(damage, io.ErrUnexpectedEOF) || errors.Is(damage, io.EOF) {
		damage = fmt.Errorf("torn record: %w", damage)
	}
	cut := fi.Size() - good
	w.m.corruptions.Inc()
	w.m.repairedBytes.Add(float64(cut))
	w.logger.Warn("Repairing damaged WAL segment: keeping the records before the damage",
		zap.Int("segment", seg), zap.Int64("offset", good), zap.Int64("cut_bytes", cut),
		zap.Error(&CorruptionError{Dir: w.dir, Segment: seg, Offset: good, Err: damage}))
	if err := w.cutSegment(name, good); err != nil {
		return 0, fmt.Errorf("wal: cut segment %d at %d: %w", seg, good, err)
	}
	return good, nil
}

// repairSuffix names the copy a repair writes before renaming it over the
// damaged segment.
const repairSuffix = ".repair"

// cutSegment replaces the segment file name with its first size bytes: it
// copies them to name.repair, fsyncs it, renames it over name and fsyncs
// the directory. A crash at any point leaves either segment whole.
func (w *WAL) cutSegment(name string, size int64) error {
	src, err := w.fs.Open(name)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := name + repairSuffix
	dst, err := w.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, io.LimitReader(src, size)); err != nil {
		return errors.Join(err, dst.Close(), w.fs.Remove(tmp))
	}
	if err := dst.Sync(); err != nil {
		return errors.Join(err, dst.Close(), w.fs.Remove(tmp))
	}
	if err := dst.Close(); err != nil {
		return errors.Join(err, w.fs.Remove(tmp))
	}
	if err := w.fs.Rename(tmp, name); err != nil {
		return errors.Join(err, w.fs.Remove(tmp))
	}
	return syncDir(w.fs, w.fs.PathDir(name))
}

// loadCheckpoint reads the series of checkpoint cp into the table.
func (w *WAL) loadCheckpoint(cp int) (int, int64, error) {
	dir := checkpointName(w.dir, cp)
	segs, err := listSegments(w.fs, dir)
	if err != nil {
		return 0, 0, fmt.Errorf("wal: list checkpoint %d: %w", cp, err)
	}
	dec := newDecoder(w.slog)
	var n int
	var size int64
	for _, seg := range segs {
		f, err := w.fs.Open(wlog.SegmentName(dir, seg))
		if err != nil {
			return 0, 0, fmt.Errorf("wal: open checkpoint %d segment %d: %w", cp, seg, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return 0, 0, fmt.Errorf("wal: stat checkpoint %d: %w", cp, err)
		}
		size += fi.Size()
		r := wlog.NewReader(bufio.NewReaderSize(f, 1<<20))
		for r.Next() {
			k, err := dec.decode(r.Record())
			if err != nil {
				f.Close()
				return 0, 0, fmt.Errorf("wal: decode checkpoint %d: %w", cp, err)
			}
			if k == kindMetadata {
				for _, m := range dec.metadata {
					w.meta.put(m)
				}
			}
			if k != kindSeries {
				continue
			}
			for _, s := range dec.series {
				if !w.series.valid(s.Ref) {
					f.Close()
					return 0, 0, fmt.Errorf("wal: checkpoint %d: series ref %d is out of sequence", cp, s.Ref)
				}
				// Live as of the checkpoint: kept until the segment after it goes.
				w.series.insert(s.Ref, s.Wire, w.series.fingerprintWire(s.Wire))
				w.liveSet(cp + 1).add(s.Ref)
				n++
			}
		}
		err = r.Err()
		f.Close()
		if err != nil {
			// A checkpoint is written whole and fsynced before it is renamed
			// into place: damage here is not a torn write, and the series it
			// held are needed. Refuse to guess.
			return 0, 0, fmt.Errorf("wal: checkpoint %d is damaged (move it away to start without it, losing the series it holds): %w", cp, err)
		}
	}
	return n, size, nil
}
