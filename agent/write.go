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
	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Appender is what the receiver needs of the WAL.
type Appender interface {
	// AppendChecked appends b after check(i) accepted each series i the
	// log does not hold yet (wal.WAL.AppendChecked).
	AppendChecked(b *model.Batch, check func(series int) error) error
}

// writeHandler serves POST /api/v1/write: Remote-Write 1.0
// (prometheus.WriteRequest) and 2.0 (io.prometheus.write.v2.Request), told
// apart by the Content-Type. It answers 2xx only after everything the
// request carried (samples, histograms, exemplars, metadata) is in the WAL
// under its sync policy; a request is appended whole or not at all.
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
	check   seriesCheck
}

// seriesCheck validates one series of req; its method value, made once
// per pooled buffer, is what AppendChecked calls.
type seriesCheck struct {
	req    *receive.Request
	scheme receive.ValidationScheme
}

func (c *seriesCheck) series(i int) error { return receive.ValidateSeries(c.req, i, c.scheme) }

type receiverMetrics struct {
	requests  *prometheus.CounterVec
	samples   prometheus.Counter
	exemplars prometheus.Counter
	metadata  prometheus.Counter
	duration  prometheus.Histogram
}

func newReceiverMetrics(reg prometheus.Registerer) *receiverMetrics {
	m := &receiverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_receiver_requests_total",
			Help: `Remote-write requests by HTTP status code and protocol ("1.0", "2.0", or "unknown" before the Content-Type is accepted).`,
		}, []string{"code", "proto"}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_receiver_samples_total", Help: "Samples and native histograms acknowledged (written to the WAL).",
		}),
		exemplars: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_receiver_exemplars_total", Help: "Exemplars acknowledged (written to the WAL).",
		}),
		metadata: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_receiver_metadata_total",
			Help: "Metric metadata entries acknowledged (written to the WAL); Remote-Write 2.0 metadata repeated by consecutive series counts once.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ferry_receiver_request_duration_seconds", Help: "Time to decode, validate and durably append a request.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.samples, m.exemplars, m.metadata, m.duration)
	}
	return m
}

// protoVersion is the remote-write protocol of a request.
type protoVersion uint8

const (
	protoUnknown protoVersion = iota // the Content-Type was not accepted (yet)
	protoV1                          // Remote-Write 1.0, prometheus.WriteRequest
	protoV2                          // Remote-Write 2.0, io.prometheus.write.v2.Request
)

func (p protoVersion) String() string {
	switch p {
	case protoV1:
		return "1.0"
	case protoV2:
		return "2.0"
	}
	return "unknown"
}

// Response headers of Remote-Write 2.0 giving what was written.
const (
	headerSamplesWritten    = "X-Prometheus-Remote-Write-Samples-Written"
	headerHistogramsWritten = "X-Prometheus-Remote-Write-Histograms-Written"
	headerExemplarsWritten  = "X-Prometheus-Remote-Write-Exemplars-Written"
)

// written is the outcome of a request: its protocol once negotiated, and
// what it wrote to the WAL (nothing unless it is acknowledged).
type written struct {
	proto                                    protoVersion
	samples, histograms, exemplars, metadata int
}

// httpError is an answer other than 2xx.
type httpError struct {
	code       int
	msg        string
	retryAfter time.Duration
	bearer     bool   // ask for a bearer token
	allow      string // the methods accepted, for a 405
}

func (h *writeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	res, herr := h.serve(r)
	code := http.StatusNoContent
	if res.proto == protoV2 {
		// Remote-Write 2.0 wants these on every answer once the content
		// type is accepted, errors included: a request is written whole
		// or not at all, so an error means 0.
		hd := w.Header()
		hd.Set(headerSamplesWritten, strconv.Itoa(res.samples))
		hd.Set(headerHistogramsWritten, strconv.Itoa(res.histograms))
		hd.Set(headerExemplarsWritten, strconv.Itoa(res.exemplars))
	}
	if herr != nil {
		code = herr.code
		if herr.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(herr.retryAfter.Seconds())))
		}
		if herr.bearer {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
		}
		if herr.allow != "" {
			w.Header().Set("Allow", herr.allow)
		}
		http.Error(w, herr.msg, code)
	} else {
		w.WriteHeader(code)
		h.m.samples.Add(float64(res.samples + res.histograms))
		h.m.exemplars.Add(float64(res.exemplars))
		h.m.metadata.Add(float64(res.metadata))
		h.m.duration.Observe(time.Since(start).Seconds())
	}
	h.m.requests.WithLabelValues(strconv.Itoa(code), res.proto.String()).Inc()
}

func (h *writeHandler) bearer() string {
	if h.token == nil {
		return ""
	}
	return h.token()
}

