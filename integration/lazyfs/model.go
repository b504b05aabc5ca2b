package lazyfs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

type kind uint8

const (
	kindFile kind = iota
	kindDir
	kindSymlink
)

func kindOf(mode uint32) (kind, error) {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return kindFile, nil
	case syscall.S_IFDIR:
		return kindDir, nil
	case syscall.S_IFLNK:
		return kindSymlink, nil
	}
	return 0, fmt.Errorf("unsupported file type %#o", mode&syscall.S_IFMT)
}

// inode is the durable side of one inode. The identity is the pointer (and
// id): the backing inode number only finds it while the inode is live.
type inode struct {
	id     uint64
	kind   kind
	perm   uint32 // permission bits, for recreating it after a cut
	target string // a symlink's target

	// entries are a directory's durable names; guarded by FS.mu.
	entries map[string]*inode

	// The rest describes a regular file; guarded by mu.
	mu sync.Mutex
	// durSize is the durable size; the shadow file holds the durable
	// content (it is missing while durSize is 0).
	durSize int64
	// minSize is the smallest size the live file had since the last sync:
	// bytes from there to durSize may differ from the durable content.
	minSize int64
	// dirty are the byte ranges written since the last sync.
	dirty spans
	// shadow is the open shadow file, or nil.
	shadow *os.File
}

func (m *inode) shadowPath(dir string) string {
	return filepath.Join(dir, strconv.FormatUint(m.id, 10))
}

// written records that [off, end) of the live file changed.
func (m *inode) written(off, end int64) {
	if end <= off {
		return
	}
	m.mu.Lock()
	m.dirty = m.dirty.add(off, end)
	m.mu.Unlock()
}

// truncated records that the live file was cut or extended to size.
func (m *inode) truncated(size int64) {
	m.mu.Lock()
	m.minSize = min(m.minSize, size)
	m.mu.Unlock()
}

// volatile returns the number of bytes written since the last sync.
func (m *inode) volatile() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dirty.length()
}

func (m *inode) openShadow(dir string) (*os.File, error) {
	if m.shadow == nil {
		f, err := os.OpenFile(m.shadowPath(dir), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open shadow of inode %d: %w", m.id, err)
		}
		m.shadow = f
	}
	return m.shadow, nil
}

// closeShadow closes the shadow file if it is open.
func (m *inode) closeShadow() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shadow == nil {
		return nil
	}
	err := m.shadow.Close()
	m.shadow = nil
	if err != nil {
		return fmt.Errorf("close shadow of inode %d: %w", m.id, err)
	}
	return nil
}

// sync makes the live content, read through fd, durable: the shadow is
// cut to the smallest size the file had since the last sync, set to the
// current size, and the ranges written since are copied into it. It
// returns the bytes copied.
func (m *inode) sync(fd int, shadowDir string) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat inode %d to sync it: %w", m.id, err)
	}
	size := st.Size
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.dirty) == 0 && m.minSize >= m.durSize && size == m.durSize {
		return 0, nil
	}
	sh, err := m.openShadow(shadowDir)
	if err != nil {
		return 0, err
	}
	if m.minSize < m.durSize {
		if err := sh.Truncate(m.minSize); err != nil {
			return 0, fmt.Errorf("truncate shadow of inode %d: %w", m.id, err)
		}
	}
	if err := sh.Truncate(size); err != nil {
		return 0, fmt.Errorf("size shadow of inode %d: %w", m.id, err)
	}
	var copied int64
	for _, s := range m.dirty.clip(size) {
		n, err := copyRange(int(sh.Fd()), fd, s.off, s.end)
		copied += n
		// A file truncated while it is synced ends early; the next sync
		// settles it.
		if err != nil && err != io.ErrUnexpectedEOF {
			return copied, fmt.Errorf("copy bytes %d-%d of inode %d to its shadow: %w", s.off, s.end, m.id, err)
		}
	}
	m.dirty, m.durSize, m.minSize = nil, size, size
	return copied, nil
}

// restore puts the durable content back into the live file at path,
// copying only what may differ, and forgets the volatile writes.
func (m *inode) restore(path, shadowDir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s to restore it: %w", path, err)
	}
	todo := m.dirty.clip(m.durSize)
	if m.minSize < m.durSize {
		todo = todo.add(m.minSize, m.durSize)
	}
	if len(todo) > 0 {
		sh, err := m.openShadow(shadowDir)
		if err != nil {
			return err
		}
		for _, s := range todo {
			if _, err := copyRange(int(f.Fd()), int(sh.Fd()), s.off, s.end); err != nil {
				f.Close()
				return fmt.Errorf("restore bytes %d-%d of %s: %w", s.off, s.end, path, err)
			}
		}
	}
	if err := f.Truncate(m.durSize); err != nil {
		f.Close()
		return fmt.Errorf("truncate %s to its durable size: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	m.dirty, m.minSize = nil, m.durSize
	return nil
}

// recreate writes the durable content to a new file at path.
func (m *inode) recreate(path, shadowDir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, os.FileMode(m.perm))
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if m.durSize > 0 {
		sh, err := m.openShadow(shadowDir)
		if err != nil {
			f.Close()
			return err
		}
		if _, err := copyRange(int(f.Fd()), int(sh.Fd()), 0, m.durSize); err != nil {
			f.Close()
			return fmt.Errorf("write %s from its shadow: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	m.dirty, m.minSize = nil, m.durSize
	return nil
}

// copyRange copies bytes [off, end) from src to dst at the same offsets,
// stopping early at the end of src.
func copyRange(dst, src int, off, end int64) (int64, error) {
	buf := make([]byte, min(end-off, 1<<20))
	var done int64
	for off < end {
		n, err := syscall.Pread(src, buf[:min(int64(len(buf)), end-off)], off)
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrUnexpectedEOF
		}
		for w := 0; w < n; {
			k, err := syscall.Pwrite(dst, buf[w:n], off+int64(w))
			if err != nil {
				return done, err
			}
			w += k
		}
		off += int64(n)
		done += int64(n)
	}
	return done, nil
}

// span is the byte range [off, end).
type span struct{ off, end int64 }

// spans are sorted, disjoint and non-adjacent ranges.
type spans []span

// add returns s with [off, end) added.
func (s spans) add(off, end int64) spans {
	if end <= off {
		return s
	}
	// Fast path: appending at or after the last range.
	if n := len(s); n == 0 || s[n-1].end < off {
		return append(s, span{off, end})
	} else if s[n-1].off <= off {
		s[n-1].end = max(s[n-1].end, end)
		return s
	}
	out := make(spans, 0, len(s)+1)
	i := 0
	for ; i < len(s) && s[i].end < off; i++ {
		out = append(out, s[i])
	}
	merged := span{off, end}
	for ; i < len(s) && s[i].off <= end; i++ {
		merged.off = min(merged.off, s[i].off)
		merged.end = max(merged.end, s[i].end)
	}
	out = append(out, merged)
	return append(out, s[i:]...)
}

// clip returns the parts of s below limit, in new storage.
func (s spans) clip(limit int64) spans {
	var out spans
	for _, r := range s {
		if r.off >= limit {
			break
		}
		out = append(out, span{r.off, min(r.end, limit)})
	}
	return out
}

func (s spans) length() int64 {
	var n int64
	for _, r := range s {
		n += r.end - r.off
	}
	return n
}
