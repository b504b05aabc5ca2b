package receive

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/prompb"
)

// Protobuf encoding helpers for hand-built test inputs.

func pbVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func pbTag(b []byte, field int, wire int) []byte { return pbVarint(b, uint64(field)<<3|uint64(wire)) }

func pbBytes(b []byte, field int, v []byte) []byte {
	b = pbTag(b, field, wireBytes)
	b = pbVarint(b, uint64(len(v)))
	return append(b, v...)
}

func pbFixed64(b []byte, field int, v uint64) []byte {
	b = pbTag(b, field, wireFixed64)
	for k := 0; k < 8; k++ {
		b = append(b, byte(v>>(8*k)))
	}
	return b
}

func pbLabel(name, value string) []byte {
	return pbBytes(pbBytes(nil, 1, []byte(name)), 2, []byte(value))
}

func pbSample(bits uint64, ts int64) []byte {
	return pbVarint(pbTag(pbFixed64(nil, 1, bits), 2, wireVarint), uint64(ts))
}

// pbSeries encodes a TimeSeries from alternating label names and values and
// one sample.
func pbSeries(bits uint64, ts int64, kv ...string) []byte {
	var b []byte
	for k := 0; k+1 < len(kv); k += 2 {
		b = pbBytes(b, 1, pbLabel(kv[k], kv[k+1]))
	}
	return pbBytes(b, 2, pbSample(bits, ts))
}