// negotiate returns the protocol the Content-Type selects: Remote-Write 1.0
// for application/x-protobuf without a proto parameter or with
// proto=prometheus.WriteRequest, and for no Content-Type at all, as 1.0
// senders may omit it; Remote-Write 2.0 for
// proto=io.prometheus.write.v2.Request. Anything else is answered 415.
func negotiate(contentType string) (protoVersion, *httpError) {
	if contentType == "" {
		return protoV1, nil
	}
	const accepted = "Ferry accepts application/x-protobuf for Remote-Write 1.0 (no proto parameter, or proto=prometheus.WriteRequest) " +
		"and application/x-protobuf;proto=io.prometheus.write.v2.Request for Remote-Write 2.0"
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/x-protobuf" {
		return protoUnknown, &httpError{code: http.StatusUnsupportedMediaType,
			msg: fmt.Sprintf("unsupported content type %q: %s", contentType, accepted)}
	}
	switch p := params["proto"]; p {
	case "", "prometheus.WriteRequest":
		return protoV1, nil
	case "io.prometheus.write.v2.Request":
		return protoV2, nil
	default:
		return protoUnknown, &httpError{code: http.StatusUnsupportedMediaType,
			msg: fmt.Sprintf("unsupported protobuf message %q in content type %q: %s", p, contentType, accepted)}
	}
}

func (h *writeHandler) serve(r *http.Request) (written, *httpError) {
	var res written
	if r.Method != http.MethodPost {
		return res, &httpError{code: http.StatusMethodNotAllowed, msg: "remote write takes POST", allow: http.MethodPost}
	}
	if tok := h.bearer(); tok != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			return res, &httpError{code: http.StatusUnauthorized, msg: "missing or wrong bearer token", bearer: true}
		}
	}
	proto, herr := negotiate(r.Header.Get("Content-Type"))
	if herr != nil {
		return res, herr
	}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	if enc != "" && enc != "snappy" && enc != "zstd" {
		return res, &httpError{code: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("unsupported content encoding %q: use snappy or zstd", enc)}
	}
	res.proto = proto // negotiated: from here on, 2.0 answers say what was written
	app := h.app()
	if app == nil {
		return res, &httpError{code: http.StatusServiceUnavailable, msg: "starting: WAL replay in progress", retryAfter: 5 * time.Second}
	}
	limits := h.limits()
	if r.ContentLength > int64(limits.MaxRequestBytes) {
		return res, &httpError{code: http.StatusRequestEntityTooLarge,
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
			return res, &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body exceeds max_request_bytes (%d)", limits.MaxRequestBytes)}
		}
		return res, &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf("read request body: %v", err)}
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
			return res, &httpError{code: http.StatusServiceUnavailable, retryAfter: time.Second,
				msg: fmt.Sprintf("too many concurrent write requests (max_concurrent_requests %d): retry later", cap(h.slots))}
		case <-r.Context().Done():
			t.Stop()
			return res, &httpError{code: http.StatusServiceUnavailable, msg: "client went away while waiting"}
		}
	}
	decoded, err := h.bodies.Decode(enc, body, int(limits.MaxDecodedBytes), buf.decoded)
	if decoded != nil {
		buf.decoded = decoded[:0]
	}
	switch {
	case errors.Is(err, receive.ErrTooLarge):
		return res, &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("%v (max_decoded_bytes %d)", err, limits.MaxDecodedBytes)}
	case errors.Is(err, receive.ErrUnsupportedEncoding):
		return res, &httpError{code: http.StatusUnsupportedMediaType, msg: err.Error()}
	case err != nil:
		return res, &httpError{code: http.StatusBadRequest, msg: err.Error()}
	}
	decode := receive.Decode
	if proto == protoV2 {
		decode = receive.DecodeV2
	}
	if err := decode(decoded, &buf.req); err != nil {
		return res, &httpError{code: http.StatusBadRequest, msg: err.Error()}
	}
	scheme := receive.LegacyValidation
	if limits.NameValidation == "utf8" {
		scheme = receive.UTF8Validation
	}
	if err := receive.ValidateShape(&buf.req, scheme); err != nil {
		return res, &httpError{code: http.StatusBadRequest, msg: err.Error()}
	}
	// The labels of a series the WAL already holds passed validation when
	// it was created: only new series are validated.
	batch := &buf.req.Batch
	buf.check.req, buf.check.scheme = &buf.req, scheme
	if err := app.AppendChecked(batch, buf.check.series); err != nil {
		var verr *receive.ValidationError
		if errors.As(err, &verr) {
			return res, &httpError{code: http.StatusBadRequest, msg: err.Error()}
		}
		if errors.Is(err, wal.ErrFull) {
			// 503, not 429: Prometheus retries 5xx, but drops a batch
			// answered 429 unless retry_on_http_429 is set.
			return res, &httpError{code: http.StatusServiceUnavailable, msg: err.Error() + ": retry later", retryAfter: 5 * time.Second}
		}
		if h.shouldLog("append_error", 10*time.Second) {
			h.logger.Error("Appending to the WAL failed; the request was refused (logged at most every 10s; every refusal is counted in ferry_receiver_requests_total{code=\"503\"})", zap.Error(err))
		}
		return res, &httpError{code: http.StatusServiceUnavailable, msg: "write to WAL failed: " + err.Error(), retryAfter: 5 * time.Second}
	}
	res.samples, res.histograms = len(batch.Samples), len(batch.Histograms)
	res.exemplars, res.metadata = len(batch.Exemplars), len(batch.Metadata)
	return res, nil
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
