package wal

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Every file and directory operation of the log goes through a vfs.FS
// (Options.FS): vfs.Default in production, and in tests a filesystem that
// injects faults (vfs/errorfs) or forgets what was not made durable
// (vfs.NewCrashableMem), which is how the fsync points promised in the
// package documentation are tested.

// syncDir fsyncs a directory, making the entries created, renamed or
// removed in it durable.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("open directory %s for fsync: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return d.Close()
}

// MkdirDurable creates dir and any missing parents, fsyncing each parent
// after its new entry, so that the directory survives power loss.
func MkdirDurable(fs vfs.FS, dir string) error { return mkdirDurable(fs, dir) }

func mkdirDurable(fs vfs.FS, dir string) error {
	if _, err := fs.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := fs.PathDir(dir)
	if parent != dir {
		if err := mkdirDurable(fs, parent); err != nil {
			return err
		}
	}
	if err := fs.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return syncDir(fs, parent)
}

// listSegments returns the indices of the segment files in dir (names of
// eight digits), ascending.
func listSegments(fs vfs.FS, dir string) ([]int, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	var segs []int
	for _, name := range names {
		k, err := strconv.Atoi(name)
		if err != nil || len(name) != 8 || k < 0 {
			continue
		}
		segs = append(segs, k)
	}
	sort.Ints(segs)
	return segs, nil
}

// SyncDir fsyncs directory dir on fs.
func SyncDir(fs vfs.FS, dir string) error { return syncDir(fs, dir) }
