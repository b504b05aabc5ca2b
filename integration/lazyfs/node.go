package lazyfs

import (
	"context"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a name in the mounted tree, passed through to the backing path
// of the same name. m is its inode in the model.
type node struct {
	fs.Inode
	lfs *FS
	m   *inode
}

var (
	_ fs.NodeLookuper   = (*node)(nil)
	_ fs.NodeGetattrer  = (*node)(nil)
	_ fs.NodeSetattrer  = (*node)(nil)
	_ fs.NodeStatfser   = (*node)(nil)
	_ fs.NodeReaddirer  = (*node)(nil)
	_ fs.NodeMkdirer    = (*node)(nil)
	_ fs.NodeRmdirer    = (*node)(nil)
	_ fs.NodeUnlinker   = (*node)(nil)
	_ fs.NodeRenamer    = (*node)(nil)
	_ fs.NodeCreater    = (*node)(nil)
	_ fs.NodeOpener     = (*node)(nil)
	_ fs.NodeSymlinker  = (*node)(nil)
	_ fs.NodeReadlinker = (*node)(nil)
	_ fs.NodeLinker     = (*node)(nil)
	_ fs.NodeFsyncer    = (*node)(nil)
)

// enter admits an operation unless the filesystem is going down.
func (lfs *FS) enter() bool {
	lfs.gate.RLock()
	if lfs.down {
		lfs.gate.RUnlock()
		return false
	}
	return true
}

func (lfs *FS) leave() { lfs.gate.RUnlock() }

// path is the backing path of n. An unlinked node gets a path that does
// not exist.
func (n *node) path() string {
	return filepath.Join(n.lfs.backing, n.Path(n.Root()))
}

func (n *node) child(name string) string { return filepath.Join(n.path(), name) }

// liveInode returns the inode of the backing inode st, registering one the
// model does not know (which cannot have durable content); mu is held.
func (lfs *FS) liveInode(st *syscall.Stat_t) *inode {
	if m := lfs.live[st.Ino]; m != nil {
		return m
	}
	k, err := kindOf(st.Mode)
	if err != nil {
		k = kindFile
	}
	m := lfs.newInode(k, st.Mode)
	lfs.live[st.Ino] = m
	return m
}

// newChild returns the node for inode m found at st.
func (n *node) newChild(ctx context.Context, m *inode, st *syscall.Stat_t, out *fuse.EntryOut) *fs.Inode {
	out.Attr.FromStat(st)
	return n.NewInode(ctx, &node{lfs: n.lfs, m: m}, fs.StableAttr{Mode: st.Mode & syscall.S_IFMT, Ino: st.Ino, Gen: m.id})
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	n.lfs.mu.Lock()
	defer n.lfs.mu.Unlock()
	var st syscall.Stat_t
	if err := syscall.Lstat(n.child(name), &st); err != nil {
		return nil, fs.ToErrno(err)
	}
	return n.newChild(ctx, n.lfs.liveInode(&st), &st, out), 0
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	var st syscall.Stat_t
	var err error
	if h, ok := f.(*handle); ok {
		err = syscall.Fstat(h.fd, &st)
	} else {
		err = syscall.Lstat(n.path(), &st)
	}
	if err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	return 0
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	p := n.path()
	h, _ := f.(*handle)
	if mode, ok := in.GetMode(); ok {
		if err := syscall.Chmod(p, mode); err != nil {
			return fs.ToErrno(err)
		}
		n.lfs.mu.Lock()
		n.m.perm = mode & 0o7777
		n.lfs.mu.Unlock()
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		su, sg := -1, -1
		if uok {
			su = int(uid)
		}
		if gok {
			sg = int(gid)
		}
		if err := syscall.Lchown(p, su, sg); err != nil {
			return fs.ToErrno(err)
		}
	}
	if size, ok := in.GetSize(); ok {
		var err error
		if h != nil {
			err = syscall.Ftruncate(h.fd, int64(size))
		} else {
			err = syscall.Truncate(p, int64(size))
		}
		if err != nil {
			return fs.ToErrno(err)
		}
		n.m.truncated(int64(size))
	}
	mtime, mok := in.GetMTime()
	atime, aok := in.GetATime()
	if mok || aok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
		}
		if mok {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fs.ToErrno(err)
		}
	}
	var st syscall.Stat_t
	var err error
	if h != nil {
		err = syscall.Fstat(h.fd, &st)
	} else {
		err = syscall.Lstat(p, &st)
	}
	if err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	return 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	var s syscall.Statfs_t
	if err := syscall.Statfs(n.lfs.backing, &s); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStatfsT(&s)
	return 0
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	return fs.NewLoopbackDirStream(n.path())
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	buf := make([]byte, 4096)
	k, err := syscall.Readlink(n.path(), buf)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return buf[:k], 0
}

