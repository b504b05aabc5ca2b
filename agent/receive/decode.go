package receive

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/ferrymetrics/ferry/wal"
)

// Request is a decoded Remote-Write 1.0 WriteRequest in flat form. Series
// refer to their labels and samples by index ranges into Labels and Samples,
// so a Request can be reused across calls to Decode without allocating once
// its slices have grown to the size of typical requests.
//
// Label names and values alias the buffer passed to Decode: the buffer must
// not be modified or reused while the Request is in use.
type Request struct {
	Series  []Series
	Labels  []Label  // all series' labels, in request order
	Samples []Sample // all series' float samples, in request order
	// Histograms are the native histograms' prometheus.Histogram messages,
	// aliasing the input, in request order.
	Histograms [][]byte
	Metadata   int // number of metadata entries seen
	// Types are the metric types the metadata declares, by family name.
	Types []Type
}

// Type is a metric family's type from the request's metadata. Name aliases
// the input.
type Type = wal.MetricType

// Series is one TimeSeries of a Request: its labels are
// Labels[LabelsStart:LabelsEnd], its samples Samples[SamplesStart:SamplesEnd];
// exemplars and native histograms are counted, not decoded. It is the WAL's
// batch layout, so a decoded Request is appended without copying.
type Series = wal.BatchSeries

// Label is a label name and value pair. Both alias the decoded buffer.
type Label = wal.Label

// Sample is a float sample. Value keeps the exact bit pattern it was sent
// with, including NaN payloads such as the Prometheus stale marker.
type Sample = wal.Sample

// Reset empties r, keeping the capacity of its slices. It clears the labels
// it held so that r no longer references the previously decoded buffer.
func (r *Request) Reset() {
	clear(r.Labels)
	clear(r.Histograms)
	r.Histograms = r.Histograms[:0]
	r.Series = r.Series[:0]
	r.Labels = r.Labels[:0]
	r.Samples = r.Samples[:0]
	r.Metadata = 0
	clear(r.Types)
	r.Types = r.Types[:0]
}

// NumSamples returns the number of float samples in r.
func (r *Request) NumSamples() int { return len(r.Samples) }

// SeriesLabels returns the labels of r.Series[i].
func (r *Request) SeriesLabels(i int) []Label {
	s := &r.Series[i]
	return r.Labels[s.LabelsStart:s.LabelsEnd]
}

// SeriesSamples returns the float samples of r.Series[i].
func (r *Request) SeriesSamples(i int) []Sample {
	s := &r.Series[i]
	return r.Samples[s.SamplesStart:s.SamplesEnd]
}

// maxInput is the largest buffer Decode accepts. It keeps every index into
// the Request's slices within int32: each label, sample and series takes at
// least two bytes of input.
const maxInput = math.MaxInt32

// Protobuf wire types.
const (
	wireVarint     = 0
	wireFixed64    = 1
	wireBytes      = 2
	wireStartGroup = 3
	wireEndGroup   = 4
	wireFixed32    = 5
)

// Tags (field number << 3 | wire type) of the fields Decode understands.
const (
	tagTimeseries = 1<<3 | wireBytes   // WriteRequest.timeseries
	tagMetadata   = 3<<3 | wireBytes   // WriteRequest.metadata
	tagLabel      = 1<<3 | wireBytes   // TimeSeries.labels
	tagSample     = 2<<3 | wireBytes   // TimeSeries.samples
	tagExemplar   = 3<<3 | wireBytes   // TimeSeries.exemplars
	tagHistogram  = 4<<3 | wireBytes   // TimeSeries.histograms
	tagName       = 1<<3 | wireBytes   // Label.name
	tagValue      = 2<<3 | wireBytes   // Label.value
	tagSampleVal  = 1<<3 | wireFixed64 // Sample.value
	tagSampleTS   = 2<<3 | wireVarint  // Sample.timestamp
)

