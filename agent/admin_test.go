package agent

import (
	"errors"
	"testing"
	"time"
)

// The admin commands work on a stopped agent's data dir: rewind resends
// history at the next start, skip gives up a backlog and counts it.
func TestAdminRewindAndSkip(t *testing.T) {
	dir := t.TempDir()
	a := newFakeEndpoint(t)
	cfg := testConfig(t, dir, endpointYAML("a", a, "oldest"))
	ra := startAgent(t, cfg, nil)
	ra.push(t, "s1")
	waitFor(t, "a to receive s1", func() bool { return ra.metric(t, `ferry_sender_samples_sent_total{endpoint="a"}`) == 2 })
	if _, err := OpenAdmin(cfg, nil); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("OpenAdmin on a running agent's data dir: %v, want ErrDataDirInUse", err)
	}
	if err := ra.stop(t); err != nil {
		t.Fatal(err)
	}

	ad, err := OpenAdmin(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := ad.Endpoints()
	if err != nil || len(eps) != 1 || eps[0].Name != "a" || !eps[0].Configured || !eps[0].Stored || eps[0].Backlog != 0 {
		t.Fatalf("endpoints %+v, %v: want a, caught up", eps, err)
	}
	if _, err := ad.Skip("a", "head"); err != nil {
		t.Fatalf("skip to where it is: %v", err)
	}
	if _, err := ad.Rewind("nosuch", "oldest"); err == nil {
		t.Error("rewind of an unknown endpoint succeeded")
	}
	if _, err := ad.Rewind("a", "yesterday"); err == nil {
		t.Error("rewind to a bad time succeeded")
	}
	m, err := ad.Rewind("a", time.Now().Add(time.Hour).Format(time.RFC3339))
	if err != nil || m.Samples != 0 {
		t.Fatalf("rewind to a time after every sample: %+v, %v: want no move", m, err)
	}
	m, err = ad.Rewind("a", "oldest")
	if err != nil || m.Samples != 2 {
		t.Fatalf("rewind to oldest: %+v, %v: want 2 samples to resend", m, err)
	}
	if eps, _ := ad.Endpoints(); eps[0].Backlog != 2 || eps[0].LagBytes <= 0 {
		t.Errorf("after rewind: backlog %d samples, lag %d bytes; want 2 and > 0", eps[0].Backlog, eps[0].LagBytes)
	}
	if _, err := ad.Skip("a", "oldest"); err == nil {
		t.Error("skip to a bad target succeeded")
	}
	if err := ad.Close(); err != nil {
		t.Fatal(err)
	}

	ra = startAgent(t, cfg, nil)
	waitFor(t, "a to receive s1 again", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.steps["s1"] == 4
	})
	if err := ra.stop(t); err != nil {
		t.Fatal(err)
	}

	// A backlog for an endpoint that is down, skipped.
	down := testConfig(t, dir, `
  - name: a
    url: http://127.0.0.1:1/api/v1/write
    queue_config:
      min_backoff: 5ms
      max_backoff: 50ms
`)
	ra = startAgent(t, down, nil)
	ra.push(t, "s2")
	ra.push(t, "s3")
	if err := ra.stop(t); err != nil {
		t.Fatal(err)
	}
	if ad, err = OpenAdmin(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if m, err = ad.Skip("a", "head"); err != nil || m.Samples != 4 {
		t.Fatalf("skip: %+v, %v: want 4 samples given up", m, err)
	}
	if err := ad.Close(); err != nil {
		t.Fatal(err)
	}
	ra = startAgent(t, cfg, nil)
	ra.push(t, "s4")
	waitFor(t, "a to receive s4", func() bool { return a.received("s4") })
	if a.received("s2") || a.received("s3") {
		t.Error("a received the skipped backlog")
	}
}
