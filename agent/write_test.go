package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymetrics/ferry/agent/receive"
	"github.com/ferrymetrics/ferry/wal"
	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"go.uber.org/zap"
)

// staleNaN is Prometheus' stale marker, a NaN with a payload that must
// survive bit-exact.
const staleNaN = 0x7ff0000000000002

// appendedSeries is a copy of one series of a batch given to fakeAppender.
type appendedSeries struct {
	labels     []string // name, value, name, value, ...
	samples    []model.Sample
	exemplars  []appendedExemplar
	histograms int
}

// appendedExemplar is a copy of one exemplar given to fakeAppender.
type appendedExemplar struct {
	labels []string
	value  float64
	ts     int64
}

// appendedMetadata is a copy of one metadata entry given to fakeAppender.
type appendedMetadata struct {
	family, help, unit string
	typ                model.MetricType
}

// fakeAppender records what it is asked to append; err, if set, is
// returned instead.
type fakeAppender struct {
	mu         sync.Mutex
	err        error
	calls      int
	series     []appendedSeries
	histograms [][]byte
	metadata   []appendedMetadata
}

// AppendChecked checks every series, as for a log that holds none.
func (f *fakeAppender) AppendChecked(b *model.Batch, check func(int) error) error {
	if err := checkAll(b, check); err != nil {
		return err
	}
	return f.Append(b)
}

func checkAll(b *model.Batch, check func(int) error) error {
	for i := range b.Series {
		if err := check(i); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeAppender) Append(b *model.Batch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return f.err
	}
	// The batch aliases the request buffer, which the handler reuses:
	// copy everything.
	flat := func(ls []model.Label) []string {
		var out []string
		for _, l := range ls {
			out = append(out, string(l.Name), string(l.Value))
		}
		return out
	}
	for i := range b.Series {
		as := appendedSeries{labels: flat(b.SeriesLabels(i)), histograms: len(b.SeriesHistograms(i))}
		as.samples = append(as.samples, b.SeriesSamples(i)...)
		for _, e := range b.SeriesExemplars(i) {
			as.exemplars = append(as.exemplars, appendedExemplar{labels: flat(b.ExemplarLabels(&e)), value: e.Value, ts: e.Timestamp})
		}
		f.series = append(f.series, as)
		for _, h := range b.SeriesHistograms(i) {
			f.histograms = append(f.histograms, bytes.Clone(h))
		}
	}
	for _, m := range b.Metadata {
		f.metadata = append(f.metadata, appendedMetadata{family: string(m.Family), help: string(m.Help), unit: string(m.Unit), typ: m.Type})
	}
	return nil
}

func (f *fakeAppender) appended() []appendedSeries {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.series
}

// newWriteHandler builds a writeHandler as Agent.routes does, with app as
// the WAL (app() returns nil while the WAL is not open) and limits lim.
func newWriteHandler(t *testing.T, app func() Appender, lim ReceiverConfig) *writeHandler {
	t.Helper()
	bodies := receive.NewBodyDecoder()
	t.Cleanup(bodies.Close)
	return &writeHandler{
		app:    app,
		limits: func() ReceiverConfig { return lim },
		logger: zap.NewNop(),
		bodies: bodies,
		m:      newReceiverMetrics(prometheus.NewRegistry()),
	}
}

// handlerWith returns a handler appending to a new fakeAppender failing
// with appendErr, under the default limits.
func handlerWith(t *testing.T, appendErr error) (*writeHandler, *fakeAppender) {
	t.Helper()
	app := &fakeAppender{err: appendErr}
	return newWriteHandler(t, func() Appender { return app }, DefaultConfig().Receiver), app
}

// ts builds a series from name/value pairs and samples.
func ts(lbls []string, samples ...prompb.Sample) prompb.TimeSeries {
	s := prompb.TimeSeries{Samples: samples}
	for i := 0; i+1 < len(lbls); i += 2 {
		s.Labels = append(s.Labels, prompb.Label{Name: lbls[i], Value: lbls[i+1]})
	}
	return s
}

func marshal(t *testing.T, wr *prompb.WriteRequest) []byte {
	t.Helper()
	b, err := wr.Marshal()
	if err != nil {
		t.Fatalf("marshal WriteRequest: %v", err)
	}
	return b
}

func snappyBody(t *testing.T, series ...prompb.TimeSeries) []byte {
	t.Helper()
	return snappy.Encode(nil, marshal(t, &prompb.WriteRequest{Timeseries: series}))
}

func zstdBody(t *testing.T, series ...prompb.TimeSeries) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(marshal(t, &prompb.WriteRequest{Timeseries: series}), nil)
}

// remoteWriteHeaders are what a Prometheus 1.0 sender sets.
func remoteWriteHeaders() http.Header {
	return http.Header{
		"Content-Type":                      {"application/x-protobuf"},
		"Content-Encoding":                  {"snappy"},
		"X-Prometheus-Remote-Write-Version": {"0.1.0"},
	}
}

