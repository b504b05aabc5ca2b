package receive

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// stricterThanGogo reports whether err is a rejection of input that the
// gogo-generated prompb and writev2 unmarshallers accept: varints
// overflowing 64 bits (gogo drops the excess bits), field numbers above
// 2^31-1 (gogo truncates them to int32, possibly into a known field), groups
// (gogo skips unknown ones) and a varint running past the end of its packed
// field (gogo reads on into the following bytes).
func stricterThanGogo(err error) bool {
	var de *decodeError
	return errors.As(err, &de) && (de.kind == kindOverflow || de.kind == kindFieldNumber || de.kind == kindGroup || de.kind == kindPacked)
}

// FuzzDecode checks Decode against prompb.WriteRequest.Unmarshal: whatever
// prompb accepts, Decode accepts too (except as stricterThanGogo allows) with
// bit-identical labels, samples and exemplars, the same histogram messages
// and the metadata that names a family. Decode and Validate must never panic, and a
// reused Request must decode like a fresh one.
func FuzzDecode(f *testing.F) {
	f.Add(benchRequest(3))
	rng := rand.New(rand.NewPCG(7, 8))
	for range 5 {
		buf, err := randomWriteRequest(rng, 2).Marshal() // small seeds minimize quickly
		if err != nil {
			f.Fatal(err)
		}
		f.Add(buf)
	}
	f.Add(pbRequest(pbSeries(staleNaN, -1, "__name__", "up", "job", "x")))
	f.Add([]byte{0x0a, 0x05, 0x0a})
	f.Add([]byte{0x2b, 0x2c})

	var reused Request
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		err := Decode(data, &r)
		if err != nil {
			var de *decodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not a decode error wrapping ErrCorrupt", err)
			}
			if de.off < 0 || de.off > len(data) {
				t.Fatalf("error %v: offset outside the input of %d bytes", err, len(data))
			}
		}

		var pb prompb.WriteRequest
		if pbErr := pb.Unmarshal(data); pbErr == nil {
			if err != nil && !stricterThanGogo(err) {
				t.Fatalf("prompb accepts the input, Decode fails: %v", err)
			}
			if err == nil {
				if diff := compareWithPrompb(&r, &pb); diff != nil {
					t.Fatalf("Decode differs from prompb: %v", diff)
				}
			}
		}

		// Decoding into a used Request gives the same result.
		if err2 := Decode(data, &reused); (err2 == nil) != (err == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("reused Request: error %v, fresh Request: %v", err2, err)
		}
		if err != nil {
			return
		}
		checkReused(t, &r, &reused)
	})
}

// checkWire checks that series i's wire range, if any, holds exactly the
// wire form of its labels: the WAL identifies series by hashing it.
func checkWire(t *testing.T, b *model.Batch, i int) {
	t.Helper()
	s := b.Series[i]
	if s.WireStart == s.WireEnd {
		return
	}
	if s.WireStart > s.WireEnd || int(s.WireEnd) > len(b.Wire) {
		t.Fatalf("series %d: wire range [%d:%d] outside the %d-byte request", i, s.WireStart, s.WireEnd, len(b.Wire))
	}
	var want []byte
	for _, l := range b.SeriesLabels(i) {
		want = model.AppendWireLabel(want, l.Name, l.Value)
	}
	if got := b.Wire[s.WireStart:s.WireEnd]; !bytes.Equal(got, want) {
		t.Fatalf("series %d: wire range holds %x, the wire form of its labels is %x", i, got, want)
	}
}

// checkReused checks that reused, a Request decoded into after earlier
// inputs, holds what the fresh Request r holds, that r's ranges are sound,
// and that Validate neither panics nor returns a huge error.
func checkReused(t *testing.T, r, reused *Request) {
	t.Helper()
	b, rb := &r.Batch, &reused.Batch
	if len(rb.Series) != len(b.Series) || len(rb.Labels) != len(b.Labels) || len(rb.Samples) != len(b.Samples) ||
		len(rb.Histograms) != len(b.Histograms) || len(rb.Exemplars) != len(b.Exemplars) || len(rb.Metadata) != len(b.Metadata) {
		t.Fatalf("reused Request decoded differently")
	}
	for i, s := range b.Series {
		if s.LabelsStart > s.LabelsEnd || s.SamplesStart > s.SamplesEnd || s.HistogramsStart > s.HistogramsEnd || s.ExemplarsStart > s.ExemplarsEnd || s != rb.Series[i] {
			t.Fatalf("series %d: bad ranges %+v, reused %+v", i, s, rb.Series[i])
		}
		checkWire(t, b, i)
	}
	for i, e := range b.Exemplars {
		g := rb.Exemplars[i]
		if e.LabelsStart != g.LabelsStart || e.LabelsEnd != g.LabelsEnd || e.Timestamp != g.Timestamp || math.Float64bits(e.Value) != math.Float64bits(g.Value) {
			t.Fatalf("exemplar %d: %+v, reused %+v", i, e, g)
		}
	}
	for _, scheme := range []ValidationScheme{LegacyValidation, UTF8Validation} {
		if err := Validate(r, scheme); err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(err.Error()) > 2048 {
				t.Fatalf("validation error %T of %d bytes: %.300s", err, len(err.Error()), err)
			}
		}
	}
}

