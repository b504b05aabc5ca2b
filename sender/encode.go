package sender

import (
	"encoding/binary"
	"math"
	"math/bits"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/model/labels"
)

// item is one sample waiting in a shard.
type item struct {
	labels labels.Labels
	ref    uint64
	t      int64
	v      float64
	hist   []byte // a native histogram (prometheus.Histogram message) instead of t, v
	rec    uint64 // sequence number of the WAL record it came from
}

// Protobuf field tags of prometheus.WriteRequest and its messages
// (prompb/remote.proto, prompb/types.proto).
const (
	tagTimeseries = 1<<3 | 2 // WriteRequest.timeseries, length-delimited
	tagLabels     = 1<<3 | 2 // TimeSeries.labels
	tagSamples    = 2<<3 | 2 // TimeSeries.samples
	tagHistograms = 4<<3 | 2 // TimeSeries.histograms
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
	lbls []byte
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
		// The labels are marshalled once into a scratch buffer, which gives
		// their size for the TimeSeries length prefix.
		lb := e.lbls[:0]
		items[i].labels.Range(func(l labels.Label) {
			lb = append(lb, tagLabels)
			lb = binary.AppendUvarint(lb, uint64(labelSize(l.Name, l.Value)))
			lb = append(lb, tagName)
			lb = binary.AppendUvarint(lb, uint64(len(l.Name)))
			lb = append(lb, l.Name...)
			lb = append(lb, tagValue)
			lb = binary.AppendUvarint(lb, uint64(len(l.Value)))
			lb = append(lb, l.Value...)
		})
		e.lbls = lb
		tsSize := len(lb)
		for _, it := range items[i:j] {
			n := sampleSize(it.t)
			if it.hist != nil {
				n = len(it.hist)
			}
			tsSize += 1 + sizeVarint(uint64(n)) + n
		}
		b = append(b, tagTimeseries)
		b = binary.AppendUvarint(b, uint64(tsSize))
		b = append(b, lb...)
		for _, it := range items[i:j] {
			if it.hist != nil {
				b = append(b, tagHistograms)
				b = binary.AppendUvarint(b, uint64(len(it.hist)))
				b = append(b, it.hist...)
				continue
			}
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
	// s2's snappy-compatible encoder: standard snappy block format, faster
	// than github.com/golang/snappy's.
	if n := s2.MaxEncodedLen(len(b)); cap(e.comp) < n {
		e.comp = make([]byte, n)
	}
	e.comp = s2.EncodeSnappy(e.comp[:cap(e.comp)], b)
	return e.comp
}