// serve sends one request to h and returns the recorded answer.
func serve(h http.Handler, method string, header http.Header, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/api/v1/write", bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// checkAnswer checks the status code and, for errors, that the body is a
// readable message containing msg.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, code int, msg string) {
	t.Helper()
	body := rec.Body.String()
	if rec.Code != code {
		t.Fatalf("status = %d, want %d; body %q", rec.Code, code, body)
	}
	if code < 300 {
		return
	}
	if !strings.Contains(body, msg) {
		t.Errorf("body = %q, want it to contain %q", body, msg)
	}
	if len(strings.TrimSpace(body)) < 10 || strings.ContainsRune(body, 0) {
		t.Errorf("body %q is not a human-readable message", body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
}

var upSeries = []string{"__name__", "up", "instance", "localhost:9090", "job", "prometheus"}

func TestWriteAccepts(t *testing.T) {
	samples := []prompb.Sample{
		{Value: 1, Timestamp: 1_700_000_000_000},
		{Value: math.Float64frombits(staleNaN), Timestamp: 1_700_000_015_000},
	}
	other := []string{"__name__", "http_requests_total", "code", "200"}
	want := []appendedSeries{
		{labels: upSeries, samples: []model.Sample{{Value: 1, Timestamp: 1_700_000_000_000}, {Value: math.Float64frombits(staleNaN), Timestamp: 1_700_000_015_000}}},
		{labels: other, samples: []model.Sample{{Value: -0.5, Timestamp: 42}}},
	}
	series := []prompb.TimeSeries{ts(upSeries, samples...), ts(other, prompb.Sample{Value: -0.5, Timestamp: 42})}

	zstdHeaders := remoteWriteHeaders()
	zstdHeaders.Set("Content-Encoding", "zstd")
	for _, tc := range []struct {
		name   string
		header http.Header
		body   []byte
	}{
		{"snappy", remoteWriteHeaders(), snappyBody(t, series...)},
		{"zstd", zstdHeaders, zstdBody(t, series...)},
		{"no content type or encoding", nil, snappyBody(t, series...)},
		{"proto parameter of 1.0", http.Header{
			"Content-Type":     {"application/x-protobuf;proto=prometheus.WriteRequest"},
			"Content-Encoding": {"SNAPPY"},
		}, snappyBody(t, series...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, app := handlerWith(t, nil)
			rec := serve(h, http.MethodPost, tc.header, tc.body)
			checkAnswer(t, rec, http.StatusNoContent, "")
			if rec.Body.Len() != 0 {
				t.Errorf("204 with body %q", rec.Body)
			}
			checkAppended(t, app.appended(), want)
			if got := testutil.ToFloat64(h.m.samples); got != 3 {
				t.Errorf("ferry_receiver_samples_total = %v, want 3", got)
			}
			if got := testutil.ToFloat64(h.m.requests.WithLabelValues("204", "1.0")); got != 1 {
				t.Errorf(`ferry_receiver_requests_total{code="204",proto="1.0"} = %v, want 1`, got)
			}
			for _, name := range []string{headerSamplesWritten, headerHistogramsWritten, headerExemplarsWritten} {
				if v, ok := rec.Header()[name]; ok {
					t.Errorf("Remote-Write 1.0 answer with %s: %q", name, v)
				}
			}
		})
	}
}

func checkAppended(t *testing.T, got, want []appendedSeries) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("appended %d series, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if strings.Join(g.labels, "\x00") != strings.Join(w.labels, "\x00") {
			t.Errorf("series %d: labels %q, want %q", i, g.labels, w.labels)
		}
		if len(g.samples) != len(w.samples) {
			t.Errorf("series %d: %d samples, want %d", i, len(g.samples), len(w.samples))
			continue
		}
		for j := range w.samples {
			gs, ws := g.samples[j], w.samples[j]
			if gs.Timestamp != ws.Timestamp || math.Float64bits(gs.Value) != math.Float64bits(ws.Value) {
				t.Errorf("series %d sample %d: {%#x @%d}, want {%#x @%d}", i, j,
					math.Float64bits(gs.Value), gs.Timestamp, math.Float64bits(ws.Value), ws.Timestamp)
			}
		}
	}
}

func TestWriteEmptyRequest(t *testing.T) {
	h, app := handlerWith(t, nil)
	rec := serve(h, http.MethodPost, remoteWriteHeaders(), snappyBody(t))
	checkAnswer(t, rec, http.StatusNoContent, "")
	if got := app.appended(); len(got) != 0 {
		t.Errorf("empty request appended %+v", got)
	}
	if got := testutil.ToFloat64(h.m.samples); got != 0 {
		t.Errorf("ferry_receiver_samples_total = %v, want 0", got)
	}
}

