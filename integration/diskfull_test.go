package integration

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Another process fills the data dir's filesystem to the last byte while
// the raw endpoint is down. Ferry stays up, with no restart loop:
//   - writes are refused with 503 and Retry-After;
//   - the endpoint comes back and the WAL's backlog is delivered, and the
//     compactor keeps committing, on the full disk (the state database
//     gets the space of the disk reserve when it hits ENOSPC, which Pebble
//     would otherwise treat as fatal);
//   - once the space is freed, writes are accepted again and the reserve
//     is made again, by themselves;
//   - the checkpoints stored on the full disk hold: after a kill -9 the
//     backlog is not sent again.
func TestDiskFilledByAnotherProcess(t *testing.T) {
	requireIntegration(t)
	s := newSink(t, nil)
	_, rolled := newRollupRecorder(t)
	f := newFerry(t, "segment_size: 1MiB", "a="+s.url(), "rolled="+rolled+"|storage_policy: {resolution: 5m, retention: 720h}")
	cfg, _ := os.ReadFile(f.cfgPath)
	if err := os.WriteFile(f.cfgPath, append(cfg, "downsample:\n  commit_interval: 100ms\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(f.dir, "data")
	kind := mountSmallFS(t, dataDir, 64<<20, f.kill)
	f.start()
	if f.metric("ferry_disk_reserve_bytes") <= 0 {
		t.Fatalf("no disk reserve at start:\n%s", f.logText())
	}
	p := newPusher(f.addr, 500)
	ts := time.Now().UnixMilli()
	p.pushRounds(t, ts, ts+9, 500)
	ts += 10
	s.down()
	p.pushRounds(t, ts, ts+29, 500) // the backlog
	ts += 30

	filler, size := fillDisk(t, dataDir)
	t.Logf("%s: filled with %d MiB by another process; %d bytes free", kind, size>>20, freeBytes(t, dataDir))
	code, h := p.push(ts, 0, p.series)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("write on a full disk: %d with Retry-After %q, want 503 with Retry-After", code, h.Get("Retry-After"))
	}

	s.up()
	acked, n := p.snapshot()
	s.waitDelivered(acked, 2*time.Minute)
	commits := f.metric("ferry_downsample_commits_total")
	waitUntil(t, time.Minute, func() bool { return f.metric("ferry_downsample_commits_total") >= commits+20 })
	if !f.running() {
		t.Fatalf("ferry exited on a full disk:\n%s", f.logText())
	}
	t.Logf("on the full disk: %d acknowledged samples delivered, 20 more compactor commits; reserve released %v times",
		n, f.metric("ferry_disk_reserve_released_total"))

	ts = freeSpaceAgain(t, filler, p, ts)
	p.pushRounds(t, ts, ts+9, 500)
	ts += 10
	waitUntil(t, time.Minute, func() bool { return f.metric("ferry_disk_reserve_bytes") > 0 })

	acked, _ = p.snapshot()
	s.waitDelivered(acked, time.Minute)
	before := s.total
	f.kill9()
	f.start()
	p.pushRounds(t, ts, ts+4, 500)
	acked, n = p.snapshot()
	s.waitDelivered(acked, time.Minute)
	resent := s.total - before - 5*p.series
	t.Logf("after kill -9: %d samples sent again (at-least-once), of %d acknowledged", resent, n)
	if backlog := 30 * p.series; resent >= backlog {
		t.Fatalf("%d samples sent again after kill -9: the checkpoint stored on the full disk did not hold (the backlog was %d)", resent, backlog)
	}
	f.stop()
}
