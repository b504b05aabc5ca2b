package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymetrics/ferry/sender"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// flakyEndpoint accepts writes (204) unless down, when it answers 503.
func flakyEndpoint(t *testing.T) (url string, down *atomic.Bool) {
	down = &atomic.Bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "backend unavailable", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/api/v1/write", down
}

// The status API and page follow an endpoint through an outage: failing
// with its error, then caught up.
func TestStatusFollowsAnOutage(t *testing.T) {
	url, down := flakyEndpoint(t)
	down.Store(true)
	cfg := testConfig(t, t.TempDir(), `
  - name: central
    url: `+url+`
    queue_config:
      batch_send_deadline: 5ms
      min_backoff: 5ms
      max_backoff: 20ms
`)
	ra := runAgent(t, New(cfg, Options{
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), Version: "test", StatusInterval: 20 * time.Millisecond,
	}))
	status := func() Status {
		t.Helper()
		code, body := ra.do(t, http.MethodGet, "/api/v1/status", nil)
		var st Status
		if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("/api/v1/status: %d %s", code, body)
		}
		return st
	}
	page := func() string {
		t.Helper()
		code, body := ra.do(t, http.MethodGet, "/", nil)
		if code != http.StatusOK || !strings.Contains(body, `<meta http-equiv="refresh"`) {
			t.Fatalf("/: %d %s", code, body)
		}
		return body
	}
	for i := range 5 {
		ra.push(t, "s"+string(rune('a'+i)))
	}
	waitFor(t, "the endpoint to be failing", func() bool {
		st := status()
		return len(st.Endpoints) == 1 && st.Endpoints[0].State == sender.StateFailing
	})
	st := status()
	ep := st.Endpoints[0]
	if st.Healthy || !strings.Contains(ep.LastError, "503") || ep.Lag <= 0 || ep.SentSamples != 0 || ep.FailingSince.IsZero() {
		t.Fatalf("while down: %+v", st)
	}
	if st.WAL == nil || st.WAL.AppendedSamples != 10 || st.WAL.SizeBytes <= 0 {
		t.Errorf("WAL %+v: want 10 samples appended", st.WAL)
	}
	body := page()
	for _, want := range []string{`class="state failing"`, "backend unavailable", "not draining yet", "<svg"} {
		if !strings.Contains(body, want) {
			t.Errorf("page while down lacks %q", want)
		}
	}

	down.Store(false)
	waitFor(t, "the endpoint to be healthy and caught up", func() bool {
		st := status()
		return st.Healthy && st.Endpoints[0].Lag == 0 && st.Endpoints[0].SentSamples == 10
	})
	body = page()
	for _, want := range []string{`class="state healthy"`, "caught up", "every endpoint healthy"} {
		if !strings.Contains(body, want) {
			t.Errorf("page after recovery lacks %q", want)
		}
	}
	if code, _ := ra.do(t, http.MethodPost, "/api/v1/status", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/v1/status: %d", code)
	}
	if code, _ := ra.do(t, http.MethodGet, "/nosuch", nil); code != http.StatusNotFound {
		t.Errorf("GET /nosuch: %d, want 404", code)
	}
}
