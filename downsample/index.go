package downsample

import "github.com/ferrymetrics/ferry/wal"

// seriesIndex maps WAL refs to series state. WAL refs are assigned in
// sequence, so a slice indexed by ref beats a map on the per-sample path.
// Refs below base have all been forgotten.
type seriesIndex struct {
	base  wal.Ref
	slots []*seriesState
	n     int
}

func (x *seriesIndex) get(ref wal.Ref) *seriesState {
	if ref < x.base || ref-x.base >= wal.Ref(len(x.slots)) {
		return nil
	}
	return x.slots[ref-x.base]
}

// maxRefGap bounds growth towards a ref far past the known ones.
const maxRefGap = 1 << 26

func (x *seriesIndex) set(ref wal.Ref, st *seriesState) bool {
	if x.n == 0 && len(x.slots) == 0 {
		x.base = ref
	}
	if ref < x.base {
		grow := int(x.base - ref)
		if grow > maxRefGap {
			return false
		}
		x.slots = append(make([]*seriesState, grow, grow+len(x.slots)), x.slots...)
		x.base = ref
	}
	i := ref - x.base
	if i >= wal.Ref(len(x.slots))+maxRefGap {
		return false
	}
	for wal.Ref(len(x.slots)) <= i {
		x.slots = append(x.slots, nil)
	}
	if x.slots[i] == nil {
		x.n++
	}
	x.slots[i] = st
	return true
}

func (x *seriesIndex) delete(ref wal.Ref) {
	if x.get(ref) == nil {
		return
	}
	x.slots[ref-x.base] = nil
	x.n--
	k := 0
	for k < len(x.slots) && x.slots[k] == nil {
		k++
	}
	if k > len(x.slots)/2 && k > 1024 {
		x.slots = append([]*seriesState(nil), x.slots[k:]...)
		x.base += wal.Ref(k)
	}
}

func (x *seriesIndex) len() int { return x.n }

func (x *seriesIndex) all(fn func(wal.Ref, *seriesState)) {
	for i, st := range x.slots {
		if st != nil {
			fn(x.base+wal.Ref(i), st)
		}
	}
}
