package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// parseStatCPU returns utime and stime (fields 14 and 15, in clock ticks)
// from the contents of /proc/PID/stat. The command name (field 2) is in
// parentheses and may itself contain spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(stat string) (utime, stime uint64, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, errors.New("stat: no command name")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, 0, errors.New("stat: too few fields")
	}
	if utime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stat utime: %w", err)
	}
	if stime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stat stime: %w", err)
	}
	return utime, stime, nil
}

// parseStatusBytes returns the value of a "Key:   123 kB" line of
// /proc/PID/status, in bytes.
func parseStatusBytes(status, key string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status %s: %w", key, err)
		}
		if len(f) > 1 && strings.EqualFold(f[1], "kB") {
			n *= 1024
		}
		return n, nil
	}
	return 0, fmt.Errorf("status: no %s line", key)
}

// clockTicks is the kernel's USER_HZ (sysconf(_SC_CLK_TCK)), read from the
// AT_CLKTCK entry of the auxiliary vector; 100 if that fails.
var clockTicks = sync.OnceValue(func() float64 {
	if b, err := os.ReadFile("/proc/self/auxv"); err == nil {
		if hz, ok := auxvClockTicks(b); ok {
			return float64(hz)
		}
	}
	return 100
})

// auxvClockTicks finds AT_CLKTCK (17) in a 64-bit auxv.
func auxvClockTicks(b []byte) (uint64, bool) {
	const atNull, atClkTck = 0, 17
	for ; len(b) >= 16; b = b[16:] {
		k, v := binary.NativeEndian.Uint64(b), binary.NativeEndian.Uint64(b[8:])
		if k == atNull {
			break
		}
		if k == atClkTck && v > 0 {
			return v, true
		}
	}
	return 0, false
}

// readCPUSeconds returns the user+system CPU time of pid so far.
func readCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	u, s, err := parseStatCPU(string(b))
	if err != nil {
		return 0, err
	}
	return float64(u+s) / clockTicks(), nil
}

func readStatus(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusBytes(string(b), key)
}

// rssSample is one reading of VmRSS, at t since the timeline's origin.
type rssSample struct {
	t   time.Duration
	rss int64
}

// procWatch measures one process: CPU time since start, and VmRSS, polled
// every interval, as its peak and as a timeline that may also be written,
// a line per sample, to a log.
type procWatch struct {
	pid      int
	origin   time.Time
	startCPU float64
	lastCPU  atomic.Uint64 // math.Float64bits of the last reading
	peak     atomic.Int64
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once

	mu      sync.Mutex
	samples []rssSample
	log     *bufio.Writer // nil without a log
	logErr  error         // the first write error of log
}

// startProcWatch starts polling pid. Sample times count from origin; with
// a non-nil log every sample is written to it as "seconds rss_bytes", after
// a header line.
func startProcWatch(pid int, every time.Duration, origin time.Time, log io.Writer) (*procWatch, error) {
	cpu, err := readCPUSeconds(pid)
	if err != nil {
		return nil, fmt.Errorf("--pid %d: %w", pid, err)
	}
	w := &procWatch{pid: pid, origin: origin, startCPU: cpu, stop: make(chan struct{}), done: make(chan struct{})}
	if log != nil {
		w.log = bufio.NewWriter(log)
		_, w.logErr = io.WriteString(w.log, "# seconds_since_start rss_bytes\n")
	}
	w.lastCPU.Store(math.Float64bits(cpu))
	w.poll()
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.poll()
			}
		}
	}()
	return w, nil
}

func (w *procWatch) poll() {
	if cpu, err := readCPUSeconds(w.pid); err == nil {
		w.lastCPU.Store(math.Float64bits(cpu))
	}
	rss, err := readStatus(w.pid, "VmRSS")
	if err != nil {
		return
	}
	for {
		old := w.peak.Load()
		if rss <= old || w.peak.CompareAndSwap(old, rss) {
			break
		}
	}
	s := rssSample{t: time.Since(w.origin), rss: rss}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples = append(w.samples, s)
	if w.log != nil && w.logErr == nil {
		// Flushed every line, so that the log can be followed while it grows.
		if _, err := fmt.Fprintf(w.log, "%.3f %d\n", s.t.Seconds(), s.rss); err != nil {
			w.logErr = err
		} else {
			w.logErr = w.log.Flush()
		}
	}
}

// Samples returns the RSS timeline so far.
func (w *procWatch) Samples() []rssSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.samples)
}

// LogErr is the first error writing the log, if any.
func (w *procWatch) LogErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logErr
}

// rssThirds returns the peak RSS over [warmup, warmup+(push-warmup)/3] and
// over [push-(push-warmup)/3, push], or 0 for a window without samples.
func rssThirds(samples []rssSample, warmup, push time.Duration) (first, last int64) {
	if push <= warmup {
		return 0, 0
	}
	third := (push - warmup) / 3
	for _, s := range samples {
		if s.t >= warmup && s.t <= warmup+third {
			first = max(first, s.rss)
		}
		if s.t >= push-third && s.t <= push {
			last = max(last, s.rss)
		}
	}
	return first, last
}

// CPUSince is the CPU time the process used since startProcWatch, up to
// now or, if the process is gone, up to the last successful reading.
func (w *procWatch) CPUSince() float64 {
	cpu, err := readCPUSeconds(w.pid)
	if err != nil {
		cpu = math.Float64frombits(w.lastCPU.Load())
	} else {
		w.lastCPU.Store(math.Float64bits(cpu))
	}
	return cpu - w.startCPU
}

// Stop ends polling after a last sample; it may be called more than once.
func (w *procWatch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		<-w.done
		w.poll()
	})
}

func (w *procWatch) PeakRSS() int64 { return w.peak.Load() }

// VmHWM is the process's lifetime peak RSS as the kernel reports it.
func (w *procWatch) VmHWM() (int64, error) { return readStatus(w.pid, "VmHWM") }
