package wal

import (
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// spaceCheckInterval is how long a statfs(2) of the log's filesystem is
// trusted; in between, the log's own growth is subtracted from it.
const spaceCheckInterval = 100 * time.Millisecond

// Free space defaults: MinFree is DefaultMinFreeFraction of the filesystem,
// at least DefaultMinFreeMin (room for the state database's memtable logs
// and a flush, and for a series checkpoint) and at most DefaultMinFreeMax.
const (
	DefaultMinFreeFraction = 0.05
	DefaultMinFreeMin      = 32 << 20
	DefaultMinFreeMax      = 256 << 20
)

// FreeSpace reports the bytes available to unprivileged users on the
// filesystem holding dir.
func FreeSpace(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// DefaultMinFree returns the free space the log leaves on the filesystem
// holding dir when the configuration is silent, and the filesystem's size.
func DefaultMinFree(dir string) (minFree, fsSize int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	fsSize = int64(st.Blocks) * st.Bsize
	return max(DefaultMinFreeMin, min(int64(float64(fsSize)*DefaultMinFreeFraction), DefaultMinFreeMax)), fsSize, nil
}

// diskSpace tracks the free space of the log's filesystem.
type diskSpace struct {
	mu      sync.Mutex
	free    int64 // available bytes at the last statfs
	walSize int64 // the log's size at the last statfs
	at      time.Time
	low     bool // appends are being refused for lack of space
}

// available estimates the bytes available on the log's filesystem: the last
// statfs, less what the log grew since. The filesystem is asked again when
// the figure is older than spaceCheckInterval, or below MinFree (so that
// space returning is seen at once).
func (w *WAL) available() (int64, error) {
	d := &w.space
	d.mu.Lock()
	defer d.mu.Unlock()
	now := w.now()
	est := d.free - (w.total.Load() - d.walSize)
	if !d.at.IsZero() && now.Sub(d.at) < spaceCheckInterval && est >= w.opts.MinFree {
		return est, nil
	}
	size := w.total.Load()
	free, err := w.opts.FreeSpace(w.dir)
	if err != nil {
		return 0, err
	}
	d.free, d.walSize, d.at = free, size, now
	return free, nil
}

// lowOnSpace reports whether appends are being refused for lack of space.
func (w *WAL) lowOnSpace() bool {
	w.space.mu.Lock()
	defer w.space.mu.Unlock()
	return w.space.low
}

// errLowSpace describes a refusal for lack of space.
type errLowSpace struct {
	dir           string
	free, minFree int64
}

func (e errLowSpace) Error() string {
	return fmt.Sprintf("%s: the filesystem of %s has %d bytes free, below min_free_disk (%d bytes)", ErrFull, e.dir, e.free, e.minFree)
}

func (e errLowSpace) Unwrap() error { return ErrFull }

// checkSpace returns an error wrapping ErrFull if an append must be
// refused: the log is at MaxSize under Backpressure, or its filesystem has
// less than MinFree bytes available. Under DropOldest, running low starts
// the maintenance that drops the oldest segments.
func (w *WAL) checkSpace() error {
	if w.opts.MaxSize > 0 && w.opts.WhenFull == Backpressure && w.total.Load() >= w.opts.MaxSize {
		w.m.fullRejections.WithLabelValues(reasonMaxSize).Inc()
		return fmt.Errorf("%w: the WAL is at max_size (%d bytes)", ErrFull, w.opts.MaxSize)
	}
	if w.opts.MinFree <= 0 {
		return nil
	}
	free, err := w.available()
	if err != nil {
		// Not knowing is no reason to refuse: the write itself will tell.
		w.logger.Warn("Checking the WAL filesystem's free space failed", zap.Error(err))
		return nil
	}
	if w.opts.WhenFull == DropOldest && free < w.opts.MinFree+w.opts.SegmentSize {
		w.kickMaintenance()
	}
	low := free < w.opts.MinFree
	w.noteLowSpace(low, free)
	if low {
		w.m.fullRejections.WithLabelValues(reasonMinFree).Inc()
		return errLowSpace{dir: w.dir, free: free, minFree: w.opts.MinFree}
	}
	return nil
}

// noteLowSpace logs when appends start and stop being refused for lack of
// space, once per change.
func (w *WAL) noteLowSpace(low bool, free int64) {
	d := &w.space
	d.mu.Lock()
	changed := d.low != low
	d.low = low
	d.mu.Unlock()
	switch {
	case changed && low:
		w.logger.Error("WAL filesystem is low on space: refusing appends until space returns",
			zap.Int64("free_bytes", free), zap.Int64("min_free_disk", w.opts.MinFree), zap.Stringer("when_full", w.opts.WhenFull))
	case changed:
		w.logger.Info("WAL filesystem has space again: accepting appends", zap.Int64("free_bytes", free))
	}
}

// dropTarget returns how many bytes of sealed segments the disk cap asks to
// drop, and which limit asks for the most.
func (w *WAL) dropTarget() (int64, string) {
	var excess int64
	reason := reasonMaxSize
	if w.opts.MaxSize > 0 {
		excess = w.total.Load() - w.opts.MaxSize
	}
	if w.opts.MinFree > 0 {
		free, err := w.available()
		switch {
		case err != nil:
			w.logger.Warn("Checking the WAL filesystem's free space failed", zap.Error(err))
		case w.opts.MinFree+w.opts.SegmentSize-free > excess:
			// Room for the head segment to fill without reaching the floor.
			excess, reason = w.opts.MinFree+w.opts.SegmentSize-free, reasonMinFree
		}
	}
	return excess, reason
}

const (
	reasonMaxSize = "max_size"
	reasonMinFree = "min_free_disk"
)
