package sender

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/ferrymetrics/ferry/wal"
	wm "github.com/ferrymetrics/ferry/wal/model"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

func TestEncodeRoundTrip(t *testing.T) {
	a := labels.FromStrings("__name__", "up", "job", "node", "instance", "host:9100")
	b := labels.FromStrings("__name__", "x", "long", string(make([]byte, 300)))
	items := []item{
		{wire: wal.WireOf(a), ref: 1, t: 1000, v: 1},
		{wire: wal.WireOf(a), ref: 1, t: 2000, v: math.Float64frombits(0x7ff0000000000002)}, // stale marker
		{wire: wal.WireOf(b), ref: 2, t: -5, v: 0},
		{wire: wal.WireOf(a), ref: 1, t: 3000, v: math.Inf(-1)},
	}
	var e encoder
	for range 2 { // a second call reuses the buffers
		raw, err := snappy.Decode(nil, e.encode(items, RemoteWrite1).body)
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
				got = append(got, item{wire: wal.WireOf(ls), t: s.Timestamp, v: s.Value})
			}
		}
		if len(got) != len(items) {
			t.Fatalf("got %d samples, want %d", len(got), len(items))
		}
		for i := range items {
			if !bytes.Equal(got[i].wire, items[i].wire) || got[i].t != items[i].t ||
				math.Float64bits(got[i].v) != math.Float64bits(items[i].v) {
				t.Fatalf("sample %d: got %v %d %x, want %v %d %x", i, wal.LabelsOfWire(got[i].wire), got[i].t,
					math.Float64bits(got[i].v), wal.LabelsOfWire(items[i].wire), items[i].t, math.Float64bits(items[i].v))
			}
		}
	}
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
	body, err := snappy.Decode(nil, e.encode([]item{{wire: wal.WireOf(ls), ref: 1, t: 1000, v: 1}, {kind: kindHistogram, wire: wal.WireOf(ls), ref: 1, x: &extra{hist: raw}}}, RemoteWrite1).body)
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

// metadataMap is a wal.MetadataSource for tests.
type metadataMap map[string]wal.Metadata

func (m metadataMap) Metadata(name string) (wal.Metadata, bool) {
	return wal.FamilyOf(name, func(family string) (wal.Metadata, bool) {
		md, ok := m[family]
		return md, ok
	})
}

// testHistogram returns a 2.0 histogram message with start timestamp st,
// and the same message without it (what a 1.0 receiver may get).
func testHistogram(t testing.TB, ts, st int64) (v2, v1 []byte) {
	t.Helper()
	h := writev2.Histogram{Count: &writev2.Histogram_CountInt{CountInt: 9}, Sum: 2.5, Schema: 3, Timestamp: ts,
		ZeroCount:     &writev2.Histogram_ZeroCountInt{ZeroCountInt: 1},
		PositiveSpans: []writev2.BucketSpan{{Offset: 0, Length: 2}}, PositiveDeltas: []int64{3, 2},
		ResetHint: writev2.Histogram_RESET_HINT_NO, CustomValues: nil}
	v1, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	h.StartTimestamp = st
	v2, err = h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return v2, v1
}

