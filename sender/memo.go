package sender

import (
	"unsafe"

	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// seriesInfo is what an endpoint knows of one series: its labels as sent
// (after external labels and write relabeling) and, once a Remote-Write
// 1.0 request carried it, those labels already encoded, so that each
// series' labels are marshalled once per endpoint rather than once per
// sample.
//
// The reading goroutine creates it and never changes it after. encodedV1
// is filled by the one shard that sends the series: a series' items go to
// one shard, and resharding waits for the old shards to exit before new
// ones start.
type seriesInfo struct {
	labels labels.Labels
	v1     []byte // labels as repeated TimeSeries.labels fields; nil until used
	name   string // the __name__ label, set with v1
}

// encodedV1 returns si's labels as Remote-Write 1.0 TimeSeries.labels
// fields, marshalling them on first use.
func (si *seriesInfo) encodedV1() []byte {
	if si.v1 == nil {
		b := make([]byte, 0, labelsSizeV1(si.labels))
		nameAt, nameLen := 0, 0
		si.labels.Range(func(l labels.Label) {
			b = appendField(b, tagV1Labels, labelSize(l.Name, l.Value))
			b = append(appendField(b, tagName, len(l.Name)), l.Name...)
			b = appendField(b, tagValue, len(l.Value))
			if l.Name == model.MetricNameLabel {
				nameAt, nameLen = len(b), len(l.Value)
			}
			b = append(b, l.Value...)
		})
		if nameLen > 0 {
			// A view of v1's own bytes, which the encoder reads anyway (and
			// which never change), rather than of the labels'.
			si.name = unsafe.String(&b[nameAt], nameLen)
		}
		si.v1 = b
	}
	return si.v1
}

// Shared seriesInfo of the series an endpoint does not send: admit tells
// them apart by pointer, without reading them.
var (
	droppedByRelabel = &seriesInfo{} // by write relabeling
	droppedByRule    = &seriesInfo{} // by a drop rule
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
		return si
	}
	return nil
}

func (m *seriesMemo) put(ref uint64, si *seriesInfo) { m.cur.put(ref, si) }

// prefetchAhead is how many samples' memo slots dispatch loads ahead.
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

// age starts a new generation once a round of lookups has passed.
func (m *seriesMemo) age() {
	if m.lookups < max(minMemoRound, 4*m.cur.n) {
		return
	}
	m.old.reset(m.cur.n)
	m.old, m.cur = m.cur, m.old
	m.lookups = 0
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
