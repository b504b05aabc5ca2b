package integration

import (
	"bufio"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// segmentOracle reads one WAL segment the way Prometheus' wlog does, up to
// the first damaged record: what survives a repair. It is independent of
// ferry's code.
type segmentOracle struct {
	size, intact int64
	damage       error
	samples      map[string][]int64 // e2e id → timestamps of the intact records
}

func readSegmentOracle(t *testing.T, path string, ids map[uint64]string) segmentOracle {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	fi, _ := fh.Stat()
	o := segmentOracle{size: fi.Size(), samples: map[string][]int64{}}
	r := wlog.NewReader(bufio.NewReader(fh))
	dec := record.NewDecoder(nil, slog.New(slog.DiscardHandler))
	for r.Next() {
		rec := r.Record()
		switch dec.Type(rec) {
		case record.Series:
			ss, err := dec.Series(rec, nil)
			if err != nil {
				o.damage = err
				return o
			}
			for _, s := range ss {
				ids[uint64(s.Ref)] = s.Labels.Get("id")
			}
		case record.Samples, record.SamplesV2:
			smps, err := dec.Samples(rec, nil)
			if err != nil {
				o.damage = err
				return o
			}
			for _, s := range smps {
				id := ids[uint64(s.Ref)]
				o.samples[id] = append(o.samples[id], s.T)
			}
		}
		o.intact = r.Offset()
	}
	o.damage = r.Err()
	return o
}

func walSegments(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil && len(e.Name()) == 8 && e.Type().IsRegular() {
			segs = append(segs, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(segs)
	return segs
}

// A WAL of several 1 MiB segments gets bytes flipped in a middle segment
// and its last segment truncated mid-record while ferry is down. ferry
// starts, cuts each damaged segment after its last intact record, counts
// exactly what it cut (ferry_wal_repair_cut_bytes_total,
// ferry_wal_corruptions_total), delivers everything before the damage and
// everything in later segments, and carries on with new writes.
// `ferry wal inspect` reports both damages beforehand.
func TestWALDamageRepaired(t *testing.T) {
	requireIntegration(t)
	a := startProm(t, "downstream-a", promReceiver, "")
	a.stop(30 * time.Second) // down: the WAL keeps every segment
	f := newFerry(t, "segment_size: 1MiB", "a="+a.writeURL())
	f.start()
	p := newPusher(f.addr, 1000)
	ts := time.Now().UnixMilli()
	p.pushRounds(t, ts, ts+399, 1000) // ~5 MiB of WAL
	ts += 400
	f.kill9()

	walDir := filepath.Join(f.dir, "data", "wal")
	segs := walSegments(t, walDir)
	for len(segs) > 0 { // a segment opened just before the kill may be empty
		if fi, err := os.Stat(segs[len(segs)-1]); err == nil && fi.Size() > 0 {
			break
		}
		segs = segs[:len(segs)-1]
	}
	if len(segs) < 4 {
		t.Fatalf("want at least 4 WAL segments, have %d", len(segs))
	}
	mid, last := segs[len(segs)/2], segs[len(segs)-1]

	// Truncate the last segment inside its last record.
	fi, _ := os.Stat(last)
	if err := os.Truncate(last, fi.Size()-300); err != nil {
		t.Fatal(err)
	}
	// Flip bytes in the middle of the middle segment, moving on until the
	// oracle sees damage (a flip in page padding would go unnoticed).
	data, err := os.ReadFile(mid)
	if err != nil {
		t.Fatal(err)
	}
	flipped := false
	for off := len(data) / 2; off+16 < len(data) && !flipped; off += 4096 {
		for i := off; i < off+16; i++ {
			data[i] ^= 0xFF
		}
		if err := os.WriteFile(mid, data, 0o644); err != nil {
			t.Fatal(err)
		}
		flipped = readSegmentOracle(t, mid, map[uint64]string{}).damage != nil
		if !flipped {
			for i := off; i < off+16; i++ {
				data[i] ^= 0xFF
			}
		} else {
			t.Logf("flipped 16 bytes at offset %d of segment %s (%d bytes)", off, filepath.Base(mid), len(data))
		}
	}
	if !flipped {
		t.Fatal("could not damage the middle segment")
	}

	// What survives, by the oracle, in segment order.
	ids := map[uint64]string{}
	expect := map[string][]int64{}
	var cut int64
	damaged := 0
	for _, s := range segs {
		o := readSegmentOracle(t, s, ids)
		if o.damage != nil {
			damaged++
			cut += o.size - o.intact
			t.Logf("segment %s: damaged after %d of %d bytes: %v", filepath.Base(s), o.intact, o.size, o.damage)
		}
		for id, tss := range o.samples {
			expect[id] = append(expect[id], tss...)
		}
	}
	if damaged != 2 {
		t.Fatalf("the oracle sees %d damaged segments, want 2", damaged)
	}
	_, n := p.snapshot()
	survive := ackedCount(expect)
	if survive >= n || survive == 0 {
		t.Fatalf("%d of %d acknowledged samples survive the damage: the damage cut nothing or everything", survive, n)
	}

	// ferry wal inspect reports both, without changing anything.
	out, err := exec.Command(ferryBin, "wal", "inspect", walDir).CombinedOutput()
	if err != nil {
		t.Fatalf("ferry wal inspect: %v\n%s", err, out)
	}
	for _, s := range []string{mid, last} {
		if !lineWith(string(out), filepath.Base(s), "at ") {
			t.Errorf("ferry wal inspect does not report the damage in %s:\n%s", filepath.Base(s), out)
		}
	}

	f.start()
	if got := f.metric("ferry_wal_corruptions_total"); got != 2 {
		t.Errorf("ferry_wal_corruptions_total = %v, want 2", got)
	}
	if got := f.metric("ferry_wal_repair_cut_bytes_total"); got != float64(cut) {
		t.Errorf("ferry_wal_repair_cut_bytes_total = %v, the damage covers %d bytes", got, cut)
	}
	if !strings.Contains(f.logText(), "Repairing damaged WAL segment") {
		t.Errorf("the repair is not logged")
	}
	a.start()
	// It carries on.
	p.pushRounds(t, ts, ts+19, 1000)
	all, _ := p.snapshot()
	for id, tss := range all {
		for _, t := range tss {
			if t >= ts {
				expect[id] = append(expect[id], t)
			}
		}
	}
	waitAcked(t, expect, 2*time.Minute, a)
	t.Logf("%d acknowledged before the damage, %d survived it (%d cut with %d bytes), all delivered; %d more delivered after the repair",
		n, survive, n-survive, cut, ackedCount(expect)-survive)
	f.stop()
}

// lineWith reports whether some line of s contains all of subs.
func lineWith(s string, subs ...string) bool {
	for _, l := range strings.Split(s, "\n") {
		ok := true
		for _, sub := range subs {
			ok = ok && strings.Contains(l, sub)
		}
		if ok {
			return true
		}
	}
	return false
}
