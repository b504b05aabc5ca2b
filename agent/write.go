package agent

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrymetrics/ferry/agent/receive"
	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Appender is what the receiver needs of the WAL.
type Appender interface {
	Append(b *wal.Batch) error
}

// writeHandler serves POST /api/v1/write (Remote-Write 1.0). It answers 2xx
// only after the samples are in the WAL under its sync policy.
type writeHandler struct {
	app     func() Appender // nil until the WAL is open
	token   func() string   // required bearer token, "" for none
	limits  func() ReceiverConfig
	logger  *zap.Logger
	bodies  *receive.BodyDecoder
	bufs    sync.Pool // *writeBuf
	m       *receiverMetrics
	lastLog sync.Map // kind → time of last warning
	// slots bounds the requests being decoded and appended at once; a
	// request whose body has arrived waits up to slotWait (default 10s) for
	// one.
	slots    chan struct{}
	slotWait time.Duration
}

type writeBuf struct {
	body    []byte
	decoded []byte
	req     receive.Request
}

type receiverMetrics struct {
	requests    *prometheus.CounterVec
	samples     prometheus.Counter
	duration    prometheus.Histogram
	unsupported *prometheus.CounterVec
}

func newReceiverMetrics(reg prometheus.Registerer) *receiverMetrics {
	m := &receiverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_receiver_requests_total", Help: "Remote-write requests by HTTP status code.",
		}, []string{"code"}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_receiver_samples_total", Help: "Samples and native histograms acknowledged (written to the WAL).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ferry_receiver_request_duration_seconds", Help: "Time to decode, validate and durably append a request.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
		unsupported: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_receiver_unsupported_total",
			Help: "Items of accepted requests that Ferry does not store yet (exemplars, metadata); they are not forwarded.",
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.samples, m.duration, m.unsupported)
	}
	return m
}

// httpError is an answer other than 2xx.
type httpError struct {
	code       int
	msg        string
	retryAfter time.Duration
	bearer     bool // ask for a bearer token
}

func (h *writeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	n, herr := h.serve(r)
	code := http.StatusNoContent
	if herr != nil {
		code = herr.code
		if herr.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(herr.retryAfter.Seconds())))
		}
		if herr.bearer {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
		}
		http.Error(w, herr.msg, code)
	} else {
		w.WriteHeader(code)
		h.m.samples.Add(float64(n))
		h.m.duration.Observe(time.Since(start).Seconds())
	}
	h.m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
}

func (h *writeHandler) bearer() string {
	if h.token == nil {
		return ""
	}
	return h.token()
}