func TestWriteRejects(t *testing.T) {
	valid := snappyBody(t, ts(upSeries, prompb.Sample{Value: 1, Timestamp: 1}))
	withHeader := func(k, v string) http.Header {
		h := remoteWriteHeaders()
		h.Set(k, v)
		return h
	}
	invalidLabels := func(lbls ...string) []byte {
		return snappyBody(t, ts(upSeries, prompb.Sample{Value: 1, Timestamp: 1}), ts(lbls, prompb.Sample{Value: 2, Timestamp: 2}))
	}
	for _, tc := range []struct {
		name     string
		method   string // POST if empty
		header   http.Header
		body     []byte
		wantCode int
		wantMsg  string
	}{
		{
			name: "GET", method: http.MethodGet, header: remoteWriteHeaders(),
			wantCode: http.StatusMethodNotAllowed, wantMsg: "remote write takes POST",
		},
		{
			name: "JSON content type", header: withHeader("Content-Type", "application/json"), body: valid,
			wantCode: http.StatusUnsupportedMediaType, wantMsg: `unsupported content type "application/json"`,
		},
		{
			name: "malformed content type", header: withHeader("Content-Type", "application/x-protobuf; ;"), body: valid,
			wantCode: http.StatusUnsupportedMediaType, wantMsg: "Remote-Write 1.0",
		},
		{
			name:   "unknown protobuf message",
			header: withHeader("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v3.Request"), body: valid,
			wantCode: http.StatusUnsupportedMediaType, wantMsg: `unsupported protobuf message "io.prometheus.write.v3.Request"`,
		},
		{
			name: "gzip", header: withHeader("Content-Encoding", "gzip"), body: valid,
			wantCode: http.StatusUnsupportedMediaType, wantMsg: `unsupported content encoding "gzip"`,
		},
		{
			name: "garbage snappy", header: remoteWriteHeaders(), body: []byte("\x10this is not snappy at all"),
			wantCode: http.StatusBadRequest, wantMsg: "snappy",
		},
		{
			name: "empty body", header: remoteWriteHeaders(), body: nil,
			wantCode: http.StatusBadRequest, wantMsg: "snappy",
		},
		{
			name: "garbage zstd", header: withHeader("Content-Encoding", "zstd"), body: []byte("not zstd either"),
			wantCode: http.StatusBadRequest, wantMsg: "zstd",
		},
		{
			name: "valid snappy, garbage protobuf", header: remoteWriteHeaders(),
			body:     snappy.Encode(nil, []byte("\x0a\xff\xff\xff\xff\x0fnot a WriteRequest")),
			wantCode: http.StatusBadRequest, wantMsg: "decode timeseries 0",
		},
		{
			name: "unsorted labels", header: remoteWriteHeaders(),
			body:     invalidLabels("__name__", "up", "job", "x", "instance", "y"),
			wantCode: http.StatusBadRequest, wantMsg: `series 1 {__name__="up", job="x", instance="y"}: label names not sorted: "instance" after "job"`,
		},
		{
			name: "duplicate label names", header: remoteWriteHeaders(),
			body:     invalidLabels("__name__", "up", "job", "x", "job", "y"),
			wantCode: http.StatusBadRequest, wantMsg: `duplicate label name "job"`,
		},
		{
			name: "empty label value", header: remoteWriteHeaders(),
			body:     invalidLabels("__name__", "up", "job", ""),
			wantCode: http.StatusBadRequest, wantMsg: `empty value for label "job"`,
		},
		{
			name: "missing __name__", header: remoteWriteHeaders(),
			body:     invalidLabels("instance", "a", "job", "x"),
			wantCode: http.StatusBadRequest, wantMsg: "no __name__ label",
		},
		{
			name: "invalid metric name", header: remoteWriteHeaders(),
			body:     invalidLabels("__name__", "1up"),
			wantCode: http.StatusBadRequest, wantMsg: `invalid metric name "1up"`,
		},
		{
			name: "UTF-8 metric name under legacy validation", header: remoteWriteHeaders(),
			body:     invalidLabels("__name__", "http.requests"),
			wantCode: http.StatusBadRequest, wantMsg: `invalid metric name "http.requests"`,
		},
		{
			name: "series without labels", header: remoteWriteHeaders(),
			body:     invalidLabels(),
			wantCode: http.StatusBadRequest, wantMsg: "no labels",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, app := handlerWith(t, nil)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			rec := serve(h, method, tc.header, tc.body)
			checkAnswer(t, rec, tc.wantCode, tc.wantMsg)
			if app.calls != 0 {
				t.Errorf("appender called %d times for a rejected request: %+v", app.calls, app.appended())
			}
			if got := requestsWithCode(h, tc.wantCode); got != 1 {
				t.Errorf(`ferry_receiver_requests_total{code="%d"} = %v, want 1`, tc.wantCode, got)
			}
		})
	}
}

