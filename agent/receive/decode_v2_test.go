package receive

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ferrymetrics/ferry/wal/model"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Encoding helpers for hand-built Remote-Write 2.0 inputs.

// v2Symbols encodes a symbols table.
func v2Symbols(syms ...string) []byte {
	var b []byte
	for _, s := range syms {
		b = pbBytes(b, 4, []byte(s))
	}
	return b
}

// v2Packed encodes refs as a packed repeated varint field.
func v2Packed(field int, refs ...uint64) []byte {
	var p []byte
	for _, r := range refs {
		p = pbVarint(p, r)
	}
	return pbBytes(nil, field, p)
}

// v2Sample encodes a Sample.
func v2Sample(value float64, ts, start int64) []byte {
	b := pbFixed64(nil, 1, math.Float64bits(value))
	b = pbVarint(pbTag(b, 2, wireVarint), uint64(ts))
	if start != 0 {
		b = pbVarint(pbTag(b, 3, wireVarint), uint64(start))
	}
	return b
}

// v2Req encodes a Request from a symbols table and encoded TimeSeries.
func v2Req(syms []string, series ...[]byte) []byte {
	b := v2Symbols(syms...)
	for _, s := range series {
		b = pbBytes(b, 5, s)
	}
	return b
}

// v2Syms is the symbols table of the hand-built requests.
var v2Syms = []string{"", "__name__", "up", "job", "api", "trace_id", "abc", "Help text.", "seconds"}

// v2Up encodes the series {__name__="up", job="api"} with one sample,
// followed by extra fields.
func v2Up(extra ...[]byte) []byte {
	return cat(append([][]byte{v2Packed(1, 1, 2, 3, 4), pbBytes(nil, 2, v2Sample(1, 1000, 0))}, extra...)...)
}

