package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// Series checkpoints form a chain, so that truncation writes the series
// that changed rather than every live one.
//
// A full checkpoint holds the Series record of every series in the table
// whose record is in a deleted segment. A delta checkpoint holds only those
// created since the chain's previous member, and names the members it
// extends, oldest first, in its file "chain" (one 8-digit number per line).
// Replay loads the members in order. A member may hold series that have
// since been forgotten; replay takes them back and the next truncation
// forgets them again. When more than half of the chain's records are of
// forgotten series, or the chain reaches maxChainLen members, truncation
// writes a full checkpoint instead, and the old members are deleted once it
// is durable. Writing a checkpoint thus costs the series created since the
// last one, plus, amortized, at most about as much again for the rewrites.

// checkpointChain describes the checkpoints that hold the Series records of
// the series whose records were in deleted segments. w.truncMu guards it
// (replay runs alone).
type checkpointChain struct {
	members []int // oldest first; the last is the newest checkpoint
	records int   // Series records in the members, of live or forgotten series
	size    int64 // bytes of the members
	// end bounds the refs the chain covers: every series in the table with
	// a smaller ref has its Series record in a member.
	end Ref
}

// maxChainLen bounds the members of a chain, and so the directories replay
// reads.
const maxChainLen = 64

// chainFile names, in a delta checkpoint, the file listing the members it
// extends.
const chainFile = "chain"

// checkpointSegmentSize bounds the segment files of a checkpoint.
const checkpointSegmentSize = 64 << 20

// needsFullCheckpoint reports whether the next checkpoint should be full,
// given the live series the chain covers and the new ones to add.
func (c *checkpointChain) needsFullCheckpoint(live, fresh int) bool {
	return len(c.members) == 0 || len(c.members) >= maxChainLen || 2*(live+fresh) < c.records+fresh
}

// writeCheckpoint writes checkpoint cp durably: the Series records of the
// series in the table with refs in [from, to), the metadata of every family
// and, if chain is not empty, the chain file. It returns the number of
// series written and the checkpoint's size. Only w.truncMu is held: the
// table is read in steps under its read lock.
func (w *WAL) writeCheckpoint(cp int, from, to Ref, chain []int) (int, int64, error) {
	final := checkpointName(w.dir, cp)
	tmp := final + ".tmp"
	if err := w.fs.RemoveAll(tmp); err != nil {
		return 0, 0, err
	}
	if err := w.fs.MkdirAll(tmp, 0o750); err != nil {
		return 0, 0, err
	}
	cw := &checkpointWriter{w: w, dir: tmp}
	abort := func(err error) (int, int64, error) {
		return 0, 0, errors.Join(err, cw.abort(), w.fs.RemoveAll(tmp))
	}
	var buf []byte
	var batch []wireSeries
	n := 0
	for next := from; next < to; {
		batch, next = w.series.collect(batch[:0], next, to, 1000)
		if len(batch) == 0 {
			break
		}
		buf = startSeries(buf[:0])
		for _, s := range batch {
			buf = appendSeries(buf, s.Ref, s.Wire)
		}
		if err := cw.log(buf); err != nil {
			return abort(err)
		}
		n += len(batch)
	}
	// The metadata of every family, so that replay starting from this
	// checkpoint knows it.
	buf = buf[:0]
	for _, m := range w.meta.all() {
		if len(buf) > 1 && len(buf)+len(m.Family)+len(m.Help)+len(m.Unit)+16 > maxRawRecord {
			if err := cw.log(buf); err != nil {
				return abort(err)
			}
			buf = buf[:0]
		}
		if len(buf) == 0 {
			buf = startMetadata(buf)
		}
		buf = appendMetadata(buf, m.Type, []byte(m.Family), []byte(m.Help), []byte(m.Unit))
	}
	if len(buf) > 1 {
		if err := cw.log(buf); err != nil {
			return abort(err)
		}
	}
	if err := cw.finish(); err != nil {
		return abort(err)
	}
	if len(chain) > 0 {
		if err := writeChainFile(w.fs, tmp, chain); err != nil {
			return 0, 0, errors.Join(err, w.fs.RemoveAll(tmp))
		}
	}
	if err := syncDir(w.fs, tmp); err != nil {
		return 0, 0, errors.Join(err, w.fs.RemoveAll(tmp))
	}
	if err := w.fs.Rename(tmp, final); err != nil {
		return 0, 0, errors.Join(err, w.fs.RemoveAll(tmp))
	}
	if err := syncDir(w.fs, w.dir); err != nil {
		return 0, 0, err
	}
	return n, cw.size, nil
}

// writeChainFile writes and fsyncs dir/chain listing members.
func writeChainFile(fs vfs.FS, dir string, members []int) error {
	var b strings.Builder
	for _, m := range members {
		fmt.Fprintf(&b, "%08d\n", m)
	}
	f, err := fs.Create(fs.PathJoin(dir, chainFile), vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, b.String()); err != nil {
		return errors.Join(err, f.Close())
	}
	if err := f.Sync(); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}

// readChain returns the members of the chain whose newest checkpoint is cp,
// oldest first, cp last.
func readChain(fs vfs.FS, dir string, cp int) ([]int, error) {
	f, err := fs.Open(fs.PathJoin(checkpointName(dir, cp), chainFile))
	if errors.Is(err, os.ErrNotExist) {
		return []int{cp}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wal: open chain of checkpoint %d: %w", cp, err)
	}
	defer f.Close()
	var members []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, err := strconv.Atoi(sc.Text())
		if err != nil || k < 0 || k >= cp || (len(members) > 0 && k <= members[len(members)-1]) || len(members) >= maxChainLen {
			return nil, fmt.Errorf("wal: checkpoint %d: bad chain entry %q", cp, sc.Text())
		}
		members = append(members, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("wal: read chain of checkpoint %d: %w", cp, err)
	}
	return append(members, cp), nil
}