func TestWriteUTF8NameValidation(t *testing.T) {
	app := &fakeAppender{}
	lim := DefaultConfig().Receiver
	lim.NameValidation = "utf8"
	h := newWriteHandler(t, func() Appender { return app }, lim)
	body := snappyBody(t, ts([]string{"__name__", "http.requests", "service.name", "api"}, prompb.Sample{Value: 1, Timestamp: 1}))
	checkAnswer(t, serve(h, http.MethodPost, remoteWriteHeaders(), body), http.StatusNoContent, "")
	checkAppended(t, app.appended(), []appendedSeries{{
		labels:  []string{"__name__", "http.requests", "service.name", "api"},
		samples: []model.Sample{{Value: 1, Timestamp: 1}},
	}})
}

func TestWriteAppendFailures(t *testing.T) {
	body := snappyBody(t, ts(upSeries, prompb.Sample{Value: 1, Timestamp: 1}))
	for _, tc := range []struct {
		name     string
		app      func() Appender
		wantCode int
		wantMsg  string
	}{
		{
			name: "WAL at max_size under backpressure",
			app: func() Appender {
				return &fakeAppender{err: fmt.Errorf("%w: the WAL is at max_size (3145728 bytes)", wal.ErrFull)}
			},
			wantCode: http.StatusServiceUnavailable, wantMsg: "wal: full: the WAL is at max_size (3145728 bytes): retry later",
		},
		{
			name: "filesystem below min_free_disk",
			app: func() Appender {
				return &fakeAppender{err: errors.Join(errors.New("below min_free_disk"), wal.ErrFull)}
			},
			wantCode: http.StatusServiceUnavailable, wantMsg: "below min_free_disk",
		},
		{
			name: "disk error",
			app: func() Appender {
				return &fakeAppender{err: errors.New("write /data/wal/00000003: no space left on device")}
			},
			wantCode: http.StatusServiceUnavailable, wantMsg: "write to WAL failed: write /data/wal/00000003: no space left on device",
		},
		{
			name:     "WAL not open yet",
			app:      func() Appender { return nil },
			wantCode: http.StatusServiceUnavailable, wantMsg: "WAL replay in progress",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := tc.app()
			h := newWriteHandler(t, func() Appender { return app }, DefaultConfig().Receiver)
			rec := serve(h, http.MethodPost, remoteWriteHeaders(), body)
			checkAnswer(t, rec, tc.wantCode, tc.wantMsg)
			if got := rec.Header().Get("Retry-After"); got != "5" {
				t.Errorf("Retry-After = %q, want 5", got)
			}
			if got := testutil.ToFloat64(h.m.samples); got != 0 {
				t.Errorf("ferry_receiver_samples_total = %v after a failed append, want 0", got)
			}
		})
	}
}

func TestWriteBodyLimits(t *testing.T) {
	body := snappyBody(t, ts(upSeries, prompb.Sample{Value: 1, Timestamp: 1}))
	for _, tc := range []struct {
		name     string
		maxBytes Bytes
		chunked  bool
		wantCode int
	}{
		{"at the limit", Bytes(len(body)), false, http.StatusNoContent},
		{"at the limit, chunked", Bytes(len(body)), true, http.StatusNoContent},
		{"one byte over, Content-Length", Bytes(len(body) - 1), false, http.StatusRequestEntityTooLarge},
		{"one byte over, chunked", Bytes(len(body) - 1), true, http.StatusRequestEntityTooLarge},
		{"far over, Content-Length", 16, false, http.StatusRequestEntityTooLarge},
		{"far over, chunked", 16, true, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &fakeAppender{}
			lim := DefaultConfig().Receiver
			lim.MaxRequestBytes = tc.maxBytes
			srv := httptest.NewServer(newWriteHandler(t, func() Appender { return app }, lim))
			defer srv.Close()

			var r io.Reader = bytes.NewReader(body)
			if tc.chunked {
				r = io.MultiReader(r) // unknown length: sent chunked
			}
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", r)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = remoteWriteHeaders()
			if tc.chunked != (req.ContentLength <= 0) {
				t.Fatalf("ContentLength = %d, chunked = %v", req.ContentLength, tc.chunked)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status = %d, want %d; body %q", resp.StatusCode, tc.wantCode, msg)
			}
			if tc.wantCode == http.StatusRequestEntityTooLarge {
				if !strings.Contains(string(msg), "exceeds max_request_bytes") {
					t.Errorf("body = %q, want it to mention max_request_bytes", msg)
				}
				if app.calls != 0 {
					t.Errorf("appender called for a refused request")
				}
			}
		})
	}
}