func TestDecodeV2Errors(t *testing.T) {
	labels := v2Packed(1, 1, 2, 3, 4)
	sample := pbBytes(nil, 2, v2Sample(1, 1000, 0))
	hist := pbBytes(nil, 3, []byte{0x08, 0x01})
	tests := []struct {
		name string
		in   []byte
		kind errKind
		msg  string // substring of the error message
	}{
		{"label ref out of range", v2Req(v2Syms, cat(v2Packed(1, 1, 9), sample)), kindSpec,
			"decode timeseries 0: labels_refs: label ref 9 outside the symbols table of 9 at offset 67"},
		{"label ref out of range, second series", v2Req(v2Syms, v2Up(), cat(v2Packed(1, 1, 2, 3, 1000), sample)), kindSpec,
			"decode timeseries 1: labels_refs: label ref 1000 outside the symbols table of 9"},
		{"label ref above 32 bits truncated out of range", v2Req(v2Syms, cat(v2Packed(1, 1, 1<<32|100), sample)), kindSpec, "label ref 100 outside"},
		{"unpacked label ref out of range", v2Req(v2Syms, cat(pbVarint(pbTag(nil, 1, wireVarint), 1), pbVarint(pbTag(nil, 1, wireVarint), 99), sample)), kindSpec,
			"decode timeseries 0: labels_refs: label ref 99 outside the symbols table"},
		{"odd number of label refs", v2Req(v2Syms, cat(v2Packed(1, 1, 2, 3), sample)), kindSpec,
			"decode timeseries 0: labels_refs: odd number of label refs (3) at offset 64"},
		{"odd number of label refs split over fields", v2Req(v2Syms, cat(v2Packed(1, 1), v2Packed(1, 2, 3), sample)), kindSpec,
			"odd number of label refs (3)"},
		{"first symbol not empty", v2Req([]string{"__name__", "up"}, cat(v2Packed(1, 0, 1), sample)), kindSpec,
			"decode symbol 0: the symbols table does not start with the empty string at offset 0"},
		{"first symbol not empty, no series", v2Symbols("x"), kindSpec, "the symbols table does not start with the empty string"},
		{"series without symbols table", v2Req(nil, sample), kindSpec,
			"decode timeseries 0: series without a symbols table at offset 0"},
		{"samples and histograms in one series", v2Req(v2Syms, cat(labels, sample, hist)), kindSpec,
			"decode timeseries 0: 1 samples and 1 histograms in one series: a series carries samples or histograms, not both"},
		{"exemplar ref out of range", v2Req(v2Syms, v2Up(pbBytes(nil, 4, v2Packed(1, 5, 77)))), kindSpec,
			"decode timeseries 0: exemplar 0: labels_refs: label ref 77 outside"},
		{"exemplar odd refs", v2Req(v2Syms, v2Up(pbBytes(nil, 4, nil), pbBytes(nil, 4, v2Packed(1, 5)))), kindSpec,
			"decode timeseries 0: exemplar 1: labels_refs: odd number of label refs (1)"},
		{"help ref out of range", v2Req(v2Syms, v2Up(pbBytes(nil, 5, []byte{0x08, 0x01, 0x18, 0x09}))), kindSpec,
			"decode timeseries 0: metadata: help_ref: help ref 9 outside the symbols table of 9"},
		{"unit ref out of range", v2Req(v2Syms, v2Up(pbBytes(nil, 5, []byte{0x20, 0x7f}))), kindSpec,
			"metadata: unit_ref: unit ref 127 outside"},
		{"truncated", func() []byte { b := v2Req(v2Syms, v2Up()); return b[:len(b)-3] }(), kindLength, "decode timeseries 0: length 20 exceeds the 17 bytes left at offset 63"},
		{"truncated symbol", []byte{0x22, 0x05, 'a'}, kindLength, "decode symbol 0: length 5 exceeds the 1 bytes left at offset 1"},
		{"truncated packed ref", v2Req(v2Syms, cat(pbBytes(nil, 1, []byte{0x01, 0x80}), sample)), kindPacked,
			"decode timeseries 0: labels_refs: varint runs past the end of the packed field at offset 67"},
		{"truncated packed exemplar ref", v2Req(v2Syms, v2Up(pbBytes(nil, 4, pbBytes(nil, 1, []byte{0x85})))), kindPacked,
			"decode timeseries 0: exemplar 0: labels_refs: varint runs past the end of the packed field"},
		{"truncated unpacked ref", v2Req(v2Syms, []byte{0x08, 0x81}), kindTruncated, "decode timeseries 0: labels_refs: truncated varint at offset 65"},
		{"truncated sample", v2Req(v2Syms, cat(labels, pbBytes(nil, 2, []byte{0x09, 1, 2}))), kindTruncated,
			"decode timeseries 0: sample 0: value: truncated fixed64"},
		{"truncated start timestamp", v2Req(v2Syms, cat(labels, pbBytes(nil, 2, []byte{0x18, 0x80}))), kindTruncated,
			"sample 0: start_timestamp: truncated varint"},
		{"histogram past end", v2Req(v2Syms, cat(labels, []byte{0x1a, 0x03, 0x00})), kindLength, "timeseries 0: histogram 0: length 3"},
		{"metadata past end", v2Req(v2Syms, cat(labels, sample, []byte{0x2a, 0x03, 0x00})), kindLength, "timeseries 0: metadata: length 3"},
		{"symbols as varint", []byte{0x20, 0x01}, kindWireType, "wrong wire type 0 for request field 4 at offset 0"},
		{"timeseries as fixed64", cat(v2Symbols(""), pbFixed64(nil, 5, 0)), kindWireType, "wrong wire type 1 for request field 5 at offset 2"},
		{"label refs as fixed64", v2Req(v2Syms, pbFixed64(nil, 1, 0)), kindWireType, "wrong wire type 1 for timeseries field 1"},
		{"samples as varint", v2Req(v2Syms, cat(labels, []byte{0x10, 0x01})), kindWireType, "wrong wire type 0 for timeseries field 2"},
		{"histograms as fixed32", v2Req(v2Syms, cat(labels, []byte{0x1d, 0, 0, 0, 0})), kindWireType, "wrong wire type 5 for timeseries field 3"},
		{"metadata as varint", v2Req(v2Syms, v2Up([]byte{0x28, 0x01})), kindWireType, "wrong wire type 0 for timeseries field 5"},
		{"sample value as varint", v2Req(v2Syms, cat(labels, pbBytes(nil, 2, []byte{0x08, 0x01}))), kindWireType, "wrong wire type 0 for sample field 1"},
		{"start timestamp as fixed64", v2Req(v2Syms, cat(labels, pbBytes(nil, 2, pbFixed64(nil, 3, 1)))), kindWireType, "wrong wire type 1 for sample field 3"},
		{"exemplar value as varint", v2Req(v2Syms, v2Up(pbBytes(nil, 4, []byte{0x10, 0x01}))), kindWireType, "wrong wire type 0 for exemplar field 2"},
		{"exemplar refs as fixed32", v2Req(v2Syms, v2Up(pbBytes(nil, 4, []byte{0x0d, 0, 0, 0, 0}))), kindWireType, "wrong wire type 5 for exemplar field 1"},
		{"metadata type as bytes", v2Req(v2Syms, v2Up(pbBytes(nil, 5, pbBytes(nil, 1, nil)))), kindWireType, "wrong wire type 2 for metadata field 1"},
		{"group in series", v2Req(v2Syms, cat(labels, []byte{0x33, 0x34})), kindGroup, "decode timeseries 0: field 6: groups are not supported"},
		{"varint overflow", cat([]byte{0x30}, bytes.Repeat([]byte{0xff}, 9), []byte{0x02}), kindOverflow, "decode write request: field 6: varint overflows 64 bits at offset 1"},
		{"field number zero", []byte{0x02, 0x00}, kindFieldNumber, "invalid field number 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			checkCorrupt(t, "DecodeV2", tc.in, DecodeV2(tc.in, &r), tc.kind, tc.msg)
			// The gogo-generated decoder accepts the inputs that break the
			// specification's rules rather than protobuf's, and rejects
			// truncated ones and wrong wire types.
			var pb writev2.Request
			pbErr := pb.Unmarshal(tc.in)
			switch tc.kind {
			case kindSpec:
				if pbErr != nil {
					t.Errorf("writev2 Unmarshal: %v", pbErr)
				}
			case kindTruncated, kindLength, kindWireType:
				if pbErr == nil {
					t.Errorf("writev2 Unmarshal accepts the input")
				}
			}
		})
	}
}

