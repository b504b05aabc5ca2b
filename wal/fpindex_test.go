package wal

import (
	"math/rand/v2"
	"testing"
)

// The index agrees with a map through random puts and deletes while it
// grows to thousands of entries and shrinks back, with some label sets
// sharing a primary hash and probe runs that wrap around the end of the
// table.
func TestFpIndexAgreesWithMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var x fpIndex
	want := map[fingerprint]Ref{}
	var keys []fingerprint
	next := Ref(1)
	const steps = 40_000
	for step := range steps {
		putShare := 8 // of 10: grow for the first half, then shrink
		if step >= steps/2 {
			putShare = 2
		}
		switch {
		case rng.IntN(10) < putShare || len(keys) == 0: // put
			fp := fingerprint{h: rng.Uint64(), check: rng.Uint64()}
			switch rng.IntN(8) {
			case 0: // the primary hash of a stored set, another check hash
				if len(keys) > 0 {
					fp.h = keys[rng.IntN(len(keys))].h
				}
			case 1: // home in the last slots: the run wraps around
				fp.h = x.mask - rng.Uint64N(3)
			case 2: // a stored set again: kept, not stored twice
				if len(keys) > 0 {
					fp = keys[rng.IntN(len(keys))]
				}
			}
			stored := x.put(fp, next)
			if _, had := want[fp]; had == stored {
				t.Fatalf("step %d: put(%v) stored=%v with the key present=%v", step, fp, stored, had)
			}
			if stored {
				want[fp] = next
				keys = append(keys, fp)
			}
			next++
		default: // delete, sometimes with a stale ref that must not delete
			k := rng.IntN(len(keys))
			fp := keys[k]
			if rng.IntN(10) == 0 {
				x.del(fp, want[fp]+1)
				break
			}
			x.del(fp, want[fp])
			delete(want, fp)
			keys[k] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
		}
		if step%500 == 0 || step > steps-100 {
			if x.n != len(want) {
				t.Fatalf("step %d: index holds %d, want %d", step, x.n, len(want))
			}
			for fp, ref := range want {
				if got := x.get(fp); got != ref {
					t.Fatalf("step %d: get(%v) = %d, want %d", step, fp, got, ref)
				}
			}
			if got := x.get(fingerprint{h: 5, check: 99}); got != 0 {
				t.Fatalf("step %d: absent key found as %d", step, got)
			}
		}
	}
	// Emptying the table shrinks it back to its minimum.
	for fp, ref := range want {
		x.del(fp, ref)
	}
	if x.n != 0 || len(x.slots) > 2*minIndexSlots {
		t.Fatalf("emptied index: %d entries in %d slots", x.n, len(x.slots))
	}
}