// Decode parses buf, an uncompressed protobuf prometheus.WriteRequest, into
// r. It resets r first and reuses its slices. Decode checks the protobuf
// structure only; use Validate to check the labels.
//
// Unknown fields are skipped. A known field with the wrong wire type,
// truncated input, a length past the end of its enclosing message, a varint
// longer than 10 bytes or overflowing 64 bits, a field number outside
// [1, 2^31-1], a group or an invalid wire type is reported as an error
// wrapping ErrCorrupt that names the element being decoded and the byte
// offset in buf. On error, r holds the series decoded before the problem.
func Decode(buf []byte, r *Request) error {
	r.Reset()
	if len(buf) > maxInput {
		return fmt.Errorf("%w: decode write request: %d bytes exceed the limit of %d", ErrTooLarge, len(buf), maxInput)
	}
	for i := 0; i < len(buf); {
		if buf[i] == tagTimeseries { // fast path, errors are handled below
			if n, j := uvarint(buf, i+1); j > 0 && n <= uint64(len(buf)-j) {
				end := j + int(n)
				if err := decodeSeries(r, buf[:end], j); err != nil {
					return err.in("timeseries", len(r.Series))
				}
				i = end
				continue
			}
		}
		tag, j, err := readTag(buf, i)
		if err != nil {
			return err
		}
		switch tag {
		case tagTimeseries:
			start, end, err := readLen(buf, j)
			if err != nil {
				return err.in("timeseries", len(r.Series))
			}
			if err := decodeSeries(r, buf[:end], start); err != nil {
				return err.in("timeseries", len(r.Series))
			}
			i = end
		case tagMetadata:
			start, end, err := readLen(buf, j)
			if err == nil {
				err = decodeMetadata(r, buf[:end], start)
			}
			if err != nil {
				return err.in("metadata", r.Metadata)
			}
			r.Metadata++
			i = end
		default:
			if f := tag >> 3; f == 1 || f == 3 {
				return wrongWireType(i, tag, "write request")
			}
			if i, err = skipField(buf, j, tag); err != nil {
				return err.in("field", int(tag>>3))
			}
		}
	}
	return nil
}

// decodeMetadata decodes the MetricMetadata in b[i:] and keeps its type and
// family name if both are set.
func decodeMetadata(r *Request, b []byte, i int) *decodeError {
	var t Type
	for i < len(b) {
		tag, j, err := readTag(b, i)
		if err != nil {
			return err
		}
		switch tag {
		case 1<<3 | wireVarint: // type
			v, k, err := readVarint(b, j)
			if err != nil {
				return err.in("type", 0)
			}
			t.Type = uint8(min(v, 255))
			i = k
		case 2<<3 | wireBytes: // metric_family_name
			start, end, err := readLen(b, j)
			if err != nil {
				return err.in("metric_family_name", 0)
			}
			t.Family = b[start:end:end]
			i = end
		default:
			if f := tag >> 3; f == 1 || f == 2 {
				return wrongWireType(i, tag, "metadata")
			}
			if i, err = skipField(b, j, tag); err != nil {
				return err.in("field", int(tag>>3))
			}
		}
	}
	if t.Type != 0 && len(t.Family) > 0 {
		r.Types = append(r.Types, t)
	}
	return nil
}

// decodeSeries decodes the TimeSeries in b[i:] and appends it to r.
func decodeSeries(r *Request, b []byte, i int) (err *decodeError) {
	// Work on local copies of the slices, which the compiler can keep in
	// registers; store them back however we return.
	labels, samples := r.Labels, r.Samples
	defer func() { r.Labels, r.Samples = labels, samples }()

	s := Series{LabelsStart: int32(len(labels)), SamplesStart: int32(len(samples)), HistogramsStart: int32(len(r.Histograms))}
	for i < len(b) {
		// Fast path: a label encoded as name then value with one-byte
		// lengths, as every mainstream sender does. Anything else, including
		// every malformed label, goes through the general path below.
		if b[i] == tagLabel && i+5 < len(b) {
			n, p := int(b[i+1]), i+2 // message length and start
			if n >= 4 && n < 0x80 && n <= len(b)-p && b[p] == tagName && b[p+1] < 0x80 {
				end := p + n
				v := p + 2 + int(b[p+1]) // value tag
				if v+2 <= end && b[v] == tagValue && v+2+int(b[v+1]) == end {
					// Store the fields one by one: building a Label and
					// copying it costs twice as much (store forwarding).
					k := len(labels)
					if k == cap(labels) {
						labels = append(labels, Label{})
					}
					labels = labels[:k+1]
					labels[k].Name = b[p+2 : v : v]
					labels[k].Value = b[v+2 : end : end]
					i = end
					continue
				}
			}
		}
		if b[i] == tagSample {
			if smp, end, ok := fastSample(b, i+1); ok {
				samples = append(samples, smp)
				i = end
				continue
			}
		}

		tag, j, err := readTag(b, i)
		if err != nil {
			return err
		}
		switch tag {
		case tagLabel:
			var l Label
			start, end, err := readLen(b, j)
			if err == nil {
				err = decodeLabel(&l, b[:end], start)
			}
			if err != nil {
				return err.in("label", len(labels)-int(s.LabelsStart))
			}
			labels = append(labels, l)
			i = end
		case tagSample:
			var smp Sample
			start, end, err := readLen(b, j)
			if err == nil {
				err = decodeSample(&smp, b[:end], start)
			}
			if err != nil {
				return err.in("sample", len(samples)-int(s.SamplesStart))
			}
			samples = append(samples, smp)
			i = end
		case tagExemplar:
			_, end, err := readLen(b, j)
			if err != nil {
				return err.in("exemplar", int(s.Exemplars))
			}
			s.Exemplars++
			i = end
		case tagHistogram:
			start, end, err := readLen(b, j)
			if err != nil {
				return err.in("histogram", int(s.Histograms))
			}
			r.Histograms = append(r.Histograms, b[start:end:end])
			s.Histograms++
			i = end
		default:
			if f := tag >> 3; f >= 1 && f <= 4 {
				return wrongWireType(i, tag, "timeseries")
			}
			if i, err = skipField(b, j, tag); err != nil {
				return err.in("field", int(tag>>3))
			}
		}
	}
	s.LabelsEnd = int32(len(labels))
	s.SamplesEnd = int32(len(samples))
	r.Series = append(r.Series, s)
	return nil
}

