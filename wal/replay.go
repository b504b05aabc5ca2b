package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"

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

// replay rebuilds the series table from the checkpoint and the segments,
// finishing an interrupted truncation and repairing damaged tails.
func (w *WAL) replay() error {
	chain, err := w.openChain()
	if err != nil {
		return err
	}
	cp := -1
	if len(chain) > 0 {
		cp = chain[len(chain)-1]
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
		if err := w.loadChain(chain); err != nil {
			return err
		}
		w.logger.Info("Loaded WAL checkpoint", zap.Int("checkpoint", cp), zap.Int("chain", len(chain)),
			zap.Int("series_records", w.chain.records), zap.Int("series", w.series.count))
	}
	dec := newDecoder(w.slog)
	orphans := 0
	for i, seg := range segs {
		if i == 0 {
			w.first = seg
		}
		w.refStart[seg] = w.series.nextRef
		w.sealedAt[seg] = w.now()
		size, err := w.replaySegment(seg, func(rec []byte) error {
			k, err := dec.decode(rec)
			if err != nil {
				return err
			}
			mark := func(ref Ref) bool {
				if !w.series.has(ref) {
					orphans++
					return false
				}
				w.series.touch(ref, seg)
				return true
			}
			switch k {
			case kindSeries:
				for _, s := range dec.series {
					if !w.series.valid(s.Ref) {
						return fmt.Errorf("series ref %d is out of sequence (known refs start at %d)", s.Ref, w.series.base)
					}
					if !w.series.has(s.Ref) {
						w.series.insert(s.Ref, s.Wire, w.series.fingerprintWire(s.Wire))
					}
					w.series.touch(s.Ref, seg)
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
