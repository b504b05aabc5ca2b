// Package model is the data Ferry carries, in the flat form every ingest
// path produces and the WAL appends: series with their labels, float
// samples with optional start timestamps, native histograms, exemplars and
// metric metadata. It depends on nothing else in Ferry, so receivers (Remote-
// Write 1.0 and 2.0, scraping) build it without knowing the WAL, and the WAL
// stores it without knowing where it came from.
//
// A Batch is flat: a Series refers to its labels, samples, histograms and
// exemplars by index ranges into the Batch's slices, so one Batch is reused
// across requests without allocating once its slices have grown. Byte slices
// may alias a request buffer: whoever keeps them copies them.
package model

// Label is one label pair.
type Label struct{ Name, Value []byte }

// Sample is one float sample. Value keeps its exact bit pattern, including
// NaN payloads such as the Prometheus stale marker.
type Sample struct {
	Value     float64
	Timestamp int64 // ms since the epoch
	// Start is the sample's start timestamp in ms (Remote-Write 2.0
	// start_timestamp, formerly "created timestamp"): when a cumulative
	// series began counting. 0 means unknown.
	Start int64
}

// Exemplar is an example observation attached to a series, with its own
// labels (Batch.Labels[LabelsStart:LabelsEnd], possibly none).
type Exemplar struct {
	LabelsStart, LabelsEnd int32
	Value                  float64
	Timestamp              int64 // ms
}

// MetricType is a metric family's type. Its values are those of
// prometheus.MetricMetadata.MetricType, io.prometheus.write.v2.Metadata's
// MetricType and tsdb/record's MetricType, which agree.
type MetricType uint8

// Metric types.
const (
	TypeUnknown        MetricType = 0
	TypeCounter        MetricType = 1
	TypeGauge          MetricType = 2
	TypeHistogram      MetricType = 3
	TypeGaugeHistogram MetricType = 4
	TypeSummary        MetricType = 5
	TypeInfo           MetricType = 6
	TypeStateset       MetricType = 7
)

// Metadata describes a metric family: its type, help and unit. Family is
// the name the sender gave it: Remote-Write 1.0's metric_family_name, or for
// Remote-Write 2.0 (per-series metadata) the series' metric name.
type Metadata struct {
	Family     []byte
	Type       MetricType
	Help, Unit []byte
}

// Series is one series of a Batch: labels sorted by name without
// duplicates, and index ranges into the Batch's samples, histograms and
// exemplars.
type Series struct {
	LabelsStart, LabelsEnd         int32
	SamplesStart, SamplesEnd       int32
	HistogramsStart, HistogramsEnd int32
	ExemplarsStart, ExemplarsEnd   int32
	// Batch.Wire[WireStart:WireEnd], when not empty, is the series'
	// labels in their wire form (AppendWireLabel), as the request carried
	// them: the WAL identifies the series by hashing these bytes without
	// building them.
	WireStart, WireEnd int32
}

// Batch is a validated set of series with their data, and the metadata that
// came with them. It is the unit the WAL appends atomically.
type Batch struct {
	Series  []Series
	Labels  []Label // series' and exemplars' labels
	Samples []Sample
	// Histograms are native histograms as protobuf Histogram messages:
	// prometheus.Histogram (Remote-Write 1.0) and io.prometheus.write.v2.
	// Histogram share fields 1-16 (2.0 adds start_timestamp, field 17), so
	// either is kept and forwarded exactly as received.
	Histograms [][]byte
	Exemplars  []Exemplar
	Metadata   []Metadata
	// Wire is the buffer Series' Wire ranges refer to, or nil.
	Wire []byte
}

// AppendWireLabel appends the wire form of one label: the label as a
// Remote-Write 1.0 TimeSeries.labels field, that is field 1 holding a
// Label message with its name (field 1) then its value (field 2), every
// length a minimal varint. The wire form of a series' labels is that of
// each label in order; every mainstream sender encodes labels exactly so.
func AppendWireLabel[S ~string | ~[]byte](b []byte, name, value S) []byte {
	n, v := len(name), len(value)
	b = append(b, 1<<3|2)
	b = appendUvarint(b, uint64(labelSize(n, v)))
	b = appendUvarint(append(b, 1<<3|2), uint64(n))
	b = append(b, name...)
	b = appendUvarint(append(b, 2<<3|2), uint64(v))
	return append(b, value...)
}