func TestWriteDecodedLimit(t *testing.T) {
	plain := marshal(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ts(upSeries, prompb.Sample{Value: 1, Timestamp: 1})}})
	for _, tc := range []struct {
		name     string
		encoding string
		body     []byte
		max      Bytes
		wantCode int
		wantMsg  string
	}{
		{"snappy at the limit", "snappy", snappy.Encode(nil, plain), Bytes(len(plain)), http.StatusNoContent, ""},
		{"snappy over the limit", "snappy", snappy.Encode(nil, plain), Bytes(len(plain) - 1), http.StatusRequestEntityTooLarge, "max_decoded_bytes"},
		{"zstd over the limit", "zstd", zstdEncode(t, plain), Bytes(len(plain) - 1), http.StatusRequestEntityTooLarge, "max_decoded_bytes"},
		// A snappy header declaring 2 GiB followed by almost nothing.
		{"snappy declaring 2 GiB", "snappy", []byte{0x80, 0x80, 0x80, 0x80, 0x08, 0x00, 'x'}, DefaultConfig().Receiver.MaxDecodedBytes, http.StatusRequestEntityTooLarge, "declares 2147483648 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &fakeAppender{}
			lim := DefaultConfig().Receiver
			lim.MaxDecodedBytes = tc.max
			h := newWriteHandler(t, func() Appender { return app }, lim)
			hdr := remoteWriteHeaders()
			hdr.Set("Content-Encoding", tc.encoding)
			checkAnswer(t, serve(h, http.MethodPost, hdr, tc.body), tc.wantCode, tc.wantMsg)
		})
	}
}

func zstdEncode(t *testing.T, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// TestWriteDeclaredLengthDoesNotAllocate checks that a tiny body declaring
// a huge decoded length is refused without allocating that length.
func TestWriteDeclaredLengthDoesNotAllocate(t *testing.T) {
	h, app := handlerWith(t, nil)
	body := []byte{0x80, 0x80, 0x80, 0x80, 0x08, 0x00, 'x'} // uvarint 1<<31
	hdr := remoteWriteHeaders()
	// Warm up the buffer pool.
	checkAnswer(t, serve(h, http.MethodPost, hdr, body), http.StatusRequestEntityTooLarge, "declares")

	const runs = 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		if rec := serve(h, http.MethodPost, hdr, body); rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("status = %d, want 413", rec.Code)
		}
	}
	runtime.ReadMemStats(&after)
	if perReq := (after.TotalAlloc - before.TotalAlloc) / runs; perReq > 1<<20 {
		t.Errorf("a request declaring 2 GiB allocated %d bytes, want well under 1 MiB", perReq)
	}
	if app.calls != 0 {
		t.Errorf("appender called")
	}
}

// requestsWithCode returns ferry_receiver_requests_total{code} summed over
// protocols.
func requestsWithCode(h *writeHandler, code int) float64 {
	var n float64
	for _, p := range []protoVersion{protoUnknown, protoV1, protoV2} {
		n += testutil.ToFloat64(h.m.requests.WithLabelValues(strconv.Itoa(code), p.String()))
	}
	return n
}

// Native histograms are stored as received, exemplars and metadata with
// them.
func TestWriteStoresHistogramsExemplarsMetadata(t *testing.T) {
	h, app := handlerWith(t, nil)
	hist := prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 3}, Sum: 1.5, Timestamp: 10,
		ZeroCount: &prompb.Histogram_ZeroCountInt{ZeroCountInt: 0}}
	ex := prompb.Exemplar{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}}, Value: 1, Timestamp: 10}
	withExtras := ts(upSeries, prompb.Sample{Value: 1, Timestamp: 10})
	withExtras.Exemplars = []prompb.Exemplar{ex, ex}
	histOnly := ts([]string{"__name__", "latency_seconds"})
	histOnly.Histograms = []prompb.Histogram{hist, hist}
	histOnly.Exemplars = []prompb.Exemplar{ex}
	wr := &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{withExtras, histOnly},
		Metadata:   []prompb.MetricMetadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "up", Help: "Up.", Unit: "bool"}},
	}
	rec := serve(h, http.MethodPost, remoteWriteHeaders(), snappy.Encode(nil, marshal(t, wr)))
	checkAnswer(t, rec, http.StatusNoContent, "")

	checkStoredCounts(t, h, 3, 3, 1)
	// The histogram-only series is passed on with its two histograms, byte
	// for byte as received.
	got := app.appended()
	want, err := hist.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(app.histograms) != 2 || !bytes.Equal(app.histograms[0], want) || !bytes.Equal(app.histograms[1], want) {
		t.Errorf("stored histograms %x, want two of %x", app.histograms, want)
	}
	checkAppended(t, got, []appendedSeries{
		{labels: upSeries, samples: []model.Sample{{Value: 1, Timestamp: 10}}},
		{labels: []string{"__name__", "latency_seconds"}},
	})
	wantEx := appendedExemplar{labels: []string{"trace_id", "abc"}, value: 1, ts: 10}
	if len(got) == 2 && (len(got[0].exemplars) != 2 || got[1].histograms != 2 || len(got[1].exemplars) != 1 ||
		!equalExemplar(got[0].exemplars[1], wantEx) || !equalExemplar(got[1].exemplars[0], wantEx)) {
		t.Errorf("stored series %+v", got)
	}
	if wantMeta := []appendedMetadata{{family: "up", help: "Up.", unit: "bool", typ: model.TypeGauge}}; !slices.Equal(app.metadata, wantMeta) {
		t.Errorf("stored metadata %+v, want %+v", app.metadata, wantMeta)
	}
}

