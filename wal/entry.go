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
	// Labels[i] are the labels of Samples[i]'s series, and Wire[i] the
	// same labels in wire form (model.AppendWireLabel): the Remote-Write
	// 1.0 encoding a sender copies as it is. Both are shared with the log
	// and must not be modified. Entries of logs that keep no wire form
	// (the rollup log) have no Wire.
	Labels []labels.Labels
	Wire   [][]byte
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

// RawHistogram is a native histogram as received: a protobuf Histogram
// message (see model.Batch.Histograms). Data is valid until the reader's
// next call.
type RawHistogram struct {
	Ref    Ref
	Labels labels.Labels
	Wire   []byte // Labels in wire form, shared with the log
	Data   []byte
}

// Exemplar is an exemplar of a series.
type Exemplar struct {
	Ref Ref
	// Labels are the series' labels (shared with the log), Exemplar the
	// exemplar's own.
	Labels   labels.Labels
	Wire     []byte // Labels in wire form, shared with the log
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
