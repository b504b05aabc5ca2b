package sender

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/prometheus/model/labels"
)

func TestTakePullsExemplarsAndGroupsBySeries(t *testing.T) {
	s := func(ref uint64) item {
		return item{kind: kindSample, ref: ref, wire: wal.WireOf(labels.FromStrings("r", string(rune('0'+ref))))}
	}
	x := func(ref uint64) item {
		return item{kind: kindExemplar, ref: ref, wire: wal.WireOf(labels.FromStrings("r", string(rune('0'+ref))))}
	}
	var sh shard
	// Two records' samples, then their exemplars; a batch of 3 ends before
	// the exemplars.
	sh.queue = []item{s(1), s(2), s(1), x(1), x(3), s(4), x(4), x(2)}
	sh.queuedExemplars = 4
	got := sh.take(3, false)
	// The exemplars of series 1 and 2 among the next 3 items join the
	// batch (that of 2 is further): series 1's items together, in order.
	want := []item{s(1), s(1), x(1), s(2)}
	if !sameItems(got, want) {
		t.Fatalf("batch %v, want %v", refs(got), refs(want))
	}
	if rest := []item{x(3), s(4), x(4), x(2)}; !sameItems(sh.queue[sh.head:], rest) || sh.queuedExemplars != 3 {
		t.Fatalf("queue %v (%d exemplars), want %v (3)", refs(sh.queue[sh.head:]), sh.queuedExemplars, refs(rest))
	}
	// Not full and not forced: nothing.
	if b := sh.take(5, false); b != nil {
		t.Fatalf("took %v before the batch was full", refs(b))
	}
	got = sh.take(5, true)
	if want := []item{x(3), s(4), x(4), x(2)}; !sameItems(got, want) || sh.queued() != 0 || sh.queuedExemplars != 0 {
		t.Fatalf("forced batch %v, want %v", refs(got), refs(want))
	}
}

func TestGroupBySeries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in, want []uint64
	}{
		{"empty", nil, nil},
		{"grouped", []uint64{1, 2, 3}, []uint64{1, 2, 3}},
		{"runs", []uint64{1, 1, 2, 2}, []uint64{1, 1, 2, 2}},
		{"interleaved", []uint64{1, 2, 1, 3, 2, 1}, []uint64{1, 1, 1, 2, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sh shard
			for round := range 2 { // buffers reused
				batch := make([]item, len(tc.in))
				for i, r := range tc.in {
					batch[i] = item{ref: r, t: int64(i)}
				}
				sh.batch = batch
				got := sh.groupBySeries(batch)
				if !slices.Equal(refs(got), tc.want) {
					t.Fatalf("round %d: got %v, want %v", round, refs(got), tc.want)
				}
				for i := 1; i < len(got); i++ {
					if got[i].ref == got[i-1].ref && got[i].t < got[i-1].t {
						t.Fatalf("round %d: order within a series lost: %+v", round, got)
					}
				}
			}
		})
	}
}

func refs(items []item) []uint64 {
	var out []uint64
	for _, it := range items {
		out = append(out, it.ref)
	}
	return out
}

func sameItems(a, b []item) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ref != b[i].ref || a[i].kind != b[i].kind {
			return false
		}
	}
	return true
}

// A request to a port nothing listens on fails to connect: the retry wait
// is capped. A connection the endpoint closes mid-request is not.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close() // hang up on the first request
		}
	}()
	_, err = http.Post("http://"+addr+"/api/v1/write", "application/x-protobuf", strings.NewReader("x"))
	if err == nil || unreachable(err) {
		t.Fatalf("request the endpoint hung up on: %v, unreachable %v", err, unreachable(err))
	}
	ln.Close()
	_, err = http.Post("http://"+addr+"/api/v1/write", "application/x-protobuf", strings.NewReader("x"))
	if !unreachable(err) {
		t.Fatalf("request to a closed port: %v not seen as unreachable", err)
	}
}