// v2Series is the expected content of one decoded series.
type v2Series struct {
	labels     []string // name, value, ...
	samples    []model.Sample
	histograms [][]byte
	exemplars  []v2Exemplar
}

type v2Exemplar struct {
	labels []string
	value  float64
	ts     int64
}

// checkV2 compares the series of r with want, and its metadata with
// wantMeta.
func checkV2(t *testing.T, r *Request, want []v2Series, wantMeta []model.Metadata) {
	t.Helper()
	b := &r.Batch
	if len(b.Series) != len(want) {
		t.Fatalf("%d series, want %d", len(b.Series), len(want))
	}
	for i, w := range want {
		if got := flatLabels(b.SeriesLabels(i)); !slices.Equal(got, w.labels) {
			t.Errorf("series %d: labels %q, want %q", i, got, w.labels)
		}
		if got := b.SeriesSamples(i); !slices.Equal(got, w.samples) {
			t.Errorf("series %d: samples %+v, want %+v", i, got, w.samples)
		}
		if got := b.SeriesHistograms(i); !slices.EqualFunc(got, w.histograms, bytes.Equal) {
			t.Errorf("series %d: histograms %x, want %x", i, got, w.histograms)
		}
		ex := b.SeriesExemplars(i)
		if len(ex) != len(w.exemplars) {
			t.Errorf("series %d: %d exemplars, want %d", i, len(ex), len(w.exemplars))
			continue
		}
		for j, we := range w.exemplars {
			e := ex[j]
			if ls := flatLabels(b.ExemplarLabels(&e)); !slices.Equal(ls, we.labels) || e.Value != we.value || e.Timestamp != we.ts {
				t.Errorf("series %d exemplar %d: %q %v @%d, want %q %v @%d", i, j, ls, e.Value, e.Timestamp, we.labels, we.value, we.ts)
			}
		}
	}
	if err := compareMetadata(b.Metadata, wantMeta); err != nil {
		t.Error(err)
	}
}

