package lazyfs

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a mounted (or, between PowerCut and Remount, unmounted) lazy
// filesystem. Its model lives as long as the FS: Remount serves the same
// backing directory with the same durable state.
type FS struct {
	backing, shadow, mountpoint string

	// gate is held shared by every FUSE operation and exclusively to take
	// the filesystem down, so that no operation runs during a cut.
	gate   sync.RWMutex
	down   bool // guarded by gate
	server *fuse.Server

	// mu guards the namespace: live, inodes, every directory's entries,
	// nextID and the cut statistics.
	mu     sync.Mutex
	root   *inode
	live   map[uint64]*inode // backing inode number → inode, for inodes in the backing tree
	inodes map[uint64]*inode // id → every inode live or durable
	nextID uint64

	hmu     sync.Mutex
	handles map[*handle]struct{} // open files

	fsyncs, dirFsyncs, syncedBytes atomic.Int64
	cuts                           int64
	lastBytes, totalBytes          int64
	lastEntries, totalEntries      int64
	lastReport                     []string
}

// Stats counts what the filesystem saw and what the cuts dropped.
type Stats struct {
	Fsyncs      int64 // fsync and fdatasync of files
	DirFsyncs   int64 // fsync of directories
	SyncedBytes int64 // bytes made durable by file syncs
	Cuts        int64
	// LastDroppedBytes are the bytes written but never synced that the
	// last cut discarded; DroppedBytes sums them over every cut.
	LastDroppedBytes, DroppedBytes int64
	// LastDroppedEntries are the names the last cut removed, brought back
	// or pointed at another inode; DroppedEntries sums them.
	LastDroppedEntries, DroppedEntries int64
}

// Mount serves backing at mountpoint. Everything in backing is taken as
// durable. shadow keeps the durable file contents: it must be empty or
// missing, on the same filesystem as backing. backing's parent must be
// writable: PowerCut rebuilds the tree beside it.
func Mount(backing, shadow, mountpoint string) (*FS, error) {
	for _, d := range []string{backing, shadow} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("lazyfs: create %s: %w", d, err)
		}
	}
	if ents, err := os.ReadDir(shadow); err != nil {
		return nil, fmt.Errorf("lazyfs: read shadow directory: %w", err)
	} else if len(ents) > 0 {
		return nil, fmt.Errorf("lazyfs: shadow directory %s is not empty", shadow)
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	lfs := &FS{backing: abs(backing), shadow: abs(shadow), mountpoint: abs(mountpoint),
		live: map[uint64]*inode{}, inodes: map[uint64]*inode{}, handles: map[*handle]struct{}{}, down: true}
	st, err := lstat(lfs.backing)
	if err != nil {
		return nil, fmt.Errorf("lazyfs: %w", err)
	}
	lfs.root = lfs.newInode(kindDir, st.Mode)
	lfs.live[st.Ino] = lfs.root
	if err := lfs.scan(lfs.backing, lfs.root); err != nil {
		lfs.closeShadows()
		return nil, fmt.Errorf("lazyfs: take %s as durable: %w", backing, err)
	}
	if err := lfs.Remount(); err != nil {
		lfs.closeShadows()
		return nil, err
	}
	return lfs, nil
}

// scan registers the tree under dir, whose inode is m, as durable.
func (lfs *FS) scan(dir string, m *inode) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		st, err := lstat(p)
		if err != nil {
			return err
		}
		c := lfs.live[st.Ino]
		if c == nil {
			k, err := kindOf(st.Mode)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			c = lfs.newInode(k, st.Mode)
			lfs.live[st.Ino] = c
			switch k {
			case kindDir:
				if err := lfs.scan(p, c); err != nil {
					return err
				}
			case kindSymlink:
				if c.target, err = os.Readlink(p); err != nil {
					return err
				}
			case kindFile:
				if err := lfs.takeDurable(p, c); err != nil {
					return err
				}
			}
		}
		m.entries[e.Name()] = c
	}
	return nil
}

// takeDurable copies the file at p into the shadow of m.
func (lfs *FS) takeDurable(p string, m *inode) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = m.sync(int(f.Fd()), lfs.shadow)
	return err
}

// newInode registers a new inode; the caller holds mu (or owns lfs).
func (lfs *FS) newInode(k kind, mode uint32) *inode {
	lfs.nextID++
	m := &inode{id: lfs.nextID, kind: k, perm: mode & 0o7777}
	if k == kindDir {
		m.entries = map[string]*inode{}
	}
	lfs.inodes[m.id] = m
	return m
}

