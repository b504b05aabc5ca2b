package sender

import (
	"fmt"
	"strings"
	"testing"
	"time"

	wm "github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func wlabel(name, value string) wm.Label { return wm.Label{Name: []byte(name), Value: []byte(value)} }

// appendMixed appends one batch per round ts in from..to: series counter
// series req_total{id} with a start timestamp and an exemplar each, one
// native histogram series lat{id="h"}, and the metadata of both families
// (req_total's family is "req", as OpenMetrics names it).
func (e *env) appendMixed(series int, from, to int64) {
	e.t.Helper()
	for ts := from; ts <= to; ts++ {
		b := &wm.Batch{}
		for i := range series {
			s := wm.Series{LabelsStart: int32(len(b.Labels))}
			b.Labels = append(b.Labels, wlabel("__name__", "req_total"), wlabel("id", fmt.Sprint(i)))
			s.LabelsEnd = int32(len(b.Labels))
			s.SamplesStart = int32(len(b.Samples))
			b.Samples = append(b.Samples, wm.Sample{Timestamp: ts, Value: float64(ts), Start: 1})
			s.SamplesEnd = int32(len(b.Samples))
			x := wm.Exemplar{LabelsStart: int32(len(b.Labels)), Value: 0.5, Timestamp: ts}
			b.Labels = append(b.Labels, wlabel("trace_id", fmt.Sprintf("t%d-%d", i, ts)))
			x.LabelsEnd = int32(len(b.Labels))
			s.ExemplarsStart = int32(len(b.Exemplars))
			b.Exemplars = append(b.Exemplars, x)
			s.ExemplarsEnd = int32(len(b.Exemplars))
			b.Series = append(b.Series, s)
		}
		h, _ := testHistogram(e.t, ts, 1)
		s := wm.Series{LabelsStart: int32(len(b.Labels)), HistogramsStart: int32(len(b.Histograms))}
		b.Labels = append(b.Labels, wlabel("__name__", "lat"), wlabel("id", "h"))
		s.LabelsEnd = int32(len(b.Labels))
		b.Histograms = append(b.Histograms, h)
		s.HistogramsEnd = int32(len(b.Histograms))
		b.Series = append(b.Series, s)
		b.Metadata = []wm.Metadata{
			{Family: []byte("req"), Type: wm.TypeCounter, Help: []byte("Requests served.")},
			{Family: []byte("lat"), Type: wm.TypeHistogram, Help: []byte("Latency."), Unit: []byte("seconds")},
		}
		if err := e.w.Append(b); err != nil {
			e.t.Fatal(err)
		}
	}
}

// exemplarsAccounted waits until every exemplar was delivered or counted
// as dropped for want of a sample in its 2.0 request.
func exemplarsAccounted(t *testing.T, e *env, want int) {
	t.Helper()
	waitFor(t, func() bool {
		return testutil.ToFloat64(e.m.exemplarsSent.WithLabelValues("a"))+
			testutil.ToFloat64(e.m.exemplarsDropped.WithLabelValues("a", "no_sample")) == float64(want)
	})
}

func TestV2CarriesSamplesHistogramsExemplarsMetadata(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	r := newReceiver(t, func(int) int { return 0 })
	s := e.sender("a", r.srv.URL, func(c *Config) {
		c.Protocol = RemoteWrite2
		c.Queue.MaxSamplesPerSend = 1000
		c.Queue.BatchSendDeadline = 20 * time.Millisecond
	})
	const series, rounds = 20, 5
	e.appendMixed(series, 1, rounds)
	r.waitTotal(series*rounds + rounds)
	exemplarsAccounted(t, e, series*rounds)
	stop(t, s)
	r.checkComplete(series, rounds)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.versions["2.0.0"] == 0 || r.versions["0.1.0"] != 0 {
		t.Fatalf("requests by version %v, want 2.0.0 only", r.versions)
	}
	for k, want := range map[string]string{
		"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
		"X-Prometheus-Remote-Write-Version": "2.0.0",
	} {
		if got := r.hdr.Get(k); got != want {
			t.Errorf("header %s: %q, want %q", k, got, want)
		}
	}
	delivered := 0
	for i := range series {
		id := fmt.Sprint(i)
		if ts := r.got[id]; len(ts) != rounds {
			t.Fatalf("series %s: %v", id, ts)
		}
		for _, st := range r.starts[id] {
			if st != 1 {
				t.Fatalf("series %s: start timestamps %v, want 1", id, r.starts[id])
			}
		}
		for _, x := range r.exemplars[id] {
			if !strings.HasPrefix(x.Get("trace_id"), "t"+id+"-") {
				t.Fatalf("series %s: exemplar %v", id, x)
			}
		}
		delivered += len(r.exemplars[id])
	}
	if sent := int(testutil.ToFloat64(e.m.exemplarsSent.WithLabelValues("a"))); delivered != sent || sent == 0 {
		t.Errorf("%d exemplars arrived, %d counted sent", delivered, sent)
	}
	if r.hists["h"] != rounds {
		t.Errorf("%d histograms, want %d", r.hists["h"], rounds)
	}
	// Per-series metadata, found under the family's own name.
	if m := r.meta["req_total"]; m.Type != wm.TypeCounter || m.Help != "Requests served." {
		t.Errorf("req_total metadata %+v", m)
	}
	if m := r.meta["lat"]; m.Type != wm.TypeHistogram || m.Unit != "seconds" {
		t.Errorf("lat metadata %+v", m)
	}
	if got := testutil.ToFloat64(e.m.sent.WithLabelValues("a")); got != series*rounds+rounds {
		t.Errorf("sent metric %v, want %d", got, series*rounds+rounds)
	}
	if got := testutil.ToFloat64(e.m.protocol.WithLabelValues("a", "2.0")); got != 1 {
		t.Errorf("protocol gauge for 2.0: %v", got)
	}
}

func TestV1CarriesHistogramsExemplarsMetadata(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	r := newReceiver(t, func(int) int { return 0 })
	s := e.sender("a", r.srv.URL, nil)
	const series, rounds = 20, 5
	e.appendMixed(series, 1, rounds)
	r.waitTotal(series*rounds + rounds)
	waitFor(t, func() bool { return testutil.ToFloat64(e.m.exemplarsSent.WithLabelValues("a")) == series*rounds })
	stop(t, s)
	r.checkComplete(series, rounds)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.versions["0.1.0"] == 0 || r.versions["2.0.0"] != 0 {
		t.Fatalf("requests by version %v, want 0.1.0 only", r.versions)
	}
	for i := range series {
		if n := len(r.exemplars[fmt.Sprint(i)]); n != rounds {
			t.Fatalf("series %d: %d exemplars, want %d", i, n, rounds)
		}
	}
	if r.hists["h"] != rounds {
		t.Errorf("%d histograms, want %d", r.hists["h"], rounds)
	}
	// 1.0 metadata is by family: req_total's is sent as "req".
	if m := r.meta["req"]; m.Type != wm.TypeCounter || m.Help != "Requests served." {
		t.Errorf("req metadata %+v (all: %v)", m, r.meta)
	}
	if m := r.meta["lat"]; m.Type != wm.TypeHistogram || m.Unit != "seconds" {
		t.Errorf("lat metadata %+v", m)
	}
	if got := testutil.ToFloat64(e.m.metadataSent.WithLabelValues("a")); got == 0 {
		t.Error("no metadata counted sent")
	}
}

// A 2.0 endpoint that answers 415 gets the same batch again as 1.0, and
// 1.0 from then on: nothing is lost, the switch is counted once.
func TestV2FallsBackTo1On415(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*receiver)
	}{
		{"415", func(r *receiver) { r.v1Only = true }},
		// A 1.0 receiver that ignores Content-Type decodes a 2.0 body as
		// an empty 1.0 request and answers 204 without Written headers.
		{"2xx_without_written_headers", func(r *receiver) { r.blind = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			defer e.close()
			r := newReceiver(t, func(int) int { return 0 })
			tc.mod(r)
			s := e.sender("a", r.srv.URL, func(c *Config) { c.Protocol = RemoteWrite2 })
			e.appendMixed(30, 1, 10)
			r.waitTotal(30*10 + 10)
			waitFor(t, func() bool { return testutil.ToFloat64(e.m.exemplarsSent.WithLabelValues("a")) == 300 })
			e.append(30, 11, 12) // series m{id}
			r.waitTotal(30*10 + 10 + 60)
			stop(t, s)
			r.checkComplete(30, 12) // req_total{id} 1..10, m{id} 11..12
			r.mu.Lock()
			versions := r.versions
			r.mu.Unlock()
			// The blind receiver "accepts" the first 2.0 request, empty.
			if (versions["2.0.0"] != 0 && !r.blind) || versions["0.1.0"] == 0 {
				t.Fatalf("accepted requests by version %v, want 1.0 only", versions)
			}
			if got := testutil.ToFloat64(e.m.fallbacks.WithLabelValues("a")); got != 1 {
				t.Fatalf("fallbacks %v, want 1", got)
			}
			if testutil.ToFloat64(e.m.protocol.WithLabelValues("a", "1.0")) != 1 || testutil.ToFloat64(e.m.protocol.WithLabelValues("a", "2.0")) != 0 {
				t.Fatal("protocol gauge does not show 1.0")
			}
			if got := testutil.ToFloat64(e.m.failed.WithLabelValues("a")); got != 0 {
				t.Fatalf("%v samples counted failed", got)
			}
			if p, _, _ := (PebbleCheckpoints{DB: e.db}).Load("a"); p != e.head() {
				t.Fatalf("checkpoint %v, want %v", p, e.head())
			}
		})
	}
}