func TestDecodeV2Accepts(t *testing.T) {
	up := []string{"__name__", "up", "job", "api"}
	one := []model.Sample{{Value: 1, Timestamp: 1000}}
	unknown := cat(
		pbVarint(pbTag(nil, 9, wireVarint), math.MaxUint64),
		pbFixed64(nil, 10, 7),
		pbBytes(nil, 11, []byte("junk")),
		pbTag(nil, 12, wireFixed32), []byte{1, 2, 3, 4},
	)
	counter := model.Metadata{Family: []byte("up"), Type: model.TypeCounter, Help: []byte("Help text."), Unit: []byte("seconds")}
	meta := pbBytes(nil, 5, []byte{0x08, 0x01, 0x18, 0x07, 0x20, 0x08}) // counter, help, unit
	tests := []struct {
		name string
		in   []byte
		want []v2Series
		meta []model.Metadata
	}{
		{name: "empty request", in: nil},
		{name: "only the empty symbol", in: v2Symbols("")},
		{name: "plain", in: v2Req(v2Syms, v2Up()), want: []v2Series{{labels: up, samples: one}}},
		{
			// A histogram's series describe one family.
			name: "histogram bucket metadata names its family",
			in: v2Req([]string{"", "__name__", "lat_bucket", "Latency."},
				cat(v2Packed(1, 1, 2), pbBytes(nil, 2, v2Sample(1, 1000, 0)), pbBytes(nil, 5, []byte{0x08, 0x03, 0x18, 0x03}))),
			want: []v2Series{{labels: []string{"__name__", "lat_bucket"}, samples: one}},
			meta: []model.Metadata{{Family: []byte("lat"), Type: model.TypeHistogram, Help: []byte("Latency."), Unit: []byte{}}},
		},
		{
			// Prometheus 3 sends each exemplar in a series of its own.
			name: "exemplar without samples",
			in:   v2Req(v2Syms, v2Up(), cat(v2Packed(1, 1, 2, 3, 4), pbBytes(nil, 4, v2Packed(1, 5, 6)))),
			want: []v2Series{{labels: up, samples: one}, {labels: up, exemplars: []v2Exemplar{{labels: []string{"trace_id", "abc"}}}}},
		},
		{
			name: "start timestamps and several samples",
			in:   v2Req(v2Syms, cat(v2Packed(1, 1, 2), pbBytes(nil, 2, v2Sample(1, 10, 5)), pbBytes(nil, 2, v2Sample(2, 20, 5)), pbBytes(nil, 2, v2Sample(-1, -30, -1)))),
			want: []v2Series{{labels: []string{"__name__", "up"}, samples: []model.Sample{{Value: 1, Timestamp: 10, Start: 5}, {Value: 2, Timestamp: 20, Start: 5}, {Value: -1, Timestamp: -30, Start: -1}}}},
		},
		{
			name: "unpacked and split label refs",
			in: v2Req(v2Syms, cat(pbVarint(pbTag(nil, 1, wireVarint), 1), v2Packed(1, 2, 3), pbBytes(nil, 2, v2Sample(1, 1000, 0)),
				pbVarint(pbTag(nil, 1, wireVarint), 4))),
			want: []v2Series{{labels: up, samples: one}},
		},
		{
			name: "symbols after and between series",
			in:   cat(v2Symbols("", "__name__"), pbBytes(nil, 5, v2Up()), v2Symbols("up", "job"), pbBytes(nil, 5, v2Up()), v2Symbols("api")),
			want: []v2Series{{labels: up, samples: one}, {labels: up, samples: one}},
		},
		{
			name: "unknown and reserved fields at every level",
			in: cat(unknown, pbBytes(nil, 1, []byte("a 1.0 series")), pbVarint(pbTag(nil, 3, wireVarint), 1), v2Symbols(v2Syms...),
				pbBytes(nil, 5, cat(unknown, v2Packed(1, 1, 2), pbVarint(pbTag(nil, 6, wireVarint), 123), pbBytes(nil, 2, cat(unknown, v2Sample(1, 1000, 0), unknown)),
					pbBytes(nil, 4, cat(unknown, v2Packed(1, 5, 6), unknown)), pbBytes(nil, 5, cat(unknown, []byte{0x08, 0x02}, unknown)))), unknown),
			want: []v2Series{{labels: []string{"__name__", "up"}, samples: one, exemplars: []v2Exemplar{{labels: []string{"trace_id", "abc"}}}}},
			meta: []model.Metadata{{Family: []byte("up"), Type: model.TypeGauge}},
		},
		{
			name: "fields in unusual order",
			in: v2Req(v2Syms, cat(pbBytes(nil, 2, cat(pbVarint(pbTag(nil, 3, wireVarint), 7), pbVarint(pbTag(nil, 2, wireVarint), 5), pbFixed64(nil, 1, math.Float64bits(2)))),
				meta, pbBytes(nil, 4, cat(pbVarint(pbTag(nil, 3, wireVarint), 9), pbFixed64(nil, 2, math.Float64bits(0.5)), v2Packed(1, 5, 6))), v2Packed(1, 1, 2, 3, 4))),
			want: []v2Series{{labels: up, samples: []model.Sample{{Value: 2, Timestamp: 5, Start: 7}}, exemplars: []v2Exemplar{{[]string{"trace_id", "abc"}, 0.5, 9}}}},
			meta: []model.Metadata{counter},
		},
		{
			name: "histograms kept raw",
			in:   v2Req(v2Syms, cat(v2Packed(1, 1, 2), pbBytes(nil, 3, []byte{0x08, 0x03, 0x88, 0x01, 0x07}), pbBytes(nil, 3, nil))),
			want: []v2Series{{labels: []string{"__name__", "up"}, histograms: [][]byte{{0x08, 0x03, 0x88, 0x01, 0x07}, {}}}},
		},
		{
			name: "exemplars without labels, several series",
			in: v2Req(v2Syms, v2Up(pbBytes(nil, 4, pbFixed64(nil, 2, math.Float64bits(3))), pbBytes(nil, 4, v2Packed(1, 5, 6, 3, 4))),
				v2Up(), v2Up(pbBytes(nil, 4, v2Packed(1, 5, 6)))),
			want: []v2Series{
				{labels: up, samples: one, exemplars: []v2Exemplar{{nil, 3, 0}, {[]string{"trace_id", "abc", "job", "api"}, 0, 0}}},
				{labels: up, samples: one},
				{labels: up, samples: one, exemplars: []v2Exemplar{{[]string{"trace_id", "abc"}, 0, 0}}},
			},
		},
		{
			name: "metadata merged and deduplicated",
			in: v2Req(v2Syms,
				v2Up(pbBytes(nil, 5, []byte{0x08, 0x02, 0x18, 0x07}), pbBytes(nil, 5, []byte{0x08, 0x01, 0x20, 0x08})), // merged: counter, help, unit
				v2Up(meta), // the same: deduplicated
				v2Up(pbBytes(nil, 5, []byte{0x08, 0x01, 0x18, 0x00, 0x20, 0x08})),   // no help: kept
				v2Up(pbBytes(nil, 5, nil)),                                          // empty: none
				v2Up(pbBytes(nil, 5, []byte{0x08, 0x2a})),                           // unknown type 42 and nothing else: none
				cat(v2Packed(1, 3, 4), pbBytes(nil, 2, v2Sample(1, 1000, 0)), meta), // no metric name: none
				v2Up(meta), // the same as two entries back: kept
			),
			want: []v2Series{{labels: up, samples: one}, {labels: up, samples: one}, {labels: up, samples: one}, {labels: up, samples: one},
				{labels: up, samples: one}, {labels: []string{"job", "api"}, samples: one}, {labels: up, samples: one}},
			meta: []model.Metadata{counter, {Family: []byte("up"), Type: model.TypeCounter, Unit: []byte("seconds")}, counter},
		},
		{
			name: "metadata ref out of the table replaced by a later occurrence",
			in:   v2Req(v2Syms, v2Up(pbBytes(nil, 5, []byte{0x08, 0x02, 0x18, 0x7f, 0x20, 0x7f}), pbBytes(nil, 5, []byte{0x18, 0x07, 0x20, 0x00}))),
			want: []v2Series{{labels: up, samples: one}},
			meta: []model.Metadata{{Family: []byte("up"), Type: model.TypeGauge, Help: []byte("Help text.")}},
		},
		{
			name: "two-byte refs",
			in: func() []byte {
				syms := []string{""}
				for i := range 300 {
					syms = append(syms, fmt.Sprintf("s%d", i))
				}
				syms = append(syms, "__name__", "up")
				return v2Req(syms, cat(v2Packed(1, 301, 302, 200, 1), pbBytes(nil, 2, v2Sample(1, 1000, 0))))
			}(),
			want: []v2Series{{labels: []string{"__name__", "up", "s199", "s0"}, samples: one}},
		},
		{
			name: "three-byte refs",
			in: func() []byte {
				syms := []string{"", "__name__"}
				for i := range 20000 {
					syms = append(syms, fmt.Sprintf("s%d", i))
				}
				// A one-byte name with a three-byte value, a three-byte
				// name with a two-byte value, non-minimal varints.
				refs := pbBytes(nil, 1, []byte{0x01, 0x81, 0x80, 0x01, 0x82, 0x80, 0x01, 0x83, 0x01, 0x82, 0x00, 0x83, 0x80, 0x00})
				return v2Req(syms, cat(refs, pbBytes(nil, 2, v2Sample(1, 1000, 0))))
			}(),
			want: []v2Series{{labels: []string{"__name__", "s16383", "s16384", "s129", "s0", "s1"}, samples: one}},
		},
	}
	var r Request
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := DecodeV2(tc.in, &r); err != nil {
				t.Fatalf("DecodeV2: %v", err)
			}
			checkV2(t, &r, tc.want, tc.meta)
		})
	}
}

