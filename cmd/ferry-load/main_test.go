package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// runJSON runs the command with --json and decodes its output.
func runJSON(t *testing.T, args ...string) (*result, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append(args, "--json", "--progress", "0")
	if code := run(testContext(t), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	var res result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("decoding %q: %v", stdout.String(), err)
	}
	return &res, stderr.String()
}

func TestPushToOwnReceiverVerifies(t *testing.T) {
	const series, rounds = 2000, 3
	// 7 batches (the last one short) over 3 pushers.
	res, summary := runJSON(t, "--target", "self", "--receiver.listen", "127.0.0.1:0",
		"--series", "2000", "--batch", "300", "--concurrency", "3", "--rounds", "3",
		"--verify", "--pid", "self", "--duration", "20s", "--ts-step", "15s")

	want := int64(series * rounds)
	if res.AckedSamples != want || res.RejectedSamples != 0 || res.AbandonedSamples != 0 {
		t.Errorf("acked %d rejected %d abandoned %d, want %d acked", res.AckedSamples, res.RejectedSamples, res.AbandonedSamples, want)
	}
	if res.Rounds != rounds || res.Requests != 7*rounds || res.HTTPStatus["204"] != 7*rounds {
		t.Errorf("rounds %d requests %d status %v", res.Rounds, res.Requests, res.HTTPStatus)
	}
	if *res.DeliveredSamples != want || *res.DeliveredRequests != 7*rounds || !*res.DrainComplete {
		t.Errorf("delivered %d in %d requests, complete %v", *res.DeliveredSamples, *res.DeliveredRequests, *res.DrainComplete)
	}
	if *res.VerifyMissing != 0 || *res.VerifyOutOfOrder != 0 || *res.VerifyDuplicates != 0 ||
		*res.VerifyForeign != 0 || *res.VerifyBadValue != 0 || *res.VerifyUniqueDeliv != want {
		t.Errorf("verify: missing %d ooo %d dup %d foreign %d bad %d unique %d", *res.VerifyMissing,
			*res.VerifyOutOfOrder, *res.VerifyDuplicates, *res.VerifyForeign, *res.VerifyBadValue, *res.VerifyUniqueDeliv)
	}
	if res.PID == nil || *res.CPUSeconds < 0 || *res.PeakRSSBytes <= 0 || *res.VmHWMBytes < *res.PeakRSSBytes/2 {
		t.Errorf("process stats: %+v", res)
	}
	if !strings.Contains(summary, "verify       missing 0") {
		t.Errorf("summary:\n%s", summary)
	}
}

