package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
)

const (
	maxBodyBytes    = 32 << 20  // compressed request body
	maxDecodedBytes = 256 << 20 // decompressed request
)

// receiver is the built-in remote-write 1.0 receiver. It accepts
// snappy-compressed prompb.WriteRequest bodies on POST /api/v1/write,
// /api/v1/push and /, counts them and answers 204.
type receiver struct {
	ln  net.Listener
	srv *http.Server
	ver *verifier // nil unless verifying

	requests, samples, histograms, series, badRequests atomic.Int64

	// notify gets a value (without blocking) after every accepted request, so
	// that a waiter can re-check its condition.
	notify chan struct{}
	pool   sync.Pool // *recvState
}

type recvState struct {
	body, raw []byte
	dec       wrDecoder
}

func startReceiver(addr string, ver *verifier) (*receiver, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	return serveReceiver(ln, ver), nil
}

// serveReceiver serves the receiver on ln.
func serveReceiver(ln net.Listener, ver *verifier) *receiver {
	r := &receiver{ln: ln, ver: ver, notify: make(chan struct{}, 1)}
	r.pool.New = func() any { return new(recvState) }
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = r.srv.Serve(ln) }()
	return r
}

// URL is the receiver's remote-write URL.
func (r *receiver) URL() string { return "http://" + r.ln.Addr().String() + "/api/v1/write" }

func (r *receiver) Close() error { return r.srv.Close() }

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	code, msg := r.handle(req)
	if code/100 != 2 {
		r.badRequests.Add(1)
		http.Error(w, msg, code)
		return
	}
	w.WriteHeader(code)
}

func (r *receiver) handle(req *http.Request) (int, string) {
	switch req.URL.Path {
	case "/api/v1/write", "/api/v1/push", "/":
	default:
		return http.StatusNotFound, "not found"
	}
	if req.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, "POST only"
	}
	// Remote-write 1.0 only: anything else gets 415, which is also what makes
	// vmagent fall back from its own zstd protocol to Prometheus remote-write.
	if enc := req.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "snappy") {
		return http.StatusUnsupportedMediaType, "unsupported Content-Encoding " + enc
	}
	if ct := req.Header.Get("Content-Type"); strings.Contains(ct, "io.prometheus.write.v2") {
		return http.StatusUnsupportedMediaType, "remote-write 2.0 is not supported"
	}

	st := r.pool.Get().(*recvState)
	defer r.pool.Put(st)
	var err error
	st.body, err = readBody(st.body, req.Body, req.ContentLength, maxBodyBytes)
	if errors.Is(err, errTooLarge) {
		return http.StatusRequestEntityTooLarge, err.Error()
	}
	if err != nil {
		return http.StatusBadRequest, "reading body: " + err.Error()
	}
	n, err := snappy.DecodedLen(st.body)
	if err != nil {
		return http.StatusBadRequest, "snappy: " + err.Error()
	}
	if n > maxDecodedBytes {
		return http.StatusRequestEntityTooLarge, "decoded request too large"
	}
	if cap(st.raw) < n {
		st.raw = make([]byte, n)
	}
	st.raw, err = snappy.Decode(st.raw[:cap(st.raw)], st.body)
	if err != nil {
		return http.StatusBadRequest, "snappy: " + err.Error()
	}
	st.dec.collect = r.ver != nil
	if r.ver != nil {
		st.dec.names = r.ver.names
	}
	if err := st.dec.decode(st.raw); err != nil {
		return http.StatusBadRequest, "protobuf: " + err.Error()
	}
	if r.ver != nil {
		r.ver.observe(st.dec.obs)
	}
	r.requests.Add(1)
	r.series.Add(int64(st.dec.series))
	r.histograms.Add(int64(st.dec.histograms))
	r.samples.Add(int64(st.dec.samples))
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return http.StatusNoContent, ""
}

var errTooLarge = errors.New("request body too large")

