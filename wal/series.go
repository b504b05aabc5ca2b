package wal

import (
	"hash/maphash"
	"math"
	"slices"
	"sync"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// Ref identifies a series in the log. Refs are never reused within a log.
type Ref = chunks.HeadSeriesRef

// fingerprint identifies a label set by two independent 64-bit hashes of
// its wire form (model.AppendWireLabel): maphash with a per-process seed
// keys the table, xxhash64 confirms. Two label sets are taken to be the
// same series when both agree; with n series the chance that two distinct
// ones collide is about n²/2¹²⁹ (1e-27 for a million series), far below
// the rate of undetected disk and memory errors. The writer thus never
// reads a series' labels on the hot path, and hashes a Remote-Write 1.0
// series' labels where they lie in the request.
type fingerprint struct{ h, check uint64 }

// seriesTable maps label sets to refs for the writer and refs to labels for
// readers. Refs are dense (assigned in sequence), so readers find a series by
// indexing a slice.
//
// It holds each series once: its labels in wire form (model.AppendWireLabel)
// packed into large byte slabs, and per ref a span naming its bytes. No
// per-series object exists, so the garbage collector has nothing to scan
// per series, and a series costs its label bytes plus 12 bytes here and 24
// in the index. Slab bytes are never changed once written: readers hand
// out slices of them (Entry.Wire) without copying. When removed series
// leave more than half of the slabs unused, compact copies the live ones
// into new slabs; the old ones are freed once no reader holds a slice.
type seriesTable struct {
	mu    sync.RWMutex
	seed  maphash.Seed
	index fpIndex
	byRef []span // byRef[ref-base]; n == 0 for forgotten refs
	// seen[ref-base] is the newest segment with a record of the series
	// (its samples or its Series record). It is written under the WAL's
	// mu without t.mu, and read by truncation, which excludes writers.
	seen    []uint32
	base    Ref
	count   int
	nextRef Ref
	slabs   [][]byte
	used    int64 // bytes of live series in slabs
	size    int64 // bytes written to slabs
}

// span locates a series' labels: slabs[slab][off:off+n-1]; n is the length
// plus one, so that 0 means "no series".
type span struct{ slab, off, n uint32 }

// slabSize is the size of a slab; labels larger than a quarter of it get a
// slab of their own.
const slabSize = 1 << 20

func newSeriesTable() *seriesTable {
	return &seriesTable{seed: maphash.MakeSeed(), base: 1, nextRef: 1}
}

// fingerprintWire computes the fingerprint of labels in wire form.
func (t *seriesTable) fingerprintWire(wire []byte) fingerprint {
	return fingerprint{h: maphash.Bytes(t.seed, wire), check: xxhash.Sum64(wire)}
}

// fingerprintPairs computes the fingerprint of label pairs, using buf as
// scratch space.
func (t *seriesTable) fingerprintPairs(ls []model.Label, buf []byte) (fingerprint, []byte) {
	buf = buf[:0]
	for _, l := range ls {
		buf = model.AppendWireLabel(buf, l.Name, l.Value)
	}
	return t.fingerprintWire(buf), buf
}

// fingerprintLabels gives the same fingerprint as fingerprintPairs for the
// equivalent labels.Labels.
func (t *seriesTable) fingerprintLabels(ls labels.Labels, buf []byte) (fingerprint, []byte) {
	buf = buf[:0]
	ls.Range(func(l labels.Label) { buf = model.AppendWireLabel(buf, l.Name, l.Value) })
	return t.fingerprintWire(buf), buf
}

// lookup returns the ref of the series with fingerprint fp, or 0. The
// caller holds t.mu for reading.
func (t *seriesTable) lookup(fp fingerprint) Ref { return t.index.get(fp) }

// wire returns the labels of ref in wire form (capacity limited to them),
// or nil if the table does not hold ref; the caller holds t.mu.
func (t *seriesTable) wire(ref Ref) []byte {
	if ref < t.base || ref-t.base >= Ref(len(t.byRef)) {
		return nil
	}
	sp := t.byRef[ref-t.base]
	if sp.n == 0 {
		return nil
	}
	end := sp.off + sp.n - 1
	return t.slabs[sp.slab][sp.off:end:end]
}

// has reports whether the table holds ref; the caller holds t.mu.
func (t *seriesTable) has(ref Ref) bool {
	return ref >= t.base && ref-t.base < Ref(len(t.byRef)) && t.byRef[ref-t.base].n != 0
}

// maxRefGap bounds how far past the known refs a ref read from disk may
// be: refs are assigned in sequence, so a larger gap means a damaged or
// foreign record, and following it would allocate without bound.
const maxRefGap = 1 << 26

// valid reports whether ref can be inserted.
func (t *seriesTable) valid(ref Ref) bool {
	return ref > 0 && (len(t.byRef) == 0 || (ref+maxRefGap > t.base && ref < t.base+Ref(len(t.byRef))+maxRefGap))
}

// insert adds series ref with labels wire (copied) and fingerprint fp; the
// caller holds t.mu for writing and checked valid.
func (t *seriesTable) insert(ref Ref, wire []byte, fp fingerprint) {
	t.index.put(fp, ref)
	if len(t.byRef) == 0 {
		t.base = ref
	}
	if ref < t.base {
		grow := int(t.base - ref)
		t.byRef = append(make([]span, grow, grow+len(t.byRef)), t.byRef...)
		t.seen = append(make([]uint32, grow, grow+len(t.seen)), t.seen...)
		t.base = ref
	}
	if k := int(ref - t.base); k >= len(t.byRef) {
		t.byRef = slices.Grow(t.byRef, k+1-len(t.byRef))[:k+1]
		t.seen = slices.Grow(t.seen, k+1-len(t.seen))[:k+1]
	}
	t.byRef[ref-t.base] = t.store(wire)
	t.count++
	if ref >= t.nextRef {
		t.nextRef = ref + 1
	}
}

// touch records that segment seg has a record of ref; the caller holds the
// WAL's mu (or replays), and ref is in the table.
func (t *seriesTable) touch(ref Ref, seg int) {
	if k := ref - t.base; k < Ref(len(t.seen)) {
		t.seen[k] = uint32(seg)
	}
}

// store copies wire into the slabs.
func (t *seriesTable) store(wire []byte) span {
	n := len(wire)
	last := len(t.slabs) - 1
	if last < 0 || len(t.slabs[last])+n > cap(t.slabs[last]) {
		if n > slabSize/4 {
			t.slabs = append(t.slabs, make([]byte, 0, n))
		} else {
			t.slabs = append(t.slabs, make([]byte, 0, slabSize))
		}
		last++
	}
	off := len(t.slabs[last])
	t.slabs[last] = append(t.slabs[last], wire...)
	t.used += int64(n)
	t.size += int64(n)
	return span{slab: uint32(last), off: uint32(off), n: uint32(n + 1)}
}

// remove forgets ref, whose fingerprint is fp; the caller holds t.mu for
// writing.
func (t *seriesTable) remove(ref Ref, fp fingerprint) {
	sp := &t.byRef[ref-t.base]
	t.used -= int64(sp.n - 1)
	*sp = span{}
	t.count--
	t.index.del(fp, ref)
}

// all calls fn for every series, in ref order; the caller holds t.mu. wire
// stays valid after the call.
func (t *seriesTable) all(fn func(ref Ref, wire []byte)) {
	for i, sp := range t.byRef {
		if sp.n != 0 {
			end := sp.off + sp.n - 1
			fn(t.base+Ref(i), t.slabs[sp.slab][sp.off:end:end])
		}
	}
}

// collect appends to dst the series with refs in [from, to), in ref order,
// at most n of them, and returns the ref to continue from. It takes t.mu for
// reading; the labels stay valid after (slabs are never rewritten in place).
func (t *seriesTable) collect(dst []wireSeries, from, to Ref, n int) ([]wireSeries, Ref) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	from = max(from, t.base)
	to = min(to, t.base+Ref(len(t.byRef)))
	for ; from < to && len(dst) < n; from++ {
		if sp := t.byRef[from-t.base]; sp.n != 0 {
			end := sp.off + sp.n - 1
			dst = append(dst, wireSeries{Ref: from, Wire: t.slabs[sp.slab][sp.off:end:end]})
		}
	}
	if from >= to {
		return dst, Ref(math.MaxUint64)
	}
	return dst, from
}

