package wal

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/prometheus/util/compression"
)

// SyncPolicy says when appended records are fsynced.
type SyncPolicy int

const (
	// SyncAlways fsyncs before Append returns (group commit).
	SyncAlways SyncPolicy = iota
	// SyncInterval fsyncs on a timer; Append returns after write(2).
	SyncInterval
)

// FullPolicy says what happens when the log reaches its MaxSize.
type FullPolicy int

const (
	// DropOldest deletes the oldest segments and counts what consumers lose.
	DropOldest FullPolicy = iota
	// Backpressure refuses appends with ErrFull until consumers catch up.
	Backpressure
)

func (p FullPolicy) String() string {
	if p == Backpressure {
		return "backpressure"
	}
	return "drop_oldest"
}

// Options configure a WAL. The zero value is not valid: use DefaultOptions.
type Options struct {
	Sync         SyncPolicy
	SyncInterval time.Duration
	// SegmentSize is the size after which a segment is sealed and a new one
	// begun. It is rounded up to a multiple of 32 KiB.
	SegmentSize int64
	// MaxSize caps the bytes the log may use on disk; 0 means no cap.
	MaxSize int64
	// MinFree is the free space the log leaves on its filesystem, for the
	// state database and its own checkpoints: below it, appends are refused
	// with ErrFull, and under DropOldest the oldest segments are dropped
	// until MinFree plus one segment is free. 0 disables the check.
	MinFree int64
	// WhenFull says what happens when MaxSize or MinFree is reached.
	WhenFull FullPolicy
	// FreeSpace reports the bytes available on the filesystem holding a
	// directory; nil means FS's disk usage (statfs(2) on vfs.Default).
	FreeSpace func(dir string) (int64, error)
	// Compression of record payloads (compression.None or compression.Snappy).
	Compression compression.Type
	// FS is the filesystem the log's files are read and written through;
	// nil means the operating system's (vfs.Default).
	FS vfs.FS
	// MaintenanceInterval is how often truncation and the cap are checked,
	// besides after every segment rotation.
	MaintenanceInterval time.Duration
	// SeriesGrace is how long a series is kept in memory after its last
	// sample's segment was sealed, even once that segment is deleted, so
	// that a series sampled less often than segments are consumed keeps
	// its ref instead of being written anew each time. 0 forgets a series
	// as soon as no segment on disk has a record of it.
	SeriesGrace time.Duration
}

// DefaultOptions returns the options Ferry uses when the config is silent.
func DefaultOptions() Options {
	return Options{
		Sync:                SyncAlways,
		SyncInterval:        time.Second,
		SegmentSize:         64 << 20,
		WhenFull:            DropOldest,
		Compression:         compression.None,
		MaintenanceInterval: 10 * time.Second,
		SeriesGrace:         5 * time.Minute,
	}
}

const pageSize = 32 * 1024

func (o *Options) validate() error {
	if o.Sync == SyncInterval && o.SyncInterval <= 0 {
		return fmt.Errorf("wal: sync interval must be positive, got %s", o.SyncInterval)
	}
	if o.SegmentSize < pageSize {
		return fmt.Errorf("wal: segment size %d is below one page (%d bytes)", o.SegmentSize, pageSize)
	}
	o.SegmentSize = (o.SegmentSize + pageSize - 1) / pageSize * pageSize
	if o.MaxSize < 0 {
		return fmt.Errorf("wal: max size must not be negative, got %d", o.MaxSize)
	}
	if o.MaxSize > 0 && o.MaxSize < 2*o.SegmentSize {
		return fmt.Errorf("wal: max size %d must hold at least two segments of %d bytes", o.MaxSize, o.SegmentSize)
	}
	if o.MinFree < 0 {
		return fmt.Errorf("wal: min free space must not be negative, got %d", o.MinFree)
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.FreeSpace == nil {
		fs := o.FS
		o.FreeSpace = func(dir string) (int64, error) {
			u, err := fs.GetDiskUsage(dir)
			if err != nil {
				return 0, fmt.Errorf("disk usage of %s: %w", dir, err)
			}
			return int64(u.AvailBytes), nil
		}
	}
	if o.MaintenanceInterval <= 0 {
		o.MaintenanceInterval = 10 * time.Second
	}
	switch o.Compression {
	case compression.None, compression.Snappy, compression.Zstd:
	default:
		return fmt.Errorf("wal: unknown compression %q", o.Compression)
	}
	return nil
}