// randomV2Request builds a Request with random, not necessarily valid,
// content: up to size series of up to 3*size labels, with strings of up to
// 15*size bytes. With invalid, it may also break the specification's rules.
func randomV2Request(rng *rand.Rand, size int, invalid bool) *writev2.Request {
	str := func() string {
		switch rng.IntN(6) {
		case 0:
			return ""
		case 1:
			b := make([]byte, rng.IntN(15*size))
			for k := range b {
				b[k] = byte(rng.Uint32())
			}
			return string(b)
		case 2:
			return "ünïcødé_" + fmt.Sprint(rng.IntN(100))
		default:
			return fmt.Sprintf("l%d", rng.IntN(1000))
		}
	}
	float := func() float64 {
		switch rng.IntN(8) {
		case 0:
			return math.Float64frombits(staleNaN)
		case 1:
			return math.Float64frombits(rng.Uint64())
		case 2:
			return math.Inf(1 - 2*rng.IntN(2))
		case 3:
			return 0
		default:
			return rng.NormFloat64() * 1e6
		}
	}
	ts := func() int64 {
		switch rng.IntN(4) {
		case 0:
			return int64(rng.Uint64())
		case 1:
			return 0
		}
		return 1_700_000_000_000 + rng.Int64N(1e9)
	}
	broken := func() bool { return invalid && rng.IntN(30) == 0 }
	st := writev2.NewSymbolTable()
	ref := func(s string) uint32 {
		if broken() {
			return uint32(len(st.Symbols()) + rng.IntN(3))
		}
		return st.Symbolize(s)
	}
	refs := func(n int) []uint32 {
		var out []uint32
		for range n {
			name := str()
			if rng.IntN(4) == 0 {
				name = "__name__"
			}
			out = append(out, ref(name), ref(str()))
		}
		if broken() {
			out = append(out, 0)
		}
		return out
	}
	req := &writev2.Request{}
	for range rng.IntN(size + 1) {
		var s writev2.TimeSeries
		s.LabelsRefs = refs(rng.IntN(3*size + 1))
		hist := rng.IntN(3) == 0
		n := 1 + rng.IntN(4)
		if broken() {
			n = 0
		}
		for range n {
			if hist {
				s.Histograms = append(s.Histograms, randomV2Histogram(rng, float, ts))
			} else {
				s.Samples = append(s.Samples, writev2.Sample{Value: float(), Timestamp: ts(), StartTimestamp: ts()})
			}
		}
		if broken() {
			s.Histograms = append(s.Histograms, randomV2Histogram(rng, float, ts))
			s.Samples = append(s.Samples, writev2.Sample{Value: float(), Timestamp: ts()})
		}
		for range rng.IntN(3) {
			s.Exemplars = append(s.Exemplars, writev2.Exemplar{LabelsRefs: refs(rng.IntN(3)), Value: float(), Timestamp: ts()})
		}
		if rng.IntN(2) == 0 {
			s.Metadata = writev2.Metadata{Type: writev2.Metadata_MetricType(rng.IntN(9)), HelpRef: ref(str()), UnitRef: ref(str())}
		}
		req.Timeseries = append(req.Timeseries, s)
	}
	req.Symbols = st.Symbols()
	if broken() {
		req.Symbols[0] = "x"
	}
	if broken() {
		req.Symbols = nil
	}
	return req
}