// A 2xx whose Written headers count less than was sent is a partial
// write: counted, not retried, and the stream goes on.
func TestV2PartialWriteIsCountedNotRetried(t *testing.T) {
	e := newEnv(t)
	defer e.close()
	r := newReceiver(t, func(int) int { return 0 })
	r.written = func(s, h, x int) (int, int, int) { return s - 1, h, max(0, x-1) }
	s := e.sender("a", r.srv.URL, func(c *Config) { c.Protocol = RemoteWrite2 })
	e.appendMixed(10, 1, 6)
	r.waitTotal(10*6 + 6)
	exemplarsAccounted(t, e, 60)
	waitFor(t, func() bool { p, _ := s.track.position(); return p == e.head() })
	stop(t, s)
	r.mu.Lock()
	unwritten := r.unwritten
	r.mu.Unlock()
	partial := testutil.ToFloat64(e.m.samplesPartial.WithLabelValues("a")) + testutil.ToFloat64(e.m.exemplarsPartial.WithLabelValues("a"))
	if unwritten == 0 || partial != float64(unwritten) {
		t.Fatalf("partial writes counted %v, receiver left %d unwritten", partial, unwritten)
	}
	if got := testutil.ToFloat64(e.m.retried.WithLabelValues("a")); got != 0 {
		t.Fatalf("%v samples retried after a 2xx", got)
	}
	if got := testutil.ToFloat64(e.m.fallbacks.WithLabelValues("a")); got != 0 {
		t.Fatalf("a partial write made the sender fall back")
	}
}

