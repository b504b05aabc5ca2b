package lazyfs

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// mount mounts a fresh lazyfs for the test, or skips it without root or
// /dev/fuse.
func mount(t *testing.T) (*FS, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lazyfs needs root to mount FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("lazyfs needs /dev/fuse: %v", err)
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	lfs, err := Mount(filepath.Join(dir, "backing"), filepath.Join(dir, "shadow"), mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lfs.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return lfs, mnt
}

// cut cuts the power and mounts again.
func cut(t *testing.T, lfs *FS) {
	t.Helper()
	if err := lfs.PowerCut(); err != nil {
		t.Fatal(err)
	}
	if err := lfs.Remount(); err != nil {
		t.Fatal(err)
	}
}

// write writes data to path at off (creating it), and fsyncs it if sync.
func write(t *testing.T, path string, off int64, data string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(data), off); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync directory %s: %v", dir, err)
	}
	d.Close()
}

// want asserts path holds content, or does not exist if content is nil.
func want(t *testing.T, path string, content []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	switch {
	case content == nil && errors.Is(err, os.ErrNotExist):
	case content == nil && err == nil:
		t.Errorf("%s exists (holding %q), want it gone", filepath.Base(path), got)
	case err != nil:
		t.Errorf("read %s: %v", filepath.Base(path), err)
	case !bytes.Equal(got, content):
		i := 0
		for i < len(got) && i < len(content) && got[i] == content[i] {
			i++
		}
		t.Errorf("%s holds %d bytes, want %d; first difference at byte %d: %q, want %q",
			filepath.Base(path), len(got), len(content), i, clip(got[i:]), clip(content[i:]))
	}
}

func clip(b []byte) []byte { return b[:min(len(b), 40)] }

func TestUnsyncedWriteLost(t *testing.T) {
	lfs, mnt := mount(t)
	f := filepath.Join(mnt, "f")
	write(t, f, 0, "", true)
	syncDir(t, mnt)
	write(t, f, 0, "hello", false)
	want(t, f, []byte("hello")) // the page cache serves it before the cut
	cut(t, lfs)
	want(t, f, []byte{})
	if st := lfs.Stats(); st.LastDroppedBytes != 5 {
		t.Errorf("dropped %d bytes, want 5", st.LastDroppedBytes)
	}
	wantReport := []string{"f: 5 unsynced bytes dropped, back to its 0 durable bytes"}
	if got := lfs.LastCut(); !slices.Equal(got, wantReport) {
		t.Errorf("LastCut() = %q, want %q", got, wantReport)
	}
}

func TestSyncedWriteKept(t *testing.T) {
	lfs, mnt := mount(t)
	f := filepath.Join(mnt, "f")
	write(t, f, 0, "hello", true)
	syncDir(t, mnt)
	write(t, f, 5, " world", false)
	write(t, f, 0, "J", false)
	cut(t, lfs)
	want(t, f, []byte("hello"))
	// Appends synced one by one, as a log does.
	for i := range 10 {
		write(t, f, int64(5+i), "x", true)
	}
	write(t, f, 15, "unsynced", false)
	cut(t, lfs)
	want(t, f, []byte("helloxxxxxxxxxx"))
	st := lfs.Stats()
	if st.Fsyncs != 11 || st.DirFsyncs != 1 || st.Cuts != 2 {
		t.Errorf("stats %+v, want 11 fsyncs, 1 directory fsync, 2 cuts", st)
	}
}

func TestSyncedFileWithoutDirSyncVanishes(t *testing.T) {
	lfs, mnt := mount(t)
	write(t, filepath.Join(mnt, "kept"), 0, "k", true)
	syncDir(t, mnt)
	write(t, filepath.Join(mnt, "f"), 0, "data", true)
	if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A synced file in a synced directory whose own entry was not synced.
	write(t, filepath.Join(mnt, "d", "g"), 0, "data", true)
	syncDir(t, filepath.Join(mnt, "d"))
	cut(t, lfs)
	want(t, filepath.Join(mnt, "f"), nil)
	want(t, filepath.Join(mnt, "d"), nil)
	want(t, filepath.Join(mnt, "kept"), []byte("k"))
	if st := lfs.Stats(); st.LastDroppedEntries != 3 {
		t.Errorf("dropped %d entries, want 3 (f, d, d/g)", st.LastDroppedEntries)
	}
	wantReport := []string{
		"d/g: gone (its entry was not durable)",
		"d: gone (its entry was not durable)",
		"f: gone (its entry was not durable)",
	}
	if got := lfs.LastCut(); !slices.Equal(got, wantReport) {
		t.Errorf("LastCut() = %q, want %q", got, wantReport)
	}
}

func TestDirSyncWithoutDataSync(t *testing.T) {
	lfs, mnt := mount(t)
	f := filepath.Join(mnt, "f")
	write(t, f, 0, "data", false)
	syncDir(t, mnt)
	cut(t, lfs)
	want(t, f, []byte{})
}