// mixedItems is a batch with every kind of item, grouped by series, and
// the metadata of its families.
func mixedItems(t testing.TB) ([]item, metadataMap) {
	reqs := labels.FromStrings("__name__", "http_requests_total", "code", "200", "job", "api")
	lat := labels.FromStrings("__name__", "latency_seconds", "job", "api")
	up := labels.FromStrings("__name__", "up", "job", "api")
	orphan := labels.FromStrings("__name__", "lonely_total", "job", "api")
	h1, _ := testHistogram(t, 1000, 500)
	h2, _ := testHistogram(t, 2000, 0)
	items := []item{
		{kind: kindSample, wire: wal.WireOf(reqs), ref: 1, t: 1000, v: 10, st: 500},
		{kind: kindSample, wire: wal.WireOf(reqs), ref: 1, t: 2000, v: 11, st: 500},
		{kind: kindExemplar, wire: wal.WireOf(reqs), ref: 1, t: 1500, v: 0.25, x: &extra{ex: labels.FromStrings("trace_id", "abc123")}},
		{kind: kindHistogram, wire: wal.WireOf(lat), ref: 2, x: &extra{hist: h1}},
		{kind: kindHistogram, wire: wal.WireOf(lat), ref: 2, x: &extra{hist: h2}},
		{kind: kindExemplar, wire: wal.WireOf(lat), ref: 2, t: 1900, v: 0.7, x: &extra{ex: labels.EmptyLabels()}},
		{kind: kindSample, wire: wal.WireOf(up), ref: 3, t: 1000, v: 1},
		{kind: kindExemplar, wire: wal.WireOf(orphan), ref: 4, t: 1000, v: 3, x: &extra{ex: labels.FromStrings("span_id", "s1")}},
	}
	meta := metadataMap{
		// Found under its own name.
		"latency_seconds": {Family: "latency_seconds", Type: wm.TypeHistogram, Help: "Request latency.", Unit: "seconds"},
		// Found without the _total suffix (the OpenMetrics family name).
		"http_requests": {Family: "http_requests", Type: wm.TypeCounter, Help: "Requests served."},
		"lonely":        {Family: "lonely", Type: wm.TypeCounter},
	}
	return items, meta
}

func seriesID(ls labels.Labels) string { return ls.Get("__name__") }