// TestVerifyDetectsLoss puts a proxy that acknowledges everything but
// forwards only every other request between the pusher and the receiver.
func TestVerifyDetectsLoss(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcvURL := "http://" + ln.Addr().String() + "/api/v1/write"
	var n atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if n.Add(1)%2 == 0 {
			resp, err := http.Post(rcvURL, "application/x-protobuf", bytes.NewReader(body))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			resp.Body.Close()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer proxy.Close()

	cfg, err := parseFlags([]string{"--target", proxy.URL, "--series", "100", "--batch", "10",
		"--concurrency", "1", "--rounds", "2", "--verify", "--drain-timeout", "100ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.listener = ln
	res, err := runLoad(testContext(t), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// 20 requests of 10 samples; 10 forwarded.
	if res.AckedSamples != 200 || *res.DeliveredSamples != 100 || *res.VerifyMissing != 100 || *res.DrainComplete {
		t.Errorf("acked %d delivered %d missing %d complete %v", res.AckedSamples, *res.DeliveredSamples, *res.VerifyMissing, *res.DrainComplete)
	}
}

func TestRetriesAndRejects(t *testing.T) {
	var calls atomic.Int64
	retrying := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "0.001")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case 2:
			http.Error(w, "oops", http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer retrying.Close()
	rejecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "out of bounds", http.StatusBadRequest)
	}))
	defer rejecting.Close()

	for _, tc := range []struct {
		name                     string
		url                      string
		acked, rejected, retries int64
		status                   map[string]int64
	}{
		{"retry", retrying.URL, 40, 0, 2, map[string]int64{"429": 1, "503": 1, "200": 4}},
		{"reject", rejecting.URL, 0, 40, 0, map[string]int64{"400": 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags([]string{"--target", tc.url, "--no-receiver", "--series", "20",
				"--batch", "10", "--concurrency", "1", "--rounds", "2"}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			cfg.minBackoff = time.Millisecond
			res, err := runLoad(testContext(t), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if res.AckedSamples != tc.acked || res.RejectedSamples != tc.rejected || res.Retries != tc.retries {
				t.Errorf("acked %d rejected %d retries %d", res.AckedSamples, res.RejectedSamples, res.Retries)
			}
			if len(res.HTTPStatus) != len(tc.status) {
				t.Errorf("status %v, want %v", res.HTTPStatus, tc.status)
			}
			for k, v := range tc.status {
				if res.HTTPStatus[k] != v {
					t.Errorf("status %v, want %v", res.HTTPStatus, tc.status)
				}
			}
			if tc.rejected > 0 && res.FirstRejectReason != "HTTP 400: out of bounds" {
				t.Errorf("reject reason %q", res.FirstRejectReason)
			}
			if res.DeliveredSamples != nil || res.VerifyMissing != nil {
				t.Errorf("delivery fields set without receiver")
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"":                              0,
		"2":                             2 * time.Second,
		"0.25":                          250 * time.Millisecond,
		"-1":                            0,
		"soon":                          0,
		"Thu, 02 Jan 2025 03:04:08 GMT": 3 * time.Second,
		"Thu, 02 Jan 2025 03:04:00 GMT": 0,
	} {
		if got := parseRetryAfter(h, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestBadFlagsAndUnreachableTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/api/v1/write"
	ln.Close()

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--target", "self", "--series", "0"}, 2, "--series"},
		{[]string{"--target", "self", "--bogus"}, 2, "bogus"},
		{[]string{"--target", "ftp://x"}, 2, "not an http"},
		{[]string{"--series", "10"}, 2, "--target is required"},
		{[]string{"--target", "self", "--pid", "abc"}, 2, "--pid"},
		{[]string{"--target", "self", "--duration", "0"}, 2, "--samples or --rounds"},
		{[]string{"--target", "self", "--shape", "C"}, 2, "--shape"},
		{[]string{"--target", "self", "--churn", "1.5"}, 2, "--churn"},
		{[]string{"--target", "self", "--churn", "-0.1"}, 2, "--churn"},
		{[]string{"--target", "self", "--churn", "NaN"}, 2, "--churn"},
		{[]string{"--target", "self", "--churn", "0.1", "--ts-step", "7s"}, 2, "--churn-every"},
		{[]string{"--target", "self", "--churn", "0.1", "--churn-every", "0s"}, 2, "--churn-every"},
		{[]string{"--target", "self", "--churn", "0.1", "--series", "4"}, 2, "replaces no series"},
		{[]string{"--target", "self", "--rss-svg", "x.svg"}, 2, "--pid"},
		{[]string{"--target", "self", "--warmup", "-1s"}, 2, "--warmup"},
		{[]string{"--target", closed, "--no-receiver", "--series", "10"}, 1, "unreachable"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(testContext(t), tc.args, &stdout, &stderr)
		lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
		if code != tc.code || len(lines) != 1 || !strings.Contains(lines[0], tc.msg) || stdout.Len() != 0 {
			t.Errorf("%v: exit %d stderr %q stdout %q; want exit %d, one line with %q",
				tc.args, code, stderr.String(), stdout.String(), tc.code, tc.msg)
		}
	}
}

func TestParseProc(t *testing.T) {
	// Command name with spaces and parentheses; utime=1234, stime=567.
	stat := "4242 (ferry (x) y) S 1 4242 4242 0 -1 4194560 2755 0 0 0 1234 567 0 0 20 0 9 0 " +
		"1234567 1583194112 12345 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	u, s, err := parseStatCPU(stat)
	if err != nil || u != 1234 || s != 567 {
		t.Errorf("parseStatCPU = %d, %d, %v", u, s, err)
	}
	if _, _, err := parseStatCPU("4242 (x) S 1 2 3"); err == nil {
		t.Error("short stat parsed")
	}

	status := "Name:\tferry\nVmPeak:\t 1000 kB\nVmHWM:\t   53248 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"
	if n, err := parseStatusBytes(status, "VmRSS"); err != nil || n != 40960*1024 {
		t.Errorf("VmRSS = %d, %v", n, err)
	}
	if n, err := parseStatusBytes(status, "VmHWM"); err != nil || n != 53248*1024 {
		t.Errorf("VmHWM = %d, %v", n, err)
	}
	if _, err := parseStatusBytes(status, "VmSwap"); err == nil {
		t.Error("missing key found")
	}

	auxv := make([]byte, 48)
	copy(auxv, []byte{6, 0, 0, 0, 0, 0, 0, 0, 0, 16})        // AT_PAGESZ 4096
	copy(auxv[16:], []byte{17, 0, 0, 0, 0, 0, 0, 0, 250, 0}) // AT_CLKTCK 250
	if hz, ok := auxvClockTicks(auxv); !ok || hz != 250 {
		t.Errorf("auxvClockTicks = %d, %v", hz, ok)
	}
	if hz := clockTicks(); hz <= 0 {
		t.Errorf("clockTicks = %v", hz)
	}
}

func TestVerifierBookkeeping(t *testing.T) {
	const base, step = 1000, 10
	v := newVerifier(3, base, step, churnSchedule{n: 3})
	at := func(i, r int64) observation { return observation{i, 0, base + r*step, seriesValue(int(i), r)} }
	v.observe([]observation{at(0, 0), at(1, 0), at(2, 0)})
	v.observe([]observation{at(0, 1), at(1, 2), at(2, 0)}) // series 1 skips ahead, series 2 repeats
	v.skip(2, 3, 1)                                        // round 1 of series 2 not acknowledged
	v.observe([]observation{at(0, 2), at(1, 1), at(2, 2)}) // series 1's round 1 arrives late
	bad := at(0, 3)
	bad.value++
	v.observe([]observation{bad, at(2, 4)})
	v.observe([]observation{{5, 0, base, 0}, {0, 0, base + 5, 0}, {0, 0, base - step, 0}, {-1, -1, base, 0}})
	wrong := at(2, 3) // round 3 of series 2 in a series that never existed
	wrong.gen = 1
	v.observe([]observation{wrong})

	rounds := []int64{4, 3, 5} // series 2's round 3 never arrives (in the right series)
	st := v.stats(func(i int) int64 { return rounds[i] })
	want := verifyStats{missing: 1, outOfOrder: 1, duplicates: 1, foreign: 5, wrongGen: 1, badValue: 1, unique: 10}
	if st != want {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
	if len(v.pending) != 1 { // series 2 round 4 waits behind the gap
		t.Errorf("pending = %v", v.pending)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	set := newSeriesSet(1500, labelsB)
	raw := set.appendRequest(nil, 1000, 1500, 9, 1700000000000)
	var got [][2]string
	d := wrDecoder{collect: true, onLabel: func(n, v []byte) { got = append(got, [2]string{string(n), string(v)}) }}
	if err := d.decode(raw); err != nil {
		t.Fatal(err)
	}
	if d.series != 500 || d.samples != 500 || d.histograms != 0 || len(d.obs) != 500 {
		t.Fatalf("series %d samples %d obs %d", d.series, d.samples, len(d.obs))
	}
	var want [][2]string
	names := map[string]bool{}
	for i := 1000; i < 1500; i++ {
		l := labelsB(i)
		want = append(want, l...)
		names[l[0][1]] = true
		for k := 1; k < len(l); k++ {
			if l[k-1][0] >= l[k][0] {
				t.Fatalf("labels of series %d not sorted: %v", i, l)
			}
		}
		o := d.obs[i-1000]
		if o.series != int64(i) || o.ts != 1700000000000 || o.value != seriesValue(i, 9) {
			t.Fatalf("obs %d = %+v", i, o)
		}
	}
	if len(names) != 100 {
		t.Errorf("%d metric names", len(names))
	}
	if len(got) != len(want) {
		t.Fatalf("%d labels, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("label %d = %v, want %v", i, got[i], want[i])
		}
	}
}

// A 2.0 request carries the same series and samples as the 1.0 one.
func TestRequestV2MatchesV1(t *testing.T) {
	for _, name := range []string{"A", "B"} {
		t.Run(name, func(t *testing.T) {
			sh, _ := shapeByName(name)
			b := newV2Batch(1000, 1500, sh.labels)
			raw := b.appendRequestV2(nil, 1000, 9, 1700000000000)
			var req writev2.Request
			if err := req.Unmarshal(raw); err != nil {
				t.Fatal(err)
			}
			if len(req.Timeseries) != 500 || req.Symbols[0] != "" {
				t.Fatalf("%d series, symbols %v", len(req.Timeseries), req.Symbols[:min(3, len(req.Symbols))])
			}
			var sb labels.ScratchBuilder
			for k, ts := range req.Timeseries {
				got, err := ts.ToLabels(&sb, req.Symbols)
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				for _, l := range sh.labels(1000 + k) {
					want = append(want, l[0], l[1])
				}
				if !labels.Equal(got, labels.FromStrings(want...)) {
					t.Fatalf("series %d: %v, want %v", k, got, want)
				}
				if len(ts.Samples) != 1 || ts.Samples[0].Timestamp != 1700000000000 || ts.Samples[0].Value != seriesValue(1000+k, 9) {
					t.Fatalf("series %d samples %+v", k, ts.Samples)
				}
			}
		})
	}
}

// golden is prompb.WriteRequest.Marshal() (Prometheus v0.315.0) of:
//
//	{__name__="up",id="42",job="x"}: samples (1.5,1000) (0,0) (-Inf,-5), one exemplar
//	{__name__="h",id="x7"}: two histograms
//	{""=""}: sample (2,1)
//	metadata {COUNTER up "h" "u"}
const golden = "0a690a0e0a085f5f6e616d655f5f120275700a080a026964120234320a080a036a6f62120178120c09000000000000f83f10e8071200121409000000000000f0ff10fbffffffffffffffff011a1d0a0f0a0874726163655f6964120361626311000000000000004018e7070a300a0d0a085f5f6e616d655f5f1201680a080a026964120278372210080319000000000000f03f200278d00f220378b8170a0f0a00120b09000000000000004010011a0c0801120275702201682a0175"

func TestDecodePrompbGolden(t *testing.T) {
	b, err := hex.DecodeString(golden)
	if err != nil {
		t.Fatal(err)
	}
	var d wrDecoder
	d.collect = true
	if err := d.decode(b); err != nil {
		t.Fatal(err)
	}
	want := []observation{{42, 0, 1000, 1.5}, {42, 0, 0, 0}, {42, 0, -5, d.obs[2].value}, {-1, -1, 1, 2}}
	if d.series != 3 || d.samples != 4 || d.histograms != 2 || len(d.obs) != 4 {
		t.Fatalf("series %d samples %d histograms %d obs %v", d.series, d.samples, d.histograms, d.obs)
	}
	for i := range want {
		if d.obs[i] != want[i] {
			t.Errorf("obs %d = %+v, want %+v", i, d.obs[i], want[i])
		}
	}
	if v := d.obs[2].value; v > -1e308 {
		t.Errorf("obs 2 value %v, want -Inf", v)
	}
	// Every truncation fails except at the boundaries between top-level
	// fields, where prompb Unmarshal also succeeds (checked against it).
	valid := map[int]bool{107: true, 157: true, 174: true}
	for i := 1; i < len(b); i++ {
		if err := d.decode(b[:i]); (err == nil) != valid[i] {
			t.Errorf("prefix of %d bytes: err %v", i, err)
		}
	}
}

func TestReceiverHTTP(t *testing.T) {
	rcv, err := startReceiver("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	body := snappy.Encode(nil, newSeriesSet(10, labelsB).appendRequest(nil, 0, 10, 0, 1))
	base := "http://" + rcv.ln.Addr().String()
	post := func(path, enc, ct string, b []byte) int {
		req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(b))
		req.Header.Set("Content-Encoding", enc)
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, enc, ct string
		body          []byte
		code          int
	}{
		{"/api/v1/write", "snappy", "application/x-protobuf", body, 204},
		{"/api/v1/push", "snappy", "application/x-protobuf", body, 204},
		{"/", "", "application/x-protobuf", body, 204},
		{"/api/v1/write", "zstd", "application/x-protobuf", body, 415},
		{"/api/v1/write", "snappy", "application/x-protobuf;proto=io.prometheus.write.v2.Request", body, 415},
		{"/api/v1/write", "snappy", "application/x-protobuf", []byte("not snappy"), 400},
		{"/api/v1/write", "snappy", "application/x-protobuf", snappy.Encode(nil, []byte{0x0a, 0x05, 1}), 400},
		{"/other", "snappy", "application/x-protobuf", body, 404},
	} {
		if code := post(tc.path, tc.enc, tc.ct, tc.body); code != tc.code {
			t.Errorf("%s %s %s: %d, want %d", tc.path, tc.enc, tc.ct, code, tc.code)
		}
	}
	if rcv.samples.Load() != 30 || rcv.requests.Load() != 3 || rcv.badRequests.Load() != 5 {
		t.Errorf("samples %d requests %d bad %d", rcv.samples.Load(), rcv.requests.Load(), rcv.badRequests.Load())
	}
}

func TestDecodeLabelForms(t *testing.T) {
	long := strings.Repeat("v", 200)
	enc := func(fields ...[]byte) []byte { return bytes.Join(fields, nil) }
	str := func(tag byte, s string) []byte {
		return append(append([]byte{tag}, byte(len(s))), s...)
	}
	for _, tc := range []struct {
		in          []byte
		name, value string
		err         bool
	}{
		{enc(str(0x0a, "job"), str(0x12, "node")), "job", "node", false},
		{enc(str(0x12, "node"), str(0x0a, "job")), "job", "node", false},
		{enc(str(0x0a, "job"), str(0x12, "node"), []byte{0x18, 0x01}), "job", "node", false},
		{enc(str(0x0a, "job"), []byte{0x12, 0xc8, 0x01}, []byte(long)), "job", long, false},
		{enc(str(0x0a, "job")), "job", "", false},
		{enc(str(0x0a, "job"), []byte{0x12, 0x05, 'n'}), "", "", true},
		{[]byte{0x0a}, "", "", true},
	} {
		n, v, err := decodeLabel(tc.in)
		if (err != nil) != tc.err || string(n) != tc.name || string(v) != tc.value {
			t.Errorf("decodeLabel(%x) = %q, %q, %v", tc.in, n, v, err)
		}
	}
}

// TestDecodeCorruptNoPanic flips bytes of valid requests: decoding may fail
// but must not panic, and must stay within the input.
func TestDecodeCorruptNoPanic(t *testing.T) {
	g, _ := hex.DecodeString(golden)
	inputs := [][]byte{g, newSeriesSet(20, labelsB).appendRequest(nil, 0, 20, 3, 1700000000000)}
	seed := uint32(1)
	rnd := func(n int) int { seed = seed*1664525 + 1013904223; return int(seed>>8) % n }
	var d wrDecoder
	d.collect = true
	for _, in := range inputs {
		for k := 0; k < 3000; k++ {
			b := bytes.Clone(in)
			for f := 0; f <= rnd(3); f++ {
				b[rnd(len(b))] = byte(rnd(256))
			}
			_ = d.decode(b[:rnd(len(b)+1)])
		}
	}
}

// Shape B's requests are byte for byte those of the tool before shapes
// existed, so that its figures stay comparable with earlier ones. The hashes
// were taken from that tool.
func TestShapeBRequestsUnchanged(t *testing.T) {
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:8]) }
	sh, _ := shapeByName("B")
	set := newSeriesSet(100000, sh.labels)
	var all []byte
	for i := range 100000 {
		all = append(all, set.labels(i)...)
	}
	v1 := set.appendRequest(nil, 99000, 100000, 7, 1700000000123)
	b := newV2Batch(99000, 100000, sh.labels)
	v2 := b.appendRequestV2(nil, 99000, 7, 1700000000123)
	for _, c := range []struct{ what, got, want string }{
		{"labels of all series", sum(all), "9d79d784536509b1"},
		{"1.0 request", sum(v1), "c70d1a9518af8b58"},
		{"2.0 request", sum(v2), "c2c4316c3aa405b8"},
	} {
		if c.got != c.want {
			t.Errorf("%s: sha256 %s, want %s", c.what, c.got, c.want)
		}
	}
}

func TestShapeFlags(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		args                       []string
		shape                      string
		series, batch, concurrency int
	}{
		{"default_is_B", nil, "B", 100000, 1000, 4},
		{"A", []string{"--shape", "A"}, "A", 50000, 500, 8},
		{"lower_case", []string{"--shape", "a"}, "A", 50000, 500, 8},
		{"A1M", []string{"--shape", "A1M"}, "A1M", 1000000, 500, 8},
		{"A_batch_overridden", []string{"--shape", "A", "--batch", "250"}, "A", 50000, 250, 8},
		{"B_overridden", []string{"--shape", "B", "--series", "10", "--concurrency", "1"}, "B", 10, 1000, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags(append([]string{"--target", "self"}, tc.args...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.shape.name != tc.shape || cfg.series != tc.series || cfg.batch != tc.batch || cfg.concurrency != tc.concurrency {
				t.Errorf("shape %s series %d batch %d concurrency %d, want %s %d %d %d", cfg.shape.name,
					cfg.series, cfg.batch, cfg.concurrency, tc.shape, tc.series, tc.batch, tc.concurrency)
			}
		})
	}
}

func TestShapeALabels(t *testing.T) {
	want := [][2]string{
		{"__name__", "http_requests_total"},
		{"code", "200"},
		{"container", "api-gateway"},
		{"handler", "/api/v1/orders"},
		{"instance", "10.244.0.2:8080"},
		{"job", "api-gateway"},
		{"method", "GET"},
		{"namespace", "edge"},
		{"pod", "api-gateway-7d9f8b6c5-zrzld"},
	}
	if got := labelsA(0); !slices.Equal(got, want) {
		t.Errorf("labelsA(0) = %v, want %v", got, want)
	}
	want = [][2]string{ // the last series of the last of 200 pods
		{"__name__", "rpc_client_requests_total"},
		{"code", "500"},
		{"container", "ledger"},
		{"instance", "10.244.0.201:9090"},
		{"job", "ledger"},
		{"method", "PlaceOrder"},
		{"namespace", "payments"},
		{"pod", "ledger-846c9d5bf7-4mzk7"},
		{"type", "stream"},
	}
	if got := labelsA(49999); !slices.Equal(got, want) {
		t.Errorf("labelsA(49999) = %v, want %v", got, want)
	}
	seen := map[string]bool{}
	for pod := range 100000 {
		seen[podSuffix(pod)] = true
	}
	if len(seen) != 100000 {
		t.Errorf("%d distinct pod suffixes of 100000", len(seen))
	}
}

// TestShapeARequests checks the requests of shape A as a remote-write server
// sees them: 500 distinct series of 9-10 labels (sorted, __name__ first) per
// request, one sample each, together all 50,000 series, each series'
// timestamps increasing from one request to the next.
func TestShapeARequests(t *testing.T) {
	const series, rounds = 50000, 3
	var (
		mu       sync.Mutex
		requests int
		lastTS   = map[string]int64{}
		samples  = map[string]int{}
		byLen    = map[int]int{} // series by number of labels
		problems []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := readWriteRequest(w, r)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		problem := func(format string, a ...any) {
			if len(problems) < 10 {
				problems = append(problems, fmt.Sprintf(format, a...))
			}
		}
		requests++
		if len(req.Timeseries) != 500 {
			problem("request with %d series", len(req.Timeseries))
		}
		inRequest := map[string]bool{}
		for _, ts := range req.Timeseries {
			var key strings.Builder
			for k, l := range ts.Labels {
				if k > 0 && ts.Labels[k-1].Name >= l.Name {
					problem("labels not sorted: %v", ts.Labels)
				}
				fmt.Fprintf(&key, "%s=%q,", l.Name, l.Value)
			}
			id := key.String()
			if n := len(ts.Labels); n < 9 || n > 10 || ts.Labels[0].Name != "__name__" {
				problem("labels %v", ts.Labels)
			}
			if inRequest[id] {
				problem("series %s twice in one request", id)
			}
			inRequest[id] = true
			if len(ts.Samples) != 1 {
				problem("series %s: %d samples in one request", id, len(ts.Samples))
			}
			for _, sm := range ts.Samples {
				if last, ok := lastTS[id]; ok && sm.Timestamp <= last {
					problem("series %s: timestamp %d after %d", id, sm.Timestamp, last)
				}
				lastTS[id] = sm.Timestamp
				if samples[id]++; samples[id] == 1 {
					byLen[len(ts.Labels)]++
				}
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	cfg, err := parseFlags([]string{"--target", srv.URL + "/api/v1/write", "--shape", "A",
		"--no-receiver", "--rounds", "3", "--ts-step", "15s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runLoad(testContext(t), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Shape != "A" || res.Series != series || res.Batch != 500 || res.Concurrency != 8 ||
		res.AckedSamples != series*rounds || res.Requests != series/500*rounds {
		t.Errorf("shape %s series %d batch %d concurrency %d acked %d requests %d", res.Shape, res.Series,
			res.Batch, res.Concurrency, res.AckedSamples, res.Requests)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	if requests != series/500*rounds || len(samples) != series {
		t.Errorf("%d requests, %d distinct series", requests, len(samples))
	}
	for id, n := range samples {
		if n != rounds {
			t.Errorf("series %s: %d samples, want %d", id, n, rounds)
			break
		}
	}
	if byLen[9] == 0 || byLen[10] == 0 || byLen[9]+byLen[10] != series {
		t.Errorf("series by label count: %v", byLen)
	}
}

// The verifier finds shape A's series, which have no id label, by their
// labels.
func TestShapeAVerifies(t *testing.T) {
	res, _ := runJSON(t, "--target", "self", "--receiver.listen", "127.0.0.1:0", "--shape", "A",
		"--series", "5000", "--rounds", "2", "--verify")
	if res.Shape != "A" || res.AckedSamples != 10000 || *res.DeliveredSamples != 10000 || !*res.DrainComplete {
		t.Errorf("shape %s acked %d delivered %d complete %v", res.Shape, res.AckedSamples, *res.DeliveredSamples, *res.DrainComplete)
	}
	if *res.VerifyMissing != 0 || *res.VerifyOutOfOrder != 0 || *res.VerifyDuplicates != 0 ||
		*res.VerifyForeign != 0 || *res.VerifyBadValue != 0 || *res.VerifyUniqueDeliv != 10000 {
		t.Errorf("verify: missing %d ooo %d dup %d foreign %d bad %d unique %d", *res.VerifyMissing,
			*res.VerifyOutOfOrder, *res.VerifyDuplicates, *res.VerifyForeign, *res.VerifyBadValue, *res.VerifyUniqueDeliv)
	}
}

// gen's closed form agrees with replaying the churn events one by one.
func TestChurnGenMatchesSimulation(t *testing.T) {
	for _, tc := range []struct {
		name        string
		n           int
		fraction    float64
		every, step time.Duration
	}{
		{"tenth_every_6_rounds", 100, 0.1, time.Minute, 10 * time.Second},
		{"uneven_wrap", 97, 0.23, 3 * time.Millisecond, time.Millisecond},
		{"all_every_round", 10, 1, time.Second, time.Second},
		{"one_slot", 1, 1, 2 * time.Second, time.Second},
		{"one_series_per_event", 7, 0.1, 5 * time.Second, time.Second},
		{"most", 50, 0.9, 20 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newChurnSchedule(tc.n, tc.fraction, tc.every, tc.step)
			if !c.on() {
				t.Fatal("no churn")
			}
			per := int(math.Round(tc.fraction * float64(tc.n)))
			gens := make([]int64, tc.n)
			events := 0
			for r := int64(0); r < 200; r++ {
				// Synthetic time reaches a multiple of every: one more event.
				if now := time.Duration(r) * tc.step; r > 0 && now/tc.every > (now-tc.step)/tc.every {
					events++
					from := (events - 1) * per % tc.n
					for k := range per {
						gens[(from+k)%tc.n]++
					}
				}
				for i := range tc.n {
					if got := c.gen(i, r); got != gens[i] {
						t.Fatalf("gen(%d, %d) = %d, simulation %d (after %d events)", i, r, got, gens[i], events)
					}
				}
			}
			var created int64
			for i := range tc.n {
				created += c.created(i, 200)
			}
			if want := int64(tc.n + events*per); created != want {
				t.Errorf("created %d, want %d", created, want)
			}
		})
	}
	if off := newChurnSchedule(10, 0, time.Minute, time.Second); off.on() || off.gen(3, 1000) != 0 || off.created(3, 5) != 1 {
		t.Error("churn 0 churns")
	}
}

// Every generation of every slot is a distinct series, generation 0 is
// the shape's labels, and the receiver's mapping finds slot and generation
// again.
func TestChurnLabels(t *testing.T) {
	if podSuffixMul*podSuffixMulInv%podSuffixSpace != 1 {
		t.Fatal("podSuffixMulInv is not the inverse")
	}
	for _, q := range []int{0, 1, 12345, podSuffixSpace - 1, podSuffixSpace, 27*podSuffixSpace + 5, 1 << 40} {
		if got, ok := parsePodSuffix([]byte(podSuffix(q))); !ok || got != q {
			t.Errorf("parsePodSuffix(podSuffix(%d) = %q) = %d, %v", q, podSuffix(q), got, ok)
		}
	}
	for _, name := range []string{"A", "B"} {
		t.Run(name, func(t *testing.T) {
			const n, gens = 1200, 6 // shape A: 5 pods, the last partial
			sh, _ := shapeByName(name)
			names, err := newSeriesNames(n, sh)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for i := range n {
				if !slices.Equal(sh.seriesLabels(n, i, 0), sh.labels(i)) {
					t.Fatalf("slot %d: generation 0 differs from the shape's labels", i)
				}
				for g := range int64(gens) {
					ls := sh.seriesLabels(n, i, g)
					key := fmt.Sprint(ls)
					if seen[key] {
						t.Fatalf("slot %d generation %d: %v seen before", i, g, ls)
					}
					seen[key] = true
					var hash uint64
					var genValue []byte
					for _, l := range ls {
						if l[0] == sh.genLabel {
							genValue = []byte(l[1])
						} else {
							hash += labelHash(l[0], l[1])
						}
					}
					if slot, gen := names.resolve(hash, genValue); slot != int64(i) || gen != g {
						t.Fatalf("slot %d generation %d resolves to %d, %d", i, g, slot, gen)
					}
					if j := (i + 250) % n; sh.parseGen(n, j, genValue) != -1 { // another pod, another id
						t.Fatalf("slot %d generation %d: %s %q parsed for slot %d", i, g, sh.genLabel, genValue, j)
					}
				}
			}
			if _, gen := names.resolve(0, []byte("nonsense")); gen != -1 {
				t.Error("nonsense resolved")
			}
		})
	}
}

// Requests under churn carry each slot's series of the round's
// generation, in 1.0 and in 2.0, and only replaced slots get new encodings.
func TestChurnRequests(t *testing.T) {
	for _, tc := range []struct{ shape, proto string }{{"A", "1.0"}, {"A", "2.0"}, {"B", "1.0"}, {"B", "2.0"}} {
		t.Run(tc.shape+"_"+tc.proto, func(t *testing.T) {
			cfg, err := parseFlags([]string{"--target", "self", "--shape", tc.shape, "--series", "1000", "--batch", "300",
				"--proto", tc.proto, "--churn", "0.15", "--churn-every", "20s", "--ts-step", "10s"}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			set := newSeriesSet(cfg.series, cfg.shape.labels)
			layout := newBatchLayout(cfg.series, cfg.batch)
			p := newPushRun(cfg, "http://127.0.0.1:1/", set, layout, 1700000000000, 10000, nil)
			var sb labels.ScratchBuilder
			for r := int64(0); r < 25; r++ { // 12 events: every slot replaced about twice
				ts := int64(1700000000000 + r*10000)
				for k := range layout.numBatches() {
					lo, hi := layout.bounds(k)
					raw := p.encode(nil, k, r, ts)
					var got []labels.Labels
					if tc.proto == "2.0" {
						var req writev2.Request
						if err := req.Unmarshal(raw); err != nil {
							t.Fatal(err)
						}
						for _, s := range req.Timeseries {
							ls, err := s.ToLabels(&sb, req.Symbols)
							if err != nil {
								t.Fatal(err)
							}
							got = append(got, ls)
						}
						if want := symbolsOf(cfg.shape, cfg.series, lo, hi, p.churn, r); len(req.Symbols) != want {
							t.Fatalf("round %d batch %d: %d symbols, want %d (those of active series)", r, k, len(req.Symbols), want)
						}
					} else {
						var req prompb.WriteRequest
						if err := req.Unmarshal(raw); err != nil {
							t.Fatal(err)
						}
						for _, s := range req.Timeseries {
							got = append(got, labelsOf(s.Labels))
						}
					}
					if len(got) != hi-lo {
						t.Fatalf("round %d batch %d: %d series", r, k, len(got))
					}
					for i := lo; i < hi; i++ {
						var want []string
						for _, l := range cfg.shape.seriesLabels(cfg.series, i, p.churn.gen(i, r)) {
							want = append(want, l[0], l[1])
						}
						if !labels.Equal(got[i-lo], labels.FromStrings(want...)) {
							t.Fatalf("round %d slot %d: %v, want %v", r, i, got[i-lo], want)
						}
					}
				}
			}
			for k, g := range p.gens {
				for j, o := range g.over {
					if (o.rec == nil) != (g.gen[j] == 0) {
						t.Fatalf("batch %d slot %d: generation %d, record %q", k, j, g.gen[j], o.rec)
					}
				}
			}
			if got := p.seriesCreated(); got != 0 { // encode alone finishes no round
				t.Errorf("series created %d before any round finished", got)
			}
		})
	}
}

func labelsOf(ls []prompb.Label) labels.Labels {
	var b labels.ScratchBuilder
	for _, l := range ls {
		b.Add(l.Name, l.Value)
	}
	return b.Labels()
}

// symbolsOf counts the distinct strings of the active series of slots
// [lo, hi) in round r, and "".
func symbolsOf(sh shape, n, lo, hi int, c churnSchedule, r int64) int {
	syms := map[string]bool{"": true}
	for i := lo; i < hi; i++ {
		for _, l := range sh.seriesLabels(n, i, c.gen(i, r)) {
			syms[l[0]], syms[l[1]] = true, true
		}
	}
	return len(syms)
}

// A run against the tool's own receiver with churn verifies: every
// acknowledged (slot, round) arrives in the series of its generation.
func TestChurnVerifies(t *testing.T) {
	for _, tc := range []struct{ name, shape string }{{"A", "A"}, {"B", "B"}} {
		t.Run(tc.name, func(t *testing.T) {
			const series, rounds = 2000, 13
			// An event every 3 rounds (at rounds 3, 6, 9, 12), 300 slots each.
			res, summary := runJSON(t, "--target", "self", "--receiver.listen", "127.0.0.1:0", "--shape", tc.shape,
				"--series", "2000", "--batch", "250", "--concurrency", "3", "--rounds", "13", "--ts-step", "10s",
				"--churn", "0.15", "--churn-every", "30s", "--verify")
			want := int64(series * rounds)
			if res.AckedSamples != want || *res.DeliveredSamples != want || !*res.DrainComplete {
				t.Errorf("acked %d delivered %d complete %v", res.AckedSamples, *res.DeliveredSamples, *res.DrainComplete)
			}
			if *res.VerifyMissing != 0 || *res.VerifyOutOfOrder != 0 || *res.VerifyDuplicates != 0 ||
				*res.VerifyForeign != 0 || *res.VerifyWrongGen != 0 || *res.VerifyBadValue != 0 || *res.VerifyUniqueDeliv != want {
				t.Errorf("verify: missing %d ooo %d dup %d foreign %d wrong gen %d bad %d unique %d", *res.VerifyMissing,
					*res.VerifyOutOfOrder, *res.VerifyDuplicates, *res.VerifyForeign, *res.VerifyWrongGen,
					*res.VerifyBadValue, *res.VerifyUniqueDeliv)
			}
			if res.Churn != 0.15 || res.ChurnEverySeconds != 30 || res.SeriesCreated != series+4*300 {
				t.Errorf("churn %v every %vs series created %d, want 0.15, 30s, %d", res.Churn, res.ChurnEverySeconds,
					res.SeriesCreated, series+4*300)
			}
			if !strings.Contains(summary, "3200 series created") {
				t.Errorf("summary:\n%s", summary)
			}
		})
	}
}

// A proxy hands one sample of a replaced slot to the receiver in the
// slot's previous series: the verifier counts it as of a wrong generation,
// and the round it should have delivered as missing.
func TestVerifyCatchesWrongGeneration(t *testing.T) {
	for _, tc := range []struct{ name, shape string }{{"A_pod", "A"}, {"B_id", "B"}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 1000
			sh, _ := shapeByName(tc.shape)
			names, err := newSeriesNames(n, sh)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			rcvURL := "http://" + ln.Addr().String() + "/api/v1/write"
			var tampered atomic.Bool
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				req, ok := readWriteRequest(w, r)
				if !ok {
					return
				}
				for _, s := range req.Timeseries {
					var hash uint64
					gl := -1
					for k, l := range s.Labels {
						if l.Name == sh.genLabel {
							gl = k
						} else {
							hash += labelHash(l.Name, l.Value)
						}
					}
					slot, gen := names.resolve(hash, []byte(s.Labels[gl].Value))
					if gen >= 1 && tampered.CompareAndSwap(false, true) {
						s.Labels[gl].Value = sh.genValue(n, int(slot), gen-1)
					}
				}
				raw, _ := req.Marshal()
				resp, err := http.Post(rcvURL, "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, raw)))
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				resp.Body.Close()
				w.WriteHeader(resp.StatusCode)
			}))
			defer proxy.Close()

			cfg, err := parseFlags([]string{"--target", proxy.URL, "--shape", tc.shape, "--series", "1000", "--batch", "100",
				"--concurrency", "2", "--rounds", "5", "--ts-step", "1s", "--churn", "0.5", "--churn-every", "2s",
				"--verify", "--drain-timeout", "500ms"}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			cfg.listener = ln
			res, err := runLoad(testContext(t), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !tampered.Load() {
				t.Fatal("no sample of a replaced slot passed the proxy")
			}
			if res.AckedSamples != 5000 || *res.DeliveredSamples != 5000 || *res.VerifyWrongGen != 1 || *res.VerifyForeign != 1 ||
				*res.VerifyMissing != 1 || *res.VerifyUniqueDeliv != 4999 || *res.DrainComplete {
				t.Errorf("acked %d delivered %d wrong gen %d foreign %d missing %d unique %d complete %v", res.AckedSamples,
					*res.DeliveredSamples, *res.VerifyWrongGen, *res.VerifyForeign, *res.VerifyMissing, *res.VerifyUniqueDeliv,
					*res.DrainComplete)
			}
		})
	}
}

func TestRSSThirds(t *testing.T) {
	var samples []rssSample
	for s := range 61 { // one a second for a minute; RSS = 100 + the second
		samples = append(samples, rssSample{time.Duration(s) * time.Second, int64(100 + s)})
	}
	for _, tc := range []struct {
		name          string
		warmup, push  time.Duration
		first, second int64
	}{
		// Thirds of 20s: [0, 20] and [40, 60].
		{"no_warmup", 0, time.Minute, 120, 160},
		// Thirds of 10s: [30, 40] and [50, 60].
		{"warmup_half", 30 * time.Second, time.Minute, 140, 160},
		// The push ended at 30s; what follows (the drain) is not counted.
		{"drain_excluded", 0, 30 * time.Second, 110, 130},
		{"warmup_past_push", time.Minute, 30 * time.Second, 0, 0},
		{"window_without_samples", 0, 2 * time.Second, 100, 102},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, last := rssThirds(samples, tc.warmup, tc.push)
			if first != tc.first || last != tc.second {
				t.Errorf("rssThirds = %d, %d, want %d, %d", first, last, tc.first, tc.second)
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The RSS chart is a well-formed SVG document, byte for byte the golden one.
func TestRSSChartGolden(t *testing.T) {
	var samples []rssSample
	for k := range 3000 { // 10 minutes at 200ms: growing for 2 minutes, then flat with a sawtooth
		t := time.Duration(k) * 200 * time.Millisecond
		rss := int64(200<<20) + int64(min(k, 600))*(100<<10) + int64(k%50)*(200<<10)
		samples = append(samples, rssSample{t, rss})
	}
	c := rssChart{title: `ferry <RSS> & "churn"`, samples: samples, warmup: 2 * time.Minute, push: 9 * time.Minute}
	got := c.svg()
	dec := xml.NewDecoder(strings.NewReader(got))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
	}
	for _, want := range []string{"warm-up", "first third", "last third", "ferry &lt;RSS&gt; &amp; &#34;churn&#34;", "<polyline"} {
		if !strings.Contains(got, want) {
			t.Errorf("chart lacks %q", want)
		}
	}
	if pts := strings.Count(got[strings.Index(got, "points="):], ","); pts > 4*plotWidth {
		t.Errorf("%d points for %d pixel columns", pts, plotWidth)
	}
	golden := filepath.Join("testdata", "rss-chart.svg")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("chart differs from %s (go test -run TestRSSChartGolden -update rewrites it)", golden)
	}
	// No samples: still a chart, saying so.
	if empty := (rssChart{title: "x", push: time.Second}).svg(); !strings.Contains(empty, "no samples") {
		t.Errorf("empty chart:\n%s", empty)
	}
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		span float64
		n    int
		step float64
	}{{60, 10, 10}, {9, 10, 1}, {3, 10, 0.5}, {1.0 / 60, 10, 0.002}, {837, 6, 200}, {1, 6, 0.2}} {
		if got := niceStep(tc.span, tc.n); math.Abs(got-tc.step) > 1e-12 {
			t.Errorf("niceStep(%v, %d) = %v, want %v", tc.span, tc.n, got, tc.step)
		}
	}
	if got := tickLabel(0.6000000000000001, 0.2); got != "0.6" {
		t.Errorf("tickLabel = %q", got)
	}
	if got := tickLabel(30, 10); got != "30" {
		t.Errorf("tickLabel = %q", got)
	}
}

// --rss-log gets a line per sample while the run measures --pid, and
// --rss-svg the chart at the end; the result has the peaks of the thirds.
func TestRSSLogAndChart(t *testing.T) {
	dir := t.TempDir()
	logPath, svgPath := filepath.Join(dir, "rss.log"), filepath.Join(dir, "rss.svg")
	res, summary := runJSON(t, "--target", "self", "--receiver.listen", "127.0.0.1:0", "--series", "100",
		"--batch", "50", "--rate", "1000", "--duration", "2s", "--pid", "self", "--warmup", "500ms",
		"--rss-log", logPath, "--rss-svg", svgPath, "--rss-title", "ferry-load itself")
	if res.WarmupSeconds != 0.5 || res.RSSFirstThirdBytes == nil || res.RSSLastThirdBytes == nil || res.RSSFlatRatio == nil {
		t.Fatalf("warmup %v first %v last %v ratio %v", res.WarmupSeconds, res.RSSFirstThirdBytes, res.RSSLastThirdBytes, res.RSSFlatRatio)
	}
	if *res.RSSFirstThirdBytes <= 0 || *res.RSSLastThirdBytes > *res.PeakRSSBytes ||
		math.Abs(*res.RSSFlatRatio-float64(*res.RSSLastThirdBytes)/float64(*res.RSSFirstThirdBytes)) > 0.001 {
		t.Errorf("first %d last %d peak %d ratio %v", *res.RSSFirstThirdBytes, *res.RSSLastThirdBytes, *res.PeakRSSBytes, *res.RSSFlatRatio)
	}
	if !strings.Contains(summary, "rss          peak after warm-up 500ms: first third") {
		t.Errorf("summary:\n%s", summary)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) < 8 || lines[0] != "# seconds_since_start rss_bytes" {
		t.Fatalf("log:\n%s", b)
	}
	last := -1.0
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Fatalf("log line %q", l)
		}
		sec, err1 := strconv.ParseFloat(f[0], 64)
		rss, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || sec < last || rss <= 0 {
			t.Fatalf("log line %q after %v", l, last)
		}
		last = sec
	}
	if last < 1.9 {
		t.Errorf("log ends at %vs of a 2s push", last)
	}
	svg, err := os.ReadFile(svgPath)
	if err != nil || !strings.Contains(string(svg), "ferry-load itself") {
		t.Errorf("svg: %v\n%.200s", err, svg)
	}
}

// readWriteRequest decodes a Remote-Write 1.0 request, or answers 400 and
// returns false.
func readWriteRequest(w http.ResponseWriter, r *http.Request) (*prompb.WriteRequest, bool) {
	body, _ := io.ReadAll(r.Body)
	raw, err := snappy.Decode(nil, body)
	var req prompb.WriteRequest
	if err == nil {
		err = req.Unmarshal(raw)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return &req, true
}