func pbRequest(series ...[]byte) []byte {
	var b []byte
	for _, s := range series {
		b = pbBytes(b, 1, s)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

const staleNaN = 0x7ff0000000000002 // Prometheus stale marker

func TestDecodeErrors(t *testing.T) {
	valid := pbSeries(math.Float64bits(1), 1000, "__name__", "up")
	tests := []struct {
		name string
		in   []byte
		kind errKind
		msg  string // substring of the error message
	}{
		{"truncated tag varint", []byte{0x80}, kindTruncated, "decode write request: truncated varint at offset 0"},
		{"truncated length varint", []byte{0x0a, 0x80, 0x80}, kindTruncated, "decode timeseries 0: truncated varint at offset 1"},
		{"varint longer than 10 bytes", cat([]byte{0x28}, bytes.Repeat([]byte{0x80}, 10), []byte{0x00}), kindOverflow, "decode write request: field 5: varint overflows 64 bits at offset 1"},
		{"varint overflowing 64 bits", cat([]byte{0x28}, bytes.Repeat([]byte{0xff}, 9), []byte{0x02}), kindOverflow, "field 5: varint overflows 64 bits at offset 1"},
		{"timeseries length past end", []byte{0x0a, 0x05, 0x0a}, kindLength, "decode timeseries 0: length 5 exceeds the 1 bytes left at offset 1"},
		{"label length past end", pbRequest(cat(valid, []byte{0x0a, 0x09, 0x0a, 0x01})), kindLength, "decode timeseries 0: label 1: length 9 exceeds the 2 bytes left"},
		{"label name past end", pbRequest(pbBytes(nil, 1, []byte{0x0a, 0x7f, 'a'})), kindLength, "decode timeseries 0: label 0: name: length 127 exceeds the 1 bytes left at offset 5"},
		{"label value past end", pbRequest(pbBytes(nil, 1, []byte{0x12, 0x02, 'a'})), kindLength, "label 0: value: length 2 exceeds"},
		{"sample value truncated", pbRequest(pbBytes(nil, 2, []byte{0x09, 1, 2, 3})), kindTruncated, "decode timeseries 0: sample 0: value: truncated fixed64 at offset 5"},
		{"sample timestamp truncated", pbRequest(pbBytes(nil, 2, []byte{0x10, 0x80})), kindTruncated, "sample 0: timestamp: truncated varint at offset 5"},
		{"second series corrupt", pbRequest(valid, []byte{0x0a, 0x01, 0x0a}), kindTruncated, "decode timeseries 1: label 0: name: truncated varint at offset 37"},
		{"exemplar past end", pbRequest([]byte{0x1a, 0x03, 0x00}), kindLength, "timeseries 0: exemplar 0: length 3"},
		{"histogram past end", pbRequest([]byte{0x22, 0x03, 0x00}), kindLength, "timeseries 0: histogram 0: length 3"},
		{"exemplar label past end", pbRequest(pbBytes(nil, 3, []byte{0x0a, 0x05, 0x0a})), kindLength, "timeseries 0: exemplar 0: label 0: length 5"},
		{"exemplar value truncated", pbRequest(pbBytes(nil, 3, []byte{0x11, 1, 2})), kindTruncated, "timeseries 0: exemplar 0: value: truncated fixed64 at offset 5"},
		{"exemplar timestamp as fixed64", pbRequest(pbBytes(nil, 3, pbFixed64(nil, 3, 0))), kindWireType, "wrong wire type 1 for exemplar field 3"},
		{"metadata family past end", pbBytes(nil, 3, []byte{0x12, 0x04, 'a'}), kindLength, "decode metadata 0: metric_family_name: length 4"},
		{"metadata help as varint", pbBytes(nil, 3, []byte{0x20, 0x01}), kindWireType, "wrong wire type 0 for metadata field 4"},
		{"metadata type truncated", cat(pbBytes(nil, 3, nil), pbBytes(nil, 3, []byte{0x08, 0x80})), kindTruncated, "decode metadata 1: type: truncated varint"},
		{"metadata past end", []byte{0x1a, 0x03, 0x00}, kindLength, "decode metadata 0: length 3"},
		{"field number zero", []byte{0x02, 0x00}, kindFieldNumber, "invalid field number 0 at offset 0"},
		{"field number above 2^31-1", pbVarint(nil, uint64(1)<<34|wireVarint), kindFieldNumber, "invalid field number 2147483648"},
		{"wire type 6", []byte{0x2e}, kindWireType, "decode write request: field 5: invalid wire type 6 at offset 0"},
		{"wire type 7", pbRequest([]byte{0x2f}), kindWireType, "decode timeseries 0: field 5: invalid wire type 7 at offset 2"},
		{"start group", []byte{0x2b, 0x2c}, kindGroup, "decode write request: field 5: groups are not supported at offset 0"},
		{"end group", pbRequest(pbBytes(nil, 2, []byte{0x2c})), kindGroup, "decode timeseries 0: sample 0: field 5: groups are not supported at offset 4"},
		{"known field as group", pbRequest([]byte{0x0b, 0x0c}), kindGroup, "decode timeseries 0: field 1: groups are not supported at offset 2"},
		{"timeseries as varint", []byte{0x08, 0x01}, kindWireType, "wrong wire type 0 for write request field 1 at offset 0"},
		{"metadata as fixed32", []byte{0x1d, 0, 0, 0, 0}, kindWireType, "wrong wire type 5 for write request field 3"},
		{"labels as fixed64", pbRequest(pbFixed64(nil, 1, 0)), kindWireType, "wrong wire type 1 for timeseries field 1 at offset 2"},
		{"histogram as varint", pbRequest([]byte{0x20, 0x00}), kindWireType, "wrong wire type 0 for timeseries field 4"},
		{"label name as varint", pbRequest(pbBytes(nil, 1, []byte{0x08, 0x00})), kindWireType, "wrong wire type 0 for label field 1 at offset 4"},
		{"sample value as varint", pbRequest(pbBytes(nil, 2, []byte{0x08, 0x00})), kindWireType, "wrong wire type 0 for sample field 1"},
		{"sample timestamp as fixed64", pbRequest(pbBytes(nil, 2, pbFixed64(nil, 2, 0))), kindWireType, "wrong wire type 1 for sample field 2"},
		{"sample value packed", pbRequest(pbBytes(nil, 2, pbBytes(nil, 1, make([]byte, 8)))), kindWireType, "wrong wire type 2 for sample field 1"},
		{"unknown fixed64 truncated", []byte{0x29, 1, 2}, kindTruncated, "field 5: truncated fixed64 at offset 1"},
		{"unknown fixed32 truncated", []byte{0x2d, 1, 2}, kindTruncated, "field 5: truncated fixed32 at offset 1"},
		{"unknown bytes past end", []byte{0x2a, 0x02, 1}, kindLength, "field 5: length 2 exceeds"},
		{"unknown varint truncated", []byte{0x28, 0xff}, kindTruncated, "field 5: truncated varint at offset 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			checkCorrupt(t, "Decode", tc.in, Decode(tc.in, &r), tc.kind, tc.msg)
		})
	}
}

// checkCorrupt checks that err, what decoder fn returned for in, wraps
// ErrCorrupt and is a decodeError of the given kind whose message contains
// msg.
func checkCorrupt(t *testing.T, fn string, in []byte, err error, kind errKind, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s(%x) succeeded, want error", fn, in)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("error %q does not wrap ErrCorrupt", err)
	}
	var de *decodeError
	if !errors.As(err, &de) {
		t.Errorf("error %q is not a *decodeError", err)
	} else if de.kind != kind {
		t.Errorf("error %q: kind %v, want %v", err, de.kind, kind)
	}
	if !strings.HasPrefix(err.Error(), "receive: corrupt input: decode ") || !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q, want it to contain %q", err, msg)
	}
}