// Remount serves the backing directory again after Unmount or PowerCut.
func (lfs *FS) Remount() error {
	lfs.gate.Lock()
	defer lfs.gate.Unlock()
	if !lfs.down {
		return errors.New("lazyfs: already mounted")
	}
	sec := time.Second
	opts := &fs.Options{
		EntryTimeout: &sec,
		AttrTimeout:  &sec,
		MountOptions: fuse.MountOptions{
			FsName:            lfs.backing,
			Name:              "lazyfs",
			DirectMountStrict: true,
			DisableXAttrs:     true,
			MaxWrite:          1 << 20,
			Logger:            log.New(fuseLog{}, "lazyfs: ", log.LstdFlags),
		},
	}
	srv, err := fs.Mount(lfs.mountpoint, &node{lfs: lfs, m: lfs.root}, opts)
	if err != nil {
		return fmt.Errorf("lazyfs: mount %s on %s: %w", lfs.backing, lfs.mountpoint, err)
	}
	lfs.server, lfs.down = srv, false
	return nil
}

// fuseLog passes go-fuse's log to stderr, but for the read loop's
// ECONNABORTED, which is how an unmount ends it.
type fuseLog struct{}

func (fuseLog) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("connection abort")) {
		return len(p), nil
	}
	return os.Stderr.Write(p)
}

// Unmount unmounts without losing anything: the backing directory keeps
// the live state, and the model its durable state, so PowerCut and Remount
// still work. The processes using the mount must have closed their files.
func (lfs *FS) Unmount() error {
	lfs.gate.RLock()
	srv, down := lfs.server, lfs.down
	lfs.gate.RUnlock()
	if down {
		return nil
	}
	// The kernel may still be delivering the releases of a process that
	// just died: retry while the mount is busy.
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err = srv.Unmount(); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("lazyfs: unmount %s: %w", lfs.mountpoint, err)
	}
	srv.Wait()
	lfs.gate.Lock()
	lfs.down, lfs.server = true, nil
	lfs.gate.Unlock()

	lfs.hmu.Lock()
	for h := range lfs.handles {
		h.close()
	}
	lfs.hmu.Unlock()
	return lfs.closeShadows()
}

func (lfs *FS) closeShadows() error {
	lfs.mu.Lock()
	defer lfs.mu.Unlock()
	var errs []error
	for _, m := range lfs.inodes {
		errs = append(errs, m.closeShadow())
	}
	return errors.Join(errs...)
}

// Stats returns the counters.
func (lfs *FS) Stats() Stats {
	lfs.mu.Lock()
	defer lfs.mu.Unlock()
	return Stats{
		Fsyncs: lfs.fsyncs.Load(), DirFsyncs: lfs.dirFsyncs.Load(), SyncedBytes: lfs.syncedBytes.Load(),
		Cuts: lfs.cuts, LastDroppedBytes: lfs.lastBytes, DroppedBytes: lfs.totalBytes,
		LastDroppedEntries: lfs.lastEntries, DroppedEntries: lfs.totalEntries,
	}
}

// LastCut describes what the last PowerCut dropped, one line per file
// that lost unsynced bytes and per name that it removed, brought back or
// pointed at another inode, sorted by path.
func (lfs *FS) LastCut() []string {
	lfs.mu.Lock()
	defer lfs.mu.Unlock()
	return append([]string(nil), lfs.lastReport...)
}

// PowerCut unmounts (as Unmount; kill the processes using the mount
// first) and rewrites the backing directory to exactly the durable state.
// Remount serves it again.
func (lfs *FS) PowerCut() error {
	if err := lfs.Unmount(); err != nil {
		return err
	}
	lfs.mu.Lock()
	defer lfs.mu.Unlock()
	if err := lfs.cut(); err != nil {
		return fmt.Errorf("lazyfs: power cut: %w", err)
	}
	return nil
}

// treeEntry is a path (relative to the root, "" for the root) and the
// inode it names.
type treeEntry struct {
	path string
	m    *inode
}

