package wal

// fpIndex maps fingerprints to refs. It is an open-addressing hash table
// with linear probing over one flat slice: a lookup of a present series
// usually reads one cache line (its home slot), where a Go map reads a
// control word and then the slot, and the probe loop is short enough for
// the CPU to overlap the cache misses of consecutive lookups (see
// lookupAll). Distinct label sets that share the primary hash simply occupy
// different slots, told apart by the check hash.
//
// Deletion shifts the following entries of the probe run back (no
// tombstones), so lookups never slow down with churn, and the table shrinks
// when it is mostly empty.
type fpIndex struct {
	slots []fpSlot // a power of two long; ref 0 marks an empty slot
	mask  uint64
	n     int
}

type fpSlot struct {
	fp  fingerprint
	ref Ref
}

const minIndexSlots = 1024

// get returns the ref stored for fp, or 0.
func (x *fpIndex) get(fp fingerprint) Ref {
	if x.n == 0 {
		return 0
	}
	for i := fp.h & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if s.fp == fp {
			return s.ref
		}
		if s.ref == 0 {
			return 0
		}
	}
}

// put stores ref for fp unless fp is present, in which case the stored ref
// is kept; it reports whether it stored ref.
func (x *fpIndex) put(fp fingerprint, ref Ref) bool {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.resize(max(minIndexSlots, 2*len(x.slots)))
	}
	i := fp.h & x.mask
	for ; x.slots[i].ref != 0; i = (i + 1) & x.mask {
		if x.slots[i].fp == fp {
			return false
		}
	}
	x.slots[i] = fpSlot{fp: fp, ref: ref}
	x.n++
	return true
}

// del removes fp if it is stored with ref.
func (x *fpIndex) del(fp fingerprint, ref Ref) {
	if x.n == 0 {
		return
	}
	i := fp.h & x.mask
	for ; x.slots[i].fp != fp; i = (i + 1) & x.mask {
		if x.slots[i].ref == 0 {
			return
		}
	}
	if x.slots[i].ref != ref {
		return
	}
	// Backward-shift deletion: move each later entry of the run whose home
	// slot is not cyclically within (i, j] into the hole.
	for j := (i + 1) & x.mask; x.slots[j].ref != 0; j = (j + 1) & x.mask {
		home := x.slots[j].fp.h & x.mask
		if (j-home)&x.mask >= (j-i)&x.mask {
			x.slots[i] = x.slots[j]
			i = j
		}
	}
	x.slots[i] = fpSlot{}
	x.n--
	if len(x.slots) > minIndexSlots && x.n*8 < len(x.slots) {
		x.resize(len(x.slots) / 2)
	}
}

func (x *fpIndex) resize(n int) {
	old := x.slots
	x.slots = make([]fpSlot, n)
	x.mask = uint64(n - 1)
	for _, s := range old {
		if s.ref == 0 {
			continue
		}
		i := s.fp.h & x.mask
		for x.slots[i].ref != 0 {
			i = (i + 1) & x.mask
		}
		x.slots[i] = s
	}
}

// lookupAll sets refs[i] to the ref of fps[i] (0 when absent) and returns
// how many are absent. It first loads every home slot in a loop of
// independent loads, which the CPU keeps in flight together, so that the
// probes find them in cache instead of waiting for each miss in turn.
// The loads' sum goes to *sink, which the caller owns (lookups run
// concurrently), so that the compiler keeps them.
func (x *fpIndex) lookupAll(fps []fingerprint, refs []Ref, sink *Ref) (missing int) {
	if x.n > 0 {
		var sum Ref
		for _, fp := range fps {
			sum += x.slots[fp.h&x.mask].ref
		}
		*sink = sum
	}
	for i, fp := range fps {
		r := x.get(fp)
		refs[i] = r
		if r == 0 {
			missing++
		}
	}
	return missing
}
