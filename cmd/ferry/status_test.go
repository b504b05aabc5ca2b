package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// Modes of the test endpoint.
const (
	accept     = iota
	refuse503  // every request
	acceptOnce // the next request, then hold every later one until released
)

// TestStatusCommand runs `ferry status` against a running agent whose one
// endpoint fails, catches up and is healthy, and against no agent.
func TestStatusCommand(t *testing.T) {
	var mode atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case refuse503:
			http.Error(w, "backend unavailable", http.StatusServiceUnavailable)
			return
		case acceptOnce:
			if !mode.CompareAndSwap(acceptOnce, -1) {
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
			}
		case -1:
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	mode.Store(refuse503)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "ferry.yml")
	conf := fmt.Sprintf(`listen_address: 127.0.0.1:0
data_dir: %s
shutdown_timeout: 1s
remote_write:
  - name: central
    url: %s/api/v1/write
    queue_config:
      min_shards: 1
      max_shards: 1
      max_samples_per_send: 1
      batch_send_deadline: 5ms
      min_backoff: 5ms
      max_backoff: 20ms
`, filepath.Join(dir, "data"), srv.URL)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := ferryCmd(ctx, "run", "--config", cfg, "--log.format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var entry struct{ Msg, Address string }
			if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.Msg == "Listening" {
				addrc <- entry.Address
			}
		}
	}()
	var base string
	select {
	case addr := <-addrc:
		base = "http://" + addr
	case <-time.After(20 * time.Second):
		t.Fatal("ferry run did not log its address")
	}

	push := func(n int) {
		t.Helper()
		var wr prompb.WriteRequest
		now := time.Now().UnixMilli()
		for i := range n {
			wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
				Labels:  []prompb.Label{{Name: "__name__", Value: "status_test"}, {Name: "i", Value: fmt.Sprint(i)}},
				Samples: []prompb.Sample{{Value: 1, Timestamp: now}},
			})
		}
		raw, err := wr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		for {
			req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/write", strings.NewReader(string(snappy.Encode(nil, raw))))
			req.Header.Set("Content-Encoding", "snappy")
			req.Header.Set("Content-Type", "application/x-protobuf")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return
			}
			if resp.StatusCode != http.StatusServiceUnavailable { // 503 until ready
				t.Fatalf("push: %s", resp.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// status waits until `ferry status` exits with code, and returns its
	// output.
	status := func(code int, args ...string) result {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			r := ferry(t, append([]string{"status", "--url", base}, args...)...)
			if r.code == code {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("ferry status: exit %d, want %d\n%s%s", r.code, code, r.stdout, r.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	push(20)
	r := status(2)
	if !strings.Contains(r.stdout, "central") || !strings.Contains(r.stdout, "failing") || !strings.Contains(r.stdout, "503") {
		t.Errorf("failing:\n%s", r.stdout)
	}
	mode.Store(acceptOnce)
	r = status(1)
	if !strings.Contains(r.stdout, "catching_up") {
		t.Errorf("catching up:\n%s", r.stdout)
	}
	close(release)
	mode.Store(accept)
	r = status(0, "-o", "json")
	var st struct {
		Healthy   bool
		Endpoints []struct {
			Name, State string
			SentSamples int64 `json:"sent_samples"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || !st.Healthy || len(st.Endpoints) != 1 || st.Endpoints[0].SentSamples != 20 {
		t.Errorf("healthy: %v\n%s", err, r.stdout)
	}

	r = ferry(t, "status", "--url", "http://127.0.0.1:1", "--timeout", "1s")
	if r.code != 3 || len(lines(r.stderr)) != 1 || !strings.HasPrefix(r.stderr, "ferry: status:") {
		t.Errorf("no agent: exit %d, stderr %q", r.code, r.stderr)
	}
}