// readBody reads all of rd into dst (reusing its capacity), failing with
// errTooLarge past limit bytes.
func readBody(dst []byte, rd io.Reader, contentLength int64, limit int) ([]byte, error) {
	dst = dst[:0]
	if contentLength > int64(limit) {
		return dst, errTooLarge
	}
	if contentLength > 0 {
		if int64(cap(dst)) < contentLength {
			dst = make([]byte, contentLength)
		}
		dst = dst[:contentLength]
		_, err := io.ReadFull(rd, dst)
		return dst, err
	}
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := rd.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if len(dst) > limit {
			return dst, errTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// observation is one delivered float sample: the series' slot and
// generation (both -1 when unknown, see seriesNames), timestamp and value.
type observation struct {
	series int64
	gen    int64
	ts     int64
	value  float64
}

// wrDecoder decodes the protobuf wire format of prompb.WriteRequest
// (remote.proto / types.proto of Prometheus) without allocating: it counts
// series, float samples and histograms and, with collect, records an
// observation per float sample. Unknown fields (metadata, exemplars, ...) are
// skipped as protobuf requires.
type wrDecoder struct {
	collect bool
	names   *seriesNames             // with collect: how labels name slot and generation; nil: by id, generation 0
	onLabel func(name, value []byte) // test hook

	series, samples, histograms int
	obs                         []observation
}

var errTruncated = errors.New("truncated message")

func (d *wrDecoder) decode(b []byte) error {
	d.series, d.samples, d.histograms = 0, 0, 0
	d.obs = d.obs[:0]
	for i := 0; i < len(b); {
		tag, j := uvarint(b, i)
		if j < 0 {
			return errTruncated
		}
		if tag == 1<<3|2 { // WriteRequest.timeseries
			lo, hi, err := lenField(b, j)
			if err != nil {
				return err
			}
			if err := d.decodeSeries(b[lo:hi]); err != nil {
				return fmt.Errorf("timeseries %d: %w", d.series, err)
			}
			i = hi
			continue
		}
		var err error
		if i, err = skipField(b, j, tag); err != nil {
			return err
		}
	}
	return nil
}

func (d *wrDecoder) decodeSeries(b []byte) error {
	d.series++
	var hash uint64
	var genValue []byte
	genLabel, hashed := idLabel, false
	if d.names != nil {
		genLabel, hashed = d.names.genLabel, d.names.index != nil
	}
	first := len(d.obs)
	for i := 0; i < len(b); {
		tag, j := uint64(b[i]), i+1
		if tag >= 0x80 {
			if tag, j = uvarintSlow(b, i); j < 0 {
				return errTruncated
			}
		}
		switch tag {
		case 1<<3 | 2: // labels
			var lo, hi int
			if j < len(b) && b[j] < 0x80 && int(b[j]) < len(b)-j {
				lo, hi = j+1, j+1+int(b[j])
			} else {
				var err error
				if lo, hi, err = lenField(b, j); err != nil {
					return err
				}
			}
			name, value, err := decodeLabel(b[lo:hi])
			if err != nil {
				return err
			}
			if d.onLabel != nil {
				d.onLabel(name, value)
			}
			if d.collect {
				if string(name) == genLabel {
					genValue = value
				} else if hashed {
					hash += labelHash(name, value)
				}
			}
			i = hi
		case 2<<3 | 2: // samples
			lo, hi, err := lenField(b, j)
			if err != nil {
				return err
			}
			v, ts, err := decodeSample(b[lo:hi])
			if err != nil {
				return err
			}
			d.samples++
			if d.collect {
				d.obs = append(d.obs, observation{ts: ts, value: v})
			}
			i = hi
		case 4<<3 | 2: // histograms
			_, hi, err := lenField(b, j)
			if err != nil {
				return err
			}
			d.histograms++
			i = hi
		default: // exemplars, unknown fields
			var err error
			if i, err = skipField(b, j, tag); err != nil {
				return err
			}
		}
	}
	// Labels may follow samples on the wire, so set the series at the end.
	if len(d.obs) > first {
		slot, gen := d.names.resolve(hash, genValue)
		for k := first; k < len(d.obs); k++ {
			d.obs[k].series, d.obs[k].gen = slot, gen
		}
	}
	return nil
}

func decodeLabel(b []byte) (name, value []byte, err error) {
	// Fast path for the usual encoding: name then value, both shorter than
	// 128 bytes and nothing else.
	if len(b) >= 4 && b[0] == 1<<3|2 && b[1] < 0x80 {
		if n := int(b[1]); len(b) >= 4+n && b[2+n] == 2<<3|2 && b[3+n] < 0x80 && len(b) == 4+n+int(b[3+n]) {
			return b[2 : 2+n], b[4+n:], nil
		}
	}
	for i := 0; i < len(b); {
		tag, j := uvarint(b, i)
		if j < 0 {
			return nil, nil, errTruncated
		}
		if tag == 1<<3|2 || tag == 2<<3|2 {
			lo, hi, err := lenField(b, j)
			if err != nil {
				return nil, nil, err
			}
			if tag == 1<<3|2 {
				name = b[lo:hi]
			} else {
				value = b[lo:hi]
			}
			i = hi
			continue
		}
		if i, err = skipField(b, j, tag); err != nil {
			return nil, nil, err
		}
	}
	return name, value, nil
}

func decodeSample(b []byte) (v float64, ts int64, err error) {
	for i := 0; i < len(b); {
		tag, j := uvarint(b, i)
		if j < 0 {
			return 0, 0, errTruncated
		}
		switch tag {
		case 1<<3 | 1: // value, fixed64
			if len(b)-j < 8 {
				return 0, 0, errTruncated
			}
			v = math.Float64frombits(binary.LittleEndian.Uint64(b[j:]))
			i = j + 8
		case 2 << 3: // timestamp, varint (wire type 0)
			x, k := uvarint(b, j)
			if k < 0 {
				return 0, 0, errTruncated
			}
			ts, i = int64(x), k
		default:
			if i, err = skipField(b, j, tag); err != nil {
				return 0, 0, err
			}
		}
	}
	return v, ts, nil
}

// uvarint decodes the varint at b[i:] and returns it with the index after
// it, or -1 if it is truncated or too long. One-byte varints (most tags and
// lengths here) take the inlined fast path.
func uvarint(b []byte, i int) (uint64, int) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1
	}
	return uvarintSlow(b, i)
}

