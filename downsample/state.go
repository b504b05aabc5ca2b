package downsample

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/prometheus/model/labels"
)

// State encoding (version 2), per WAL series, rewritten at every commit
// that changed it:
//
//	version u8 | seen i64 | rawPrev f64 | flags u8 (1 hasRawPrev, 2 typed, 4 counter) |
//	nwindows uvarint | per window: res i64, start i64, count u64, sum f64, min f64, max f64,
//	  firstT i64, lastT i64, firstV f64, lastV f64, total f64, prev f64, flags u8
//	  (1: hasPrev, 2: hasClosed), closedUntil i64
//
// Windows are keyed by resolution, so a resolution added or removed in the
// configuration keeps the others' state. The series' labels are written once,
// under their own key: nlabels uvarint | (name, value as uvarint-length
// strings)….
const stateVersion = 2

func encodeLabels(ls labels.Labels) []byte {
	b := binary.AppendUvarint(nil, uint64(ls.Len()))
	ls.Range(func(l labels.Label) {
		b = binary.AppendUvarint(b, uint64(len(l.Name)))
		b = append(b, l.Name...)
		b = binary.AppendUvarint(b, uint64(len(l.Value)))
		b = append(b, l.Value...)
	})
	return b
}

func decodeLabels(b []byte) (labels.Labels, error) {
	uv := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errShortState
		}
		b = b[n:]
		return v, nil
	}
	str := func() (string, error) {
		n, err := uv()
		if err != nil || uint64(len(b)) < n {
			return "", errShortState
		}
		s := string(b[:n])
		b = b[n:]
		return s, nil
	}
	nl, err := uv()
	if err != nil || nl > 1<<16 {
		return labels.EmptyLabels(), errShortState
	}
	sb := labels.NewScratchBuilder(int(nl))
	for range nl {
		n, err1 := str()
		v, err2 := str()
		if err1 != nil || err2 != nil {
			return labels.EmptyLabels(), errShortState
		}
		sb.Add(n, v)
	}
	return sb.Labels(), nil
}

// appendState appends st's state encoding to b.
func (c *Compactor) appendState(b []byte, st *seriesState) []byte {
	b = append(b, stateVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(st.seen))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(st.RawPrev))
	b = append(b, boolByte(st.HasRawPrev)|boolByte(st.typed)<<1|boolByte(st.counter)<<2)
	b = binary.AppendUvarint(b, uint64(len(st.windows)))
	for ri, w := range st.windows {
		f := func(x float64) { b = binary.BigEndian.AppendUint64(b, math.Float64bits(x)) }
		i := func(x int64) { b = binary.BigEndian.AppendUint64(b, uint64(x)) }
		i(c.logs[ri].res)
		i(w.Start)
		b = binary.BigEndian.AppendUint64(b, w.Count)
		f(w.Sum)
		f(w.Min)
		f(w.Max)
		i(w.FirstT)
		i(w.LastT)
		f(w.FirstV)
		f(w.LastV)
		f(w.Total)
		f(w.Prev)
		var flags byte
		if w.HasPrev {
			flags |= 1
		}
		if w.HasClosed {
			flags |= 2
		}
		b = append(b, flags)
		i(w.ClosedUntil)
	}
	return b
}

var errShortState = errors.New("state record too short")

func (c *Compactor) decodeState(b []byte, ls labels.Labels) (*seriesState, error) {
	if len(b) < 18 || b[0] != stateVersion {
		return nil, fmt.Errorf("unknown state encoding (%d bytes)", len(b))
	}
	st := &seriesState{windows: make([]window, len(c.logs))}
	st.seen = int64(binary.BigEndian.Uint64(b[1:]))
	st.RawPrev = math.Float64frombits(binary.BigEndian.Uint64(b[9:]))
	st.HasRawPrev, st.typed, st.counter = b[17]&1 != 0, b[17]&2 != 0, b[17]&4 != 0
	b = b[18:]
	st.wire, st.labelsSaved = wal.WireOf(ls), true
	nw, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, errShortState
	}
	b = b[n:]
	const wsize = 8*13 + 1
	for range nw {
		if len(b) < wsize {
			return nil, errShortState
		}
		i := func() int64 { x := int64(binary.BigEndian.Uint64(b)); b = b[8:]; return x }
		f := func() float64 { x := math.Float64frombits(binary.BigEndian.Uint64(b)); b = b[8:]; return x }
		res := i()
		var w window
		w.Start = i()
		w.Count = uint64(i())
		w.Sum, w.Min, w.Max = f(), f(), f()
		w.FirstT, w.LastT = i(), i()
		w.FirstV, w.LastV, w.Total, w.Prev = f(), f(), f(), f()
		flags := b[0]
		b = b[1:]
		w.HasPrev, w.HasClosed = flags&1 != 0, flags&2 != 0
		w.ClosedUntil = i()
		for ri, l := range c.logs {
			if l.res == res {
				st.windows[ri] = w
			}
		}
	}
	if !ls.IsEmpty() {
		c.route(st, ls)
	}
	return st, nil
}
