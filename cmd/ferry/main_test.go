package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymetrics/ferry/wal"
	"github.com/ferrymetrics/ferry/wal/model"
	"go.uber.org/zap"
)

// testVersion is linked into the binary under test.
const testVersion = "v0.0.0-test"

// ferryBin is the binary built once by TestMain.
var ferryBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ferryBin = filepath.Join(dir, "ferry")
	build := exec.Command("go", "build", "-o", ferryBin, "-ldflags", "-X main.version="+testVersion, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ferry:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what a run of the binary produced.
type result struct {
	stdout, stderr string
	code           int
}

// ferryCmd prepares a run of the binary in this package's directory, with
// an environment free of the systemd variables that change its behaviour.
func ferryCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, ferryBin, args...)
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "NOTIFY_SOCKET", "JOURNAL_STREAM", "STATE_DIRECTORY":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// ferry runs the binary to completion, within a deadline.
func ferry(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := ferryCmd(ctx, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ferry %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("ferry %s did not finish within the deadline", strings.Join(args, " "))
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var ls []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

func TestVersion(t *testing.T) {
	r := ferry(t, "version")
	if r.code != 0 {
		t.Fatalf("exit code %d, stderr %q", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "ferry ") {
		t.Errorf("stdout = %q, want it to start with \"ferry \"", r.stdout)
	}
	if want := "ferry " + testVersion + "\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
}

func TestCheckConfig(t *testing.T) {
	for _, tc := range []struct {
		name       string
		file       string
		wantCode   int
		wantStdout string
		wantStderr []string // regexps, one per line, in order
	}{
		{
			name:       "good",
			file:       "testdata/good.yml",
			wantStdout: "testdata/good.yml: valid\n",
		},
		{
			name:     "bad: one line per problem",
			file:     "testdata/bad.yml",
			wantCode: 1,
			wantStderr: []string{
				`^testdata/bad\.yml:4: wal\.sync: "sometimes": must be always or interval$`,
				`^testdata/bad\.yml:7: remote_write\[0\] \(a\): url "ftp://example\.com/api/v1/write": scheme must be http or https$`,
				`^testdata/bad\.yml:8: remote_write\[1\] \(a\): name "a" is already used by remote_write\[0\]`,
			},
		},
		{
			name:     "two authentication methods: one line naming the endpoint",
			file:     "testdata/two-auth.yml",
			wantCode: 1,
			wantStderr: []string{
				`^testdata/two-auth\.yml:5: remote_write\[0\] \(amp\): sigv4 cannot be used with authorization: an endpoint authenticates with at most one of basic_auth, authorization, oauth2, sigv4, azuread or google_iam$`,
			},
		},
		{
			name:       "missing file",
			file:       "missing.yml",
			wantCode:   1,
			wantStderr: []string{`^missing\.yml: read: no such file or directory$`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ferry(t, "check", "config", tc.file)
			if r.code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", r.code, tc.wantCode, r.stderr)
			}
			if r.stdout != tc.wantStdout {
				t.Errorf("stdout = %q, want %q", r.stdout, tc.wantStdout)
			}
			got := lines(r.stderr)
			if len(got) != len(tc.wantStderr) {
				t.Fatalf("stderr has %d lines, want %d:\n%s", len(got), len(tc.wantStderr), r.stderr)
			}
			for i, re := range tc.wantStderr {
				if !regexp.MustCompile(re).MatchString(got[i]) {
					t.Errorf("stderr line %d = %q, want it to match %s", i+1, got[i], re)
				}
			}
		})
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"invalid config", []string{"run", "--config", "testdata/bad.yml"}, "testdata/bad.yml:4: wal.sync"},
		{"missing config", []string{"run", "--config", "testdata/missing.yml"}, "missing.yml"},
		{"bad log level", []string{"run", "--config", "testdata/good.yml", "--log.level", "loud"}, "loud"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := ferry(t, tc.args...)
			if r.code == 0 {
				t.Fatalf("exit code 0, want non-zero; stderr:\n%s", r.stderr)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s to fail", d)
			}
			if !strings.Contains(r.stderr, tc.wantStderr) {
				t.Errorf("stderr does not mention %q:\n%s", tc.wantStderr, r.stderr)
			}
		})
	}
}