func uvarintSlow(b []byte, i int) (uint64, int) {
	if i >= len(b) {
		return 0, -1
	}
	x, n := binary.Uvarint(b[i:])
	if n <= 0 {
		return 0, -1
	}
	return x, i + n
}

// lenField reads the length of a wire type 2 field whose length starts at
// b[i] and returns the bounds of its contents.
func lenField(b []byte, i int) (lo, hi int, err error) {
	l, j := uvarint(b, i)
	if j < 0 || l > uint64(len(b)-j) {
		return 0, 0, errTruncated
	}
	return j, j + int(l), nil
}

// skipField skips the value of a field with the given tag starting at b[i]
// and returns the index after it.
func skipField(b []byte, i int, tag uint64) (int, error) {
	if tag>>3 == 0 {
		return 0, errors.New("field number 0")
	}
	switch tag & 7 {
	case 0:
		_, j := uvarint(b, i)
		if j < 0 {
			return 0, errTruncated
		}
		return j, nil
	case 1:
		if len(b)-i < 8 {
			return 0, errTruncated
		}
		return i + 8, nil
	case 2:
		_, hi, err := lenField(b, i)
		return hi, err
	case 5:
		if len(b)-i < 4 {
			return 0, errTruncated
		}
		return i + 4, nil
	}
	return 0, fmt.Errorf("unsupported wire type %d", tag&7)
}

