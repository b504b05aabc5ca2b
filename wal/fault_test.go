package wal

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// Fault cases through the filesystem seam (Options.FS): every write,
// fsync, create and rename of the log can be made to fail, block or be
// forgotten by a power cut, without root or a real broken disk.

// faults is an errorfs injector whose rule can be swapped while the log
// runs.
type faults struct {
	rule atomic.Pointer[func(errorfs.Op) error]
}

func (f *faults) String() string { return "test faults" }

func (f *faults) MaybeError(op errorfs.Op) error {
	if r := f.rule.Load(); r != nil && *r != nil {
		return (*r)(op)
	}
	return nil
}

func (f *faults) set(rule func(errorfs.Op) error) { f.rule.Store(&rule) }

// fail makes every operation match accepts fail with err; with once, only
// the first.
func (f *faults) fail(match func(errorfs.Op) bool, err error, once bool) {
	var done atomic.Bool
	f.set(func(op errorfs.Op) error {
		if match(op) && !(once && done.Swap(true)) {
			return err
		}
		return nil
	})
}

// faultyWAL opens a log on an in-memory filesystem wrapped in f.
func faultyWAL(t *testing.T, mem vfs.FS, f *faults, opts Options) *WAL {
	t.Helper()
	opts.FS = errorfs.Wrap(mem, f)
	return openTest(t, "/data/wal", opts)
}

func isSync(op errorfs.Op) bool {
	return op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData
}

// isSegment says whether path is a segment of the log (not a checkpoint's).
func isSegment(path string) bool {
	return filepath.Dir(path) == "/data/wal" && len(filepath.Base(path)) == 8
}

// readBack reads every sample in the log at dir on fs and returns the
// timestamps seen per series id.
func readBack(t *testing.T, fs vfs.FS, opts Options) map[string]map[int64]bool {
	t.Helper()
	opts.FS = fs
	w := openTest(t, "/data/wal", opts)
	defer w.Close()
	r, err := w.NewReader("check", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string]map[int64]bool{}
	for {
		e, err := r.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			return out
		}
		for i, s := range e.Samples {
			id := e.SeriesLabels(i).Get("id")
			if out[id] == nil {
				out[id] = map[int64]bool{}
			}
			out[id][s.T] = true
		}
	}
}

// fillSegment appends rounds of 100 series from ts on until the head
// segment is within one round of SegmentSize, or, with past, at or past
// it (the next append then rotates). It returns the next ts.
func fillSegment(t *testing.T, w *WAL, ts int64, past bool) int64 {
	t.Helper()
	var round int64
	for {
		before := w.Head()
		if past && before.Offset >= w.opts.SegmentSize || !past && before.Offset+2*round >= w.opts.SegmentSize {
			return ts
		}
		if err := w.Append(batchOf(0, 100, ts)); err != nil {
			t.Fatal(err)
		}
		ts++
		if after := w.Head(); after.Segment == before.Segment {
			round = max(round, after.Offset-before.Offset)
		}
	}
}

func requireRounds(t *testing.T, seen map[string]map[int64]bool, series int, tss ...int64) {
	t.Helper()
	for _, ts := range tss {
		for i := range series {
			if !seen[fmt.Sprint(i)][ts] {
				t.Fatalf("acknowledged sample id=%d @%d missing", i, ts)
			}
		}
	}
}