// writeTestWAL writes a WAL in dir holding one batch: two series, three
// samples.
func writeTestWAL(t *testing.T, dir string) {
	t.Helper()
	w, err := wal.Open(dir, wal.DefaultOptions(), zap.NewNop(), nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	b := &model.Batch{
		Series: []model.Series{
			{LabelsStart: 0, LabelsEnd: 2, SamplesStart: 0, SamplesEnd: 2},
			{LabelsStart: 2, LabelsEnd: 3, SamplesStart: 2, SamplesEnd: 3},
		},
		Labels: []model.Label{
			{Name: []byte("__name__"), Value: []byte("up")},
			{Name: []byte("job"), Value: []byte("ferry")},
			{Name: []byte("__name__"), Value: []byte("requests_total")},
		},
		Samples: []model.Sample{{Value: 1, Timestamp: 1000}, {Value: 1, Timestamp: 2000}, {Value: 7, Timestamp: 1000}},
	}
	if err := w.Append(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWALInspect(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	writeTestWAL(t, dir)
	r := ferry(t, "wal", "inspect", dir)
	if r.code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", r.code, r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("stderr = %q, want nothing", r.stderr)
	}
	checkTestWALTable(t, r.stdout)
}

// checkTestWALTable checks the table `ferry wal inspect` prints for the WAL
// of writeTestWAL.
func checkTestWALTable(t *testing.T, stdout string) {
	t.Helper()
	t.Logf("ferry wal inspect:\n%s", stdout)
	out := lines(stdout)
	if len(out) < 2 {
		t.Fatalf("want a header and at least one segment, got:\n%s", stdout)
	}
	if got := strings.Fields(out[0]); strings.Join(got, " ") != "segment bytes records series samples histograms exemplars metadata damage" {
		t.Errorf("header = %q", out[0])
	}
	// The first segment holds the batch: a series record and a samples
	// record, two series, three samples, nothing else, no damage.
	row := strings.Fields(out[1])
	if len(row) != 9 {
		t.Fatalf("segment row %q has %d columns, want 9", out[1], len(row))
	}
	if row[0] != "00000000" || row[2] != "2" || row[3] != "2" || row[4] != "3" || strings.Join(row[5:], " ") != "0 0 0 -" {
		t.Errorf("segment row = %q, want segment 00000000 with 2 records, 2 series, 3 samples, no damage\n%s", out[1], stdout)
	}
	if row[1] == "0" {
		t.Errorf("segment row %q reports 0 bytes", out[1])
	}
}

// TestWALInspectDataDir checks that `ferry wal inspect` given a data
// directory inspects its wal/ subdirectory, and that a directory with neither
// segments nor wal/ is one line of error rather than an empty table.
func TestWALInspectDataDir(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) // fills dir, the argument
		// With wantErr empty, the table of writeTestWAL's WAL and
		// wantNote on stderr (if any); otherwise exit 1 and this one
		// line on stderr. DIR stands for the argument.
		wantNote, wantErr string
	}{
		{
			name:     "data dir",
			setup:    func(t *testing.T, dir string) { writeTestWAL(t, filepath.Join(dir, "wal")) },
			wantNote: "inspecting DIR/wal",
		},
		{
			name: "data dir beside other state",
			setup: func(t *testing.T, dir string) {
				writeTestWAL(t, filepath.Join(dir, "wal"))
				if err := os.Mkdir(filepath.Join(dir, "downsample"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			wantNote: "inspecting DIR/wal",
		},
		{
			name:  "wal dir",
			setup: func(t *testing.T, dir string) { writeTestWAL(t, dir) },
		},
		{
			name:    "empty dir",
			setup:   func(t *testing.T, dir string) {},
			wantErr: "ferry: DIR holds no WAL segments (expected <data_dir>/wal or <data_dir>)",
		},
		{
			name: "no segments, no wal/",
			setup: func(t *testing.T, dir string) {
				for _, name := range []string{"notes.txt", "1234567", "000000001"} {
					if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			},
			wantErr: "ferry: DIR holds no WAL segments (expected <data_dir>/wal or <data_dir>)",
		},
		{
			name: "wal/ without segments",
			setup: func(t *testing.T, dir string) {
				if err := os.Mkdir(filepath.Join(dir, "wal"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "ferry: DIR/wal holds no WAL segments (expected <data_dir>/wal or <data_dir>)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, dir)
			r := ferry(t, "wal", "inspect", dir)
			expand := func(s string) string { return strings.ReplaceAll(s, "DIR", dir) }
			if tc.wantErr != "" {
				if r.code != 1 {
					t.Errorf("exit code %d, want 1", r.code)
				}
				if r.stdout != "" {
					t.Errorf("stdout = %q, want nothing", r.stdout)
				}
				if want := expand(tc.wantErr) + "\n"; r.stderr != want {
					t.Errorf("stderr = %q, want %q", r.stderr, want)
				}
				return
			}
			if r.code != 0 {
				t.Fatalf("exit code %d; stderr:\n%s", r.code, r.stderr)
			}
			want := ""
			if tc.wantNote != "" {
				want = expand(tc.wantNote) + "\n"
			}
			if r.stderr != want {
				t.Errorf("stderr = %q, want %q", r.stderr, want)
			}
			checkTestWALTable(t, r.stdout)
		})
	}
}

func TestWALInspectMissingDir(t *testing.T) {
	r := ferry(t, "wal", "inspect", filepath.Join(t.TempDir(), "nope"))
	if r.code == 0 {
		t.Fatalf("exit code 0 for a missing directory; stdout:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "nope") {
		t.Errorf("stderr does not name the directory:\n%s", r.stderr)
	}
}

// TestRunServesAndStops runs `ferry run` with systemd notification: it
// signals READY=1 once it serves, pings the watchdog, reloads on SIGHUP, and
// on SIGTERM signals STOPPING=1 and exits 0.
func TestRunServesAndStops(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ferry.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "listen_address: 127.0.0.1:0\ndata_dir: %s\nremote_write: []\n", filepath.Join(dir, "data")), 0o600); err != nil {
		t.Fatal(err)
	}
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"})
	if err != nil {
		t.Skipf("no unixgram socket for NOTIFY_SOCKET: %v", err)
	}
	defer sock.Close()
	notifications := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				close(notifications)
				return
			}
			notifications <- string(buf[:n])
		}
	}()
	// expect returns the next notification, which must start with prefix;
	// watchdog pings in between are skipped unless prefix asks for one.
	expect := func(prefix string) string {
		t.Helper()
		for {
			select {
			case msg, ok := <-notifications:
				if !ok {
					t.Fatalf("notify socket closed before %s", prefix)
				}
				if msg == "WATCHDOG=1" && prefix != msg {
					continue
				}
				if !strings.HasPrefix(msg, prefix) {
					t.Fatalf("notification %q, want %s", msg, prefix)
				}
				return msg
			case <-time.After(20 * time.Second):
				t.Fatalf("no %s notification", prefix)
				return ""
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := ferryCmd(ctx, "run", "--config", cfg, "--log.format", "json")
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock.LocalAddr().String(), "WATCHDOG_USEC=400000")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The log names the address; collect it and the rest of the log.
	addrc := make(chan string, 1)
	logDone := make(chan []string)
	go func() {
		var log []string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log = append(log, sc.Text())
			var entry struct{ Msg, Address string }
			if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.Msg == "Listening" {
				addrc <- entry.Address
			}
		}
		logDone <- log
	}()

	if msg := expect("READY=1"); !strings.Contains(msg, "STATUS=Forwarding to 0 endpoint(s)") {
		t.Errorf("READY notification %q lacks the status", msg)
	}
	addr := <-addrc
	resp, err := http.Get("http://" + addr + "/-/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/-/ready: %d, want 200", resp.StatusCode)
	}

	// The watchdog is pinged while the pipeline is healthy.
	expect("WATCHDOG=1")
	// SIGHUP: RELOADING=1 with the monotonic clock, then READY=1 again.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if msg := expect("RELOADING=1"); !strings.Contains(msg, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING notification %q lacks MONOTONIC_USEC", msg)
	}
	expect("READY=1")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("STOPPING=1")
	log := <-logDone
	if err := cmd.Wait(); err != nil {
		t.Errorf("ferry run after SIGTERM: %v; log:\n%s", err, strings.Join(log, "\n"))
	}
	if !strings.Contains(strings.Join(log, "\n"), "Shutdown complete") {
		t.Errorf("log does not report the shutdown:\n%s", strings.Join(log, "\n"))
	}
}