func TestDecodeAccepts(t *testing.T) {
	up := pbLabel("__name__", "up")
	job := pbLabel("job", "node")
	sample := pbSample(math.Float64bits(1.5), 1700000000000)
	unknown := cat(
		pbVarint(pbTag(nil, 9, wireVarint), math.MaxUint64),
		pbFixed64(nil, 10, 7),
		pbBytes(nil, 11, []byte("junk")),
		pbTag(nil, 12, wireFixed32), []byte{1, 2, 3, 4},
		pbVarint(pbTag(nil, 1<<29-1, wireVarint), 1), // largest valid field number
	)
	type want struct {
		labels   [][2]string
		samples  []model.Sample
		ex, hist int
	}
	tests := []struct {
		name     string
		in       []byte
		series   []want
		metadata int
	}{
		{name: "empty request", in: nil},
		{
			name:   "plain",
			in:     pbRequest(cat(pbBytes(nil, 1, up), pbBytes(nil, 1, job), pbBytes(nil, 2, sample))),
			series: []want{{labels: [][2]string{{"__name__", "up"}, {"job", "node"}}, samples: []model.Sample{{Value: 1.5, Timestamp: 1700000000000}}}},
		},
		{
			name: "unknown fields at every level",
			in: cat(unknown, pbBytes(nil, 2, []byte("reserved")), pbRequest(cat(
				unknown,
				pbBytes(nil, 1, cat(unknown, up, unknown)),
				pbBytes(nil, 2, cat(unknown, sample, unknown)),
				unknown,
			)), unknown),
			series: []want{{labels: [][2]string{{"__name__", "up"}}, samples: []model.Sample{{Value: 1.5, Timestamp: 1700000000000}}}},
		},
		{
			name: "fields in unusual order",
			in: pbRequest(cat(
				pbBytes(nil, 2, cat(pbVarint(pbTag(nil, 2, wireVarint), 5), pbFixed64(nil, 1, math.Float64bits(2)))),
				pbBytes(nil, 1, cat(pbBytes(nil, 2, []byte("up")), pbBytes(nil, 1, []byte("__name__")))),
				pbBytes(nil, 4, nil),
				pbBytes(nil, 2, pbSample(math.Float64bits(3), 6)),
				pbBytes(nil, 1, job),
			)),
			series: []want{{
				labels:  [][2]string{{"__name__", "up"}, {"job", "node"}},
				samples: []model.Sample{{Value: 2, Timestamp: 5}, {Value: 3, Timestamp: 6}},
				hist:    1,
			}},
		},
		{
			name: "last value wins",
			in: pbRequest(cat(
				pbBytes(nil, 1, cat(pbLabel("a", "b"), pbLabel("__name__", "up"))),
				pbBytes(nil, 2, cat(pbSample(math.Float64bits(1), 1), pbSample(math.Float64bits(9), -9))),
			)),
			series: []want{{labels: [][2]string{{"__name__", "up"}}, samples: []model.Sample{{Value: 9, Timestamp: -9}}}},
		},
		{
			name: "non-minimal varints",
			in: func() []byte {
				// Tags and lengths padded with 0x80 continuation bytes.
				series := cat(pbBytes(nil, 1, up), []byte{0x92, 0x80, 0x00, 12, 0x89, 0x80, 0x80, 0x00}, []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f})
				return cat([]byte{0x8a, 0x00, byte(len(series)) | 0x80, 0x80, 0x00}, series)
			}(),
			series: []want{{labels: [][2]string{{"__name__", "up"}}, samples: []model.Sample{{Value: 1, Timestamp: 0}}}},
		},
		{
			name:   "absent values default to zero",
			in:     pbRequest(cat(pbBytes(nil, 1, nil), pbBytes(nil, 2, nil))),
			series: []want{{labels: [][2]string{{"", ""}}, samples: []model.Sample{{Value: 0, Timestamp: 0}}}},
		},
		{
			name:   "histograms without samples",
			in:     pbRequest(cat(pbBytes(nil, 1, up), pbBytes(nil, 4, []byte{0x08, 0x01}), pbBytes(nil, 4, nil), pbBytes(nil, 3, nil))),
			series: []want{{labels: [][2]string{{"__name__", "up"}}, ex: 1, hist: 2}},
		},
		{
			name: "metadata kept if it names a family",
			in: cat(pbBytes(nil, 3, []byte{0x08, 0x01}), pbRequest(nil, nil), pbBytes(nil, 3, nil),
				pbBytes(nil, 3, pbBytes(nil, 2, []byte("up"))), pbBytes(nil, 3, cat([]byte{0x08, 0x02}, pbBytes(nil, 2, []byte("x"))))),
			series:   []want{{}, {}},
			metadata: 2,
		},
		{
			name:   "ten-byte negative timestamp",
			in:     pbRequest(pbBytes(nil, 2, pbSample(0, -1))),
			series: []want{{samples: []model.Sample{{Value: 0, Timestamp: -1}}}},
		},
		{
			name:   "long label lengths",
			in:     pbRequest(pbBytes(nil, 1, pbLabel(strings.Repeat("n", 200), strings.Repeat("v", 20000)))),
			series: []want{{labels: [][2]string{{strings.Repeat("n", 200), strings.Repeat("v", 20000)}}}},
		},
	}
	var r Request
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Decode(tc.in, &r); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if len(r.Batch.Series) != len(tc.series) || len(r.Batch.Metadata) != tc.metadata {
				t.Fatalf("got %d series and %d metadata, want %d and %d", len(r.Batch.Series), len(r.Batch.Metadata), len(tc.series), tc.metadata)
			}
			for i, w := range tc.series {
				ls, ss := r.Batch.SeriesLabels(i), r.Batch.SeriesSamples(i)
				if len(ls) != len(w.labels) || len(ss) != len(w.samples) {
					t.Fatalf("series %d: %d labels and %d samples, want %d and %d", i, len(ls), len(ss), len(w.labels), len(w.samples))
				}
				for j, l := range ls {
					if string(l.Name) != w.labels[j][0] || string(l.Value) != w.labels[j][1] {
						t.Errorf("series %d label %d: %q=%q, want %q", i, j, l.Name, l.Value, w.labels[j])
					}
				}
				for j, s := range ss {
					if math.Float64bits(s.Value) != math.Float64bits(w.samples[j].Value) || s.Timestamp != w.samples[j].Timestamp {
						t.Errorf("series %d sample %d: %v, want %v", i, j, s, w.samples[j])
					}
				}
				if ex, hist := len(r.Batch.SeriesExemplars(i)), len(r.Batch.SeriesHistograms(i)); ex != w.ex || hist != w.hist {
					t.Errorf("series %d: %d exemplars, %d histograms, want %d, %d", i, ex, hist, w.ex, w.hist)
				}
			}
		})
	}
}

