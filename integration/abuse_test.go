package integration

// Bad input at the receiver of the real binary: every malformed, oversized
// or unsupported request gets the right status and a message, slow clients
// do not stop ferry from serving others, and what was acknowledged before
// is delivered intact.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

func encodeWR(series ...prompb.TimeSeries) []byte {
	raw, err := (&prompb.WriteRequest{Timeseries: series}).Marshal()
	if err != nil {
		panic(err)
	}
	return raw
}

func oneSeries(ts int64, labels ...string) prompb.TimeSeries {
	s := prompb.TimeSeries{Samples: []prompb.Sample{{Timestamp: ts, Value: 1}}}
	for i := 0; i+1 < len(labels); i += 2 {
		s.Labels = append(s.Labels, prompb.Label{Name: labels[i], Value: labels[i+1]})
	}
	return s
}

// v2BadSymbols is a Remote-Write 2.0 request whose symbols table does not
// start with the empty string, as the 2.0 specification requires.
func v2BadSymbols(ts int64) []byte {
	req := writev2.Request{Symbols: []string{"__name__", "m"}, Timeseries: []writev2.TimeSeries{{
		LabelsRefs: []uint32{0, 1}, Samples: []writev2.Sample{{Value: 1, Timestamp: ts}}}}}
	raw, err := req.Marshal()
	if err != nil {
		panic(err)
	}
	return snappy.Encode(nil, raw)
}

type badRequest struct {
	name     string
	method   string
	ctype    string // "" → application/x-protobuf; "-" → none
	encoding string // "" → snappy; "-" → none
	body     []byte
	chunked  bool // no Content-Length
	want     int
	msg      string // a substring of the answer, case-insensitive
}

func (b badRequest) send(t *testing.T, addr string) (int, string) {
	t.Helper()
	method := b.method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader = bytes.NewReader(b.body)
	if b.chunked {
		body = io.MultiReader(bytes.NewReader(b.body)) // hides the length
	}
	req, err := http.NewRequest(method, "http://"+addr+"/api/v1/write", body)
	if err != nil {
		t.Fatal(err)
	}
	setHeader(req.Header, "Content-Type", b.ctype, "application/x-protobuf")
	setHeader(req.Header, "Content-Encoding", b.encoding, "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s: %v", b.name, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(msg))
}

// zstdHeaderDeclaring is a zstd frame header declaring n content bytes
// (single segment, 8-byte frame content size), followed by junk.
func zstdHeaderDeclaring(n uint64) []byte {
	b := []byte{0x28, 0xB5, 0x2F, 0xFD, 0xE0}
	b = binary.LittleEndian.AppendUint64(b, n)
	return append(b, 0, 0, 0, 0, 0, 0)
}

