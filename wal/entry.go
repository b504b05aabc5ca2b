package wal

import (
	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/record"
)

// Entry is one record as a reader returns it, with the labels of its
// series and its place in the log. An entry holds one kind of data:
// samples, histograms, exemplars or metadata.
type Entry struct {
	// Start is the position just before the record, End just past it.
	Start, End Position
	// Samples are float samples; RefSample.ST is the start timestamp (ms,
	// 0 if unknown).
	Samples []record.RefSample
	// Wire[i] are the labels of Samples[i]'s series in wire form
	// (model.AppendWireLabel): the Remote-Write 1.0 encoding, which a
	// sender copies as it is. They are the log's own bytes, valid for as
	// long as anyone holds them, and must not be modified; SeriesLabels
	// decodes them.
	Wire [][]byte
	// Histograms are native histograms as received.
	Histograms []RawHistogram
	// Exemplars are exemplars with the labels of their series.
	Exemplars []Exemplar
	// Metadata are metric families whose metadata was new or changed when
	// the record was written.
	Metadata []Metadata
	// Unknown counts samples, histograms and exemplars whose series is
	// unknown (their Series record was lost to damage); their labels are
	// empty.
	Unknown int
}

// NumSamples returns the number of float samples and histograms in e.
func (e *Entry) NumSamples() int { return len(e.Samples) + len(e.Histograms) }

// Known reports whether the series of Samples[i] is known: its labels were
// not lost to damage.
func (e *Entry) Known(i int) bool {
	return len(e.Wire[i]) > 0
}

// SeriesLabels returns the labels of Samples[i]'s series, decoded from the
// wire form and allocated: call it for series the consumer has not seen
// before, not for every sample.
func (e *Entry) SeriesLabels(i int) labels.Labels {
	return LabelsOfWire(e.Wire[i])
}

// WireOf returns ls in wire form (model.AppendWireLabel).
func WireOf(ls labels.Labels) []byte {
	n := 0
	ls.Range(func(l labels.Label) { n += model.WireLabelSize(len(l.Name), len(l.Value)) })
	w := make([]byte, 0, n)
	ls.Range(func(l labels.Label) { w = model.AppendWireLabel(w, l.Name, l.Value) })
	return w
}

// LabelsOfWire decodes labels in wire form (model.AppendWireLabel).
func LabelsOfWire(w []byte) labels.Labels {
	if len(w) == 0 {
		return labels.EmptyLabels()
	}
	b := labels.NewScratchBuilder(8)
	for off := 0; off < len(w); {
		var name, value []byte
		name, value, off = model.NextWireLabel(w, off)
		b.Add(yoloString(name), yoloString(value)) // Labels copies them
	}
	return b.Labels()
}

// RawHistogram is a native histogram as received: a protobuf Histogram
// message (see model.Batch.Histograms). Data is valid until the reader's
// next call.
type RawHistogram struct {
	Ref  Ref
	Wire []byte // the series' labels in wire form, shared with the log
	Data []byte
}

// Exemplar is an exemplar of a series.
type Exemplar struct {
	Ref Ref
	// Wire is the series' labels in wire form (shared with the log),
	// Exemplar the exemplar's own labels.
	Wire     []byte
	Exemplar labels.Labels
	T        int64
	V        float64
}

// Metadata is a metric family's metadata (see model.Metadata).
type Metadata struct {
	Family     string
	Type       model.MetricType
	Help, Unit string
}

// MetadataSource gives the current metadata of the family a series called
// name belongs to, as FamilyOf finds it.
type MetadataSource interface {
	Metadata(name string) (Metadata, bool)
}