func TestDecodeNaNBitExact(t *testing.T) {
	for _, bits := range []uint64{staleNaN, 0x7ff8000000000001, 0xfff0000000000001, 0x7fffffffffffffff, math.Float64bits(math.Inf(-1)), 1 << 63} {
		var r Request
		if err := Decode(pbRequest(pbSeries(bits, 1, "__name__", "x")), &r); err != nil {
			t.Fatal(err)
		}
		if got := math.Float64bits(r.Batch.Samples[0].Value); got != bits {
			t.Errorf("sample bits %#x, want %#x", got, bits)
		}
	}
}

func TestDecodeReusesRequest(t *testing.T) {
	var r Request
	big := pbRequest(pbSeries(0, 1, "__name__", "a", "b", "c"), pbSeries(0, 2, "__name__", "d"))
	small := pbRequest(pbSeries(0, 3, "__name__", "e"))
	if err := Decode(big, &r); err != nil {
		t.Fatal(err)
	}
	if err := Decode(small, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Batch.Series) != 1 || len(r.Batch.Labels) != 1 || len(r.Batch.Samples) != 1 || string(r.Batch.Labels[0].Value) != "e" {
		t.Fatalf("after reuse: %+v", r)
	}
	// Reset must drop references to the old buffer.
	for _, l := range r.Batch.Labels[1:cap(r.Batch.Labels)] {
		if l.Name != nil || l.Value != nil {
			t.Fatalf("stale label %q=%q kept after Reset", l.Name, l.Value)
		}
	}
}