// cut rebuilds the backing tree from the durable state; the caller holds
// mu and the filesystem is down.
func (lfs *FS) cut() error {
	liveTree, err := lfs.liveTree(lfs.backing)
	if err != nil {
		return err
	}
	durTree := lfs.durableTree()

	// What the cut drops.
	livePaths := make(map[string]*inode, len(liveTree))
	liveAt := map[*inode]string{}
	for _, e := range liveTree {
		livePaths[e.path] = e.m
		if _, ok := liveAt[e.m]; !ok && e.m != nil {
			liveAt[e.m] = e.path
		}
	}
	durPaths := make(map[string]*inode, len(durTree))
	durAt := map[*inode]string{}
	for _, e := range durTree {
		durPaths[e.path] = e.m
		if _, ok := durAt[e.m]; !ok {
			durAt[e.m] = e.path
		}
	}
	var report []string
	var dropped, entries int64
	for _, m := range lfs.inodes {
		if m.kind != kindFile {
			continue
		}
		v := m.volatile()
		dropped += v
		if v == 0 {
			continue
		}
		where, fate := "an unlinked file", "gone"
		if p, ok := liveAt[m]; ok {
			where = p
		}
		if p, ok := durAt[m]; ok {
			fate = fmt.Sprintf("back to its %d durable bytes", m.durSize)
			if where != p {
				fate += " at " + p
			}
		}
		report = append(report, fmt.Sprintf("%s: %d unsynced bytes dropped, %s", where, v, fate))
	}
	for _, e := range durTree {
		switch lm, ok := livePaths[e.path]; {
		case !ok:
			report = append(report, fmt.Sprintf("%s: back (its removal was not durable)", e.path))
			entries++
		case lm != e.m:
			report = append(report, fmt.Sprintf("%s: names its former inode again (the change was not durable)", e.path))
			entries++
		}
	}
	for _, e := range liveTree {
		if _, ok := durPaths[e.path]; !ok {
			report = append(report, fmt.Sprintf("%s: gone (its entry was not durable)", e.path))
			entries++
		}
	}
	sort.Strings(report)

	// Build the durable tree beside the backing directory: directories and
	// symlinks anew, files restored in place and hard-linked, or rewritten
	// from their shadow.
	tmp := lfs.backing + ".powercut"
	old := lfs.backing + ".old"
	if err := errors.Join(os.RemoveAll(tmp), os.RemoveAll(old)); err != nil {
		return err
	}
	placed := map[*inode]string{}
	for _, e := range durTree {
		dst := filepath.Join(tmp, e.path)
		switch e.m.kind {
		case kindDir:
			if err := os.Mkdir(dst, os.FileMode(e.m.perm&0o777)); err != nil {
				return err
			}
		case kindSymlink:
			if err := os.Symlink(e.m.target, dst); err != nil {
				return err
			}
		case kindFile:
			src, ok := placed[e.m]
			if !ok {
				if lp, isLive := liveAt[e.m]; isLive {
					src = filepath.Join(lfs.backing, lp)
					if err := e.m.restore(src, lfs.shadow); err != nil {
						return err
					}
				} else {
					if err := e.m.recreate(dst, lfs.shadow); err != nil {
						return err
					}
					placed[e.m] = dst
					continue
				}
				placed[e.m] = src
			}
			if err := os.Link(src, dst); err != nil {
				return err
			}
		}
	}
	if err := os.Rename(lfs.backing, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, lfs.backing); err != nil {
		return err
	}
	if err := os.RemoveAll(old); err != nil {
		return err
	}

	// The live state is now the durable state.
	lfs.live = map[uint64]*inode{}
	keep := map[*inode]bool{}
	for _, e := range durTree {
		st, err := lstat(filepath.Join(lfs.backing, e.path))
		if err != nil {
			return err
		}
		lfs.live[st.Ino] = e.m
		keep[e.m] = true
	}
	for id, m := range lfs.inodes {
		if !keep[m] {
			if err := m.closeShadow(); err != nil {
				return err
			}
			if err := os.Remove(m.shadowPath(lfs.shadow)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			delete(lfs.inodes, id)
		}
	}
	lfs.cuts++
	lfs.lastBytes, lfs.lastEntries, lfs.lastReport = dropped, entries, report
	lfs.totalBytes += dropped
	lfs.totalEntries += entries
	return nil
}

// liveTree lists the tree under root with the inode of each name (nil for
// one the model does not know).
func (lfs *FS) liveTree(root string) ([]treeEntry, error) {
	var out []treeEntry
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := lstat(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			rel = ""
		}
		out = append(out, treeEntry{rel, lfs.live[st.Ino]})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the live tree: %w", err)
	}
	return out, nil
}

// durableTree lists the names reachable from the root through durable
// entries, parents first. A directory reachable twice (moved between two
// directories of which only the target was synced) is kept at its first
// name in path order.
func (lfs *FS) durableTree() []treeEntry {
	out := []treeEntry{{"", lfs.root}}
	seen := map[*inode]bool{lfs.root: true}
	var walk func(dir string, m *inode)
	walk = func(dir string, m *inode) {
		names := make([]string, 0, len(m.entries))
		for n := range m.entries {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			c := m.entries[n]
			p := filepath.Join(dir, n)
			if c.kind == kindDir {
				if seen[c] {
					continue
				}
				seen[c] = true
				out = append(out, treeEntry{p, c})
				walk(p, c)
				continue
			}
			out = append(out, treeEntry{p, c})
		}
	}
	walk("", lfs.root)
	return out
}

func lstat(p string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	return &st, nil
}
