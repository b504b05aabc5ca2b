package agent

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// BallastFile is the file under the data dir that reserves disk space for
// the state database. When the filesystem is full (another process filled
// it: the WAL itself stops at min_free_disk), the state database's next
// write fails with ENOSPC; Pebble treats a failed commit as fatal, which
// would restart Ferry in a loop on a full disk. Instead the ballast is
// deleted and the write retried once (vfs.OnDiskFull), so that endpoints
// keep delivering and storing their checkpoints, and the compactor keeps
// committing, while the WAL refuses writes (503) for lack of space. The
// ballast is made again once the space is back.
const BallastFile = "ballast"

// Ballast sizes: a 64th of the filesystem, within these bounds. The state
// database writes checkpoints and compactor state: a few memtables' worth
// (4 MiB each) carries it through until space returns.
const (
	ballastMin = 4 << 20
	ballastMax = 64 << 20
)

// ballast manages the reserve file.
type ballast struct {
	fs     vfs.FS // the unwrapped filesystem
	path   string
	size   int64
	logger *zap.Logger

	mu       sync.Mutex
	present  bool
	released prometheus.Counter
	reserved prometheus.Gauge
}

func newBallast(fs vfs.FS, dataDir string, fsSize int64, logger *zap.Logger, reg prometheus.Registerer) *ballast {
	b := &ballast{
		fs: fs, path: fs.PathJoin(dataDir, BallastFile), logger: logger,
		size: max(ballastMin, min(fsSize/64, ballastMax)),
		released: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_disk_reserve_released_total",
			Help: "Times the disk was found full by the state database and the space reserved for it (DATA_DIR/ballast) was released."}),
		reserved: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_disk_reserve_bytes",
			Help: "Bytes reserved on the data dir's filesystem for the state database (0 while released: the disk filled up)."}),
	}
	reg.MustRegister(b.released, b.reserved)
	if fi, err := fs.Stat(b.path); err == nil && fi.Size() == b.size {
		b.present = true
		b.reserved.Set(float64(b.size))
	}
	return b
}

// ensure makes the ballast if it is missing and free (bytes available on
// the filesystem) leaves room for it beyond minFree.
func (b *ballast) ensure(free, minFree int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.present || free < minFree+2*b.size {
		return nil
	}
	f, err := b.fs.Create(b.path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("create disk reserve %s: %w", b.path, err)
	}
	// fallocate(2) takes the blocks without writing them; where it is not
	// supported, zeros are written.
	if fd := f.Fd(); fd == vfs.InvalidFd || unix.Fallocate(int(fd), 0, 0, b.size) != nil {
		buf := make([]byte, 1<<20)
		for n := int64(0); n < b.size && err == nil; n += int64(len(buf)) {
			_, err = f.Write(buf[:min(int64(len(buf)), b.size-n)])
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return errors.Join(fmt.Errorf("write disk reserve %s: %w", b.path, err), b.fs.Remove(b.path))
	}
	if err := wal.SyncDir(b.fs, b.fs.PathDir(b.path)); err != nil {
		return err
	}
	b.present = true
	b.reserved.Set(float64(b.size))
	b.logger.Info("Disk space reserved for the state database", zap.String("file", b.path), zap.Int64("bytes", b.size))
	return nil
}

// release deletes the ballast; it is the state database's ENOSPC callback,
// run while its writes wait.
func (b *ballast) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.present {
		b.logger.Error("The data dir's filesystem is full and the space reserved for the state database is already used; free disk space")
		return
	}
	if err := b.fs.Remove(b.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.logger.Error("The data dir's filesystem is full; releasing the space reserved for the state database failed", zap.Error(err))
		return
	}
	b.present = false
	b.released.Inc()
	b.reserved.Set(0)
	b.logger.Error("The data dir's filesystem is full: released the space reserved for the state database, so that delivery and checkpoints go on; writes are refused until space is freed",
		zap.String("file", b.path), zap.Int64("bytes", b.size))
}