// updateSeeds rewrites the committed seed corpus of FuzzDecodeV2 from
// v2Seeds: go test -run TestFuzzDecodeV2Seeds -update-seeds.
var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzDecodeV2 from v2Seeds")

// v2Seeds returns the named seed inputs of FuzzDecodeV2: real encodings of
// requests with samples, start timestamps, histograms (custom buckets
// included), exemplars and metadata, hand-built encodings a sender may
// produce, and requests breaking the specification's rules.
func v2Seeds() map[string][]byte {
	marshal := func(req *writev2.Request) []byte {
		b, err := req.Marshal()
		if err != nil {
			panic(err)
		}
		return b
	}
	st := writev2.NewSymbolTable()
	refs := func(kv ...string) []uint32 {
		var out []uint32
		for _, s := range kv {
			out = append(out, st.Symbolize(s))
		}
		return out
	}
	const now = 1_700_000_000_000
	full := &writev2.Request{Timeseries: []writev2.TimeSeries{
		{
			LabelsRefs: refs("__name__", "http_requests_total", "code", "200", "job", "api"),
			Samples:    []writev2.Sample{{Value: 41, Timestamp: now - 15000, StartTimestamp: now - 3600000}, {Value: 42, Timestamp: now, StartTimestamp: now - 3600000}},
			Exemplars:  []writev2.Exemplar{{LabelsRefs: refs("trace_id", "4bf92f3577b34da6"), Value: 1, Timestamp: now - 100}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("Requests served."), UnitRef: st.Symbolize("requests")},
		},
		{
			LabelsRefs: refs("__name__", "request_duration_seconds", "job", "api"),
			Histograms: []writev2.Histogram{{
				Count: &writev2.Histogram_CountInt{CountInt: 12}, Sum: 3.5, Schema: -53,
				ZeroCount:     &writev2.Histogram_ZeroCountInt{},
				PositiveSpans: []writev2.BucketSpan{{Offset: 0, Length: 4}}, PositiveDeltas: []int64{2, 3, -1, 0},
				CustomValues: []float64{0.1, 0.25, 0.5, 1}, Timestamp: now, StartTimestamp: now - 3600000,
			}},
			Exemplars: []writev2.Exemplar{{LabelsRefs: refs("span_id", "00f067aa0ba902b7", "trace_id", "4bf92f3577b34da6"), Value: 0.3, Timestamp: now - 50}},
			Metadata:  writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, HelpRef: st.Symbolize("Request latency."), UnitRef: st.Symbolize("seconds")},
		},
		{
			LabelsRefs: refs("__name__", "request_size_bytes", "job", "api"),
			Histograms: []writev2.Histogram{{
				Count: &writev2.Histogram_CountFloat{CountFloat: 7.5}, Sum: 1e6, Schema: 3, ZeroThreshold: 1e-128,
				ZeroCount:     &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: 0.5},
				PositiveSpans: []writev2.BucketSpan{{Offset: 80, Length: 2}, {Offset: 3, Length: 1}}, PositiveCounts: []float64{2, 4, 1},
				ResetHint: writev2.Histogram_RESET_HINT_GAUGE, Timestamp: now,
			}},
		},
	}}
	full.Symbols = st.Symbols()

	stale := &writev2.Request{Symbols: []string{"", "__name__", "up"}, Timeseries: []writev2.TimeSeries{{
		LabelsRefs: []uint32{1, 2},
		Samples:    []writev2.Sample{{Value: math.Float64frombits(staleNaN), Timestamp: now, StartTimestamp: now - 60000}},
	}}}

	sample := pbBytes(nil, 2, v2Sample(1, now, 0))
	return map[string][]byte{
		"samples_histograms_exemplars_metadata": marshal(full),
		"stale_marker_start_timestamp":          marshal(stale),
		"three_series":                          benchRequestV2(3),
		"unpacked_split_label_refs": v2Req(v2Syms, cat(pbVarint(pbTag(nil, 1, wireVarint), 1), v2Packed(1, 2, 3), sample,
			pbVarint(pbTag(nil, 1, wireVarint), 4), pbBytes(nil, 4, v2Packed(1, 5, 6)))),
		"symbols_after_series":          cat(v2Symbols("", "__name__"), pbBytes(nil, 5, v2Up()), v2Symbols("up", "job", "api")),
		"samples_and_histograms":        v2Req(v2Syms, cat(v2Packed(1, 1, 2), sample, pbBytes(nil, 3, []byte{0x08, 0x01}))),
		"label_ref_out_of_range":        v2Req(v2Syms, cat(v2Packed(1, 1, 9), sample)),
		"first_symbol_not_empty":        v2Req([]string{"__name__", "up"}, cat(v2Packed(1, 0, 1), sample)),
		"metadata_merged_and_repeated":  v2Req(v2Syms, v2Up(pbBytes(nil, 5, []byte{0x08, 0x02, 0x18, 0x07}), pbBytes(nil, 5, []byte{0x20, 0x08})), v2Up(pbBytes(nil, 5, []byte{0x08, 0x01}))),
		"write_request_1_0_as_2_0":      benchRequest(2),
		"unknown_fields_reserved_field": cat(pbVarint(pbTag(nil, 3, wireVarint), 1), v2Symbols(v2Syms...), pbBytes(nil, 5, v2Up(pbVarint(pbTag(nil, 6, wireVarint), 7), pbBytes(nil, 9, []byte("x"))))),
	}
}

