package downsample

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"

	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/prometheus/model/labels"
)

// group is one output series of a rollup rule at one resolution: the
// aggregate of its member series, window by window.
//
// Counters: every member sample adds the member's reset-adjusted increase
// since its previous sample to the window holding it; a closed window adds
// its increases to the group's running Total and emits it. The rollup is
// therefore monotonic whatever members reset, appear or vanish, and its
// increase over any span of closed windows is the sum of the members'
// increases. A member's first sample adds nothing (its earlier history is
// unknown). Increases arriving for an already closed window go to the
// oldest open one, so none is lost.
//
// Gauges: each window keeps every member's last value in it, and emits
// their sum, min, max or avg. A member sample for a closed window is late
// and dropped.
//
// A window closes when a member sample at or after its end plus max_delay
// arrives (data time), or when the clock passes its end plus max_delay and
// no member sample arrived for max_delay.
type group struct {
	labels    labels.Labels
	agg       string
	counter   bool
	Total     float64
	Windows   []groupWindow // open, by Start
	Closed    int64         // end of the last closed window
	HasClosed bool
	Watermark int64 // highest member sample timestamp
	seen      int64 // clock (ms) of the last member sample
	dirty     bool
	out       *output
}

type groupWindow struct {
	Start    int64
	Increase float64
	Lasts    map[wal.Ref]float64
	LastT    int64
}

// add applies one member sample; delta is the member's counter increase.
// It reports whether the sample was late (dropped).
func (g *group) add(ref wal.Ref, t int64, v, delta float64, res int64) bool {
	start := floorDiv(t, res) * res
	if g.HasClosed && start < g.Closed {
		if !g.counter {
			return true
		}
		start = g.Closed // the increase still counts, in the oldest open window
		if len(g.Windows) > 0 {
			start = g.Windows[0].Start
		}
	}
	i, found := slices.BinarySearchFunc(g.Windows, start, func(w groupWindow, s int64) int { return cmpInt(w.Start, s) })
	if !found {
		g.Windows = slices.Insert(g.Windows, i, groupWindow{Start: start, LastT: math.MinInt64})
	}
	w := &g.Windows[i]
	if g.counter {
		w.Increase += delta
	} else {
		if w.Lasts == nil {
			w.Lasts = map[wal.Ref]float64{}
		}
		w.Lasts[ref] = v
	}
	w.LastT = max(w.LastT, t)
	g.Watermark = max(g.Watermark, t)
	g.dirty = true
	return false
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// closeDue closes the windows due by data time (watermark) or by the
// clock, oldest first, and returns their samples.
func (g *group) closeDue(now, res, maxDelay int64, out []closedSample) []closedSample {
	for len(g.Windows) > 0 {
		w := g.Windows[0]
		end := w.Start + res
		byData := g.Watermark >= end+maxDelay
		byClock := now >= end+maxDelay && now-g.seen >= maxDelay
		if !byData && !byClock {
			break
		}
		var v float64
		if g.counter {
			g.Total += w.Increase
			v = g.Total
		} else {
			v = aggregateLasts(g.agg, w.Lasts)
		}
		if w.LastT != math.MinInt64 {
			out = append(out, closedSample{t: w.LastT, v: v})
		}
		g.Windows = g.Windows[1:]
		g.Closed, g.HasClosed = end, true
		g.dirty = true
	}
	return out
}

type closedSample struct {
	t int64
	v float64
}

func aggregateLasts(agg string, lasts map[wal.Ref]float64) float64 {
	if len(lasts) == 0 {
		return math.NaN()
	}
	refs := make([]wal.Ref, 0, len(lasts))
	for r := range lasts {
		refs = append(refs, r)
	}
	slices.Sort(refs) // a fixed order keeps sums identical across restarts
	var sum float64
	mn, mx := math.Inf(1), math.Inf(-1)
	for _, r := range refs {
		v := lasts[r]
		sum += v
		mn, mx = min(mn, v), max(mx, v)
	}
	switch agg {
	case "min":
		return mn
	case "max":
		return mx
	case "avg":
		return sum / float64(len(lasts))
	}
	return sum
}

// Group state encoding (version 1): version u8 | total f64 | closed i64 |
// hasClosed u8 | watermark i64 | seen i64 | nwindows uvarint | per window:
// start i64, increase f64, lastT i64, nlasts uvarint, (ref u64, value f64)…
func (g *group) encode() []byte {
	b := []byte{1}
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(g.Total))
	b = binary.BigEndian.AppendUint64(b, uint64(g.Closed))
	b = append(b, boolByte(g.HasClosed))
	b = binary.BigEndian.AppendUint64(b, uint64(g.Watermark))
	b = binary.BigEndian.AppendUint64(b, uint64(g.seen))
	b = binary.AppendUvarint(b, uint64(len(g.Windows)))
	for _, w := range g.Windows {
		b = binary.BigEndian.AppendUint64(b, uint64(w.Start))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(w.Increase))
		b = binary.BigEndian.AppendUint64(b, uint64(w.LastT))
		refs := make([]wal.Ref, 0, len(w.Lasts))
		for r := range w.Lasts {
			refs = append(refs, r)
		}
		slices.Sort(refs)
		b = binary.AppendUvarint(b, uint64(len(refs)))
		for _, r := range refs {
			b = binary.BigEndian.AppendUint64(b, uint64(r))
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(w.Lasts[r]))
		}
	}
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

var errBadGroup = errors.New("bad group state")

func (g *group) decode(b []byte) error {
	if len(b) < 42 || b[0] != 1 {
		return errBadGroup
	}
	rd := func() uint64 { x := binary.BigEndian.Uint64(b); b = b[8:]; return x }
	b = b[1:]
	g.Total = math.Float64frombits(rd())
	g.Closed = int64(rd())
	g.HasClosed = b[0] == 1
	b = b[1:]
	g.Watermark = int64(rd())
	g.seen = int64(rd())
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1<<20 {
		return errBadGroup
	}
	b = b[k:]
	g.Windows = nil
	for range n {
		if len(b) < 24 {
			return errBadGroup
		}
		w := groupWindow{Start: int64(rd()), Increase: math.Float64frombits(rd()), LastT: int64(rd())}
		m, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < m*16 {
			return errBadGroup
		}
		b = b[k:]
		if m > 0 {
			w.Lasts = make(map[wal.Ref]float64, m)
		}
		for range m {
			w.Lasts[wal.Ref(rd())] = math.Float64frombits(rd())
		}
		g.Windows = append(g.Windows, w)
	}
	return nil
}
