package sender

import (
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
	// keep is false when write relabeling drops the series; labels is
	// empty when a drop rule does.
	keep bool
	v1   []byte // labels as repeated TimeSeries.labels fields; nil until used
	name string // the __name__ label, set with v1
}

// encodedV1 returns si's labels as Remote-Write 1.0 TimeSeries.labels
// fields, marshalling them on first use.
func (si *seriesInfo) encodedV1() []byte {
	if si.v1 == nil {
		b := make([]byte, 0, labelsSizeV1(si.labels))
		si.v1 = appendLabelsV1(b, tagV1Labels, si.labels)
		si.name = si.labels.Get(model.MetricNameLabel)
	}
	return si.v1
}

// seriesMemo maps refs to seriesInfo for the reading goroutine. It keeps
// two generations: a lookup that misses the current one promotes from the
// previous one, and every so many lookups the previous generation is
// forgotten. Series that still send are promoted before that; series that
// stopped (churn, or refs the WAL forgot) leave memory within two rounds.
// A round is at least four times the current generation's size in
// lookups, so every active series is seen at least once per round.
type seriesMemo struct {
	cur, old map[uint64]*seriesInfo
	lookups  int
}

// minMemoRound is the fewest lookups between two generations.
const minMemoRound = 1 << 20

func newSeriesMemo() *seriesMemo {
	return &seriesMemo{cur: map[uint64]*seriesInfo{}, old: map[uint64]*seriesInfo{}}
}

func (m *seriesMemo) get(ref uint64) *seriesInfo {
	m.lookups++
	if si, ok := m.cur[ref]; ok {
		return si
	}
	if si, ok := m.old[ref]; ok {
		m.cur[ref] = si
		return si
	}
	return nil
}

func (m *seriesMemo) put(ref uint64, si *seriesInfo) { m.cur[ref] = si }

// age starts a new generation once a round of lookups has passed.
func (m *seriesMemo) age() {
	if m.lookups < max(minMemoRound, 4*len(m.cur)) {
		return
	}
	clear(m.old)
	m.old, m.cur = m.cur, m.old
	m.lookups = 0
}

func (m *seriesMemo) len() int { return len(m.cur) + len(m.old) }