// fastSample decodes a length-prefixed Sample at b[i:] if it is encoded as
// an optional value then an optional timestamp, with a one-byte length.
// Otherwise it returns ok == false and the general decoder takes over.
func fastSample(b []byte, i int) (s Sample, end int, ok bool) {
	if i >= len(b) {
		return s, 0, false
	}
	n := int(b[i])
	i++
	if n >= 0x80 || n > len(b)-i {
		return s, 0, false
	}
	end = i + n
	b = b[:end]
	if i < end && b[i] == tagSampleVal {
		if end-i < 9 {
			return s, 0, false
		}
		s.Value = math.Float64frombits(binary.LittleEndian.Uint64(b[i+1:]))
		i += 9
	}
	if i < end && b[i] == tagSampleTS {
		ts, next := uvarint(b, i+1)
		if next < 0 {
			return s, 0, false
		}
		s.Timestamp = int64(ts)
		i = next
	}
	return s, end, i == end
}

// decodeLabel decodes the Label in b[i:] into l.
func decodeLabel(l *Label, b []byte, i int) *decodeError {
	for i < len(b) {
		tag, j, err := readTag(b, i)
		if err != nil {
			return err
		}
		switch tag {
		case tagName:
			start, end, err := readLen(b, j)
			if err != nil {
				return err.in("name", -1)
			}
			l.Name = b[start:end:end]
			i = end
		case tagValue:
			start, end, err := readLen(b, j)
			if err != nil {
				return err.in("value", -1)
			}
			l.Value = b[start:end:end]
			i = end
		default:
			if f := tag >> 3; f == 1 || f == 2 {
				return wrongWireType(i, tag, "label")
			}
			if i, err = skipField(b, j, tag); err != nil {
				return err.in("field", int(tag>>3))
			}
		}
	}
	return nil
}

// decodeSample decodes the Sample in b[i:] into s.
func decodeSample(s *Sample, b []byte, i int) *decodeError {
	for i < len(b) {
		tag, j, err := readTag(b, i)
		if err != nil {
			return err
		}
		switch tag {
		case tagSampleVal:
			if len(b)-j < 8 {
				return corrupt(j, kindTruncated, "truncated fixed64").in("value", -1)
			}
			s.Value = math.Float64frombits(binary.LittleEndian.Uint64(b[j:]))
			i = j + 8
		case tagSampleTS:
			v, next, err := readVarint(b, j)
			if err != nil {
				return err.in("timestamp", -1)
			}
			s.Timestamp = int64(v)
			i = next
		default:
			if f := tag >> 3; f == 1 || f == 2 {
				return wrongWireType(i, tag, "sample")
			}
			if i, err = skipField(b, j, tag); err != nil {
				return err.in("field", int(tag>>3))
			}
		}
	}
	return nil
}

// uvarint decodes the varint at b[i:]. It returns the value and the index
// just past it, or next < 0: varintTruncated or varintOverflow. It is small
// enough to be inlined.
func uvarint(b []byte, i int) (v uint64, next int) {
	for shift := uint(0); shift < 64; shift += 7 {
		if i >= len(b) {
			return 0, varintTruncated
		}
		c := b[i]
		i++
		if shift == 63 && c > 1 {
			break
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i
		}
	}
	return 0, varintOverflow
}

// Failure results of uvarint.
const (
	varintTruncated = -1
	varintOverflow  = -2
)

// readVarint is uvarint with errors for the varint at offset i.
func readVarint(b []byte, i int) (uint64, int, *decodeError) {
	v, next := uvarint(b, i)
	switch next {
	case varintTruncated:
		return 0, 0, corrupt(i, kindTruncated, "truncated varint")
	case varintOverflow:
		return 0, 0, corrupt(i, kindOverflow, "varint overflows 64 bits")
	}
	return v, next, nil
}