// checkStoredCounts checks the counters of samples, exemplars and metadata
// h has stored.
func checkStoredCounts(t *testing.T, h *writeHandler, samples, exemplars, metadata float64) {
	t.Helper()
	for name, c := range map[string]struct {
		m    prometheus.Counter
		want float64
	}{
		"ferry_receiver_samples_total":   {h.m.samples, samples},
		"ferry_receiver_exemplars_total": {h.m.exemplars, exemplars},
		"ferry_receiver_metadata_total":  {h.m.metadata, metadata},
	} {
		if got := testutil.ToFloat64(c.m); got != c.want {
			t.Errorf("%s = %v, want %v", name, got, c.want)
		}
	}
}

func equalExemplar(a, b appendedExemplar) bool {
	return slices.Equal(a.labels, b.labels) && a.value == b.value && a.ts == b.ts
}

// v2Headers are what a Prometheus Remote-Write 2.0 sender sets.
func v2Headers() http.Header {
	return http.Header{
		"Content-Type":                      {"application/x-protobuf;proto=io.prometheus.write.v2.Request"},
		"Content-Encoding":                  {"snappy"},
		"X-Prometheus-Remote-Write-Version": {"2.0.0"},
	}
}

// v2Body encodes req snappy-compressed.
func v2Body(t *testing.T, req *writev2.Request) []byte {
	t.Helper()
	b, err := req.Marshal()
	if err != nil {
		t.Fatalf("marshal writev2.Request: %v", err)
	}
	return snappy.Encode(nil, b)
}

// checkWrittenHeaders checks the Remote-Write 2.0 written counts of rec.
func checkWrittenHeaders(t *testing.T, rec *httptest.ResponseRecorder, samples, histograms, exemplars int) {
	t.Helper()
	for name, want := range map[string]int{headerSamplesWritten: samples, headerHistogramsWritten: histograms, headerExemplarsWritten: exemplars} {
		if got := rec.Header().Values(name); len(got) != 1 || got[0] != strconv.Itoa(want) {
			t.Errorf("%s: %q, want %d", name, got, want)
		}
	}
}

// v2Request returns a Remote-Write 2.0 request like Prometheus sends: a
// counter with a start timestamp and an exemplar, a custom-buckets native
// histogram, and metadata.
func v2Request() *writev2.Request {
	st := writev2.NewSymbolTable()
	refs := func(kv ...string) []uint32 {
		var out []uint32
		for _, s := range kv {
			out = append(out, st.Symbolize(s))
		}
		return out
	}
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{
		{
			LabelsRefs: refs(upSeries...),
			Samples:    []writev2.Sample{{Value: 1, Timestamp: 2000, StartTimestamp: 1000}, {Value: math.Float64frombits(staleNaN), Timestamp: 3000}},
			Exemplars:  []writev2.Exemplar{{LabelsRefs: refs("trace_id", "abc"), Value: 1, Timestamp: 1500}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: st.Symbolize("Up."), UnitRef: st.Symbolize("")},
		},
		{
			LabelsRefs: refs("__name__", "latency_seconds", "job", "api"),
			Histograms: []writev2.Histogram{{Count: &writev2.Histogram_CountInt{CountInt: 3}, Sum: 1.5, Schema: -53,
				PositiveSpans: []writev2.BucketSpan{{Length: 2}}, PositiveDeltas: []int64{1, 1}, CustomValues: []float64{0.5, 1},
				Timestamp: 2000, StartTimestamp: 1000}},
			Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, UnitRef: st.Symbolize("seconds")},
		},
	}}
	req.Symbols = st.Symbols()
	return req
}

func TestWriteV2Accepts(t *testing.T) {
	req := v2Request()
	h, app := handlerWith(t, nil)
	rec := serve(h, http.MethodPost, v2Headers(), v2Body(t, req))
	checkAnswer(t, rec, http.StatusNoContent, "")
	if rec.Body.Len() != 0 {
		t.Errorf("204 with body %q", rec.Body)
	}
	checkWrittenHeaders(t, rec, 2, 1, 1)

	got := app.appended()
	checkAppended(t, got, []appendedSeries{
		{labels: upSeries, samples: []model.Sample{{Value: 1, Timestamp: 2000, Start: 1000}, {Value: math.Float64frombits(staleNaN), Timestamp: 3000}}},
		{labels: []string{"__name__", "latency_seconds", "job", "api"}},
	})
	if len(got) == 2 {
		if s := got[0].samples; len(s) == 2 && (s[0].Start != 1000 || s[1].Start != 0) {
			t.Errorf("start timestamps %d, %d; want 1000, 0", s[0].Start, s[1].Start)
		}
		if len(got[0].exemplars) != 1 || !equalExemplar(got[0].exemplars[0], appendedExemplar{labels: []string{"trace_id", "abc"}, value: 1, ts: 1500}) {
			t.Errorf("exemplars %+v", got[0].exemplars)
		}
	}
	// The histogram is kept as the writev2.Histogram message it was sent
	// as, custom buckets and start timestamp included.
	want, err := req.Timeseries[1].Histograms[0].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(app.histograms) != 1 || !bytes.Equal(app.histograms[0], want) {
		t.Errorf("stored histograms %x, want %x", app.histograms, want)
	}
	wantMeta := []appendedMetadata{{family: "up", help: "Up.", typ: model.TypeGauge}, {family: "latency_seconds", unit: "seconds", typ: model.TypeHistogram}}
	if !slices.Equal(app.metadata, wantMeta) {
		t.Errorf("stored metadata %+v, want %+v", app.metadata, wantMeta)
	}
	checkStoredCounts(t, h, 3, 1, 2)
	if got := testutil.ToFloat64(h.m.requests.WithLabelValues("204", "2.0")); got != 1 {
		t.Errorf(`ferry_receiver_requests_total{code="204",proto="2.0"} = %v, want 1`, got)
	}

	// An empty request writes nothing, and says so.
	rec = serve(h, http.MethodPost, v2Headers(), v2Body(t, &writev2.Request{Symbols: []string{""}}))
	checkAnswer(t, rec, http.StatusNoContent, "")
	checkWrittenHeaders(t, rec, 0, 0, 0)
}

