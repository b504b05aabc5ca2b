package sender

import (
	"unsafe"

	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/tsdb/record"
)

// Series' labels travel from the WAL to the encoders in wire form
// (model.AppendWireLabel), which is exactly how a Remote-Write 1.0
// request carries them: the WAL keeps each series' wire form once, shared
// by every endpoint, and a 1.0 request copies it as it is. Endpoints that
// change labels (external labels, write_relabel_configs, drop rules) go
// through a seriesMemo instead, which marshals each series' labels once per endpoint.
// So do endpoints that split requests by tenant: the memo keeps each
// series' tenant too, and its labels without the tenant label when the
// endpoint drops it.

// wireLabel reads the label at w[off:] of labels in wire form and returns
// its name and value, views of w, and the offset of the next label.
func wireLabel(w []byte, off int) (name, value string, next int) {
	n, v, next := model.NextWireLabel(w, off)
	return view(n), view(v), next
}

// wireName returns the value of the __name__ label of labels in wire form,
// or "".
func wireName(w []byte) string { return view(model.WireName(w)) }

// view returns b as a string without copying; b must not change after.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// seriesInfo is what an endpoint knows of a series it changes the labels
// of or finds the tenant of: the labels it sends, in wire form, and the
// index of its tenant in the sender's tenantTable. The shared
// droppedByRelabel, droppedByRule and droppedByTenant stand for series it
// does not send.
type seriesInfo struct {
	wire   []byte
	tenant uint32
}

var (
	droppedByRelabel = &seriesInfo{} // by write relabeling
	droppedByRule    = &seriesInfo{} // by a drop rule
	droppedByTenant  = &seriesInfo{} // its tenant cannot be sent in a header
)

// seriesMemo maps refs to seriesInfo for the reading goroutine. It keeps
// two generations: a lookup that misses the current one promotes from the
// previous one, and every so many lookups the previous generation is
// forgotten. Series that still send are promoted before that; series that
// stopped (churn, or refs the WAL forgot) leave memory within two rounds.
// A round is at least four times the current generation's size in
// lookups, so every active series is seen at least once per round.
type seriesMemo struct {
	cur, old refMap
	lookups  int
	promoted int    // entries of old copied into cur in this round
	sink     uint64 // keeps prefetch's loads
}

// minMemoRound is the fewest lookups between two generations.
const minMemoRound = 1 << 20

func newSeriesMemo() *seriesMemo { return &seriesMemo{} }

func (m *seriesMemo) get(ref uint64) *seriesInfo {
	m.lookups++
	if si := m.cur.get(ref); si != nil {
		return si
	}
	if si := m.old.get(ref); si != nil {
		m.cur.put(ref, si)
		m.promoted++
		return si
	}
	return nil
}

func (m *seriesMemo) put(ref uint64, si *seriesInfo) { m.cur.put(ref, si) }

// prefetchAhead is how many items' memory the sender loads ahead of use.
const prefetchAhead = 32

// prefetch loads the home slots of the samples' refs: independent loads
// the CPU runs in parallel, so that the lookups that follow find them in
// cache instead of waiting for each miss in turn.
func (m *seriesMemo) prefetch(samples []record.RefSample) {
	x := &m.cur
	if x.n == 0 {
		return
	}
	var sink uint64
	for _, smp := range samples {
		sink += x.slots[refHome(uint64(smp.Ref))&x.mask].ref
	}
	m.sink = sink
}

// age starts a new generation once a round of lookups has passed, and
// returns how many series it forgot: those of the previous generation not
// looked up in this round.
func (m *seriesMemo) age() int {
	if m.lookups < max(minMemoRound, 4*m.cur.n) {
		return 0
	}
	forgotten := m.old.n - m.promoted
	m.old.reset(m.cur.n)
	m.old, m.cur = m.cur, m.old
	m.lookups, m.promoted = 0, 0
	return forgotten
}

func (m *seriesMemo) len() int { return m.cur.n + m.old.n }

// refMap is an insert-only open-addressing hash table from refs to
// seriesInfo: a lookup reads one slot, usually one cache line, where a Go
// map reads a control word and then the slot.
type refMap struct {
	slots []refMapSlot // a power of two long; si nil marks an empty slot
	mask  uint64
	n     int
}

type refMapSlot struct {
	ref uint64
	si  *seriesInfo
}

func refHome(ref uint64) uint64 { return ref * 0x9E3779B97F4A7C15 >> 32 }

func (x *refMap) get(ref uint64) *seriesInfo {
	if x.n == 0 {
		return nil
	}
	for i := refHome(ref) & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if s.ref == ref || s.si == nil {
			return s.si
		}
	}
}

// put stores si for ref, which x does not hold.
func (x *refMap) put(ref uint64, si *seriesInfo) {
	if (x.n+1)*4 > len(x.slots)*3 {
		old := x.slots
		x.slots = make([]refMapSlot, max(1024, 2*len(old)))
		x.mask = uint64(len(x.slots) - 1)
		x.n = 0
		for _, s := range old {
			if s.si != nil {
				x.put(s.ref, s.si)
			}
		}
	}
	i := refHome(ref) & x.mask
	for x.slots[i].si != nil {
		i = (i + 1) & x.mask
	}
	x.slots[i] = refMapSlot{ref: ref, si: si}
	x.n++
}

// reset empties x, keeping its slots unless they are far more than the
// next generation (about as large as the current one, n) needs.
func (x *refMap) reset(n int) {
	if len(x.slots) > 1024 && n*8 < len(x.slots) {
		*x = refMap{}
		return
	}
	clear(x.slots)
	x.n = 0
}
