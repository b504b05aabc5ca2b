package sender

import "math/bits"

// refIndex maps series refs to small integers for the length of one batch:
// an open-addressing hash table that reset empties in constant time by
// moving to a new generation, so it allocates only when it grows.
type refIndex struct {
	slots []refSlot
	shift uint8 // 64 - log2(len(slots))
	gen   uint32
}

type refSlot struct {
	ref uint64
	gen uint32 // the slot is in use if gen is the index's
	val int32
}

// reset empties x and makes room for n refs.
func (x *refIndex) reset(n int) {
	if size := max(16, 2*n); len(x.slots) < size {
		size = 1 << bits.Len(uint(size-1))
		x.slots = make([]refSlot, size)
		x.shift = uint8(64 - bits.Len(uint(size-1)))
		x.gen = 0
	}
	x.gen++
	if x.gen == 0 { // wrapped: old generations would look current
		clear(x.slots)
		x.gen = 1
	}
}

func (x *refIndex) slot(ref uint64) uint64 { return (ref * 0x9E3779B97F4A7C15) >> x.shift }

// put returns the value of ref and true, or stores v for it and returns v
// and false. At most the n refs given to reset may be put.
func (x *refIndex) put(ref uint64, v int32) (int32, bool) {
	mask := uint64(len(x.slots) - 1)
	for i := x.slot(ref); ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.gen != x.gen {
			*s = refSlot{ref: ref, gen: x.gen, val: v}
			return v, false
		}
		if s.ref == ref {
			return s.val, true
		}
	}
}

// has reports whether ref was put.
func (x *refIndex) has(ref uint64) bool {
	mask := uint64(len(x.slots) - 1)
	for i := x.slot(ref); ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.gen != x.gen {
			return false
		}
		if s.ref == ref {
			return true
		}
	}
}
