package sender

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ferrymetrics/ferry/wal"
)

// A checkpoint's value is a version byte, the segment and the offset as
// big-endian uint64s; a WAL cursor stores and loads as exactly those bytes.
func TestCheckpointFormat(t *testing.T) {
	db, err := pebble.Open(filepath.Join(t.TempDir(), "state"), &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cps := PebbleCheckpoints{DB: db}
	stored := []byte{1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x04, 0xd2}
	if err := db.Set([]byte("sender/checkpoint/a"), stored, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	c, ok, err := cps.Load("a")
	if err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	if p := walPosition(c); p != (wal.Position{Segment: 3, Offset: 1234}) {
		t.Fatalf("loaded %v, want 00000003:1234", p)
	}
	if got := (WALLog{}).Describe(c); got != "00000003:1234" {
		t.Fatalf("described as %q", got)
	}
	if err := cps.Save("b", walCursor(wal.Position{Segment: 3, Offset: 1234})); err != nil {
		t.Fatal(err)
	}
	v, closer, err := db.Get([]byte("sender/checkpoint/b"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(v, stored) {
		t.Fatalf("stored %x, want %x", v, stored)
	}
	closer.Close()

	for name, v := range map[string][]byte{"empty": {}, "short": stored[:9], "version_2": append([]byte{2}, stored[1:]...)} {
		if err := db.Set([]byte("sender/checkpoint/"+name), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := cps.Load(name); err == nil || ok {
			t.Errorf("%s: loaded (%v, %v)", name, ok, err)
		}
	}
}

func TestWALCursorsOrderLikePositions(t *testing.T) {
	ps := []wal.Position{{}, {Offset: 1}, {Offset: 1 << 40}, {Segment: 1}, {Segment: 1, Offset: 255}, {Segment: 1, Offset: 256}, {Segment: 300}}
	for i, p := range ps {
		for j, q := range ps {
			if got, want := walCursor(p).Less(walCursor(q)), p.Less(q); got != want {
				t.Errorf("cursor(%v) < cursor(%v) = %v, positions %v", p, q, got, want)
			}
			if (walCursor(p) == walCursor(q)) != (i == j) {
				t.Errorf("cursor(%v) == cursor(%v) is %v", p, q, !(i == j))
			}
		}
	}
}