func TestWriteV2Rejects(t *testing.T) {
	valid := v2Body(t, v2Request())
	withHeader := func(k, v string) http.Header {
		h := v2Headers()
		h.Set(k, v)
		return h
	}
	both := v2Request()
	both.Timeseries[0].Histograms = both.Timeseries[1].Histograms
	badRef := v2Request()
	badRef.Timeseries[1].LabelsRefs[3] = uint32(len(badRef.Symbols))
	unsorted := v2Request()
	unsorted.Timeseries[1].LabelsRefs = []uint32{unsorted.Timeseries[1].LabelsRefs[2], unsorted.Timeseries[1].LabelsRefs[3], unsorted.Timeseries[1].LabelsRefs[0], unsorted.Timeseries[1].LabelsRefs[1]}
	badExemplar := v2Request()
	badExemplar.Timeseries[0].Exemplars[0].LabelsRefs = []uint32{0, 1}
	for _, tc := range []struct {
		name     string
		header   http.Header
		body     []byte
		app      *fakeAppender
		wantCode int
		wantMsg  string
		headers  bool // written headers expected
	}{
		{
			name: "unknown protobuf message", header: withHeader("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v3.Request"), body: valid,
			wantCode: http.StatusUnsupportedMediaType, wantMsg: "proto=io.prometheus.write.v2.Request for Remote-Write 2.0",
		},
		{
			name: "other media type with the 2.0 proto", header: withHeader("Content-Type", "application/json;proto=io.prometheus.write.v2.Request"), body: valid,
			wantCode: http.StatusUnsupportedMediaType, wantMsg: "unsupported content type",
		},
		{
			name: "gzip", header: withHeader("Content-Encoding", "gzip"), body: valid,
			wantCode: http.StatusUnsupportedMediaType, wantMsg: `unsupported content encoding "gzip"`,
		},
		{
			name: "garbage snappy", header: v2Headers(), body: []byte("\x10not snappy"),
			wantCode: http.StatusBadRequest, wantMsg: "snappy", headers: true,
		},
		{
			name: "samples and histograms in one series", header: v2Headers(), body: v2Body(t, both),
			wantCode: http.StatusBadRequest, wantMsg: "decode timeseries 0: 2 samples and 1 histograms in one series", headers: true,
		},
		{
			name: "label ref outside the symbols table", header: v2Headers(), body: v2Body(t, badRef),
			wantCode: http.StatusBadRequest, wantMsg: "decode timeseries 1: labels_refs: label ref", headers: true,
		},
		{
			name: "unsorted labels", header: v2Headers(), body: v2Body(t, unsorted),
			wantCode: http.StatusBadRequest, wantMsg: `label names not sorted: "__name__" after "job"`, headers: true,
		},
		{
			name: "exemplar label with an empty name", header: v2Headers(), body: v2Body(t, badExemplar),
			wantCode: http.StatusBadRequest, wantMsg: "exemplar 0: label 0 has an empty name", headers: true,
		},
		{
			name: "a 1.0 request sent as 2.0", header: v2Headers(), body: snappyBody(t, ts(upSeries, prompb.Sample{Value: 1, Timestamp: 1})),
			wantCode: http.StatusNoContent, headers: true, // fields 1 to 3 are reserved in 2.0: an empty request
		},
		{
			name: "WAL full", header: v2Headers(), body: valid, app: &fakeAppender{err: fmt.Errorf("%w: at max_size", wal.ErrFull)},
			wantCode: http.StatusServiceUnavailable, wantMsg: "wal: full: at max_size: retry later", headers: true,
		},
		{
			name: "body over the limit", header: v2Headers(), body: bytes.Repeat([]byte{0}, int(DefaultConfig().Receiver.MaxRequestBytes)+1),
			wantCode: http.StatusRequestEntityTooLarge, wantMsg: "max_request_bytes", headers: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := tc.app
			if app == nil {
				app = &fakeAppender{}
			}
			h := newWriteHandler(t, func() Appender { return app }, DefaultConfig().Receiver)
			rec := serve(h, http.MethodPost, tc.header, tc.body)
			checkAnswer(t, rec, tc.wantCode, tc.wantMsg)
			if tc.headers {
				checkWrittenHeaders(t, rec, 0, 0, 0)
			} else if got := rec.Header().Get(headerSamplesWritten); got != "" {
				t.Errorf("%s: %q before the content type was accepted", headerSamplesWritten, got)
			}
			if tc.wantCode != http.StatusNoContent && tc.app == nil && app.calls != 0 {
				t.Errorf("appender called %d times for a rejected request", app.calls)
			}
			proto := "2.0"
			if !tc.headers {
				proto = "unknown"
			}
			if got := testutil.ToFloat64(h.m.requests.WithLabelValues(strconv.Itoa(tc.wantCode), proto)); got != 1 {
				t.Errorf(`ferry_receiver_requests_total{code="%d",proto=%q} = %v, want 1`, tc.wantCode, proto, got)
			}
		})
	}
}