// randomWriteRequest builds a WriteRequest with random, not necessarily
// valid, content: up to size series of up to 3*size labels, with strings of
// up to 15*size bytes.
func randomWriteRequest(rng *rand.Rand, size int) *prompb.WriteRequest {
	str := func() string {
		switch rng.IntN(6) {
		case 0:
			return ""
		case 1:
			b := make([]byte, rng.IntN(15*size)) // arbitrary bytes, long lengths
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
			return math.Float64frombits(rng.Uint64()) // any bits, NaN payloads included
		case 2:
			return math.Inf(1 - 2*rng.IntN(2))
		case 3:
			return 0
		default:
			return rng.NormFloat64() * 1e6
		}
	}
	ts := func() int64 {
		if rng.IntN(4) == 0 {
			return int64(rng.Uint64()) // negative and huge values
		}
		return 1_700_000_000_000 + rng.Int64N(1e9)
	}
	wr := &prompb.WriteRequest{}
	for range rng.IntN(size + 1) {
		var s prompb.TimeSeries
		for range rng.IntN(3*size + 1) {
			s.Labels = append(s.Labels, prompb.Label{Name: str(), Value: str()})
		}
		for range rng.IntN(5) {
			s.Samples = append(s.Samples, prompb.Sample{Value: float(), Timestamp: ts()})
		}
		for range rng.IntN(3) {
			s.Exemplars = append(s.Exemplars, prompb.Exemplar{Labels: []prompb.Label{{Name: str(), Value: str()}}, Value: float(), Timestamp: ts()})
		}
		for range rng.IntN(3) {
			s.Histograms = append(s.Histograms, prompb.Histogram{
				Count: &prompb.Histogram_CountInt{CountInt: rng.Uint64()}, Sum: float(), Schema: 3,
				PositiveSpans: []prompb.BucketSpan{{Offset: 1, Length: 2}}, PositiveDeltas: []int64{1, -1}, Timestamp: ts(),
			})
		}
		wr.Timeseries = append(wr.Timeseries, s)
	}
	for range rng.IntN(3) {
		wr.Metadata = append(wr.Metadata, prompb.MetricMetadata{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: str(), Help: str()})
	}
	return wr
}

