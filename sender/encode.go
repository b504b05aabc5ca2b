package sender

import (
	"encoding/binary"
	"math"
	"math/bits"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
)

// item is one sample waiting in a shard.
type item struct {
	labels labels.Labels
	ref    uint64
	t      int64
	v      float64
	rec    uint64 // sequence number of the WAL record it came from
}

// Protobuf field tags of prometheus.WriteRequest and its messages
// (prompb/remote.proto, prompb/types.proto).
const (
	tagTimeseries = 1<<3 | 2 // WriteRequest.timeseries, length-delimited
	tagLabels     = 1<<3 | 2 // TimeSeries.labels
	tagSamples    = 2<<3 | 2 // TimeSeries.samples
	tagName       = 1<<3 | 2 // Label.name
	tagValue      = 2<<3 | 2 // Label.value
	tagSampleV    = 1<<3 | 1 // Sample.value, fixed64
	tagSampleT    = 2 << 3   // Sample.timestamp, varint (wire type 0)
)

func sizeVarint(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

func labelSize(name, value string) int {
	return 1 + sizeVarint(uint64(len(name))) + len(name) + 1 + sizeVarint(uint64(len(value))) + len(value)
}

func sampleSize(t int64) int { return 1 + 8 + 1 + sizeVarint(uint64(t)) }

// encoder builds snappy-compressed Remote-Write 1.0 requests without
// allocating once its buffers have grown.
type encoder struct {
	pb   []byte
	comp []byte
}

// encode marshals items as a prometheus.WriteRequest, one TimeSeries per
// run of consecutive samples of the same series, and snappy-compresses it.
// The result is valid until the next call.
func (e *encoder) encode(items []item) []byte {
	b := e.pb[:0]
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && items[j].ref == items[i].ref {
			j++
		}
		ls := items[i].labels
		tsSize := 0
		ls.Range(func(l labels.Label) {
			n := labelSize(l.Name, l.Value)
			tsSize += 1 + sizeVarint(uint64(n)) + n
		})
		for _, it := range items[i:j] {
			n := sampleSize(it.t)
			tsSize += 1 + sizeVarint(uint64(n)) + n
		}
		b = append(b, tagTimeseries)
		b = binary.AppendUvarint(b, uint64(tsSize))
		ls.Range(func(l labels.Label) {
			b = append(b, tagLabels)
			b = binary.AppendUvarint(b, uint64(labelSize(l.Name, l.Value)))
			b = append(b, tagName)
			b = binary.AppendUvarint(b, uint64(len(l.Name)))
			b = append(b, l.Name...)
			b = append(b, tagValue)
			b = binary.AppendUvarint(b, uint64(len(l.Value)))
			b = append(b, l.Value...)
		})
		for _, it := range items[i:j] {
			b = append(b, tagSamples)
			b = binary.AppendUvarint(b, uint64(sampleSize(it.t)))
			b = append(b, tagSampleV)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(it.v))
			b = append(b, tagSampleT)
			b = binary.AppendUvarint(b, uint64(it.t))
		}
		i = j
	}
	e.pb = b
	e.comp = snappy.Encode(e.comp[:cap(e.comp)], b)
	return e.comp
}
