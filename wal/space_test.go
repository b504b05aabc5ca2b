package wal

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// smallDisk is a filesystem of a fixed capacity holding the WAL's directory
// and, besides it, other files of a given total size.
type smallDisk struct {
	dir      string
	mu       sync.Mutex
	capacity int64
	other    int64
	statfs   int
}

func (d *smallDisk) used(t testing.TB) int64 {
	var n int64
	err := filepath.WalkDir(d.dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return n + d.other
}

func (d *smallDisk) setOther(n int64) {
	d.mu.Lock()
	d.other = n
	d.mu.Unlock()
}

func (d *smallDisk) freeSpace(t testing.TB) func(string) (int64, error) {
	return func(dir string) (int64, error) {
		if dir != d.dir {
			t.Errorf("statfs of %s, want the WAL directory %s", dir, d.dir)
		}
		used := d.used(t)
		d.mu.Lock()
		defer d.mu.Unlock()
		d.statfs++
		return d.capacity - used, nil
	}
}

func openOnSmallDisk(t *testing.T, policy FullPolicy, now func() time.Time) (*WAL, *smallDisk) {
	t.Helper()
	d := &smallDisk{dir: t.TempDir(), capacity: 16 * pageSize}
	opts := DefaultOptions()
	opts.SegmentSize = pageSize
	opts.MinFree = 4 * pageSize
	opts.WhenFull = policy
	opts.FreeSpace = d.freeSpace(t)
	w, err := Open(d.dir, opts, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)), nil, now)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w, d
}

// Under backpressure the log stops at MinFree: the append that would start
// below it is refused and says why, everything acknowledged is readable,
// and appends resume as soon as truncation or anyone else frees space.
func TestMinFreeBackpressure(t *testing.T) {
	clock := newFakeClock()
	w, d := openOnSmallDisk(t, Backpressure, clock.now)
	r, err := w.NewReader("endpoint", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	acked, ts := 0, int64(1)
	for ; ; ts++ {
		err := w.Append(batchOf(0, 100, ts))
		if errors.Is(err, ErrFull) {
			if !strings.Contains(err.Error(), "below min_free_disk") {
				t.Fatalf("refusal says %q, want it to name min_free_disk", err)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		acked += 100
		if ts > 10000 {
			t.Fatal("the log grew past the filesystem's capacity without refusing")
		}
	}
	// The floor held to within one append.
	if free := d.capacity - d.used(t); free < w.opts.MinFree-pageSize/4 {
		t.Fatalf("%d bytes free after the refusal, want about min_free_disk (%d)", free, w.opts.MinFree)
	}
	if n := w.Size(); n < 8*pageSize {
		t.Fatalf("refused with the log at %d bytes of a %d-byte disk", n, d.capacity)
	}
	readN(t, r, acked)

	// Someone else frees space, and takes it again.
	d.setOther(-4 * pageSize)
	if err := w.Append(batchOf(0, 100, ts)); err != nil {
		t.Fatalf("append once space was freed: %v", err)
	}
	ts++
	d.setOther(8 * pageSize)
	clock.add(spaceCheckInterval) // space the log did not use is seen at the next check
	if err := w.Append(batchOf(0, 100, ts)); !errors.Is(err, ErrFull) {
		t.Fatalf("append with the disk filled by another file: %v, want ErrFull", err)
	}
	d.setOther(0)

	// The consumer catches up: truncation frees the segments and appends
	// resume.
	_, end := readN(t, r, 100)
	r.Commit(end)
	w.maintain()
	if err := w.Append(batchOf(0, 100, ts)); err != nil {
		t.Fatalf("append after the consumer caught up: %v", err)
	}
}

// Under drop_oldest the floor is a cap: the oldest segments go, each
// consumer is told exactly how many samples it lost, and what is left reads
// in order up to the newest append.
func TestMinFreeDropOldest(t *testing.T) {
	w, d := openOnSmallDisk(t, DropOldest, time.Now)
	r, dropped := countingReader(t, w)
	const rounds = 1500
	refusals := 0
	for ts := int64(1); ts <= rounds; ts++ {
		err := w.Append(batchOf(0, 100, ts))
		if errors.Is(err, ErrFull) {
			// The refusal started the maintenance that makes room; here it
			// runs in the test's goroutine.
			refusals++
			w.maintain()
			err = w.Append(batchOf(0, 100, ts))
		}
		if err != nil {
			t.Fatalf("round %d: %v", ts, err)
		}
		if free := d.capacity - d.used(t); free < w.opts.MinFree-pageSize/4 {
			t.Fatalf("round %d: %d bytes free, below min_free_disk (%d)", ts, free, w.opts.MinFree)
		}
	}
	if refusals == 0 || dropped() == 0 {
		t.Fatalf("the log never reached the floor (refusals %d, samples lost %d)", refusals, dropped())
	}
	checkRestAfterDrop(t, r, rounds, dropped())
}

// Free space is asked of the filesystem at most every spaceCheckInterval
// while there is room; in between the log's own growth is subtracted.
func TestFreeSpaceIsEstimatedBetweenChecks(t *testing.T) {
	clock := newFakeClock()
	w, d := openOnSmallDisk(t, Backpressure, clock.now)
	for ts := int64(1); ts <= 20; ts++ {
		if err := w.Append(batchOf(0, 10, ts)); err != nil {
			t.Fatal(err)
		}
	}
	if d.statfs != 1 {
		t.Fatalf("%d statfs calls for 20 appends within %v, want 1", d.statfs, spaceCheckInterval)
	}
	clock.add(spaceCheckInterval)
	if err := w.Append(batchOf(0, 10, 21)); err != nil {
		t.Fatal(err)
	}
	if d.statfs != 2 {
		t.Fatalf("%d statfs calls, want 2 once the figure is %v old", d.statfs, spaceCheckInterval)
	}
	// The estimate follows the log's growth without asking the filesystem.
	est, err := w.available()
	if err != nil {
		t.Fatal(err)
	}
	if real := d.capacity - d.used(t); est != real {
		t.Fatalf("estimated %d bytes free, the filesystem has %d", est, real)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1e9, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