// TestWriteReusesBuffers sends different requests in turn through one
// handler, so that pooled buffers are reused, and checks that nothing of an
// earlier request leaks into a later one.
func TestWriteReusesBuffers(t *testing.T) {
	h, app := handlerWith(t, nil)
	big := make([]prompb.TimeSeries, 50)
	for i := range big {
		big[i] = ts([]string{"__name__", "m", "i", strings.Repeat("x", i+1)}, prompb.Sample{Value: float64(i), Timestamp: int64(i)})
	}
	checkAnswer(t, serve(h, http.MethodPost, remoteWriteHeaders(), snappyBody(t, big...)), http.StatusNoContent, "")
	checkAnswer(t, serve(h, http.MethodPost, remoteWriteHeaders(), snappyBody(t, ts(upSeries, prompb.Sample{Value: 7, Timestamp: 7}))), http.StatusNoContent, "")
	got := app.appended()
	if len(got) != 51 {
		t.Fatalf("appended %d series, want 51", len(got))
	}
	checkAppended(t, got[50:], []appendedSeries{{labels: upSeries, samples: []model.Sample{{Value: 7, Timestamp: 7}}}})
	checkAppended(t, got[49:50], []appendedSeries{{labels: []string{"__name__", "m", "i", strings.Repeat("x", 50)}, samples: []model.Sample{{Value: 49, Timestamp: 49}}}})
}

// gatedAppender blocks every Append until its gate is closed.
type gatedAppender struct {
	fakeAppender
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedAppender) AppendChecked(b *model.Batch, check func(int) error) error {
	g.entered <- struct{}{}
	<-g.gate
	return g.fakeAppender.AppendChecked(b, check)
}

// With every decoding slot taken by a request stuck in the WAL append,
// another request waits, then gets 503 with Retry-After; a client still
// sending its body holds no slot; once the slot is free, requests succeed
// again.
func TestWriteHandlerConcurrencyLimit(t *testing.T) {
	app := &gatedAppender{entered: make(chan struct{}, 4), gate: make(chan struct{})}
	h := newWriteHandler(t, func() Appender { return app }, DefaultConfig().Receiver)
	h.slots = make(chan struct{}, 1)
	h.slotWait = 50 * time.Millisecond
	srv := httptest.NewServer(h)
	defer srv.Close()
	body := snappyBody(t, ts([]string{"__name__", "up"}, prompb.Sample{Value: 1, Timestamp: 1}))
	post := func() (int, string, string) {
		resp, err := http.Post(srv.URL, "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return 0, "", ""
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(msg), resp.Header.Get("Retry-After")
	}

	// A client that has sent nothing of its body yet holds no slot.
	pr, pw := io.Pipe()
	slowDone := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, pr)
		req.Header.Set("Content-Type", "application/x-protobuf")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			slowDone <- 0
			return
		}
		resp.Body.Close()
		slowDone <- resp.StatusCode
	}()

	stuck := make(chan int, 1)
	go func() { code, _, _ := post(); stuck <- code }()
	<-app.entered // the first request holds the only slot, inside Append
	code, msg, retry := post()
	if code != http.StatusServiceUnavailable || retry == "" || !strings.Contains(msg, "max_concurrent_requests") {
		t.Fatalf("with no free slot: %d %q (Retry-After %q)", code, msg, retry)
	}
	close(app.gate)
	if code := <-stuck; code != http.StatusNoContent {
		t.Fatalf("the request holding the slot: %d", code)
	}
	if _, err := pw.Write(body); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code := <-slowDone; code != http.StatusNoContent {
		t.Fatalf("slow request: %d", code)
	}
	if code, _, _ := post(); code != http.StatusNoContent || len(app.appended()) != 3 {
		t.Fatalf("after the slot freed: %d, %d appends", code, len(app.appended()))
	}
}