// listCheckpoints returns the numbers of the complete checkpoints in dir,
// ascending, and the names of interrupted ones (.tmp).
func listCheckpoints(fs vfs.FS, dir string) (cps []int, tmps []string, err error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("wal: read directory %s: %w", dir, err)
	}
	for _, name := range names {
		rest, ok := strings.CutPrefix(name, "checkpoint.")
		if !ok {
			continue
		}
		if strings.HasSuffix(rest, ".tmp") {
			tmps = append(tmps, name)
			continue
		}
		if k, err := strconv.Atoi(rest); err == nil && len(rest) == 8 {
			cps = append(cps, k)
		}
	}
	slices.Sort(cps)
	return cps, tmps, nil
}

// openChain finds the newest complete checkpoint and its chain, and removes
// leftovers of interrupted repairs and checkpoints and every checkpoint not
// in the chain. It returns nil if there is no checkpoint.
func (w *WAL) openChain() ([]int, error) {
	names, err := w.fs.List(w.dir)
	if err != nil {
		return nil, fmt.Errorf("wal: read directory %s: %w", w.dir, err)
	}
	for _, name := range names {
		if strings.HasSuffix(name, repairSuffix) {
			// A repair interrupted before its rename: the segment is intact.
			if err := w.fs.Remove(w.fs.PathJoin(w.dir, name)); err != nil {
				return nil, fmt.Errorf("wal: remove incomplete repair %s: %w", name, err)
			}
		}
	}
	cps, _, err := listCheckpoints(w.fs, w.dir)
	if err != nil {
		return nil, err
	}
	if len(cps) == 0 {
		return nil, w.removeCheckpointsOutside(nil)
	}
	members, err := readChain(w.fs, w.dir, cps[len(cps)-1])
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if !slices.Contains(cps, m) {
			return nil, fmt.Errorf("wal: checkpoint %d extends checkpoint %d, which is missing (its series are needed)", members[len(members)-1], m)
		}
	}
	return members, w.removeCheckpointsOutside(members)
}

// removeCheckpointsOutside removes interrupted checkpoints and the complete
// ones older than the newest member of chain that are not in it.
func (w *WAL) removeCheckpointsOutside(chain []int) error {
	cps, tmps, err := listCheckpoints(w.fs, w.dir)
	if err != nil {
		return err
	}
	for _, name := range tmps {
		if err := w.fs.RemoveAll(w.fs.PathJoin(w.dir, name)); err != nil {
			return fmt.Errorf("wal: remove incomplete checkpoint %s: %w", name, err)
		}
	}
	if len(chain) == 0 {
		return nil
	}
	for _, k := range cps {
		if k < chain[len(chain)-1] && !slices.Contains(chain, k) {
			if err := w.fs.RemoveAll(checkpointName(w.dir, k)); err != nil {
				return fmt.Errorf("wal: remove old checkpoint %d: %w", k, err)
			}
		}
	}
	return nil
}

// loadChain reads the series of every member of chain into the table, in
// order, and sets w.chain. The series count as live until the segment after
// the newest member is deleted.
func (w *WAL) loadChain(members []int) error {
	c := checkpointChain{members: members}
	for _, cp := range members {
		n, size, err := w.loadCheckpoint(cp, members[len(members)-1]+1)
		if err != nil {
			return err
		}
		c.records += n
		c.size += size
	}
	c.end = w.series.nextRef
	w.chain = c
	w.cpSize = c.size
	return nil
}

// loadCheckpoint reads the series of checkpoint cp into the table, as if
// segment liveIn had a record of each. It returns the number of Series records and
// the checkpoint's size.
func (w *WAL) loadCheckpoint(cp, liveIn int) (int, int64, error) {
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
				n++
				if !w.series.has(s.Ref) {
					w.series.insert(s.Ref, s.Wire, w.series.fingerprintWire(s.Wire))
				}
				w.series.touch(s.Ref, liveIn)
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

// checkpointWriter writes a checkpoint's records into segments of at most
// checkpointSegmentSize bytes, each fsynced when sealed.
type checkpointWriter struct {
	w    *WAL
	dir  string
	seg  *segmentWriter
	next int
	size int64 // bytes of the sealed segments
}

func (c *checkpointWriter) log(rec []byte) error {
	if c.seg != nil && c.seg.size >= checkpointSegmentSize {
		if err := c.seal(); err != nil {
			return err
		}
	}
	if c.seg == nil {
		seg, err := createSegment(c.w.fs, c.dir, c.next, c.w.opts.Compression)
		if err != nil {
			return err
		}
		c.seg, c.next = seg, c.next+1
	}
	return c.seg.log(rec)
}

func (c *checkpointWriter) seal() error {
	seg := c.seg
	c.seg = nil
	if err := seg.seal(false); err != nil {
		return err
	}
	c.size += seg.size
	return nil
}

// finish seals the last segment; a checkpoint with no records gets one
// empty segment, as the reader expects at least one.
func (c *checkpointWriter) finish() error {
	if c.seg == nil && c.next == 0 {
		seg, err := createSegment(c.w.fs, c.dir, 0, c.w.opts.Compression)
		if err != nil {
			return err
		}
		c.seg, c.next = seg, 1
	}
	if c.seg == nil {
		return nil
	}
	return c.seal()
}

func (c *checkpointWriter) abort() error {
	if c.seg == nil {
		return nil
	}
	err := c.seg.f.Close()
	c.seg = nil
	return err
}
