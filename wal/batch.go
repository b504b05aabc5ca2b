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
// Labels[LabelsStart:LabelsEnd] and its samples Samples[SamplesStart:SamplesEnd].
// Exemplars and Histograms count what the request carried that the log does
// not store yet.
type BatchSeries struct {
	LabelsStart, LabelsEnd   int32
	SamplesStart, SamplesEnd int32
	Exemplars, Histograms    int32
}

// Batch is the unit of Append: a validated set of series (labels sorted by
// name, no duplicates) with their samples.
type Batch struct {
	Series  []BatchSeries
	Labels  []Label
	Samples []Sample
}

// NumSamples returns the number of float samples in b.
func (b *Batch) NumSamples() int { return len(b.Samples) }