// lastSeen returns the newest segment with a record of ref.
func (t *seriesTable) lastSeen(ref Ref) int { return int(t.seen[ref-t.base]) }

func (t *seriesTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.count
}

// compact drops the forgotten refs at the start of byRef, and rewrites the
// slabs when less than half of what they hold is live; the caller holds
// t.mu for writing.
func (t *seriesTable) compact() {
	i := 0
	for i < len(t.byRef) && t.byRef[i].n == 0 {
		i++
	}
	if i > 0 {
		n := copy(t.byRef, t.byRef[i:])
		t.byRef = t.byRef[:n]
		copy(t.seen, t.seen[i:])
		t.seen = t.seen[:n]
		t.base += Ref(i)
		if n < cap(t.byRef)/4 {
			t.byRef = slices.Clone(t.byRef)
			t.seen = slices.Clone(t.seen)
		}
	}
	if t.size < 4*slabSize || t.used*2 > t.size {
		return
	}
	old := t.slabs
	t.slabs, t.used, t.size = nil, 0, 0
	for k, sp := range t.byRef {
		if sp.n != 0 {
			end := sp.off + sp.n - 1
			t.byRef[k] = t.store(old[sp.slab][sp.off:end])
		}
	}
}

// yoloString views b as a string without copying; the string must not
// outlive b's contents.
func yoloString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
