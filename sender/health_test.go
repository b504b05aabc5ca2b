package sender

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// An outage is told in three lines, each once: the endpoint failing with
// its reason, recovering after a time with a backlog, and catching up
// having drained the backlog.
func TestOutageIsLoggedOncePerStateChange(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	core, logs := observer.New(zapcore.InfoLevel)
	e.logger = zap.New(core)
	r, down := newDownReceiver(t, http.StatusServiceUnavailable)
	s := e.sender("a", r.srv.URL, nil)
	defer stop(t, s)
	e.append(20, 1, 10)
	// Many retries, one "failing" line.
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.retried.WithLabelValues("a")) >= 1000 })
	failing := logs.FilterMessageSnippet("Endpoint failing").All()
	if len(failing) != 1 {
		t.Fatalf("%d failing lines, want 1: %v", len(failing), failing)
	}
	if got, _ := failing[0].ContextMap()["error"].(string); got == "" || got[:8] != "HTTP 503" {
		t.Errorf("failing line without its reason: %v", failing[0].ContextMap())
	}
	if n := logs.FilterMessageSnippet("Endpoint recovered").Len(); n != 0 {
		t.Fatalf("recovered while down: %d lines", n)
	}
	down.Store(false)
	r.waitTotal(200)
	waitFor(t, func() bool { return logs.FilterMessageSnippet("Endpoint caught up").Len() > 0 })
	rec := logs.FilterMessageSnippet("Endpoint recovered").All()
	if len(rec) != 1 {
		t.Fatalf("%d recovered lines, want 1", len(rec))
	}
	if f := rec[0].ContextMap(); f["failing_for"] == nil || f["backlog"].(int64) <= 0 || f["backlog_unit"] != "bytes" {
		t.Errorf("recovered line %v: want failing_for and a positive backlog in bytes", f)
	}
	caught := logs.FilterMessageSnippet("Endpoint caught up").All()
	if got := caught[0].ContextMap()["drained_samples"].(int64); got != 200 {
		t.Errorf("caught up having drained %d samples, want 200", got)
	}
	// More data, no outage: no new lines.
	e.append(20, 11, 11)
	r.waitTotal(220)
	if n := logs.FilterMessageSnippet("Endpoint").Len(); n != 3 {
		t.Errorf("%d endpoint state lines after a send without outage, want 3: %v", n, logs.FilterMessageSnippet("Endpoint").All())
	}
}

// One failed send makes an endpoint retrying; it is failing only after
// several in a row (or a while without a success).
func TestRetryingBeforeFailing(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	r, _ := newDownReceiver(t, http.StatusServiceUnavailable)
	s := e.sender("a", r.srv.URL, func(c *Config) {
		c.Queue.MinBackoff, c.Queue.MaxBackoff = time.Hour, time.Hour
		c.Queue.MaxShards = 1
	})
	defer stop(t, s)
	e.append(1, 1, 1)
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.retried.WithLabelValues("a")) > 0 })
	if st := s.Status(); st.State != StateRetrying || st.LastError == "" || st.Lag <= 0 {
		t.Fatalf("after one failed send: %+v, want retrying", st)
	}
}