func (h *writeHandler) serve(r *http.Request) (int, *httpError) {
	if r.Method != http.MethodPost {
		return 0, &httpError{code: http.StatusMethodNotAllowed, msg: "remote write takes POST"}
	}
	if tok := h.bearer(); tok != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			return 0, &httpError{code: http.StatusUnauthorized, msg: "missing or wrong bearer token", bearer: true}
		}
	}
	app := h.app()
	if app == nil {
		return 0, &httpError{code: http.StatusServiceUnavailable, msg: "starting: WAL replay in progress", retryAfter: 5 * time.Second}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/x-protobuf" || (params["proto"] != "" && params["proto"] != "prometheus.WriteRequest") {
			return 0, &httpError{code: http.StatusUnsupportedMediaType,
				msg: fmt.Sprintf("unsupported content type %q: Ferry accepts Remote-Write 1.0 (application/x-protobuf)", ct)}
		}
	}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	if enc != "" && enc != "snappy" && enc != "zstd" {
		return 0, &httpError{code: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("unsupported content encoding %q: use snappy or zstd", enc)}
	}
	limits := h.limits()
	if r.ContentLength > int64(limits.MaxRequestBytes) {
		return 0, &httpError{code: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("request body of %d bytes exceeds max_request_bytes (%d)", r.ContentLength, limits.MaxRequestBytes)}
	}
	buf, _ := h.bufs.Get().(*writeBuf)
	if buf == nil {
		buf = &writeBuf{}
	}
	defer func() {
		buf.req.Reset()
		h.bufs.Put(buf)
	}()
	body, err := readBody(r.Body, buf.body, int(limits.MaxRequestBytes))
	buf.body = body[:0]
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			return 0, &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body exceeds max_request_bytes (%d)", limits.MaxRequestBytes)}
		}
		return 0, &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf("read request body: %v", err)}
	}
	// The slot is taken once the body is in: a client sending slowly holds
	// only the bytes it sent, not a decoding slot.
	if h.slots != nil {
		wait := h.slotWait
		if wait == 0 {
			wait = 10 * time.Second
		}
		t := time.NewTimer(wait)
		select {
		case h.slots <- struct{}{}:
			t.Stop()
			defer func() { <-h.slots }()
		case <-t.C:
			return 0, &httpError{code: http.StatusServiceUnavailable, retryAfter: time.Second,
				msg: fmt.Sprintf("too many concurrent write requests (max_concurrent_requests %d): retry later", cap(h.slots))}
		case <-r.Context().Done():
			t.Stop()
			return 0, &httpError{code: http.StatusServiceUnavailable, msg: "client went away while waiting"}
		}
	}
	decoded, err := h.bodies.Decode(enc, body, int(limits.MaxDecodedBytes), buf.decoded)
	if decoded != nil {
		buf.decoded = decoded[:0]
	}
	switch {
	case errors.Is(err, receive.ErrTooLarge):
		return 0, &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("%v (max_decoded_bytes %d)", err, limits.MaxDecodedBytes)}
	case errors.Is(err, receive.ErrUnsupportedEncoding):
		return 0, &httpError{code: http.StatusUnsupportedMediaType, msg: err.Error()}
	case err != nil:
		return 0, &httpError{code: http.StatusBadRequest, msg: err.Error()}
	}
	if err := receive.Decode(decoded, &buf.req); err != nil {
		return 0, &httpError{code: http.StatusBadRequest, msg: err.Error()}
	}
	scheme := receive.LegacyValidation
	if limits.NameValidation == "utf8" {
		scheme = receive.UTF8Validation
	}
	if err := receive.Validate(&buf.req, scheme); err != nil {
		return 0, &httpError{code: http.StatusBadRequest, msg: err.Error()}
	}
	h.countUnsupported(&buf.req)
	batch := wal.Batch{Series: buf.req.Series, Labels: buf.req.Labels, Samples: buf.req.Samples, Histograms: buf.req.Histograms, Types: buf.req.Types}
	if err := app.Append(&batch); err != nil {
		if errors.Is(err, wal.ErrFull) {
			// 503, not 429: Prometheus retries 5xx, but drops a batch
			// answered 429 unless retry_on_http_429 is set.
			return 0, &httpError{code: http.StatusServiceUnavailable, msg: err.Error() + ": retry later", retryAfter: 5 * time.Second}
		}
		if h.shouldLog("append_error", 10*time.Second) {
			h.logger.Error("Appending to the WAL failed; the request was refused (logged at most every 10s; every refusal is counted in ferry_receiver_requests_total{code=\"503\"})", zap.Error(err))
		}
		return 0, &httpError{code: http.StatusServiceUnavailable, msg: "write to WAL failed: " + err.Error(), retryAfter: 5 * time.Second}
	}
	return len(buf.req.Samples) + len(buf.req.Histograms), nil
}

// countUnsupported counts, and warns at most once a minute about, what the
// request carried that Ferry does not store yet.
func (h *writeHandler) countUnsupported(req *receive.Request) {
	var ex int
	for _, s := range req.Series {
		ex += int(s.Exemplars)
	}
	for _, c := range []struct {
		kind string
		n    int
	}{{"exemplar", ex}, {"metadata", req.Metadata}} {
		if c.n == 0 {
			continue
		}
		h.m.unsupported.WithLabelValues(c.kind).Add(float64(c.n))
		if h.shouldLog(c.kind, time.Minute) {
			h.logger.Warn("Request carried items Ferry does not store yet; they are counted in ferry_receiver_unsupported_total and not forwarded",
				zap.String("kind", c.kind), zap.Int("count", c.n))
		}
	}
}

// shouldLog reports whether a message of this kind may be logged: at most
// once per interval.
func (h *writeHandler) shouldLog(kind string, every time.Duration) bool {
	now := time.Now()
	if last, ok := h.lastLog.Load(kind); ok && now.Sub(last.(time.Time)) <= every {
		return false
	}
	h.lastLog.Store(kind, now)
	return true
}

var errBodyTooLarge = errors.New("body too large")

// readBody reads at most limit bytes into buf.
func readBody(r io.Reader, buf []byte, limit int) ([]byte, error) {
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return buf, errBodyTooLarge
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), limit+1)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return buf, errBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