// Namespace operations hold mu from the backing call to the model update,
// so that a backing inode number freed by one cannot be reused by another
// before the model has forgotten it.

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeEntry(ctx, name, kindDir, "", func(p string) error { return syscall.Mkdir(p, mode) }, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeEntry(ctx, name, kindSymlink, target, func(p string) error { return syscall.Symlink(target, p) }, out)
}

// makeEntry creates the entry name with create (mkdir or symlink) and adds
// its inode, of kind k (a symlink's target given), to the live model.
func (n *node) makeEntry(ctx context.Context, name string, k kind, target string, create func(string) error, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	n.lfs.mu.Lock()
	defer n.lfs.mu.Unlock()
	p := n.child(name)
	if err := create(p); err != nil {
		return nil, fs.ToErrno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, fs.ToErrno(err)
	}
	m := n.lfs.newInode(k, st.Mode)
	m.target = target
	n.lfs.live[st.Ino] = m
	return n.newChild(ctx, m, &st, out), 0
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	n.lfs.mu.Lock()
	defer n.lfs.mu.Unlock()
	p := n.child(name)
	if err := syscall.Link(t.path(), p); err != nil {
		return nil, fs.ToErrno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, fs.ToErrno(err)
	}
	return n.newChild(ctx, n.lfs.liveInode(&st), &st, out), 0
}

// forget drops a backing inode that lost its last name from the live map.
func (lfs *FS) forget(st *syscall.Stat_t) {
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR || st.Nlink <= 1 {
		delete(lfs.live, st.Ino)
	}
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.removeEntry(name, syscall.Unlink)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.removeEntry(name, syscall.Rmdir)
}

// removeEntry removes the entry name with remove (unlink or rmdir) and
// forgets its inode's live state when it was the last name.
func (n *node) removeEntry(name string, remove func(string) error) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	n.lfs.mu.Lock()
	defer n.lfs.mu.Unlock()
	p := n.child(name)
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return fs.ToErrno(err)
	}
	if err := remove(p); err != nil {
		return fs.ToErrno(err)
	}
	n.lfs.forget(&st)
	return 0
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	n.lfs.mu.Lock()
	defer n.lfs.mu.Unlock()
	from, to := n.child(name), np.child(newName)
	var src, dst syscall.Stat_t
	if err := syscall.Lstat(from, &src); err != nil {
		return fs.ToErrno(err)
	}
	replaced := syscall.Lstat(to, &dst) == nil
	if err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, uint(flags)); err != nil {
		return fs.ToErrno(err)
	}
	if replaced && flags&unix.RENAME_EXCHANGE == 0 && dst.Ino != src.Ino {
		n.lfs.forget(&dst)
	}
	return 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, nil, 0, syscall.EIO
	}
	defer n.lfs.leave()
	n.lfs.mu.Lock()
	defer n.lfs.mu.Unlock()
	p := n.child(name)
	fd, err := syscall.Open(p, int(flags)&^syscall.O_APPEND|syscall.O_CREAT, mode)
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, nil, 0, fs.ToErrno(err)
	}
	m := n.lfs.live[st.Ino]
	if m == nil {
		m = n.lfs.newInode(kindFile, st.Mode)
		n.lfs.live[st.Ino] = m
	} else if flags&syscall.O_TRUNC != 0 {
		m.truncated(0)
	}
	return n.newChild(ctx, m, &st, out), n.lfs.newHandle(fd, m, flags), 0, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, 0, syscall.EIO
	}
	defer n.lfs.leave()
	fd, err := syscall.Open(n.path(), int(flags)&^(syscall.O_APPEND|fuse.FMODE_EXEC|syscall.O_CREAT|syscall.O_EXCL), 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	if flags&syscall.O_TRUNC != 0 {
		n.m.truncated(0)
	}
	return n.lfs.newHandle(fd, n.m, flags), 0, 0
}