// Every kind of bad request, in either Remote-Write version, gets its
// status (400, 413, 415, 405) and a message; ferry counts them by code,
// stays up, and the samples it had acknowledged before arrive intact in a
// real Prometheus.
func TestReceiverRejectsBadInput(t *testing.T) {
	requireIntegration(t)
	a := startProm(t, "downstream-a", promReceiver, "")
	f := newFerry(t, "", "a="+a.writeURL())
	f.appendConfig("receiver:\n  max_request_bytes: 1MiB\n  max_decoded_bytes: 4MiB")
	f.start()
	p := newPusher(f.addr, 100)
	ts := time.Now().UnixMilli()
	p.pushRounds(t, ts, ts+9, 100)
	ts += 10

	valid := func(labels ...string) []byte { return snappy.Encode(nil, encodeWR(oneSeries(ts, labels...))) }
	big := bytes.Repeat([]byte("x"), 5<<20) // 5 MiB: decoded over max_decoded_bytes
	over := make([]byte, 1<<20+1)           // compressed over max_request_bytes
	for i := range over {
		over[i] = byte(i * 7919 >> 3)
	}
	cases := []badRequest{
		{name: "garbage body", body: []byte("\xff\xfe this is not snappy \x00\x01"), want: 400, msg: "snappy"},
		{name: "snappy of garbage protobuf", body: snappy.Encode(nil, []byte("\x0a\xff\xff\xff\x0f garbage")), want: 400},
		{name: "snappy of text", body: snappy.Encode(nil, []byte("up{job=\"x\"} 1\n")), want: 400},
		{name: "empty body", body: nil, want: 400},
		{name: "text/plain content type", ctype: "text/plain", body: valid("__name__", "m", "job", "x"), want: 415, msg: "content type"},
		{name: "json content type", ctype: "application/json", body: []byte(`{"timeseries":[]}`), encoding: "-", want: 415, msg: "content type"},
		{name: "unknown proto message", ctype: "application/x-protobuf;proto=io.prometheus.write.v3.Request", body: valid("__name__", "m"), want: 415, msg: "content type"},
		{name: "2.0 symbols without leading \"\"", ctype: contentTypeV2, body: v2BadSymbols(ts), want: 400, msg: "symbols"},
		{name: "unparsable content type", ctype: "application/x-protobuf; ===", body: valid("__name__", "m"), want: 415},
		{name: "gzip encoding", encoding: "gzip", body: valid("__name__", "m"), want: 415, msg: "encoding"},
		{name: "deflate encoding", encoding: "deflate", body: valid("__name__", "m"), want: 415, msg: "encoding"},
		{name: "snappy declaring 4 GiB", body: append(binary.AppendUvarint(nil, 0xFFFFFFFF), 0, 1, 2, 3), want: 413},
		// The snappy block format stores the length in 32 bits: longer is corrupt.
		{name: "snappy declaring 1 TiB", body: append(binary.AppendUvarint(nil, 1<<40), 0, 1, 2, 3), want: 400, msg: "length"},
		{name: "zstd frame declaring 1 TiB", encoding: "zstd", body: zstdHeaderDeclaring(1 << 40), want: 413},
		{name: "decoded body over max_decoded_bytes", body: snappy.Encode(nil, big), want: 413, msg: "max_decoded_bytes"},
		{name: "body over max_request_bytes", body: over, want: 413, msg: "max_request_bytes"},
		{name: "chunked body over max_request_bytes", body: over, chunked: true, want: 413, msg: "max_request_bytes"},
		{name: "invalid label name", body: valid("1bad", "v", "__name__", "m"), want: 400},
		{name: "unsorted labels", body: valid("job", "x", "__name__", "m"), want: 400},
		{name: "duplicate labels", body: valid("__name__", "m", "job", "x", "job", "y"), want: 400},
		{name: "empty label value", body: valid("__name__", "m", "job", ""), want: 400},
		{name: "empty label name", body: valid("", "v", "__name__", "m"), want: 400},
		{name: "no metric name", body: valid("job", "x"), want: 400},
		{name: "no labels at all", body: valid(), want: 400},
		{name: "invalid metric name", body: valid("__name__", "bad-name{}", "job", "x"), want: 400},
		{name: "invalid UTF-8 value", body: valid("__name__", "m", "job", "\xff\xfe"), want: 400},
		{name: "GET", method: http.MethodGet, want: 405},
	}
	counts := map[int]int{}
	for _, c := range cases {
		code, msg := c.send(t, f.addr)
		counts[code]++
		switch {
		case code != c.want:
			t.Errorf("%s: HTTP %d (%q), want %d", c.name, code, truncate(msg, 200), c.want)
		case msg == "":
			t.Errorf("%s: HTTP %d without a message", c.name, code)
		case c.msg != "" && !strings.Contains(strings.ToLower(msg), c.msg):
			t.Errorf("%s: HTTP %d %q does not mention %q", c.name, code, msg, c.msg)
		default:
			t.Logf("%-36s %d %s", c.name, code, truncate(msg, 140))
		}
	}
	// A well-formed request with no series is not an error (Prometheus
	// answers 204 too) and stores nothing.
	if code, msg := (badRequest{name: "empty write request", body: snappy.Encode(nil, encodeWR())}).send(t, f.addr); code != 204 {
		t.Errorf("empty WriteRequest: HTTP %d %q, want 204", code, msg)
	}
	for code, n := range counts {
		if got := f.metric("ferry_receiver_requests_total", fmt.Sprintf(`code="%d"`, code)); got != float64(n) {
			t.Errorf("ferry_receiver_requests_total{code=\"%d\"} = %v, sent %d", code, got, n)
		}
	}
	// Still serving; what came before is intact.
	p.pushRounds(t, ts, ts+9, 100)
	acked, n := p.snapshot()
	waitAcked(t, acked, time.Minute, a)
	if v := f.metric("ferry_sender_samples_failed_total"); v != 0 {
		t.Errorf("ferry_sender_samples_failed_total = %v: a bad request reached the endpoint", v)
	}
	t.Logf("%d bad requests answered %v; %d good samples before and after all delivered", len(cases), counts, n)
	f.stop()
}