// randomV2Histogram returns an integer, float or custom-buckets histogram.
func randomV2Histogram(rng *rand.Rand, float func() float64, ts func() int64) writev2.Histogram {
	h := writev2.Histogram{Sum: float(), Timestamp: ts(), StartTimestamp: ts(), ZeroThreshold: 1e-128,
		PositiveSpans: []writev2.BucketSpan{{Offset: int32(rng.IntN(5)) - 2, Length: 2}}, ResetHint: writev2.Histogram_ResetHint(rng.IntN(4))}
	switch rng.IntN(3) {
	case 0:
		h.Schema = int32(rng.IntN(13)) - 4
		h.Count = &writev2.Histogram_CountInt{CountInt: rng.Uint64()}
		h.ZeroCount = &writev2.Histogram_ZeroCountInt{ZeroCountInt: rng.Uint64N(10)}
		h.PositiveDeltas = []int64{rng.Int64N(10), -rng.Int64N(10)}
		h.NegativeSpans = []writev2.BucketSpan{{Offset: 1, Length: 1}}
		h.NegativeDeltas = []int64{3}
	case 1:
		h.Schema = 3
		h.Count = &writev2.Histogram_CountFloat{CountFloat: float()}
		h.ZeroCount = &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: float()}
		h.PositiveCounts = []float64{float(), float()}
	default:
		h.Schema = -53 // custom buckets
		h.Count = &writev2.Histogram_CountInt{CountInt: rng.Uint64N(100)}
		h.ZeroThreshold = 0
		h.PositiveSpans = []writev2.BucketSpan{{Offset: 0, Length: 3}}
		h.PositiveDeltas = []int64{1, 2, -1}
		h.CustomValues = []float64{0.1, 0.5, float()}
	}
	return h
}