// parseID parses a non-negative decimal id, or returns -1.
func parseID(b []byte) int64 {
	if len(b) == 0 || len(b) > 18 {
		return -1
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// seriesNames maps a delivered series' labels back to its slot and
// generation (see shape). For shape B both come from the id label; for
// shapes without one, the slot is found by the hash of the labels other
// than genLabel, which are the same in every generation, and the
// generation is read from genLabel.
type seriesNames struct {
	n        int
	genLabel string
	index    seriesIndex // nil: by id
	parseGen func(n, i int, v []byte) int64
}

func newSeriesNames(n int, sh shape) (*seriesNames, error) {
	nm := &seriesNames{n: n, genLabel: sh.genLabel, parseGen: sh.parseGen}
	if !sh.byID {
		var err error
		if nm.index, err = newSeriesIndex(n, sh.labels, sh.genLabel); err != nil {
			return nil, err
		}
	}
	return nm, nil
}

// resolve returns the slot and generation of the series whose labels other
// than genLabel hash to hash and whose genLabel is genValue, or -1, -1. A
// nil seriesNames takes the slot from the id label, in generation 0.
func (nm *seriesNames) resolve(hash uint64, genValue []byte) (slot, gen int64) {
	switch {
	case nm == nil:
		if id := parseID(genValue); id >= 0 {
			return id, 0
		}
	case nm.index == nil:
		if id := parseID(genValue); id >= 0 {
			return id % int64(nm.n), id / int64(nm.n)
		}
	default:
		if i := nm.index.lookup(hash); i >= 0 {
			if g := nm.parseGen(nm.n, int(i), genValue); g >= 0 {
				return i, g
			}
		}
	}
	return -1, -1
}

// seriesIndex maps the hash of a series' labels to the series' index, for
// shapes whose labels carry no id. The hash of a label set is the sum of its
// labels' hashes, so it does not depend on their order on the wire.
type seriesIndex map[uint64]int32

// newSeriesIndex indexes series 0..n-1 by the hash of their labels other
// than the one named skip. It fails if two series hash alike.
func newSeriesIndex(n int, labels func(i int) [][2]string, skip string) (seriesIndex, error) {
	hashes := make([]uint64, n)
	const chunk = 1 << 14
	inParallel((n+chunk-1)/chunk, func(c int) {
		for i := c * chunk; i < min((c+1)*chunk, n); i++ {
			for _, l := range labels(i) {
				if l[0] != skip {
					hashes[i] += labelHash(l[0], l[1])
				}
			}
		}
	})
	x := make(seriesIndex, n)
	for i, h := range hashes {
		if j, dup := x[h]; dup {
			return nil, fmt.Errorf("series index: series %d and %d have the same label hash", j, i)
		}
		x[h] = int32(i)
	}
	return x, nil
}

// lookup returns the index of the series whose labels hash to h, or -1.
func (x seriesIndex) lookup(h uint64) int64 {
	if i, ok := x[h]; ok {
		return int64(i)
	}
	return -1
}

// labelHash is FNV-1a of name, 0xff, value, with splitmix64's finaliser so
// that sums of label hashes spread over all 64 bits.
func labelHash[T string | []byte](name, value T) uint64 {
	h := uint64(14695981039346656037)
	for k := 0; k < len(name); k++ {
		h = (h ^ uint64(name[k])) * 1099511628211
	}
	h = (h ^ 0xff) * 1099511628211
	for k := 0; k < len(value); k++ {
		h = (h ^ uint64(value[k])) * 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

// verifier keeps compact per-slot bookkeeping of what was delivered:
// contig[i] is the highest round r such that every round 0..r of slot i was
// delivered (or skipped because the push was not acknowledged), lastTS[i] the
// highest timestamp seen. Rounds that arrive ahead of a gap wait in pending,
// which stays empty when delivery is in order. A sample counts for round r
// of slot i only if it came in the series of the slot's generation in that
// round, churn.gen(i, r); one of another generation is foreign (and
// counted in wrongGen too). Memory is O(slots), however many series churn
// creates.
type verifier struct {
	mu         sync.Mutex
	n          int
	base, step int64
	churn      churnSchedule
	names      *seriesNames // how delivered labels name slot and generation; nil: by id
	contig     []int64
	lastTS     []int64
	pending    map[[2]int64]struct{} // {slot, round} delivered beyond contig+1

	unique     atomic.Int64 // distinct (slot, round) pairs delivered
	duplicates int64
	outOfOrder int64
	foreign    int64 // unknown series, timestamps not of this run, wrong generation
	wrongGen   int64 // a slot's series of another generation than the round's
	badValue   int64
}

func newVerifier(n int, base, step int64, churn churnSchedule) *verifier {
	v := &verifier{n: n, base: base, step: step, churn: churn,
		contig: make([]int64, n), lastTS: make([]int64, n), pending: map[[2]int64]struct{}{}}
	for i := range v.contig {
		v.contig[i] = -1
		v.lastTS[i] = math.MinInt64
	}
	return v
}

func (v *verifier) observe(obs []observation) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, o := range obs {
		d := o.ts - v.base
		if o.series < 0 || o.series >= int64(v.n) || d < 0 || d%v.step != 0 {
			v.foreign++
			continue
		}
		i, r := o.series, d/v.step
		if o.gen != v.churn.gen(int(i), r) {
			v.foreign++
			v.wrongGen++
			continue
		}
		if o.value != seriesValue(int(i), r) {
			v.badValue++
		}
		if o.ts < v.lastTS[i] {
			v.outOfOrder++
		} else {
			v.lastTS[i] = o.ts
		}
		v.mark(i, r, true)
	}
}

// skip marks round r of series [lo, hi) as not expected (not acknowledged).
func (v *verifier) skip(lo, hi int, r int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := lo; i < hi; i++ {
		v.mark(int64(i), r, false)
	}
}

func (v *verifier) mark(i, r int64, delivered bool) {
	c := v.contig[i]
	switch {
	case r <= c:
		if delivered {
			v.duplicates++
		}
		return
	case r == c+1:
		c = r
		for len(v.pending) > 0 {
			k := [2]int64{i, c + 1}
			if _, ok := v.pending[k]; !ok {
				break
			}
			delete(v.pending, k)
			c++
		}
		v.contig[i] = c
	default:
		k := [2]int64{i, r}
		if _, ok := v.pending[k]; ok {
			if delivered {
				v.duplicates++
			}
			return
		}
		v.pending[k] = struct{}{}
	}
	if delivered {
		v.unique.Add(1)
	}
}

func (v *verifier) uniqueDelivered() int64 { return v.unique.Load() }

type verifyStats struct {
	missing, outOfOrder, duplicates, foreign, wrongGen, badValue, unique int64
}

// stats counts, among rounds 0..expected(i)-1 of every series i, those that
// were neither delivered nor skipped.
func (v *verifier) stats(expected func(i int) int64) verifyStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := verifyStats{outOfOrder: v.outOfOrder, duplicates: v.duplicates,
		foreign: v.foreign, wrongGen: v.wrongGen, badValue: v.badValue, unique: v.unique.Load()}
	for i := 0; i < v.n; i++ {
		want := expected(i)
		c := v.contig[i]
		if want <= c+1 {
			continue
		}
		if len(v.pending) == 0 {
			st.missing += want - c - 1
			continue
		}
		for r := c + 1; r < want; r++ {
			if _, ok := v.pending[[2]int64{int64(i), r}]; !ok {
				st.missing++
			}
		}
	}
	return st
}