// Fsync serves fsync and fdatasync of files (FUSE FSYNC) and of
// directories (FSYNCDIR).
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	if n.m.kind == kindDir {
		return n.lfs.syncDir(n)
	}
	if n.m.kind != kindFile {
		return 0
	}
	if h, ok := f.(*handle); ok {
		return h.sync()
	}
	fd, err := syscall.Open(n.path(), syscall.O_RDONLY, 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer syscall.Close(fd)
	return n.lfs.syncFile(n.m, fd)
}

func (lfs *FS) syncFile(m *inode, fd int) syscall.Errno {
	lfs.fsyncs.Add(1)
	k, err := m.sync(fd, lfs.shadow)
	lfs.syncedBytes.Add(k)
	if err != nil {
		return syscall.EIO
	}
	return 0
}

// syncDir makes the current names of the directory n durable.
func (lfs *FS) syncDir(n *node) syscall.Errno {
	lfs.dirFsyncs.Add(1)
	lfs.mu.Lock()
	defer lfs.mu.Unlock()
	p := n.path()
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err == syscall.ENOENT {
		n.m.entries = map[string]*inode{} // a removed directory: empty
		return 0
	}
	if err != nil {
		return fs.ToErrno(err)
	}
	names, err := readNames(fd)
	syscall.Close(fd)
	if err != nil {
		return fs.ToErrno(err)
	}
	entries := make(map[string]*inode, len(names))
	for _, name := range names {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(p, name), &st); err != nil {
			return fs.ToErrno(err)
		}
		entries[name] = lfs.liveInode(&st)
	}
	n.m.entries = entries
	return 0
}

// readNames lists a directory open at fd, without . and ..
func readNames(fd int) ([]string, error) {
	var names []string
	buf := make([]byte, 64<<10)
	for {
		k, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if k <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:k], -1, names)
	}
}

// handle is an open file: a backing descriptor.
type handle struct {
	lfs *FS
	m   *inode
	fd  int
	// osync: opened with O_SYNC or O_DSYNC, so each write is synced.
	osync bool
	once  sync.Once
}

var (
	_ fs.FileReader    = (*handle)(nil)
	_ fs.FileWriter    = (*handle)(nil)
	_ fs.FileReleaser  = (*handle)(nil)
	_ fs.FileGetattrer = (*handle)(nil)
	_ fs.FileAllocater = (*handle)(nil)
	_ fs.FileLseeker   = (*handle)(nil)
)

func (lfs *FS) newHandle(fd int, m *inode, flags uint32) *handle {
	h := &handle{lfs: lfs, m: m, fd: fd, osync: flags&(syscall.O_SYNC|syscall.O_DSYNC) != 0}
	lfs.hmu.Lock()
	lfs.handles[h] = struct{}{}
	lfs.hmu.Unlock()
	return h
}

// close closes the descriptor once; hmu is held.
func (h *handle) close() {
	h.once.Do(func() {
		syscall.Close(h.fd)
		delete(h.lfs.handles, h)
	})
}

func (h *handle) sync() syscall.Errno {
	return h.lfs.syncFile(h.m, h.fd)
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if !h.lfs.enter() {
		return nil, syscall.EIO
	}
	defer h.lfs.leave()
	k, err := syscall.Pread(h.fd, dest, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.lfs.enter() {
		return 0, syscall.EIO
	}
	defer h.lfs.leave()
	k, err := syscall.Pwrite(h.fd, data, off)
	if k > 0 {
		h.m.written(off, off+int64(k))
	}
	if err != nil {
		return uint32(max(k, 0)), fs.ToErrno(err)
	}
	if h.osync {
		if errno := h.sync(); errno != 0 {
			return 0, errno
		}
	}
	return uint32(k), 0
}

func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if !h.lfs.enter() {
		return syscall.EIO
	}
	defer h.lfs.leave()
	if err := unix.Fallocate(h.fd, mode, int64(off), int64(size)); err != nil {
		return fs.ToErrno(err)
	}
	h.m.written(int64(off), int64(off+size))
	return 0
}

func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	if !h.lfs.enter() {
		return 0, syscall.EIO
	}
	defer h.lfs.leave()
	n, err := unix.Seek(h.fd, int64(off), int(whence))
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	return uint64(n), 0
}

func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	if !h.lfs.enter() {
		return syscall.EIO
	}
	defer h.lfs.leave()
	var st syscall.Stat_t
	if err := syscall.Fstat(h.fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	return 0
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.lfs.hmu.Lock()
	h.close()
	h.lfs.hmu.Unlock()
	return 0
}