// compareWithPrompb reports the first difference between r and want:
// labels and samples bit for bit, exemplars with their labels, histograms
// as the same message, and the metadata that names a family.
func compareWithPrompb(r *Request, want *prompb.WriteRequest) error {
	b := &r.Batch
	if len(b.Series) != len(want.Timeseries) {
		return fmt.Errorf("%d series, want %d", len(b.Series), len(want.Timeseries))
	}
	for i, ws := range want.Timeseries {
		ls, ss, ex, hs := b.SeriesLabels(i), b.SeriesSamples(i), b.SeriesExemplars(i), b.SeriesHistograms(i)
		if len(ls) != len(ws.Labels) || len(ss) != len(ws.Samples) || len(ex) != len(ws.Exemplars) || len(hs) != len(ws.Histograms) {
			return fmt.Errorf("series %d: %d labels, %d samples, %d exemplars, %d histograms; want %d, %d, %d, %d", i,
				len(ls), len(ss), len(ex), len(hs), len(ws.Labels), len(ws.Samples), len(ws.Exemplars), len(ws.Histograms))
		}
		if err := compareLabels(ls, ws.Labels); err != nil {
			return fmt.Errorf("series %d: %w", i, err)
		}
		for j, w := range ws.Samples {
			if math.Float64bits(ss[j].Value) != math.Float64bits(w.Value) || ss[j].Timestamp != w.Timestamp || ss[j].Start != 0 {
				return fmt.Errorf("series %d sample %d: %+v (%#x), want (%#x, %d)", i, j, ss[j], math.Float64bits(ss[j].Value), math.Float64bits(w.Value), w.Timestamp)
			}
		}
		for j, w := range ws.Exemplars {
			e := ex[j]
			if math.Float64bits(e.Value) != math.Float64bits(w.Value) || e.Timestamp != w.Timestamp {
				return fmt.Errorf("series %d exemplar %d: (%#x, %d), want (%#x, %d)", i, j, math.Float64bits(e.Value), e.Timestamp, math.Float64bits(w.Value), w.Timestamp)
			}
			if err := compareLabels(b.ExemplarLabels(&e), w.Labels); err != nil {
				return fmt.Errorf("series %d exemplar %d: %w", i, j, err)
			}
		}
		for j, w := range ws.Histograms {
			var got prompb.Histogram
			if err := got.Unmarshal(hs[j]); err != nil {
				return fmt.Errorf("series %d histogram %d: %w", i, j, err)
			}
			if err := sameMessage(&got, &w); err != nil {
				return fmt.Errorf("series %d histogram %d: %w", i, j, err)
			}
		}
	}
	var wantMeta []model.Metadata
	for _, m := range want.Metadata {
		if m.MetricFamilyName != "" {
			wantMeta = append(wantMeta, model.Metadata{Family: []byte(m.MetricFamilyName), Type: metricType(uint64(m.Type)), Help: []byte(m.Help), Unit: []byte(m.Unit)})
		}
	}
	return compareMetadata(b.Metadata, wantMeta)
}

// compareLabels reports the first difference between got and want.
func compareLabels(got []model.Label, want []prompb.Label) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d labels, want %d", len(got), len(want))
	}
	for j, wl := range want {
		if string(got[j].Name) != wl.Name || string(got[j].Value) != wl.Value {
			return fmt.Errorf("label %d: %q=%q, want %q=%q", j, got[j].Name, got[j].Value, wl.Name, wl.Value)
		}
	}
	return nil
}

// compareMetadata reports the first difference between got and want.
func compareMetadata(got, want []model.Metadata) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d metadata, want %d: %q", len(got), len(want), got)
	}
	for j, w := range want {
		g := got[j]
		if g.Type != w.Type || !bytes.Equal(g.Family, w.Family) || !bytes.Equal(g.Help, w.Help) || !bytes.Equal(g.Unit, w.Unit) {
			return fmt.Errorf("metadata %d: %q, want %q", j, g, w)
		}
	}
	return nil
}

// sameMessage reports whether two gogo messages marshal alike, which is
// bit-exact for floats, unlike comparing them with ==.
func sameMessage(got, want interface{ Marshal() ([]byte, error) }) error {
	g, err := got.Marshal()
	if err != nil {
		return err
	}
	w, err := want.Marshal()
	if err != nil {
		return err
	}
	if !bytes.Equal(g, w) {
		return fmt.Errorf("message %x, want %x", g, w)
	}
	return nil
}

