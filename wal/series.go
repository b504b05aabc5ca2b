package wal

import (
	"bytes"
	"hash/maphash"
	"sync"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// Ref identifies a series in the log. Refs are never reused within a log.
type Ref = chunks.HeadSeriesRef

// series is the one in-memory copy of a series' labels, shared by the writer
// and every reader. The labels are kept in wire form only
// (model.AppendWireLabel): senders copy it into requests as it is, and the
// few consumers that need labels.Labels decode it (LabelsOfWire).
type series struct {
	ref  Ref
	wire []byte
}

// newSeries returns the series ref with labels ls and their fingerprint;
// buf is scratch space.
func (t *seriesTable) newSeries(ref Ref, ls labels.Labels, buf []byte) (*series, fingerprint, []byte) {
	fp, buf := t.fingerprintLabels(ls, buf)
	return &series{ref: ref, wire: bytes.Clone(buf)}, fp, buf
}

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
type seriesTable struct {
	mu      sync.RWMutex
	seed    maphash.Seed
	index   fpIndex
	byRef   []*series // byRef[ref-base]; nil for forgotten refs
	base    Ref
	count   int
	nextRef Ref
}

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

// get returns the series with ref, or nil; the caller holds t.mu.
func (t *seriesTable) get(ref Ref) *series {
	if ref < t.base || ref-t.base >= Ref(len(t.byRef)) {
		return nil
	}
	return t.byRef[ref-t.base]
}

// maxRefGap bounds how far past the known refs a ref read from disk may
// be: refs are assigned in sequence, so a larger gap means a damaged or
// foreign record, and following it would allocate without bound.
const maxRefGap = 1 << 26

// valid reports whether ref can be inserted.
func (t *seriesTable) valid(ref Ref) bool {
	return ref > 0 && (len(t.byRef) == 0 || (ref+maxRefGap > t.base && ref < t.base+Ref(len(t.byRef))+maxRefGap))
}

// insert adds s with fingerprint fp; the caller holds t.mu for writing and
// checked valid.
func (t *seriesTable) insert(s *series, fp fingerprint) {
	t.index.put(fp, s.ref)
	if len(t.byRef) == 0 {
		t.base = s.ref
	}
	if s.ref < t.base {
		grow := int(t.base - s.ref)
		t.byRef = append(make([]*series, grow, grow+len(t.byRef)), t.byRef...)
		t.base = s.ref
	}
	for Ref(len(t.byRef)) <= s.ref-t.base {
		t.byRef = append(t.byRef, nil)
	}
	t.byRef[s.ref-t.base] = s
	t.count++
	if s.ref >= t.nextRef {
		t.nextRef = s.ref + 1
	}
}

// remove forgets s; the caller holds t.mu for writing.
func (t *seriesTable) remove(s *series, fp fingerprint) {
	t.byRef[s.ref-t.base] = nil
	t.count--
	t.index.del(fp, s.ref)
}

// all calls fn for every series; the caller holds t.mu.
func (t *seriesTable) all(fn func(*series)) {
	for _, s := range t.byRef {
		if s != nil {
			fn(s)
		}
	}
}

func (t *seriesTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.count
}

// compact drops the forgotten refs at the start of byRef; the caller holds
// t.mu.
func (t *seriesTable) compact() {
	i := 0
	for i < len(t.byRef) && t.byRef[i] == nil {
		i++
	}
	if i == 0 {
		return
	}
	n := copy(t.byRef, t.byRef[i:])
	clear(t.byRef[n:])
	t.byRef = t.byRef[:n]
	t.base += Ref(i)
	if n < cap(t.byRef)/4 {
		t.byRef = append([]*series(nil), t.byRef...)
	}
}

// refSet is the set of refs that have samples in one segment: truncation
// keeps exactly the series some retained segment references.
type refSet struct {
	base Ref
	bits []uint64
}

func (s *refSet) add(ref Ref) {
	if len(s.bits) == 0 && s.base == 0 {
		s.base = ref &^ 63
	}
	if ref < s.base {
		shift := int((s.base-(ref&^63))/64) + 0
		s.bits = append(make([]uint64, shift, shift+len(s.bits)), s.bits...)
		s.base = ref &^ 63
	}
	i := int(ref-s.base) / 64
	for len(s.bits) <= i {
		s.bits = append(s.bits, 0)
	}
	s.bits[i] |= 1 << ((ref - s.base) % 64)
}

func (s *refSet) has(ref Ref) bool {
	if s == nil || ref < s.base {
		return false
	}
	i := int(ref-s.base) / 64
	return i < len(s.bits) && s.bits[i]&(1<<((ref-s.base)%64)) != 0
}

// yoloString views b as a string without copying; the string must not
// outlive b's contents.
func yoloString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