// readTag reads the field tag at b[i:] and returns it with the index just
// past it. Field numbers must lie in [1, 2^31-1] and wire types be varint,
// fixed64, length-delimited or fixed32.
func readTag(b []byte, i int) (uint64, int, *decodeError) {
	const validWireTypes = 1<<wireVarint | 1<<wireFixed64 | 1<<wireBytes | 1<<wireFixed32
	if i < len(b) && b[i] < 0x80 && b[i] >= 1<<3 && validWireTypes&(1<<(b[i]&7)) != 0 {
		return uint64(b[i]), i + 1, nil
	}
	tag, j, err := readVarint(b, i)
	if err != nil {
		return 0, 0, err
	}
	switch f, w := tag>>3, tag&7; {
	case f == 0 || f > math.MaxInt32:
		return 0, 0, corrupt(i, kindFieldNumber, fmt.Sprintf("invalid field number %d", f))
	case w == wireStartGroup || w == wireEndGroup:
		return 0, 0, corrupt(i, kindGroup, fmt.Sprintf("field %d: groups are not supported", f))
	case validWireTypes&(1<<w) == 0:
		return 0, 0, corrupt(i, kindWireType, fmt.Sprintf("field %d: invalid wire type %d", f, w))
	}
	return tag, j, nil
}

// readLen reads the length prefix of a length-delimited field at b[i:] and
// returns the bounds of its content.
func readLen(b []byte, i int) (start, end int, err *decodeError) {
	n, j, err := readVarint(b, i)
	if err != nil {
		return 0, 0, err
	}
	if n > uint64(len(b)-j) {
		return 0, 0, corrupt(i, kindLength, fmt.Sprintf("length %d exceeds the %d bytes left", n, len(b)-j))
	}
	return j, j + int(n), nil
}

// skipField skips the value of an unknown field with the given tag starting
// at b[i:] and returns the index just past it.
func skipField(b []byte, i int, tag uint64) (int, *decodeError) {
	switch tag & 7 {
	case wireVarint:
		_, j, err := readVarint(b, i)
		return j, err
	case wireFixed64:
		if len(b)-i < 8 {
			return 0, corrupt(i, kindTruncated, "truncated fixed64")
		}
		return i + 8, nil
	case wireBytes:
		_, end, err := readLen(b, i)
		return end, err
	case wireFixed32:
		if len(b)-i < 4 {
			return 0, corrupt(i, kindTruncated, "truncated fixed32")
		}
		return i + 4, nil
	default: // readTag rejects the other wire types
		return 0, corrupt(i, kindWireType, fmt.Sprintf("invalid wire type %d", tag&7))
	}
}

func wrongWireType(off int, tag uint64, msg string) *decodeError {
	return corrupt(off, kindWireType, fmt.Sprintf("wrong wire type %d for %s field %d", tag&7, msg, tag>>3))
}

// errKind classifies decode errors, so tests can tell rejections that are
// deliberate stricter-than-gogo choices from others.
type errKind uint8

const (
	kindTruncated   errKind = iota + 1 // input ends inside a value
	kindLength                         // length prefix past the end of the enclosing message
	kindOverflow                       // varint overflows 64 bits
	kindFieldNumber                    // field number 0 or above 2^31-1
	kindWireType                       // invalid wire type, or wrong for a known field
	kindGroup                          // group wire types (proto2 only)
)

// decodeError is a protobuf structure error. It wraps ErrCorrupt.
type decodeError struct {
	off  int     // byte offset in the buffer passed to Decode
	kind errKind // class of problem
	msg  string  // the problem
	ctx  [4]errCtx
	n    int // ctx[:n] holds the elements being decoded, innermost first
}

// errCtx names an element being decoded when an error occurred.
type errCtx struct {
	name string
	idx  int // index among its siblings, or -1
}

func corrupt(off int, kind errKind, msg string) *decodeError {
	return &decodeError{off: off, kind: kind, msg: msg}
}

// in records that e occurred while decoding the named element and returns e.
func (e *decodeError) in(name string, idx int) *decodeError {
	if e.n < len(e.ctx) {
		e.ctx[e.n] = errCtx{name, idx}
		e.n++
	}
	return e
}

func (e *decodeError) Error() string {
	var b strings.Builder
	b.WriteString(ErrCorrupt.Error())
	b.WriteString(": decode ")
	if e.n == 0 || e.ctx[e.n-1].name == "field" {
		b.WriteString("write request: ")
	}
	for k := e.n - 1; k >= 0; k-- {
		c := e.ctx[k]
		b.WriteString(c.name)
		if c.idx >= 0 {
			fmt.Fprintf(&b, " %d", c.idx)
		}
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%s at offset %d", e.msg, e.off)
	return b.String()
}

func (e *decodeError) Unwrap() error { return ErrCorrupt }