// FuzzDecodeV2 checks DecodeV2 against writev2.Request.Unmarshal: whatever
// writev2 accepts, DecodeV2 accepts too, except as stricterThanGogo allows
// and exactly when the request breaks one of the specification's rules
// that DecodeV2 checks (v2Violation); it then holds bit-identical labels,
// samples and exemplars, the same histogram messages and the metadata the
// series carry. DecodeV2 and Validate must never panic, and a reused
// Request must decode like a fresh one.
func FuzzDecodeV2(f *testing.F) {
	for _, seed := range v2Seeds() {
		f.Add(seed)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for k := range 6 {
		buf, err := randomV2Request(rng, 2, k%2 == 1).Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(buf)
	}

	var reused Request
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		err := DecodeV2(data, &r)
		var de *decodeError
		if err != nil {
			if !errors.As(err, &de) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not a decode error wrapping ErrCorrupt", err)
			}
			if de.off < 0 || de.off > len(data) {
				t.Fatalf("error %v: offset outside the input of %d bytes", err, len(data))
			}
		}

		var pb writev2.Request
		if pbErr := pb.Unmarshal(data); pbErr == nil {
			violation := v2Violation(&pb)
			switch {
			case err == nil && violation != "":
				t.Fatalf("DecodeV2 accepts a request breaking the specification: %s", violation)
			case err != nil && de.kind == kindSpec && violation == "":
				t.Fatalf("DecodeV2: %v; writev2 finds the request valid", err)
			case err != nil && de.kind != kindSpec && !stricterThanGogo(err):
				t.Fatalf("writev2 accepts the input, DecodeV2 fails: %v", err)
			case err == nil:
				if diff := compareWithWritev2(&r, &pb); diff != nil {
					t.Fatalf("DecodeV2 differs from writev2: %v", diff)
				}
			}
		}

		if err2 := DecodeV2(data, &reused); (err2 == nil) != (err == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("reused Request: error %v, fresh Request: %v", err2, err)
		}
		if err != nil {
			return
		}
		checkReused(t, &r, &reused)
	})
}

// TestFuzzDecodeV2Seeds checks that the committed seed corpus is v2Seeds,
// or rewrites it with -update-seeds.
func TestFuzzDecodeV2Seeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeV2")
	for name, seed := range v2Seeds() {
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed)
		path := filepath.Join(dir, name)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("seed %s is missing or out of date (%v): run go test -run TestFuzzDecodeV2Seeds -update-seeds", path, err)
		}
	}
}