func TestRenameWithoutDirSyncReverts(t *testing.T) {
	lfs, mnt := mount(t)
	a, b := filepath.Join(mnt, "a"), filepath.Join(mnt, "b")
	write(t, a, 0, "old", true)
	write(t, b, 0, "replaced", true)
	syncDir(t, mnt)
	write(t, filepath.Join(mnt, "a.tmp"), 0, "new", true)
	if err := os.Rename(filepath.Join(mnt, "a.tmp"), a); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(b, filepath.Join(mnt, "c")); err != nil {
		t.Fatal(err)
	}
	want(t, a, []byte("new"))
	cut(t, lfs)
	want(t, a, []byte("old"))
	want(t, b, []byte("replaced"))
	want(t, filepath.Join(mnt, "a.tmp"), nil)
	want(t, filepath.Join(mnt, "c"), nil)
}

func TestRenameWithDirSyncKept(t *testing.T) {
	lfs, mnt := mount(t)
	a := filepath.Join(mnt, "a")
	write(t, a, 0, "old", true)
	syncDir(t, mnt)
	write(t, a+".tmp", 0, "new", true)
	if err := os.Rename(a+".tmp", a); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt)
	cut(t, lfs)
	want(t, a, []byte("new"))
	want(t, a+".tmp", nil)
	// The replaced inode is gone for good: its shadow too.
	ents, err := os.ReadDir(lfs.shadow)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("%d shadow files after the cut, want 1", len(ents))
	}
}

// Each side of a rename between directories becomes durable with its own
// directory's fsync.
func TestRenameAcrossDirectories(t *testing.T) {
	for _, tc := range []struct {
		name               string
		syncFrom, syncTo   bool
		wantFrom, wantTo   bool
		wantDroppedEntries int64
	}{
		{name: "neither", wantFrom: true, wantDroppedEntries: 2},
		{name: "source_only", syncFrom: true, wantDroppedEntries: 1},
		{name: "target_only", syncTo: true, wantFrom: true, wantTo: true, wantDroppedEntries: 1},
		{name: "both", syncFrom: true, syncTo: true, wantTo: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lfs, mnt := mount(t)
			from, to := filepath.Join(mnt, "from"), filepath.Join(mnt, "to")
			for _, d := range []string{from, to} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			write(t, filepath.Join(from, "f"), 0, "data", true)
			syncDir(t, from)
			syncDir(t, mnt)
			if err := os.Rename(filepath.Join(from, "f"), filepath.Join(to, "f")); err != nil {
				t.Fatal(err)
			}
			if tc.syncFrom {
				syncDir(t, from)
			}
			if tc.syncTo {
				syncDir(t, to)
			}
			cut(t, lfs)
			for _, c := range []struct {
				path string
				want bool
			}{{filepath.Join(from, "f"), tc.wantFrom}, {filepath.Join(to, "f"), tc.wantTo}} {
				if c.want {
					want(t, c.path, []byte("data"))
				} else {
					want(t, c.path, nil)
				}
			}
			if st := lfs.Stats(); st.LastDroppedEntries != tc.wantDroppedEntries {
				t.Errorf("dropped %d entries, want %d", st.LastDroppedEntries, tc.wantDroppedEntries)
			}
		})
	}
}

