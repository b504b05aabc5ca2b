package receive

import "github.com/ferrymetrics/ferry/wal/model"

// Request is a decoded remote-write request: Batch holds what Decode or
// DecodeV2 found, in the flat form the WAL appends, so a decoded and
// validated request is appended as &r.Batch without copying. A Request is
// reused across calls; once its slices have grown to the size of typical
// requests, decoding into it does not allocate.
//
// Label names and values, histograms, and metadata strings in Batch alias
// the buffer passed to Decode or DecodeV2: the buffer must not be modified
// or reused while the Request is in use.
type Request struct {
	Batch model.Batch

	// symbols is the Remote-Write 2.0 symbols table, aliasing the input.
	symbols [][]byte
	// exLabels collects the labels of the exemplars of the series being
	// decoded; they are moved to Batch.Labels after the series' own labels
	// once the series is complete, so that each series' labels stay
	// contiguous whatever the order of fields on the wire.
	exLabels []model.Label
}

// Reset empties r, keeping the capacity of its slices, and drops its
// references to the previously decoded buffer.
func (r *Request) Reset() {
	r.Batch.Reset()
	clear(r.symbols)
	r.symbols = r.symbols[:0]
	clear(r.exLabels)
	r.exLabels = r.exLabels[:0]
}