// An fsync error while another append rotates the segment: the failed
// fsync's appender gets its error, the rotating appender goes on in the new
// segment, and nothing waits on a lock forever (syncTo used to take the
// writer's lock while holding the fsync lock, and rotation the reverse).
func TestWALFault_FsyncErrorDuringRotation(t *testing.T) {
	mem := vfs.NewMem()
	f := &faults{}
	opts := DefaultOptions()
	opts.SegmentSize = 4 * pageSize
	w := faultyWAL(t, mem, f, opts)
	next := fillSegment(t, w, 1, false)

	inSync, release, rotating := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var syncs, creates atomic.Int32
	f.set(func(op errorfs.Op) error {
		switch {
		case isSync(op) && isSegment(op.Path) && syncs.Add(1) == 1:
			close(inSync)
			<-release
			return errors.New("injected EIO")
		case op.Kind == errorfs.OpCreate && isSegment(op.Path) && creates.Add(1) == 1:
			close(rotating)
		}
		return nil
	})
	errA, errB := make(chan error, 1), make(chan error, 1)
	// Twenty rounds in one append fill the segment: the next append rotates.
	a := &model.Batch{}
	for i := range 100 {
		one := batchOf(i, i+1, next)
		s := one.Series[0]
		s.LabelsStart, s.LabelsEnd = int32(len(a.Labels)), int32(len(a.Labels)+len(one.Labels))
		a.Labels = append(a.Labels, one.Labels...)
		s.SamplesStart = int32(len(a.Samples))
		for k := range int64(20) {
			a.Samples = append(a.Samples, model.Sample{Timestamp: next + k, Value: rand.Float64()})
		}
		s.SamplesEnd = int32(len(a.Samples))
		a.Series = append(a.Series, s)
	}
	go func() { errA <- w.Append(a) }()
	<-inSync
	go func() { errB <- w.Append(batchOf(0, 100, next+20)) }()
	select {
	case <-rotating:
	case <-time.After(10 * time.Second):
		t.Fatal("setup: the second append did not rotate")
	}
	close(release)
	for name, ch := range map[string]chan error{"failed fsync": errA, "rotation": errB} {
		select {
		case err := <-ch:
			if name == "failed fsync" && (err == nil || !strings.Contains(err.Error(), "injected EIO")) {
				t.Errorf("append whose fsync failed returned %v, want the fsync error", err)
			}
			if name == "rotation" && err != nil {
				t.Errorf("append that rotated: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("append (%s) still blocked after 10 s: lock inversion between fsync and rotation", name)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	requireRounds(t, readBack(t, mem, opts), 100, next+20)
}

// A failed fsync is returned to the appender, is never reported as success
// to a later waiter, and the next append starts a new segment.
func TestWALFault_FsyncErrorIsReturned(t *testing.T) {
	mem := vfs.NewMem()
	f := &faults{}
	opts := DefaultOptions()
	w := faultyWAL(t, mem, f, opts)
	if err := w.Append(batchOf(0, 10, 1)); err != nil {
		t.Fatal(err)
	}
	f.fail(func(op errorfs.Op) bool { return isSync(op) && isSegment(op.Path) }, syscall.EIO, true)
	err := w.Append(batchOf(0, 10, 2))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("append with a failing fsync: %v, want EIO", err)
	}
	seg := w.Head().Segment
	if err := w.Append(batchOf(0, 10, 3)); err != nil {
		t.Fatal(err)
	}
	if got := w.Head().Segment; got != seg+1 {
		t.Fatalf("append after a failed fsync went to segment %d, want a new one (%d)", got, seg+1)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	requireRounds(t, readBack(t, mem, opts), 10, 1, 3)
}

// shortWriteFS writes only half of the next segment write through, and
// fails it with ENOSPC, as a filesystem running out of space mid-write does.
type shortWriteFS struct {
	vfs.FS
	armed atomic.Bool
}

func (fs *shortWriteFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	if err != nil || !isSegment(name) {
		return f, err
	}
	return &shortWriteFile{File: f, fs: fs}, nil
}

type shortWriteFile struct {
	vfs.File
	fs *shortWriteFS
}

func (f *shortWriteFile) Write(p []byte) (int, error) {
	if len(p) > 1 && f.fs.armed.Swap(false) {
		n, err := f.File.Write(p[:len(p)/2])
		if err != nil {
			return n, err
		}
		return n, syscall.ENOSPC
	}
	return f.File.Write(p)
}

// A short write leaves a torn record at the end of the segment: the append
// fails, the next one goes to a new segment, and a restart cuts the torn
// tail and keeps everything acknowledged.
func TestWALFault_ShortWrite(t *testing.T) {
	mem := vfs.NewMem()
	fs := &shortWriteFS{FS: mem}
	opts := DefaultOptions()
	opts.FS = fs
	w := openTest(t, "/data/wal", opts)
	if err := w.Append(batchOf(0, 100, 1)); err != nil {
		t.Fatal(err)
	}
	fs.armed.Store(true)
	if err := w.Append(batchOf(0, 100, 2)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append with a short write: %v, want ENOSPC", err)
	}
	if err := w.Append(batchOf(0, 100, 3)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	opts.FS = mem
	w2 := openTest(t, "/data/wal", opts)
	if got := testutil.ToFloat64(w2.m.corruptions); got != 1 {
		t.Errorf("repairs at open: %v, want 1 (the torn record)", got)
	}
	w2.Close()
	requireRounds(t, readBack(t, mem, opts), 100, 1, 3)
}

// No space to create the next segment: the append is refused, and appends
// resume once the space is back.
func TestWALFault_CreateSegmentENOSPC(t *testing.T) {
	mem := vfs.NewMem()
	f := &faults{}
	opts := DefaultOptions()
	opts.SegmentSize = pageSize
	w := faultyWAL(t, mem, f, opts)
	next := fillSegment(t, w, 1, true)
	f.fail(func(op errorfs.Op) bool { return op.Kind == errorfs.OpCreate && isSegment(op.Path) }, syscall.ENOSPC, false)
	if err := w.Append(batchOf(0, 100, next)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append needing a new segment on a full disk: %v, want ENOSPC", err)
	}
	f.set(nil)
	if err := w.Append(batchOf(0, 100, next+1)); err != nil {
		t.Fatalf("append once space is back: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	requireRounds(t, readBack(t, mem, opts), 100, next-1, next+1)
}

// The directory fsync after a rotation fails: the append is refused, the
// next one rotates again and fsyncs the directory, and nothing is lost.
func TestWALFault_DirectoryFsyncFails(t *testing.T) {
	mem := vfs.NewCrashableMem()
	f := &faults{}
	opts := DefaultOptions()
	opts.SegmentSize = pageSize
	w := faultyWAL(t, mem, f, opts)
	next := fillSegment(t, w, 1, true)
	f.fail(func(op errorfs.Op) bool { return isSync(op) && op.Path == "/data/wal" }, syscall.EIO, true)
	if err := w.Append(batchOf(0, 100, next)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append whose rotation could not fsync the directory: %v, want EIO", err)
	}
	if err := w.Append(batchOf(0, 100, next+1)); err != nil {
		t.Fatal(err)
	}
	// Power cut: only what was made durable is left.
	requireRounds(t, readBack(t, mem.CrashClone(vfs.CrashCloneCfg{}), opts), 100, 1, next-1, next+1)
	w.Close()
}

// Close reports a failed final fsync instead of dropping it (wlog's Close
// only logs it).
func TestWALFault_CloseReportsFsyncError(t *testing.T) {
	f := &faults{}
	opts := DefaultOptions()
	opts.Sync = SyncInterval
	opts.SyncInterval = time.Hour
	w := faultyWAL(t, vfs.NewMem(), f, opts)
	if err := w.Append(batchOf(0, 10, 1)); err != nil {
		t.Fatal(err)
	}
	f.fail(func(op errorfs.Op) bool { return isSync(op) && isSegment(op.Path) }, syscall.EIO, false)
	if err := w.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("close with a failing fsync: %v, want EIO", err)
	}
}

// The checkpoint that truncation writes cannot be fsynced: truncation
// fails and says so, deletes no segment, and a restart reads everything.
func TestWALFault_CheckpointFsyncFails(t *testing.T) {
	mem := vfs.NewCrashableMem()
	f := &faults{}
	opts := DefaultOptions()
	opts.SegmentSize = pageSize
	w := faultyWAL(t, mem, f, opts)
	r, err := w.NewReader("a", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for ts := int64(1); ts <= 200; ts++ {
		if err := w.Append(batchOf(0, 100, ts)); err != nil {
			t.Fatal(err)
		}
	}
	_, end := readN(t, r, 100*200)
	r.Commit(end)
	f.fail(func(op errorfs.Op) bool { return isSync(op) && strings.Contains(op.Path, "checkpoint.") }, syscall.EIO, false)
	first, _ := w.segmentRange()
	if err := w.truncateConsumed(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("truncation whose checkpoint cannot be fsynced: %v, want EIO", err)
	}
	if got, _ := w.segmentRange(); got != first {
		t.Fatalf("first segment %d after a failed truncation, want %d (nothing deleted)", got, first)
	}
	r.Close()
	requireRounds(t, readBack(t, mem.CrashClone(vfs.CrashCloneCfg{}), opts), 100, 1, 200)
	w.Close()
}

// Power cuts at random moments under concurrent appends, rotations and
// truncations, with sync: always: every append acknowledged before the
// cut is read back after it, whatever part of the unsynced data the
// filesystem kept. With churn, the series move on as rounds go and are
// forgotten at once, so that truncation writes delta and full checkpoints.
func TestWALPowerLoss_SyncAlways(t *testing.T) {
	for _, churn := range []bool{false, true} {
		t.Run(fmt.Sprintf("churn=%v", churn), func(t *testing.T) { powerLossRun(t, churn) })
	}
}

func powerLossRun(t *testing.T, churn bool) {
	mem := vfs.NewCrashableMem()
	opts := DefaultOptions()
	opts.SegmentSize = 4 * pageSize
	opts.FS = mem
	// first is the first series of round ts.
	first := func(ts int64) int { return 0 }
	if churn {
		opts.SeriesGrace = 0
		first = func(ts int64) int { return int(ts/40) * 5 }
	}
	w, err := Open("/data/wal", opts, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	r, err := w.NewReader("a", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const writers, series = 4, 50
	var mu sync.Mutex
	acked := map[int64]bool{} // rounds; writer k appends ts ≡ k+1 (mod writers)
	read := map[int64]bool{}  // rounds the consumer committed past: truncation may delete them
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for k := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ts := int64(k + 1); ctx.Err() == nil; ts += writers {
				if err := w.Append(batchOf(first(ts), first(ts)+series, ts)); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				acked[ts] = true
				mu.Unlock()
			}
		}()
	}
	// A consumer that commits as it reads, so that truncation writes
	// checkpoints and deletes segments during the run.
	wg.Add(1)
	go func() {
		defer wg.Done()
		type readEntry struct {
			end Position
			tss []int64
		}
		var pending []readEntry // read, committed 100 entries later
		for ctx.Err() == nil {
			e, err := r.Next(ctx)
			if err != nil {
				return
			}
			re := readEntry{end: e.End}
			for _, s := range e.Samples {
				re.tss = append(re.tss, s.T)
			}
			if pending = append(pending, re); len(pending) < 100 {
				continue
			}
			c := pending[0]
			pending = pending[1:]
			mu.Lock()
			for _, ts := range c.tss {
				read[ts] = true
			}
			mu.Unlock()
			r.Commit(c.end)
			if rand.IntN(50) == 0 {
				w.kickMaintenance()
			}
		}
	}()
	w.Start()
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	const cuts = 20
	longest := 0 // checkpoint chain
	for cut := range cuts {
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond) // a random moment, not a synchronisation
		mu.Lock()
		want := make([]int64, 0, len(acked))
		for ts := range acked {
			if !read[ts] {
				want = append(want, ts)
			}
		}
		mu.Unlock()
		clone := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		seen := readBack(t, clone, opts)
		missing := 0
		for _, ts := range want {
			for i := range series {
				if !seen[fmt.Sprint(first(ts)+i)][ts] {
					missing++
				}
			}
		}
		if missing > 0 {
			t.Fatalf("power cut %d: %d acknowledged samples missing after restart", cut, missing)
		}
		t.Logf("power cut %d: %d unread acknowledged rounds of %d series all present", cut, len(want), series)
		w.truncMu.Lock()
		longest = max(longest, len(w.chain.members))
		w.truncMu.Unlock()
	}
	if removed := testutil.ToFloat64(w.m.seriesRemoved); churn && (removed == 0 || longest < 2) {
		t.Errorf("with churn, %v series forgotten and checkpoint chains of at most %d: the cuts did not meet delta checkpoints", removed, longest)
	}
	cancel()
	wg.Wait()
	r.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// A reader that meets damage in a sealed segment (here a flipped byte)
// returns a *CorruptionError with the segment and the offset, once, and
// then goes on with the next segment.
func TestWALFault_ReaderReportsDamage(t *testing.T) {
	mem := vfs.NewMem()
	opts := DefaultOptions()
	opts.SegmentSize = 4 * pageSize
	opts.FS = mem
	w := openTest(t, "/data/wal", opts)
	defer w.Close()
	next := fillSegment(t, w, 1, true)
	if err := w.Append(batchOf(0, 100, next)); err != nil { // the first in segment 1
		t.Fatal(err)
	}
	f, err := mem.OpenReadWrite("/data/wal/00000000", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	at := w.opts.SegmentSize / 2
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
	f.Close()

	r, err := w.NewReader("a", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var damage *CorruptionError
	var last int64
	for {
		e, err := r.TryNext()
		if errors.As(err, &damage) {
			break
		}
		if err != nil || e == nil {
			t.Fatalf("read past a flipped byte without a CorruptionError (%v)", err)
		}
		last = e.Samples[0].T
	}
	if damage.Segment != 0 || damage.Offset <= 0 || damage.Offset > at || !strings.Contains(damage.Error(), "segment 0") {
		t.Fatalf("damage reported as %v (segment %d, offset %d), want segment 0 before offset %d", damage, damage.Segment, damage.Offset, at)
	}
	e, err := r.TryNext()
	if err != nil || e == nil || e.Samples[0].T != next || e.Start.Segment != 1 {
		t.Fatalf("after the damage: %v, %v; want the round of %d at the start of segment 1", e, err, next)
	}
	t.Logf("read rounds up to %d, then %v", last, damage)
}

// A segment whose sealing fsync fails (at rotation) held writes not yet
// fsynced (sync: interval): a later fsync of the next segment must not
// report them durable, also after another rotation succeeded.
func TestWALFault_SealFsyncFails(t *testing.T) {
	f := &faults{}
	opts := DefaultOptions()
	opts.Sync = SyncInterval
	opts.SyncInterval = time.Hour
	opts.SegmentSize = 4 * pageSize
	w := faultyWAL(t, vfs.NewMem(), f, opts)
	defer w.Close()
	next := fillSegment(t, w, 1, true)
	unsynced := w.seq.Load() // written to segment 0, never fsynced
	f.fail(func(op errorfs.Op) bool { return isSync(op) && op.Path == "/data/wal/00000000" }, syscall.EIO, true)
	if err := w.Append(batchOf(0, 100, next)); err != nil { // rotates; the sealing fsync fails
		t.Fatalf("append that rotated: %v (writing goes on in the next segment)", err)
	}
	if w.Head().Segment != 1 {
		t.Fatalf("head %s, want segment 1", w.Head())
	}
	f.set(nil)
	next = fillSegment(t, w, next+1, true)
	if err := w.Append(batchOf(0, 100, next)); err != nil { // a rotation that succeeds
		t.Fatal(err)
	}
	if err := w.syncTo(unsynced); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync of writes in the segment whose sealing failed: %v, want EIO", err)
	}
	if err := w.syncTo(w.seq.Load()); err != nil {
		t.Fatalf("fsync of writes after the failure: %v", err)
	}
}

// The refs of series whose Series record could not be written are not
// given to other series: the record may have reached the disk after all.
func TestWALFault_FailedSeriesRefsNotReused(t *testing.T) {
	f := &faults{}
	w := faultyWAL(t, vfs.NewMem(), f, DefaultOptions())
	defer w.Close()
	f.fail(func(op errorfs.Op) bool { return op.Kind == errorfs.OpFileWrite && isSegment(op.Path) }, syscall.ENOSPC, true)
	if err := w.Append(batchOf(0, 10, 1)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append whose Series record cannot be written: %v, want ENOSPC", err)
	}
	if err := w.Append(batchOf(10, 20, 1)); err != nil {
		t.Fatal(err)
	}
	r, err := w.NewReader("a", w.Oldest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	e, err := r.TryNext()
	if err != nil || e == nil {
		t.Fatalf("read: %v, %v", e, err)
	}
	for i, s := range e.Samples {
		if s.Ref <= 10 {
			t.Fatalf("series id=%s got ref %d, one of the 10 refs of the failed write", e.SeriesLabels(i).Get("id"), s.Ref)
		}
	}
}
