package sender

import (
	"bytes"
	"math"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

func TestEncodeRoundTrip(t *testing.T) {
	a := labels.FromStrings("__name__", "up", "job", "node", "instance", "host:9100")
	b := labels.FromStrings("__name__", "x", "long", string(make([]byte, 300)))
	items := []item{
		{labels: a, ref: 1, t: 1000, v: 1},
		{labels: a, ref: 1, t: 2000, v: math.Float64frombits(0x7ff0000000000002)}, // stale marker
		{labels: b, ref: 2, t: -5, v: 0},
		{labels: a, ref: 1, t: 3000, v: math.Inf(-1)},
	}
	var e encoder
	for range 2 { // a second call reuses the buffers
		raw, err := snappy.Decode(nil, e.encode(items))
		if err != nil {
			t.Fatal(err)
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		if len(req.Timeseries) != 3 {
			t.Fatalf("got %d series, want 3 (consecutive samples of a series merged)", len(req.Timeseries))
		}
		var got []item
		for _, ts := range req.Timeseries {
			var sb labels.ScratchBuilder
			for _, l := range ts.Labels {
				sb.Add(l.Name, l.Value)
			}
			ls := sb.Labels()
			for _, s := range ts.Samples {
				got = append(got, item{labels: ls, t: s.Timestamp, v: s.Value})
			}
		}
		if len(got) != len(items) {
			t.Fatalf("got %d samples, want %d", len(got), len(items))
		}
		for i := range items {
			if !labels.Equal(got[i].labels, items[i].labels) || got[i].t != items[i].t ||
				math.Float64bits(got[i].v) != math.Float64bits(items[i].v) {
				t.Fatalf("sample %d: got %v %d %x, want %v %d %x", i, got[i].labels, got[i].t,
					math.Float64bits(got[i].v), items[i].labels, items[i].t, math.Float64bits(items[i].v))
			}
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	items := make([]item, 2000)
	for i := range items {
		items[i] = item{
			labels: labels.FromStrings("__name__", "node_cpu_seconds_total", "cpu", "3", "instance", "host-1:9100",
				"job", "node", "mode", "idle", "id", string(rune('a'+i%26))+"x"),
			ref: uint64(i), t: 1700000000000 + int64(i), v: float64(i) * 1.5,
		}
	}
	var e encoder
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		e.encode(items)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/sample")
}

func TestEncodeHistogramPassthrough(t *testing.T) {
	h := prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 7}, Sum: 2.5, Schema: 3, Timestamp: 1234,
		ZeroCount:     &prompb.Histogram_ZeroCountInt{ZeroCountInt: 1},
		PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 2}}, PositiveDeltas: []int64{3, 2}}
	raw, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ls := labels.FromStrings("__name__", "latency_seconds", "job", "api")
	var e encoder
	body, err := snappy.Decode(nil, e.encode([]item{{labels: ls, ref: 1, t: 1000, v: 1}, {labels: ls, ref: 1, hist: raw}}))
	if err != nil {
		t.Fatal(err)
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(body); err != nil {
		t.Fatal(err)
	}
	if len(req.Timeseries) != 1 || len(req.Timeseries[0].Samples) != 1 || len(req.Timeseries[0].Histograms) != 1 {
		t.Fatalf("got %+v", req.Timeseries)
	}
	got, _ := req.Timeseries[0].Histograms[0].Marshal()
	if !bytes.Equal(got, raw) {
		t.Fatalf("histogram changed in transit")
	}
}
