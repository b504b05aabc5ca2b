package agent

import (
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/prometheus/prometheus/prompb"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// fullDisk plays a filesystem that another process filled to the last
// byte: while full, writes to the WAL fail with ENOSPC, and so do writes to
// the state database until the disk reserve is deleted (which frees its
// space).
type fullDisk struct {
	dataDir string
	full    atomic.Bool
	reserve atomic.Bool // the ballast holds its space
}

func (d *fullDisk) String() string { return "full disk" }

func (d *fullDisk) MaybeError(op errorfs.Op) error {
	if op.Kind == errorfs.OpRemove && op.Path == filepath.Join(d.dataDir, BallastFile) {
		d.reserve.Store(false)
		return nil
	}
	if !d.full.Load() {
		return nil
	}
	switch op.Kind {
	case errorfs.OpCreate, errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData,
		errorfs.OpFileSyncTo, errorfs.OpFilePreallocate, errorfs.OpReuseForWrite, errorfs.OpLink, errorfs.OpMkdirAll:
	default:
		return nil
	}
	switch {
	case strings.HasPrefix(op.Path, filepath.Join(d.dataDir, "wal")+"/"):
		return syscall.ENOSPC
	case strings.HasPrefix(op.Path, filepath.Join(d.dataDir, "state")+"/") && d.reserve.Load():
		return syscall.ENOSPC
	case op.Path == filepath.Join(d.dataDir, BallastFile):
		return syscall.ENOSPC
	}
	return nil
}

// Another process fills the disk: writes are refused with 503 and
// Retry-After; the state database, whose failed commits Pebble treats as
// fatal, gets the disk reserve's space and delivery with its checkpoints
// goes on; once space returns, writes are accepted, the reserve is made
// again, and the checkpoints survive a restart.
func TestDiskFilledByAnotherProcess(t *testing.T) {
	e := newFakeEndpoint(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, endpointYAML("a", e, "oldest"))
	disk := &fullDisk{dataDir: dir}
	disk.reserve.Store(true)
	ra := runAgent(t, New(cfg, Options{
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), Version: "test",
		Load: func() (*Config, error) { return cfg, nil }, StatusInterval: 20 * time.Millisecond,
		FS: errorfs.Wrap(vfs.Default, disk),
	}))
	reserve := ra.metric(t, "ferry_disk_reserve_bytes")
	if reserve < ballastMin || reserve > ballastMax {
		t.Fatalf("ferry_disk_reserve_bytes = %v at start, want %d to %d", reserve, ballastMin, ballastMax)
	}

	e.down.Store(true)
	ra.push(t, "backlog")
	disk.full.Store(true)
	now := time.Now().UnixMilli()
	req, _ := http.NewRequest(http.MethodPost, ra.base+"/api/v1/write", strings.NewReader(string(snappyBody(t,
		ts([]string{"__name__", "ferry_test", "step", "refused"}, prompb.Sample{Value: 1, Timestamp: now})))))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	resp, err := ra.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("write on a full disk: %d with Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// The endpoint comes back while the disk is still full: the backlog is
	// delivered and its checkpoint stored, through the released reserve.
	e.down.Store(false)
	waitFor(t, "the backlog to be delivered on a full disk", func() bool { return e.received("backlog") })
	waitFor(t, "the reserve to be released for the checkpoint", func() bool {
		return ra.metric(t, "ferry_disk_reserve_released_total") == 1
	})
	select {
	case err := <-ra.done:
		t.Fatalf("ferry stopped on a full disk: %v", err)
	default:
	}

	disk.full.Store(false)
	waitFor(t, "writes to be accepted once space is back", func() bool {
		code, _ := ra.do(t, http.MethodPost, "/api/v1/write", snappyBody(t,
			ts([]string{"__name__", "ferry_test", "step", "after"}, prompb.Sample{Value: 1, Timestamp: time.Now().UnixMilli()})))
		return code == http.StatusNoContent
	})
	waitFor(t, "the write after the full disk to be delivered", func() bool { return e.received("after") })
	waitFor(t, "the reserve to be made again", func() bool { return ra.metric(t, "ferry_disk_reserve_bytes") == reserve })
	if err := ra.stop(t); err != nil {
		t.Fatal(err)
	}

	// The checkpoint stored on the full disk holds: a restart sends the
	// backlog no more.
	e.mu.Lock()
	before := e.steps["backlog"]
	e.mu.Unlock()
	ra = startAgent(t, cfg, func() (*Config, error) { return cfg, nil })
	ra.push(t, "restarted")
	waitFor(t, "delivery after the restart", func() bool { return e.received("restarted") })
	e.mu.Lock()
	after := e.steps["backlog"]
	e.mu.Unlock()
	if after != before {
		t.Fatalf("the backlog was sent again after the restart (%d samples, then %d): its checkpoint was lost", before, after)
	}
}