func TestEncodeV1CarriesEverything(t *testing.T) {
	items, meta := mixedItems(t)
	e := encoder{meta: meta}
	for range 2 { // a second call reuses the buffers
		enc := e.encode(items, RemoteWrite1)
		if enc.samples != 3 || enc.histograms != 2 || enc.exemplars != 3 || enc.metadata != 3 || enc.orphans != 0 {
			t.Fatalf("counts %+v", enc)
		}
		raw, err := snappy.Decode(nil, enc.body)
		if err != nil {
			t.Fatal(err)
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		// The histogram series' exemplars follow its histograms in a
		// TimeSeries of their own (Prometheus 2.x appends exemplars
		// before histograms and refuses those of a series it lacks).
		if len(req.Timeseries) != 5 {
			t.Fatalf("got %d series, want 5", len(req.Timeseries))
		}
		got := map[string]prompb.TimeSeries{}
		for k, ts := range req.Timeseries {
			var sb labels.ScratchBuilder
			for _, l := range ts.Labels {
				sb.Add(l.Name, l.Value)
			}
			id := seriesID(sb.Labels())
			if prev, ok := got[id]; ok {
				if id != "latency_seconds" || len(prev.Histograms) != 2 || len(prev.Exemplars) != 0 || len(ts.Histograms) != 0 || k == 0 {
					t.Fatalf("series %s split unexpectedly: %+v then %+v", id, prev, ts)
				}
				prev.Exemplars = ts.Exemplars
				ts = prev
			}
			got[id] = ts
		}
		r := got["http_requests_total"]
		if len(r.Samples) != 2 || r.Samples[1].Timestamp != 2000 || r.Samples[1].Value != 11 {
			t.Errorf("samples %+v", r.Samples)
		}
		if len(r.Exemplars) != 1 || r.Exemplars[0].Value != 0.25 || r.Exemplars[0].Timestamp != 1500 ||
			len(r.Exemplars[0].Labels) != 1 || r.Exemplars[0].Labels[0].Name != "trace_id" || r.Exemplars[0].Labels[0].Value != "abc123" {
			t.Errorf("exemplars %+v", r.Exemplars)
		}
		l := got["latency_seconds"]
		if len(l.Histograms) != 2 || len(l.Exemplars) != 1 || len(l.Exemplars[0].Labels) != 0 {
			t.Fatalf("latency series %+v", l)
		}
		_, want := testHistogram(t, 1000, 500)
		if gotH, _ := l.Histograms[0].Marshal(); !bytes.Equal(gotH, want) {
			t.Errorf("histogram with a start timestamp: 1.0 got %x, want it without field 17: %x", gotH, want)
		}
		if len(l.Histograms[0].XXX_unrecognized) != 0 {
			t.Errorf("field 17 reached the 1.0 message: %x", l.Histograms[0].XXX_unrecognized)
		}
		if o := got["lonely_total"]; len(o.Exemplars) != 1 || len(o.Samples) != 0 {
			t.Errorf("an exemplar without samples is fine in 1.0: %+v", o)
		}
		md := map[string]prompb.MetricMetadata{}
		for _, m := range req.Metadata {
			if _, dup := md[m.MetricFamilyName]; dup {
				t.Errorf("metadata of %s sent twice", m.MetricFamilyName)
			}
			md[m.MetricFamilyName] = m
		}
		type mm struct {
			typ        prompb.MetricMetadata_MetricType
			help, unit string
		}
		flat := func(m prompb.MetricMetadata) mm { return mm{m.Type, m.Help, m.Unit} }
		if len(md) != 3 ||
			flat(md["http_requests"]) != (mm{prompb.MetricMetadata_COUNTER, "Requests served.", ""}) ||
			flat(md["latency_seconds"]) != (mm{prompb.MetricMetadata_HISTOGRAM, "Request latency.", "seconds"}) {
			t.Errorf("metadata %+v", req.Metadata)
		}
	}
	// The cap on metadata entries per request.
	e.maxMetadata = 1
	if enc := e.encode(items, RemoteWrite1); enc.metadata != 1 {
		t.Errorf("metadata_config.max_samples_per_send 1: %d entries", enc.metadata)
	}
	// No source, no metadata.
	var bare encoder
	raw, _ := snappy.Decode(nil, bare.encode(items, RemoteWrite1).body)
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil || len(req.Metadata) != 0 {
		t.Errorf("metadata sent without a source: %v %+v", err, req.Metadata)
	}
}

func TestEncodeV2CarriesEverything(t *testing.T) {
	items, meta := mixedItems(t)
	e := encoder{meta: meta}
	for range 2 {
		enc := e.encode(items, RemoteWrite2)
		// The orphan exemplar cannot travel in 2.0: a TimeSeries needs a
		// sample or a histogram.
		if enc.samples != 3 || enc.histograms != 2 || enc.exemplars != 2 || enc.orphans != 1 || enc.metadata != 2 {
			t.Fatalf("counts %+v", enc)
		}
		raw, err := snappy.Decode(nil, enc.body)
		if err != nil {
			t.Fatal(err)
		}
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		if len(req.Symbols) == 0 || req.Symbols[0] != "" {
			t.Fatalf("symbols must start with the empty string: %q", req.Symbols)
		}
		seen := map[string]bool{}
		for _, s := range req.Symbols {
			if seen[s] {
				t.Errorf("symbol %q twice", s)
			}
			seen[s] = true
		}
		if len(req.Timeseries) != 3 {
			t.Fatalf("got %d series, want 3", len(req.Timeseries))
		}
		got := map[string]writev2.TimeSeries{}
		var sb labels.ScratchBuilder
		for _, ts := range req.Timeseries {
			ls, err := ts.ToLabels(&sb, req.Symbols)
			if err != nil {
				t.Fatal(err)
			}
			if len(ts.Samples) > 0 && len(ts.Histograms) > 0 {
				t.Errorf("%s: samples and histograms in one TimeSeries", ls)
			}
			got[seriesID(ls)] = ts
		}
		if want := wal.LabelsOfWire(items[0].wire); !labels.Equal(mustLabels(t, got["http_requests_total"], req.Symbols), want) {
			t.Errorf("labels %v, want %v", mustLabels(t, got["http_requests_total"], req.Symbols), want)
		}
		r := got["http_requests_total"]
		if len(r.Samples) != 2 || r.Samples[0].Value != 10 || r.Samples[0].Timestamp != 1000 || r.Samples[0].StartTimestamp != 500 {
			t.Errorf("samples %+v", r.Samples)
		}
		if len(r.Exemplars) != 1 {
			t.Fatalf("exemplars %+v", r.Exemplars)
		}
		ex, err := r.Exemplars[0].ToExemplar(&sb, req.Symbols)
		if err != nil || ex.Value != 0.25 || ex.Ts != 1500 || !labels.Equal(ex.Labels, labels.FromStrings("trace_id", "abc123")) {
			t.Errorf("exemplar %+v %v", ex, err)
		}
		m := r.Metadata
		if m.Type != writev2.Metadata_METRIC_TYPE_COUNTER || req.Symbols[m.HelpRef] != "Requests served." || m.UnitRef != 0 {
			t.Errorf("metadata %+v", m)
		}
		l := got["latency_seconds"]
		if len(l.Histograms) != 2 || len(l.Exemplars) != 1 {
			t.Fatalf("latency series %+v", l)
		}
		h1, _ := testHistogram(t, 1000, 500)
		if gotH, _ := l.Histograms[0].Marshal(); !bytes.Equal(gotH, h1) {
			t.Errorf("histogram changed in transit: %x, want %x", gotH, h1)
		}
		if l.Histograms[0].StartTimestamp != 500 {
			t.Errorf("start timestamp %d, want 500", l.Histograms[0].StartTimestamp)
		}
		if m := l.Metadata; m.Type != writev2.Metadata_METRIC_TYPE_HISTOGRAM || req.Symbols[m.UnitRef] != "seconds" {
			t.Errorf("metadata %+v", m)
		}
		if m := got["up"].Metadata; m.Type != 0 || m.HelpRef != 0 || m.UnitRef != 0 {
			t.Errorf("metadata of a family without any: %+v", m)
		}
	}
}

func mustLabels(t testing.TB, ts writev2.TimeSeries, symbols []string) labels.Labels {
	t.Helper()
	var sb labels.ScratchBuilder
	ls, err := ts.ToLabels(&sb, symbols)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// A series with floats and histograms in one batch becomes two 2.0
// TimeSeries; its exemplars ride with the floats.
func TestEncodeV2SplitsFloatsAndHistograms(t *testing.T) {
	ls := labels.FromStrings("__name__", "mixed")
	h, _ := testHistogram(t, 2000, 0)
	var e encoder
	enc := e.encode([]item{
		{kind: kindSample, wire: wal.WireOf(ls), ref: 1, t: 1000, v: 1},
		{kind: kindHistogram, wire: wal.WireOf(ls), ref: 1, x: &extra{hist: h}},
		{kind: kindExemplar, wire: wal.WireOf(ls), ref: 1, t: 1000, v: 1, x: &extra{}},
	}, RemoteWrite2)
	raw, _ := snappy.Decode(nil, enc.body)
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	if len(req.Timeseries) != 2 || len(req.Timeseries[0].Samples) != 1 || len(req.Timeseries[0].Exemplars) != 1 ||
		len(req.Timeseries[1].Histograms) != 1 || len(req.Timeseries[1].Exemplars) != 0 {
		t.Fatalf("got %+v", req.Timeseries)
	}
}

func TestHistogramV1StripsStartTimestamp(t *testing.T) {
	withST, without := testHistogram(t, 1000, 1234)
	for _, tc := range []struct {
		name    string
		in, out []byte
	}{
		{"with_start_timestamp", withST, without},
		{"without", without, without},
		{"empty", []byte{}, []byte{}},
		// Not parseable: forwarded as is, the receiver decides.
		{"truncated", withST[:len(withST)-1], withST[:len(withST)-1]},
		{"bad_wire_type", []byte{0x0f, 0x01}, []byte{0x0f, 0x01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := histogramLenV1(tc.in); n != len(tc.out) {
				t.Errorf("length %d, want %d", n, len(tc.out))
			}
			if got := appendHistogramV1([]byte{0xaa}, tc.in); !bytes.Equal(got[1:], tc.out) || got[0] != 0xaa {
				t.Errorf("got %x, want %x", got[1:], tc.out)
			}
		})
	}
}

func TestEncodeAllocationFree(t *testing.T) {
	items, meta := mixedItems(t)
	e := encoder{meta: meta}
	for _, v := range []Protocol{RemoteWrite1, RemoteWrite2} {
		e.encode(items, v)
		if n := testing.AllocsPerRun(20, func() { e.encode(items, v) }); n != 0 {
			t.Errorf("%s: %.1f allocations per encode once warm", v, n)
		}
	}
}

// benchItems returns n series of a node_exporter-like target with ten
// labels each and one sample each, and their families' metadata.
func benchItems(n int) ([]item, metadataMap) {
	modes := []string{"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"}
	items := make([]item, n)
	meta := metadataMap{}
	for i := range items {
		name := fmt.Sprintf("node_subsystem_%d_seconds_total", i%50)
		items[i] = item{
			wire: wal.WireOf(labels.FromStrings("__name__", name, "cpu", fmt.Sprint(i%16),
				"datacenter", "eu-west-1", "env", "production", "instance", fmt.Sprintf("10.20.%d.%d:9100", i/256%256, i%256),
				"job", "node", "mode", modes[i%len(modes)], "pod", fmt.Sprintf("node-exporter-%05x", i*7919%0xfffff),
				"region", "europe", "team", "infrastructure")),
			ref: uint64(i + 1), t: 1700000000000 + int64(i%100), v: float64(i) * 1.5, st: 1699990000000,
		}
		family := name[:len(name)-len("_total")]
		meta[family] = wal.Metadata{Family: family, Type: wm.TypeCounter, Help: "Seconds the CPUs spent in each mode.", Unit: "seconds"}
	}
	return items, meta
}

// BenchmarkEncode reports the encoding cost per sample and the compressed
// bytes on the wire per sample, for both protocols on the same data.
func BenchmarkEncode(b *testing.B) {
	items, meta := benchItems(1000)
	for _, bc := range []struct {
		name string
		v    Protocol
		meta wal.MetadataSource
	}{
		{"v1", RemoteWrite1, nil}, {"v2", RemoteWrite2, nil},
		{"v1_metadata", RemoteWrite1, meta}, {"v2_metadata", RemoteWrite2, meta},
		// 1.0 cannot carry start timestamps: 2.0 on exactly 1.0's data.
		{"v2_without_start_timestamps", RemoteWrite2, nil},
	} {
		items := items
		if bc.name == "v2_without_start_timestamps" {
			items = slices.Clone(items)
			for i := range items {
				items[i].st = 0
			}
		}
		b.Run(bc.name, func(b *testing.B) {
			e := encoder{meta: bc.meta}
			wire := len(e.encode(items, bc.v).body)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				e.encode(items, bc.v)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/sample")
			b.ReportMetric(float64(wire)/float64(len(items)), "wire-bytes/sample")
			b.ReportMetric(float64(len(e.pb))/float64(len(items)), "raw-bytes/sample")
		})
	}
}

// BenchmarkGroupBySeries is the shard's cost to put a series' items
// together, on a batch that is already grouped (one sample per series) and
// on one holding ten records of 200 series each.
func BenchmarkGroupBySeries(b *testing.B) {
	items, _ := benchItems(2000)
	interleaved := make([]item, len(items))
	for i := range interleaved {
		interleaved[i] = items[i%200]
	}
	for _, bc := range []struct {
		name  string
		batch []item
	}{{"grouped", items}, {"interleaved", interleaved}} {
		b.Run(bc.name, func(b *testing.B) {
			var sh shard
			b.ReportAllocs()
			for range b.N {
				sh.batch = append(sh.batch[:0], bc.batch...)
				sh.groupBySeries(sh.batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(bc.batch)), "ns/item")
		})
	}
}

// FuzzHistogramV1 feeds histogramLenV1 and appendHistogramV1 arbitrary
// bytes (a histogram is forwarded as the upstream sent it): they must agree,
// never panic, and leave no top-level field 17 in what they rewrite.
func FuzzHistogramV1(f *testing.F) {
	withST, without := testHistogram(f, 1000, 1234)
	for _, seed := range [][]byte{withST, without, {}, {0x88, 0x01, 0x05}, {0x8a, 0x01, 0x7f}, {0x0f}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, h []byte) {
		out := appendHistogramV1(nil, h)
		if len(out) != histogramLenV1(h) {
			t.Fatalf("appended %d bytes, length said %d", len(out), histogramLenV1(h))
		}
		if bytes.Equal(out, h) {
			return
		}
		for off := 0; off < len(out); {
			num, end, ok := nextField(out, off)
			if !ok || num == histogramStartTimestampField {
				t.Fatalf("rewritten message %x: field %d at %d (parsed %v)", out, num, off, ok)
			}
			off = end
		}
	})
}