// v2Violation returns the first rule of the specification that pb breaks
// and DecodeV2 checks, or "".
func v2Violation(pb *writev2.Request) string {
	syms := pb.Symbols
	if len(syms) > 0 && syms[0] != "" {
		return "first symbol not empty"
	}
	if len(pb.Timeseries) > 0 && len(syms) == 0 {
		return "no symbols table"
	}
	refsOK := func(refs []uint32) bool {
		for _, r := range refs {
			if int(r) >= len(syms) {
				return false
			}
		}
		return len(refs)%2 == 0
	}
	for i, s := range pb.Timeseries {
		switch {
		case !refsOK(s.LabelsRefs):
			return fmt.Sprintf("series %d: label refs", i)
		case len(s.Samples) > 0 && len(s.Histograms) > 0:
			return fmt.Sprintf("series %d: samples and histograms", i)
		case int(s.Metadata.HelpRef) >= len(syms) || int(s.Metadata.UnitRef) >= len(syms):
			return fmt.Sprintf("series %d: metadata refs", i)
		}
		for j, e := range s.Exemplars {
			if !refsOK(e.LabelsRefs) {
				return fmt.Sprintf("series %d exemplar %d: label refs", i, j)
			}
		}
	}
	return ""
}

// compareWithWritev2 reports the first difference between r and want, a
// request that breaks none of the rules v2Violation checks.
func compareWithWritev2(r *Request, want *writev2.Request) error {
	b, syms := &r.Batch, want.Symbols
	if len(b.Series) != len(want.Timeseries) {
		return fmt.Errorf("%d series, want %d", len(b.Series), len(want.Timeseries))
	}
	resolve := func(refs []uint32) []string {
		var out []string
		for _, r := range refs {
			out = append(out, syms[r])
		}
		return out
	}
	var wantMeta []model.Metadata
	for i, ws := range want.Timeseries {
		labels := resolve(ws.LabelsRefs)
		if got := flatLabels(b.SeriesLabels(i)); !slices.Equal(got, labels) {
			return fmt.Errorf("series %d: labels %q, want %q", i, got, labels)
		}
		ss, hs, ex := b.SeriesSamples(i), b.SeriesHistograms(i), b.SeriesExemplars(i)
		if len(ss) != len(ws.Samples) || len(hs) != len(ws.Histograms) || len(ex) != len(ws.Exemplars) {
			return fmt.Errorf("series %d: %d samples, %d histograms, %d exemplars; want %d, %d, %d", i,
				len(ss), len(hs), len(ex), len(ws.Samples), len(ws.Histograms), len(ws.Exemplars))
		}
		for j, w := range ws.Samples {
			if math.Float64bits(ss[j].Value) != math.Float64bits(w.Value) || ss[j].Timestamp != w.Timestamp || ss[j].Start != w.StartTimestamp {
				return fmt.Errorf("series %d sample %d: %+v (%#x), want %+v (%#x)", i, j, ss[j], math.Float64bits(ss[j].Value), w, math.Float64bits(w.Value))
			}
		}
		for j, w := range ws.Histograms {
			var got writev2.Histogram
			if err := got.Unmarshal(hs[j]); err != nil {
				return fmt.Errorf("series %d histogram %d: %w", i, j, err)
			}
			if err := sameMessage(&got, &w); err != nil {
				return fmt.Errorf("series %d histogram %d: %w", i, j, err)
			}
		}
		for j, w := range ws.Exemplars {
			e := ex[j]
			if math.Float64bits(e.Value) != math.Float64bits(w.Value) || e.Timestamp != w.Timestamp {
				return fmt.Errorf("series %d exemplar %d: (%#x, %d), want (%#x, %d)", i, j, math.Float64bits(e.Value), e.Timestamp, math.Float64bits(w.Value), w.Timestamp)
			}
			if got, want := flatLabels(b.ExemplarLabels(&e)), resolve(w.LabelsRefs); !slices.Equal(got, want) {
				return fmt.Errorf("series %d exemplar %d: labels %q, want %q", i, j, got, want)
			}
		}
		m := model.Metadata{Type: metricType(uint64(int64(ws.Metadata.Type))), Help: []byte(syms[ws.Metadata.HelpRef]), Unit: []byte(syms[ws.Metadata.UnitRef])}
		if m.Type == model.TypeUnknown && len(m.Help) == 0 && len(m.Unit) == 0 {
			continue
		}
		for k := 0; k+1 < len(labels); k += 2 {
			if labels[k] == "__name__" {
				m.Family = []byte(labels[k+1])
				break
			}
		}
		if len(m.Family) == 0 {
			continue
		}
		if n := len(wantMeta); n > 0 && compareMetadata(wantMeta[n-1:], []model.Metadata{m}) == nil {
			continue
		}
		wantMeta = append(wantMeta, m)
	}
	return compareMetadata(b.Metadata, wantMeta)
}