// WireLabelSize returns the length of the wire form of a label whose name
// and value are n and v bytes long.
func WireLabelSize(n, v int) int {
	m := labelSize(n, v)
	return 1 + uvarintSize(m) + m
}

// labelSize is the length of a Label message.
func labelSize(n, v int) int { return 1 + uvarintSize(n) + n + 1 + uvarintSize(v) + v }

// NextWireLabel reads the label at w[off:] of labels in wire form, which
// must be well formed (as AppendWireLabel makes it), and returns its name
// and value, which alias w, and the offset of the next label.
func NextWireLabel(w []byte, off int) (name, value []byte, next int) {
	_, off = uvarint(w, off+1) // the Label message's length
	name, off = wireBytes(w, off)
	value, off = wireBytes(w, off)
	return name, value, off
}

// WireName returns the value of the __name__ label of labels in wire form,
// or nil.
func WireName(w []byte) []byte {
	for off := 0; off < len(w); {
		var name, value []byte
		name, value, off = NextWireLabel(w, off)
		if string(name) == "__name__" {
			return value
		}
	}
	return nil
}

// wireBytes reads the tagged, length-prefixed bytes at w[off:].
func wireBytes(w []byte, off int) ([]byte, int) {
	n, start := uvarint(w, off+1)
	end := start + int(n)
	return w[start:end:end], end
}

func uvarint(w []byte, off int) (uint64, int) {
	var x uint64
	for shift := 0; ; shift += 7 {
		c := w[off]
		off++
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x, off
		}
	}
}

func uvarintSize(n int) int {
	size := 1
	for ; n >= 0x80; n >>= 7 {
		size++
	}
	return size
}

func appendUvarint(b []byte, x uint64) []byte {
	for ; x >= 0x80; x >>= 7 {
		b = append(b, byte(x)|0x80)
	}
	return append(b, byte(x))
}

// Reset empties b, keeping the capacity of its slices, and drops its
// references to the buffers it aliased.
func (b *Batch) Reset() {
	clear(b.Labels)
	clear(b.Histograms)
	clear(b.Metadata)
	b.Series = b.Series[:0]
	b.Labels = b.Labels[:0]
	b.Samples = b.Samples[:0]
	b.Histograms = b.Histograms[:0]
	b.Exemplars = b.Exemplars[:0]
	b.Metadata = b.Metadata[:0]
	b.Wire = nil
}

// NumSamples returns the number of float samples and histograms in b.
func (b *Batch) NumSamples() int { return len(b.Samples) + len(b.Histograms) }

// SeriesLabels returns the labels of b.Series[i].
func (b *Batch) SeriesLabels(i int) []Label {
	s := &b.Series[i]
	return b.Labels[s.LabelsStart:s.LabelsEnd]
}

// SeriesSamples returns the float samples of b.Series[i].
func (b *Batch) SeriesSamples(i int) []Sample {
	s := &b.Series[i]
	return b.Samples[s.SamplesStart:s.SamplesEnd]
}

// SeriesHistograms returns the native histograms of b.Series[i].
func (b *Batch) SeriesHistograms(i int) [][]byte {
	s := &b.Series[i]
	return b.Histograms[s.HistogramsStart:s.HistogramsEnd]
}

// SeriesExemplars returns the exemplars of b.Series[i].
func (b *Batch) SeriesExemplars(i int) []Exemplar {
	s := &b.Series[i]
	return b.Exemplars[s.ExemplarsStart:s.ExemplarsEnd]
}

// ExemplarLabels returns the labels of e.
func (b *Batch) ExemplarLabels(e *Exemplar) []Label { return b.Labels[e.LabelsStart:e.LabelsEnd] }
