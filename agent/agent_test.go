package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ferrymetrics/ferry/sender"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// waitFor polls cond until it holds, failing the test after a generous
// deadline. It is how these tests synchronise with the agent's goroutines.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeEndpoint is a remote-write receiver that records the "step" label of
// every sample of the metric ferry_test it receives.
type fakeEndpoint struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	steps    map[string]int // step label value → samples received
	requests int
	down     atomic.Bool // answer 503
}

func newFakeEndpoint(t *testing.T) *fakeEndpoint {
	e := &fakeEndpoint{t: t, steps: map[string]int{}}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *fakeEndpoint) url() string { return e.srv.URL + "/api/v1/write" }

func (e *fakeEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	if e.down.Load() {
		http.Error(w, "down for the test", http.StatusServiceUnavailable)
		return
	}
	var wr prompb.WriteRequest
	body, err := io.ReadAll(r.Body)
	if err == nil {
		body, err = snappy.Decode(nil, body)
	}
	if err == nil {
		err = wr.Unmarshal(body)
	}
	if err != nil {
		e.t.Errorf("endpoint got a bad request: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests++
	for _, ts := range wr.Timeseries {
		var name, step string
		for _, l := range ts.Labels {
			switch l.Name {
			case "__name__":
				name = l.Value
			case "step":
				step = l.Value
			}
		}
		if name == "ferry_test" {
			e.steps[step] += len(ts.Samples)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// received reports whether the endpoint got the samples of step.
func (e *fakeEndpoint) received(step string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.steps[step] > 0
}

// configLoader is Options.Load: it returns whatever the test set last.
type configLoader struct {
	mu  sync.Mutex
	cfg *Config
	err error
}

func (l *configLoader) set(cfg *Config, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg, l.err = cfg, err
}

func (l *configLoader) load() (*Config, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg, l.err
}

// endpointYAML is one remote_write entry tuned to send at once.
func endpointYAML(name string, e *fakeEndpoint, startFrom string) string {
	return fmt.Sprintf(`
  - name: %s
    url: %s
    start_from: %s
    queue_config:
      batch_send_deadline: 5ms
      min_backoff: 5ms
      max_backoff: 50ms
`, name, e.url(), startFrom)
}

// testConfig parses a configuration listening on a free port with its data
// in dataDir and the given remote_write entries.
func testConfig(t *testing.T, dataDir string, endpoints ...string) *Config {
	t.Helper()
	y := fmt.Sprintf(`
listen_address: 127.0.0.1:0
data_dir: %s
shutdown_timeout: 5s
wal:
  segment_size: 1MiB
remote_write:%s
`, dataDir, strings.Join(endpoints, ""))
	cfg, err := ParseConfig([]byte(y), "test.yml")
	if err != nil {
		t.Fatalf("test config: %v\n%s", err, y)
	}
	return cfg
}

// runningAgent is an Agent run by a test.
type runningAgent struct {
	*Agent
	base   string // http://host:port
	client *http.Client
	cancel context.CancelFunc
	done   chan error
}

// startAgent runs an agent for cfg and waits until it is ready. The agent
// is stopped when the test ends if the test did not stop it.
func startAgent(t *testing.T, cfg *Config, load func() (*Config, error)) *runningAgent {
	t.Helper()
	return runAgent(t, New(cfg, Options{
		Logger:  zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		Version: "test",
		Load:    load,
	}))
}

// runAgent runs a and waits until it is ready.
func runAgent(t *testing.T, a *Agent) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, client: &http.Client{Timeout: 10 * time.Second}, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ra.done
		ra.client.CloseIdleConnections()
	})
	waitFor(t, "the agent to be ready", func() bool {
		select {
		case err := <-ra.done:
			ra.done <- err
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		return a.ready.Load()
	})
	ra.base = "http://" + a.Addr()
	return ra
}

// stop cancels Run and returns its result.
func (ra *runningAgent) stop(t *testing.T) error {
	t.Helper()
	ra.cancel()
	select {
	case err := <-ra.done:
		ra.done <- err // for the cleanup
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

// do sends a request to the agent and returns the status and body.
func (ra *runningAgent) do(t *testing.T, method, path string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, ra.base+path, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "snappy")
	}
	resp, err := ra.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
}

// push writes two samples of ferry_test{step=step} and expects 204.
func (ra *runningAgent) push(t *testing.T, step string) {
	t.Helper()
	now := time.Now().UnixMilli()
	body := snappyBody(t, ts([]string{"__name__", "ferry_test", "step", step},
		prompb.Sample{Value: 1, Timestamp: now}, prompb.Sample{Value: 2, Timestamp: now + 1}))
	if code, msg := ra.do(t, http.MethodPost, "/api/v1/write", body); code != http.StatusNoContent {
		t.Fatalf("push %s: status %d: %s", step, code, msg)
	}
}

// reload posts to /-/reload and returns the status and body.
func (ra *runningAgent) reload(t *testing.T) (int, string) {
	t.Helper()
	return ra.do(t, http.MethodPost, "/-/reload", nil)
}

// metric returns the value of the sample of /metrics whose name and labels
// are exactly series (e.g. `ferry_sender_samples_sent_total{endpoint="a"}`),
// or -1 if there is none.
func (ra *runningAgent) metric(t *testing.T, series string) float64 {
	t.Helper()
	code, text := ra.do(t, http.MethodGet, "/metrics", nil)
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d", code)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("metric %s: %v", series, err)
	}
	return v
}

// checkpoints lists the endpoints with a stored checkpoint.
func (ra *runningAgent) checkpoints(t *testing.T) []string {
	t.Helper()
	names, err := sender.PebbleCheckpoints{DB: ra.db}.Names()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func TestAgentHealthAndReadiness(t *testing.T) {
	ra := startAgent(t, testConfig(t, t.TempDir()), nil)
	for _, path := range []string{"/-/healthy", "/-/ready"} {
		if code, body := ra.do(t, http.MethodGet, path, nil); code != http.StatusOK || body == "" {
			t.Errorf("GET %s: %d %q, want 200 with a message", path, code, body)
		}
	}
	if code, _ := ra.do(t, http.MethodGet, "/-/reload", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload: %d, want 405", code)
	}
	if err := ra.stop(t); err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
}

func TestAgentListenError(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.ListenAddress = "127.0.0.1:-1"
	err := New(cfg, Options{}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "listen on 127.0.0.1:-1") {
		t.Errorf("Run = %v, want a listen error", err)
	}
}

// TestAgentForwardsAndReloads runs an agent through its life: forwarding,
// reloads that add endpoints, a rejected reload, a reload that removes an
// endpoint, and shutdown.
func TestAgentForwardsAndReloads(t *testing.T) {
	dataDir := t.TempDir()
	primary, backup, fresh := newFakeEndpoint(t), newFakeEndpoint(t), newFakeEndpoint(t)
	loader := &configLoader{}
	cfg1 := testConfig(t, dataDir, endpointYAML("primary", primary, "oldest"))
	loader.set(cfg1, nil)
	ra := startAgent(t, cfg1, loader.load)

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("forwards a write", func(t *testing.T) {
		if code, _ := ra.do(t, http.MethodGet, "/-/ready", nil); code != http.StatusOK {
			t.Fatalf("/-/ready: %d, want 200", code)
		}
		ra.push(t, "one")
		waitFor(t, "primary to receive step one", func() bool { return primary.received("one") })
	})

	step("exposes metrics", func(t *testing.T) {
		if v := ra.metric(t, "ferry_wal_samples_appended_total"); v != 2 {
			t.Errorf("ferry_wal_samples_appended_total = %v, want 2", v)
		}
		if v := ra.metric(t, "ferry_receiver_samples_total"); v != 2 {
			t.Errorf("ferry_receiver_samples_total = %v, want 2", v)
		}
		waitFor(t, "ferry_sender_samples_sent_total of primary to reach 2", func() bool {
			return ra.metric(t, `ferry_sender_samples_sent_total{endpoint="primary"}`) == 2
		})
	})

	step("reload adds endpoints", func(t *testing.T) {
		loader.set(testConfig(t, dataDir,
			endpointYAML("primary", primary, "oldest"),
			endpointYAML("backup", backup, "oldest"),
			endpointYAML("fresh", fresh, "now"),
		), nil)
		if code, body := ra.reload(t); code != http.StatusOK {
			t.Fatalf("/-/reload: %d %q, want 200", code, body)
		}
		ra.push(t, "two")
		waitFor(t, "every endpoint to receive step two", func() bool {
			return primary.received("two") && backup.received("two") && fresh.received("two")
		})
		if !backup.received("one") {
			t.Error("backup (start_from: oldest) did not receive what was written before it was added")
		}
		// fresh reads the WAL in order and got step two: it would have
		// had step one by now.
		if fresh.received("one") {
			t.Error("fresh (start_from: now) received what was written before it was added")
		}
	})

	step("invalid reload keeps the running configuration", func(t *testing.T) {
		loader.set(nil, ConfigErrors{{File: "test.yml", Line: 3, Msg: "wal.sync: \"never\": must be always or interval"}})
		code, body := ra.reload(t)
		if code != http.StatusBadRequest {
			t.Fatalf("/-/reload: %d %q, want 400", code, body)
		}
		if !strings.Contains(body, "test.yml:3: wal.sync") {
			t.Errorf("/-/reload body %q does not explain the problem", body)
		}
		ra.push(t, "three")
		waitFor(t, "every endpoint to receive step three", func() bool {
			return primary.received("three") && backup.received("three") && fresh.received("three")
		})
	})

	step("reload removes an endpoint and its checkpoint", func(t *testing.T) {
		waitFor(t, "fresh to persist its checkpoint", func() bool {
			return slices.Contains(ra.checkpoints(t), "fresh")
		})
		loader.set(testConfig(t, dataDir,
			endpointYAML("primary", primary, "oldest"),
			endpointYAML("backup", backup, "oldest"),
		), nil)
		if code, body := ra.reload(t); code != http.StatusOK {
			t.Fatalf("/-/reload: %d %q, want 200", code, body)
		}
		if got := ra.checkpoints(t); slices.Contains(got, "fresh") {
			t.Errorf("checkpoints after removing fresh: %q", got)
		}
		if v := ra.metric(t, `ferry_sender_samples_sent_total{endpoint="fresh"}`); v != -1 {
			t.Errorf("metrics of the removed endpoint are still exported (%v)", v)
		}
		ra.push(t, "four")
		waitFor(t, "primary and backup to receive step four", func() bool {
			return primary.received("four") && backup.received("four")
		})
		if fresh.received("four") {
			t.Error("the removed endpoint still receives samples")
		}
	})

	step("shuts down", func(t *testing.T) {
		if err := ra.stop(t); err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
		// The remaining endpoints' checkpoints were persisted.
		db, err := pebble.Open(cfg1.StateDir(), &pebble.Options{Logger: pebbleLogger{zap.NewNop().Sugar()}})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		names, err := sender.PebbleCheckpoints{DB: db}.Names()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		if want := []string{"backup", "primary"}; !slices.Equal(names, want) {
			t.Errorf("checkpoints after shutdown: %q, want %q", names, want)
		}
	})
}

// TestAgentRestartResumes restarts an agent on the same data directory: an
// endpoint resumes from its checkpoint and one no longer configured loses
// its checkpoint.
func TestAgentRestartResumes(t *testing.T) {
	dataDir := t.TempDir()
	a, b := newFakeEndpoint(t), newFakeEndpoint(t)
	ra := startAgent(t, testConfig(t, dataDir, endpointYAML("a", a, "oldest"), endpointYAML("b", b, "oldest")), nil)
	ra.push(t, "before-restart")
	waitFor(t, "both endpoints to acknowledge the first write", func() bool {
		return ra.metric(t, `ferry_sender_samples_sent_total{endpoint="a"}`) == 2 &&
			ra.metric(t, `ferry_sender_samples_sent_total{endpoint="b"}`) == 2
	})
	waitFor(t, "a's checkpoint to be stored", func() bool {
		return ra.metric(t, `ferry_sender_checkpoint_offset_bytes{endpoint="a"}`) > 0
	})
	if err := ra.stop(t); err != nil {
		t.Fatalf("first Run: %v", err)
	}

	ra = startAgent(t, testConfig(t, dataDir, endpointYAML("a", a, "oldest")), nil)
	if got := ra.checkpoints(t); !slices.Equal(got, []string{"a"}) {
		t.Errorf("checkpoints after restart without b: %q, want [a]", got)
	}
	stored, _, err := sender.PebbleCheckpoints{DB: ra.db}.Load("a")
	if err != nil {
		t.Fatal(err)
	}
	// The checkpoint metrics show the stored checkpoint from the start, not
	// 0 until the next save.
	want := sender.WALPosition(stored)
	if seg, off := ra.metric(t, `ferry_sender_checkpoint_segment{endpoint="a"}`), ra.metric(t, `ferry_sender_checkpoint_offset_bytes{endpoint="a"}`); seg != float64(want.Segment) || off != float64(want.Offset) || off == 0 {
		t.Errorf("checkpoint metrics after restart: %v:%v, want the stored %s", seg, off, want)
	}
	a.mu.Lock()
	before := a.steps["before-restart"]
	a.mu.Unlock()
	ra.push(t, "after-restart")
	waitFor(t, "a to receive the write after the restart", func() bool { return a.received("after-restart") })
	a.mu.Lock()
	after := a.steps["before-restart"]
	a.mu.Unlock()
	if after != before {
		t.Errorf("a received the samples of before the restart again (%d, then %d)", before, after)
	}
	if err := ra.stop(t); err != nil {
		t.Fatalf("second Run: %v", err)
	}
}

func TestAgentReloadWhileNotRunning(t *testing.T) {
	a := New(testConfig(t, t.TempDir()), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Reload(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Reload without Run = %v, want context.Canceled", err)
	}
}