// normalizeV2 makes want compare equal to what its encoding decodes to:
// gogo omits zero values, so -0 is sent as absent and decodes as +0.
func normalizeV2(want *writev2.Request) {
	for _, s := range want.Timeseries {
		for k := range s.Samples {
			if s.Samples[k].Value == 0 {
				s.Samples[k].Value = 0
			}
		}
		for k := range s.Exemplars {
			if s.Exemplars[k].Value == 0 {
				s.Exemplars[k].Value = 0
			}
		}
	}
}

func TestRoundTripWritev2(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var r Request
	for n := 0; n < 2000; n++ {
		req := randomV2Request(rng, 20, n%2 == 1)
		buf, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		violation := v2Violation(req)
		err = DecodeV2(buf, &r)
		var de *decodeError
		switch {
		case violation == "" && err != nil:
			t.Fatalf("request %d: DecodeV2: %v", n, err)
		case violation != "" && (!errors.As(err, &de) || de.kind != kindSpec):
			t.Fatalf("request %d breaks the specification (%s), DecodeV2: %v", n, violation, err)
		case err != nil:
			continue
		}
		normalizeV2(req)
		if err := compareWithWritev2(&r, req); err != nil {
			t.Fatalf("request %d: %v", n, err)
		}
		_ = Validate(&r, LegacyValidation)
		_ = Validate(&r, UTF8Validation)
	}
}

// A valid request from a Prometheus-like sender passes Validate; its
// series, histograms with custom buckets, exemplars and metadata arrive.
func TestDecodeV2ValidRequest(t *testing.T) {
	buf := v2Seeds()["samples_histograms_exemplars_metadata"]
	var r Request
	if err := DecodeV2(buf, &r); err != nil {
		t.Fatal(err)
	}
	if err := Validate(&r, LegacyValidation); err != nil {
		t.Fatal(err)
	}
	var want writev2.Request
	if err := want.Unmarshal(buf); err != nil {
		t.Fatal(err)
	}
	if err := compareWithWritev2(&r, &want); err != nil {
		t.Fatal(err)
	}
	b := &r.Batch
	if len(b.Series) != 3 || len(b.Samples) != 2 || len(b.Histograms) != 2 || len(b.Exemplars) != 2 || len(b.Metadata) != 2 {
		t.Fatalf("decoded %d series, %d samples, %d histograms, %d exemplars, %d metadata",
			len(b.Series), len(b.Samples), len(b.Histograms), len(b.Exemplars), len(b.Metadata))
	}
}

func TestDecodeV2ValidateNoAllocs(t *testing.T) {
	buf := benchRequestV2(100)
	var r Request
	if err := DecodeV2(buf, &r); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := DecodeV2(buf, &r); err != nil {
			t.Fatal(err)
		}
		if err := Validate(&r, LegacyValidation); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("DecodeV2+Validate: %v allocs per run after warm-up, want 0", allocs)
	}
}

// benchRequestV2 returns the request of benchRequest as an encoded
// io.prometheus.write.v2.Request: n series of 10 labels and one sample each.
func benchRequestV2(n int) []byte {
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	for i := range n {
		kv := []string{
			"__name__", benchMetrics[i%len(benchMetrics)],
			"cluster", "prod-eu-west-1",
			"cpu", fmt.Sprint(i % 64),
			"datacenter", "fra3",
			"device", fmt.Sprintf("nvme%dn1", i%4),
			"env", "production",
			"instance", fmt.Sprintf("host-%04d.example.internal:9100", i/100),
			"job", "node",
			"mode", []string{"idle", "user", "system", "iowait"}[i%4],
			"team", "infrastructure",
		}
		var refs []uint32
		for _, s := range kv {
			refs = append(refs, st.Symbolize(s))
		}
		req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
			LabelsRefs: refs,
			Samples:    []writev2.Sample{{Value: float64(i) * 1.25, Timestamp: 1_700_000_000_000 + int64(i)}},
		})
	}
	req.Symbols = st.Symbols()
	buf, err := req.Marshal()
	if err != nil {
		panic(err)
	}
	return buf
}

func BenchmarkDecodeV2(b *testing.B)         { benchDecode(b, benchRequestV2(1000), DecodeV2, false) }
func BenchmarkDecodeValidateV2(b *testing.B) { benchDecode(b, benchRequestV2(1000), DecodeV2, true) }

// BenchmarkWritev2Unmarshal is the baseline: gogo-generated unmarshalling
// of the same request.
func BenchmarkWritev2Unmarshal(b *testing.B) {
	buf := benchRequestV2(1000)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var req writev2.Request
		if err := req.Unmarshal(buf); err != nil {
			b.Fatal(err)
		}
	}
	reportPerSample(b, 1000)
}