func TestUnlink(t *testing.T) {
	lfs, mnt := mount(t)
	a, b := filepath.Join(mnt, "a"), filepath.Join(mnt, "b")
	write(t, a, 0, "aaa", true)
	write(t, b, 0, "bbb", true)
	syncDir(t, mnt)
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	cut(t, lfs)
	want(t, a, []byte("aaa"))
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt)
	// An unlinked file still open: its synced writes do not matter.
	f, err := os.OpenFile(b, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("BBBB"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cut(t, lfs)
	want(t, a, nil)
	want(t, b, []byte("BBBB")) // its entry was durable: the synced content is what comes back
}

func TestTruncate(t *testing.T) {
	lfs, mnt := mount(t)
	f := filepath.Join(mnt, "f")
	write(t, f, 0, "0123456789", true)
	syncDir(t, mnt)

	if err := os.Truncate(f, 4); err != nil {
		t.Fatal(err)
	}
	cut(t, lfs)
	want(t, f, []byte("0123456789")) // an unsynced truncation is undone

	if err := os.Truncate(f, 4); err != nil {
		t.Fatal(err)
	}
	syncFile(t, f)
	cut(t, lfs)
	want(t, f, []byte("0123"))

	// Cut then extended: the extension reads as zeros, durable or not.
	if err := os.Truncate(f, 2); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, 6); err != nil {
		t.Fatal(err)
	}
	want(t, f, []byte("01\x00\x00\x00\x00"))
	syncFile(t, f)
	cut(t, lfs)
	want(t, f, []byte("01\x00\x00\x00\x00"))

	// O_TRUNC at open, then a synced write.
	g, err := os.OpenFile(f, os.O_RDWR|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(g.Sync(), g.Close()); err != nil {
		t.Fatal(err)
	}
	cut(t, lfs)
	want(t, f, []byte("x"))
}

func TestOSync(t *testing.T) {
	lfs, mnt := mount(t)
	p := filepath.Join(mnt, "f")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_APPEND|syscall.O_DSYNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b", "c"} {
		if _, err := f.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	syncDir(t, mnt)
	cut(t, lfs)
	want(t, p, []byte("abc"))
}

// TestRandomAgainstReference runs random operations on a few files of one
// directory, with cuts in between, against a reference written here
// without any cleverness: whole contents, live and durable.
func TestRandomAgainstReference(t *testing.T) {
	lfs, mnt := mount(t)
	type file struct{ live, durable []byte }
	var (
		rng     = rand.New(rand.NewPCG(1, 2))
		names   = []string{"a", "b", "c", "d"}
		live    = map[string]*file{} // name → file, the live directory
		durable = map[string]*file{} // the durable directory
		open    = map[*file]*os.File{}
	)
	closeAll := func() {
		for f, h := range open {
			h.Close()
			delete(open, f)
		}
	}
	handle := func(name string) (*file, *os.File) {
		f := live[name]
		if h := open[f]; h != nil {
			return f, h // opened under this or an earlier name
		}
		h, err := os.OpenFile(filepath.Join(mnt, name), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		open[f] = h
		return f, h
	}
	pick := func(m map[string]*file) (string, bool) {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		if len(ks) == 0 {
			return "", false
		}
		slices.Sort(ks)
		return ks[rng.IntN(len(ks))], true
	}
	for step := range 3000 {
		name := names[rng.IntN(len(names))]
		switch op := rng.IntN(100); {
		case op < 10: // create
			if live[name] != nil {
				continue
			}
			write(t, filepath.Join(mnt, name), 0, "", false)
			live[name] = &file{}
		case op < 50: // write
			n, ok := pick(live)
			if !ok {
				continue
			}
			f, h := handle(n)
			off := rng.IntN(len(f.live) + 100)
			data := make([]byte, 1+rng.IntN(200))
			for i := range data {
				data[i] = byte('a' + rng.IntN(26))
			}
			if _, err := h.WriteAt(data, int64(off)); err != nil {
				t.Fatal(err)
			}
			if end := off + len(data); end > len(f.live) {
				f.live = append(f.live, make([]byte, end-len(f.live))...)
			}
			copy(f.live[off:], data)
		case op < 58: // truncate
			n, ok := pick(live)
			if !ok {
				continue
			}
			f, h := handle(n)
			size := rng.IntN(len(f.live) + 50)
			if err := h.Truncate(int64(size)); err != nil {
				t.Fatal(err)
			}
			if size <= len(f.live) {
				f.live = f.live[:size]
			} else {
				f.live = append(f.live, make([]byte, size-len(f.live))...)
			}
		case op < 75: // fsync a file
			n, ok := pick(live)
			if !ok {
				continue
			}
			f, h := handle(n)
			if err := h.Sync(); err != nil {
				t.Fatal(err)
			}
			f.durable = slices.Clone(f.live)
		case op < 82: // fsync the directory
			syncDir(t, mnt)
			durable = map[string]*file{}
			for k, v := range live {
				durable[k] = v
			}
		case op < 88: // rename
			n, ok := pick(live)
			if !ok || n == name {
				continue
			}
			if err := os.Rename(filepath.Join(mnt, n), filepath.Join(mnt, name)); err != nil {
				t.Fatal(err)
			}
			live[name] = live[n]
			delete(live, n)
		case op < 93: // unlink
			n, ok := pick(live)
			if !ok {
				continue
			}
			if err := os.Remove(filepath.Join(mnt, n)); err != nil {
				t.Fatal(err)
			}
			delete(live, n)
		default: // cut
			closeAll()
			cut(t, lfs)
			live = map[string]*file{}
			for k, v := range durable {
				v.live = slices.Clone(v.durable)
				live[k] = v
			}
			for _, n := range names {
				var w []byte
				if f := live[n]; f != nil {
					w = f.live
					if w == nil {
						w = []byte{}
					}
				}
				want(t, filepath.Join(mnt, n), w)
			}
			if t.Failed() {
				t.Fatalf("after step %d", step)
			}
		}
		// The live view is always the latest.
		if step%50 == 0 {
			for _, n := range names {
				var w []byte
				if f := live[n]; f != nil {
					w = f.live
					if w == nil {
						w = []byte{}
					}
				}
				want(t, filepath.Join(mnt, n), w)
			}
			if t.Failed() {
				t.Fatalf("live view wrong after step %d", step)
			}
		}
	}
	closeAll()
	st := lfs.Stats()
	t.Logf("%d cuts, %d fsyncs, %d directory fsyncs, %d bytes and %d entries dropped", st.Cuts, st.Fsyncs, st.DirFsyncs, st.DroppedBytes, st.DroppedEntries)
	if st.Cuts < 10 || st.DroppedBytes == 0 || st.DroppedEntries == 0 {
		t.Errorf("the random run cut %d times, dropping %d bytes and %d entries: it exercises too little", st.Cuts, st.DroppedBytes, st.DroppedEntries)
	}
}