// send_exemplars: false, send_native_histograms: false and
// metadata_config.send: false keep them from the endpoint, counted.
func TestConfigKeepsExemplarsHistogramsMetadata(t *testing.T) {
	for _, v := range []Protocol{RemoteWrite1, RemoteWrite2} {
		t.Run(v.String(), func(t *testing.T) {
			e := newEnv(t)
			defer e.close()
			r := newReceiver(t, func(int) int { return 0 })
			s := e.sender("a", r.srv.URL, func(c *Config) {
				c.Protocol = v
				c.SendExemplars = false
				c.SendHistograms = false
				c.SendMetadata = false
			})
			e.appendMixed(10, 1, 4)
			r.waitTotal(40)
			waitFor(t, func() bool { p, _ := s.track.position(); return p == e.head() })
			stop(t, s)
			r.mu.Lock()
			defer r.mu.Unlock()
			if len(r.exemplars) != 0 || len(r.hists) != 0 && r.hists["h"] != 0 {
				t.Fatalf("exemplars %v, histograms %v sent", r.exemplars, r.hists)
			}
			for name, m := range r.meta {
				if m.Type != 0 || m.Help != "" || m.Unit != "" {
					t.Fatalf("metadata of %s sent: %+v", name, m)
				}
			}
			if got := testutil.ToFloat64(e.m.exemplarsDropped.WithLabelValues("a", "config")); got != 40 {
				t.Errorf("exemplars dropped by config %v, want 40", got)
			}
			if got := testutil.ToFloat64(e.m.dropped.WithLabelValues("a", "config")); got != 4 {
				t.Errorf("histograms dropped by config %v, want 4", got)
			}
			if got := testutil.ToFloat64(e.m.metadataSent.WithLabelValues("a")); got != 0 {
				t.Errorf("metadata sent %v", got)
			}
		})
	}
}