func TestRoundTripPrompb(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var r Request
	for n := 0; n < 2000; n++ {
		wr := randomWriteRequest(rng, 20)
		buf, err := wr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := Decode(buf, &r); err != nil {
			t.Fatalf("request %d: Decode: %v", n, err)
		}
		// gogo omits zero values, so -0 is sent as absent and decodes as +0.
		for _, s := range wr.Timeseries {
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
		if err := compareWithPrompb(&r, wr); err != nil {
			t.Fatalf("request %d: %v", n, err)
		}
		if got, want := r.Batch.NumSamples(), len(r.Batch.Samples)+len(r.Batch.Histograms); got != want {
			t.Fatalf("NumSamples %d, want %d", got, want)
		}
		_ = Validate(&r, LegacyValidation)
		_ = Validate(&r, UTF8Validation)
	}
}

func TestDecodeValidateNoAllocs(t *testing.T) {
	buf := benchRequest(100)
	var r Request
	if err := Decode(buf, &r); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := Decode(buf, &r); err != nil {
			t.Fatal(err)
		}
		if err := Validate(&r, LegacyValidation); err != nil {
			t.Fatal(err)
		}
		if err := Validate(&r, UTF8Validation); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Decode+Validate: %v allocs per run after warm-up, want 0", allocs)
	}
}

// benchMetrics are the metric names of benchRequest.
var benchMetrics = []string{
	"node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_filesystem_avail_bytes",
	"node_network_receive_bytes_total", "node_disk_io_time_seconds_total", "node_load1",
}

// benchRequest returns an encoded WriteRequest with n series of 10 labels
// and one sample each, like a node_exporter scrape.
func benchRequest(n int) []byte {
	wr := &prompb.WriteRequest{}
	for i := range n {
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels: []prompb.Label{
				{Name: "__name__", Value: benchMetrics[i%len(benchMetrics)]},
				{Name: "cluster", Value: "prod-eu-west-1"},
				{Name: "cpu", Value: fmt.Sprint(i % 64)},
				{Name: "datacenter", Value: "fra3"},
				{Name: "device", Value: fmt.Sprintf("nvme%dn1", i%4)},
				{Name: "env", Value: "production"},
				{Name: "instance", Value: fmt.Sprintf("host-%04d.example.internal:9100", i/100)},
				{Name: "job", Value: "node"},
				{Name: "mode", Value: []string{"idle", "user", "system", "iowait"}[i%4]},
				{Name: "team", Value: "infrastructure"},
			},
			Samples: []prompb.Sample{{Value: float64(i) * 1.25, Timestamp: 1_700_000_000_000 + int64(i)}},
		})
	}
	buf, err := wr.Marshal()
	if err != nil {
		panic(err)
	}
	return buf
}

func BenchmarkDecode(b *testing.B)         { benchDecode(b, benchRequest(1000), Decode, false) }
func BenchmarkDecodeValidate(b *testing.B) { benchDecode(b, benchRequest(1000), Decode, true) }

// benchDecode measures decoding buf with decode (Decode or DecodeV2) and,
// if validate is set, validating the result.
func benchDecode(b *testing.B, buf []byte, decode func([]byte, *Request) error, validate bool) {
	var r Request
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := decode(buf, &r); err != nil {
			b.Fatal(err)
		}
		if !validate {
			continue
		}
		if err := Validate(&r, LegacyValidation); err != nil {
			b.Fatal(err)
		}
	}
	reportPerSample(b, r.Batch.NumSamples())
}

// reportPerSample reports the time per sample of a benchmark whose every
// iteration handles n samples.
func reportPerSample(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/sample")
}

// BenchmarkPrompbUnmarshal is the baseline: gogo-generated unmarshalling
// of the same request.
func BenchmarkPrompbUnmarshal(b *testing.B) {
	buf := benchRequest(1000)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var wr prompb.WriteRequest
		if err := wr.Unmarshal(buf); err != nil {
			b.Fatal(err)
		}
	}
	reportPerSample(b, 1000)
}

