package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ferrymetrics/ferry/wal"
)

// LockFile is the file under the data dir that a running Ferry, or an
// admin command working on the data dir, holds an exclusive flock on. It
// holds the holder's pid. It is removed at a clean exit, so finding it at
// start means the previous holder did not exit cleanly (a crash, kill -9 or
// a power loss).
const LockFile = "ferry.lock"

// ErrDataDirInUse is returned by LockDataDir when another process holds the
// data dir.
var ErrDataDirInUse = errors.New("data dir is in use")

// DataDirLock is a held lock on a data dir.
type DataDirLock struct {
	f    *os.File
	path string
	// Unclean reports that the lock file was there when it was taken: the
	// previous holder did not exit cleanly.
	Unclean bool
}

// LockDataDir takes the data dir's lock, creating the directory if needed.
// If another process holds it, the error wraps ErrDataDirInUse and names
// that process.
func LockDataDir(dir string) (*DataDirLock, error) {
	if err := wal.MkdirDurable(vfs.Default, dir); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid := strings.TrimSpace(string(b)); pid != "" {
				holder = "process " + pid
			}
		}
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w by %s (a running Ferry?)", dir, ErrDataDirInUse, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	l := &DataDirLock{f: f, path: path, Unclean: statErr == nil}
	if err := errors.Join(f.Truncate(0), writeAt0(f, strconv.Itoa(os.Getpid())+"\n"), f.Sync()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write lock file: %w", err)
	}
	// A new lock file must survive a power loss to report it at the next
	// start.
	if statErr != nil {
		if err := wal.SyncDir(vfs.Default, dir); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("create lock file: %w", err)
		}
	}
	return l, nil
}

func writeAt0(f *os.File, s string) error {
	_, err := f.WriteAt([]byte(s), 0)
	return err
}

// Release removes the lock file (marking a clean exit), makes the removal
// durable, so that a power loss after a clean exit is not reported as an
// unclean one, and releases the lock.
func (l *DataDirLock) Release() error {
	err := os.Remove(l.path)
	if err == nil {
		err = wal.SyncDir(vfs.Default, filepath.Dir(l.path))
	}
	return errors.Join(err, l.f.Close())
}

// Abandon releases the lock but leaves the lock file, so that the next
// holder reports an unclean exit.
func (l *DataDirLock) Abandon() { _ = l.f.Close() }
