package wal

// Label is one label pair of a series in a Batch. Name and Value may alias
// a request buffer: the log copies what it keeps.
type Label struct{ Name, Value []byte }

// Sample is one float sample of a series in a Batch.
type Sample struct {
	Value     float64
	Timestamp int64
}

// BatchSeries is one series of a Batch: its labels are
// Labels[LabelsStart:LabelsEnd], its samples Samples[SamplesStart:SamplesEnd]
// and its native histograms Histograms[HistogramsStart:HistogramsStart+
// Histograms]. Exemplars counts what the request carried that the log does
// not store yet.
type BatchSeries struct {
	LabelsStart, LabelsEnd   int32
	SamplesStart, SamplesEnd int32
	Exemplars, Histograms    int32
	HistogramsStart          int32
}

// Batch is the unit of Append: a validated set of series (labels sorted by
// name, no duplicates) with their samples.
type Batch struct {
	Series  []BatchSeries
	Labels  []Label
	Samples []Sample
	// Histograms are native histograms as Remote-Write 1.0
	// prometheus.Histogram messages, kept and forwarded as received.
	Histograms [][]byte
	// Types are metric types declared by the request's metadata.
	Types []MetricType
}

// MetricType is a metric family's type as Remote-Write 1.0 metadata
// declares it (prometheus.MetricMetadata.MetricType: 1 counter, 2 gauge,
// 3 histogram, 4 gauge histogram, 5 summary, 6 info, 7 stateset).
type MetricType struct {
	Type   uint8
	Family []byte
}

// NumSamples returns the number of float samples and histograms in b.
func (b *Batch) NumSamples() int { return len(b.Samples) + len(b.Histograms) }