func TestDecodeMetadata(t *testing.T) {
	wr := prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests.", Unit: "requests"},
		{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "temperature"},
		{Type: prompb.MetricMetadata_UNKNOWN, MetricFamilyName: "mystery", Help: "No type."},
		{Type: prompb.MetricMetadata_SUMMARY, Help: "No name: not kept."},
		{Type: 42, MetricFamilyName: "future"}, // a type the model does not know
	}}
	buf, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var r Request
	if err := Decode(buf, &r); err != nil {
		t.Fatal(err)
	}
	want := []model.Metadata{
		{Family: []byte("http_requests_total"), Type: model.TypeCounter, Help: []byte("Requests."), Unit: []byte("requests")},
		{Family: []byte("temperature"), Type: model.TypeGauge},
		{Family: []byte("mystery"), Type: model.TypeUnknown, Help: []byte("No type.")},
		{Family: []byte("future"), Type: model.TypeUnknown},
	}
	if err := compareMetadata(r.Batch.Metadata, want); err != nil {
		t.Fatal(err)
	}
}

// Exemplar labels follow the series' own labels in Batch.Labels, whatever
// the order of the fields on the wire.
func TestDecodeExemplars(t *testing.T) {
	ex := func(value float64, ts int64, kv ...string) []byte {
		var b []byte
		for k := 0; k+1 < len(kv); k += 2 {
			b = pbBytes(b, 1, pbLabel(kv[k], kv[k+1]))
		}
		return pbVarint(pbTag(pbFixed64(b, 2, math.Float64bits(value)), 3, wireVarint), uint64(ts))
	}
	in := pbRequest(
		cat(pbBytes(nil, 3, ex(0.5, 10, "trace_id", "abc", "span_id", "1")),
			pbBytes(nil, 1, pbLabel("__name__", "req")),
			pbBytes(nil, 3, ex(2, 20)),
			pbBytes(nil, 1, pbLabel("job", "api")),
			pbBytes(nil, 2, pbSample(math.Float64bits(1), 10))),
		pbSeries(0, 1, "__name__", "up"),
		cat(pbBytes(nil, 1, pbLabel("__name__", "h")), pbBytes(nil, 4, []byte{0x08, 0x01}), pbBytes(nil, 3, ex(3, 30, "trace_id", "z"))),
	)
	var r Request
	if err := Decode(in, &r); err != nil {
		t.Fatal(err)
	}
	b := &r.Batch
	type exemplar struct {
		labels []string
		value  float64
		ts     int64
	}
	want := [][]exemplar{
		{{[]string{"trace_id", "abc", "span_id", "1"}, 0.5, 10}, {nil, 2, 20}},
		nil,
		{{[]string{"trace_id", "z"}, 3, 30}},
	}
	wantLabels := [][]string{{"__name__", "req", "job", "api"}, {"__name__", "up"}, {"__name__", "h"}}
	for i := range want {
		if got := flatLabels(b.SeriesLabels(i)); !slices.Equal(got, wantLabels[i]) {
			t.Errorf("series %d: labels %q, want %q", i, got, wantLabels[i])
		}
		got := b.SeriesExemplars(i)
		if len(got) != len(want[i]) {
			t.Fatalf("series %d: %d exemplars, want %d", i, len(got), len(want[i]))
		}
		for j, w := range want[i] {
			e := got[j]
			if ls := flatLabels(b.ExemplarLabels(&e)); !slices.Equal(ls, w.labels) || e.Value != w.value || e.Timestamp != w.ts {
				t.Errorf("series %d exemplar %d: %q %v @%d, want %q %v @%d", i, j, ls, e.Value, e.Timestamp, w.labels, w.value, w.ts)
			}
		}
	}
	if len(b.Histograms) != 1 || b.Series[2].HistogramsStart != 0 || b.Series[2].HistogramsEnd != 1 {
		t.Errorf("histograms %x, series %+v", b.Histograms, b.Series[2])
	}
	if err := Validate(&r, LegacyValidation); err != nil {
		t.Fatal(err)
	}
}

// flatLabels returns ls as name, value, name, value, ...
func flatLabels(ls []model.Label) []string {
	var out []string
	for _, l := range ls {
		out = append(out, string(l.Name), string(l.Value))
	}
	return out
}