// 200 connections each trickle a valid remote-write body one byte at a
// time (one byte per 200 ms per connection, about 13 s per body) while a
// well-behaved client pushes every 100 ms: the well-behaved client must be
// served as fast as before (2xx, p99 within 500 ms), ferry's RSS must grow
// by a bounded amount, each slow client gets 204 in the end (or 503 if
// ferry sheds load), and every acknowledged sample, slow or not, arrives
// downstream. (Ferry once took a max_concurrent_requests slot before reading
// the body: 16 trickling clients then held every slot and the others got
// 503 after 10 s.)
func TestSlowClientsDoNotStarveOthers(t *testing.T) {
	requireIntegration(t)
	const clients = 200
	a := startProm(t, "downstream-a", promReceiver, "")
	f := newFerry(t, "", "a="+a.writeURL())
	f.startWith(ferryPlainBinary(t)) // RSS without the race detector's shadow memory
	p := newPusher(f.addr, 100)
	p.client.Timeout = time.Minute

	var last int64
	type result struct {
		at   time.Time
		lat  time.Duration
		code int
	}
	// pushUntil pushes a round every 100ms until stop closes (or for d).
	pushUntil := func(stop <-chan struct{}, d time.Duration) []result {
		var out []result
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		end := time.After(d)
		for {
			ts := max(last+1, time.Now().UnixMilli())
			last = ts
			start := time.Now()
			code, _ := p.push(ts, 0, p.series)
			out = append(out, result{start, time.Since(start), code})
			select {
			case <-stop:
				return out
			case <-end:
				return out
			case <-tick.C:
			}
		}
	}
	lats := func(rs []result) (l []time.Duration, bad map[int]int) {
		bad = map[int]int{}
		for _, r := range rs {
			l = append(l, r.lat)
			if r.code/100 != 2 {
				bad[r.code]++
			}
		}
		return l, bad
	}
	base, _ := lats(pushUntil(nil, 3*time.Second))
	rssBefore := rssBytes(f.pid())

	slowTS := time.Now().UnixMilli()
	started := time.Now()
	var wg sync.WaitGroup
	statuses := make(chan string, clients)
	var okMu sync.Mutex
	okSlow := map[int]bool{}
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			series := oneSeries(slowTS, "__name__", "e2e_metric", "id", fmt.Sprintf("slow-%d", i), "job", "e2e")
			series.Samples[0].Value = float64(slowTS)
			body := snappy.Encode(nil, encodeWR(series))
			conn, err := net.DialTimeout("tcp", f.addr, 10*time.Second)
			if err != nil {
				statuses <- err.Error()
				return
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /api/v1/write HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"+
				"X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: %d\r\n\r\n", f.addr, len(body))
			for _, c := range body {
				time.Sleep(200 * time.Millisecond)
				if _, err := conn.Write([]byte{c}); err != nil {
					statuses <- "write: " + err.Error()
					return
				}
			}
			conn.SetReadDeadline(time.Now().Add(time.Minute))
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil {
				statuses <- "read: " + err.Error()
				return
			}
			if strings.HasPrefix(line, "HTTP/1.1 2") {
				okMu.Lock()
				okSlow[i] = true
				okMu.Unlock()
			}
			statuses <- strings.TrimSpace(line)
		}(i)
	}
	trickled := make(chan struct{})
	go func() { wg.Wait(); close(trickled) }()
	// While they trickle, measure the others and RSS.
	var rssPeak atomic.Int64
	go func() {
		for {
			select {
			case <-trickled:
				return
			case <-time.After(100 * time.Millisecond):
				if r := rssBytes(f.pid()); r > rssPeak.Load() {
					rssPeak.Store(r)
				}
			}
		}
	}()
	var goroutines float64
	go func() {
		time.Sleep(3 * time.Second)
		goroutines, _ = f.metricOK("go_goroutines")
	}()
	duringRes := pushUntil(trickled, 2*time.Minute)
	<-trickled
	close(statuses)
	got := map[string]int{}
	for s := range statuses {
		got[s]++
	}
	during, bad := lats(duringRes)
	t.Logf("push latency p50/p99/max: alone %v/%v/%v; while %d clients trickled for %v: %v/%v/%v, non-2xx %v; RSS %d MiB before, peak %d MiB during; %v goroutines; slow clients got %v",
		percentile(base, .5), percentile(base, .99), percentile(base, 1), clients, time.Since(started).Round(time.Second),
		percentile(during, .5), percentile(during, .99), percentile(during, 1), bad,
		rssBefore>>20, rssPeak.Load()>>20, goroutines, got)
	for _, r := range duringRes {
		if r.code/100 != 2 || r.lat > 500*time.Millisecond {
			t.Logf("  push at +%v: HTTP %d after %v", r.at.Sub(started).Round(time.Millisecond), r.code, r.lat.Round(time.Millisecond))
		}
	}
	// A slow client gets 204 once its valid body is in, or 503 if ferry
	// sheds load; nothing else.
	if got["HTTP/1.1 204 No Content"]+got["HTTP/1.1 503 Service Unavailable"] != clients {
		t.Errorf("slow clients got %v, want 204 (or 503 when shedding load)", got)
	}
	if p99 := percentile(during, .99); len(bad) > 0 || (p99 > 500*time.Millisecond && p99 > 5*percentile(base, .99)) {
		t.Errorf("slow clients starve the others: while they trickled, the well-behaved client's pushes took up to %v (p99 %v, alone %v) and got %v non-2xx answers",
			percentile(during, 1), p99, percentile(base, .99), bad)
	}
	if rssPeak.Load() > rssBefore+64<<20 {
		t.Errorf("RSS grew from %d MiB to %d MiB with %d slow clients", rssBefore>>20, rssPeak.Load()>>20, clients)
	}
	acked, n := p.snapshot()
	for i := range okSlow {
		acked[fmt.Sprintf("slow-%d", i)] = []int64{slowTS}
	}
	waitAcked(t, acked, time.Minute, a)
	t.Logf("%d samples from the well-behaved client and %d from the slow ones acknowledged and delivered", n, len(okSlow))
	f.stop()
}

// setHeader sets key to v, to def if v is "", and leaves it unset if v is
// "-".
func setHeader(h http.Header, key, v, def string) {
	switch v {
	case "-":
	case "":
		h.Set(key, def)
	default:
		h.Set(key, v)
	}
}
