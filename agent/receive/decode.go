package receive

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/ferrymetrics/ferry/wal/model"
)

// Tags (field number << 3 | wire type) of the fields Decode understands.
const (
	tagTimeseries = 1<<3 | wireBytes   // WriteRequest.timeseries
	tagMetadata   = 3<<3 | wireBytes   // WriteRequest.metadata
	tagLabel      = 1<<3 | wireBytes   // TimeSeries.labels, Exemplar.labels
	tagSample     = 2<<3 | wireBytes   // TimeSeries.samples
	tagExemplar   = 3<<3 | wireBytes   // TimeSeries.exemplars
	tagHistogram  = 4<<3 | wireBytes   // TimeSeries.histograms
	tagName       = 1<<3 | wireBytes   // Label.name
	tagValue      = 2<<3 | wireBytes   // Label.value
	tagSampleVal  = 1<<3 | wireFixed64 // Sample.value (1.0 and 2.0)
	tagSampleTS   = 2<<3 | wireVarint  // Sample.timestamp (1.0 and 2.0)
	tagExVal      = 2<<3 | wireFixed64 // Exemplar.value (1.0 and 2.0)
	tagExTS       = 3<<3 | wireVarint  // Exemplar.timestamp (1.0 and 2.0)
	tagMetaType   = 1<<3 | wireVarint  // MetricMetadata.type
	tagMetaFamily = 2<<3 | wireBytes   // MetricMetadata.metric_family_name
	tagMetaHelp   = 4<<3 | wireBytes   // MetricMetadata.help
	tagMetaUnit   = 5<<3 | wireBytes   // MetricMetadata.unit
)

// Decode parses buf, an uncompressed protobuf prometheus.WriteRequest
// (Remote-Write 1.0), into r.Batch. It resets r first and reuses its slices.
// Decode checks the protobuf structure only; use Validate to check the
// labels.
//
// Unknown fields are skipped. A known field with the wrong wire type,
// truncated input, a length past the end of its enclosing message, a varint
// longer than 10 bytes or overflowing 64 bits, a field number outside
// [1, 2^31-1], a group or an invalid wire type is reported as an error
// wrapping ErrCorrupt that names the element being decoded and the byte
// offset in buf. On error, r holds the series decoded before the problem.
func Decode(buf []byte, r *Request) error {
	r.Reset()
	r.Batch.Wire = buf
	if len(buf) > maxInput {
		return fmt.Errorf("%w: decode write request: %d bytes exceed the limit of %d", ErrTooLarge, len(buf), maxInput)
	}
	metadata := 0 // metadata entries seen, kept or not
	for i := 0; i < len(buf); {
		// Fast path, errors are handled below. It stays written out here
		// and in DecodeV2: as a function it exceeds the inlining budget
		// and costs a call per series.
		if buf[i] == tagTimeseries {
			if n, j := uvarint(buf, i+1); j > 0 && n <= uint64(len(buf)-j) {
				end := j + int(n)
				if err := decodeSeries(r, buf[:end], j); err != nil {
					return err.in("timeseries", len(r.Batch.Series))
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
				return err.in("timeseries", len(r.Batch.Series))
			}
			if err := decodeSeries(r, buf[:end], start); err != nil {
				return err.in("timeseries", len(r.Batch.Series))
			}
			i = end
		case tagMetadata:
			start, end, err := readLen(buf, j)
			if err == nil {
				err = decodeMetadata(r, buf[:end], start)
			}
			if err != nil {
				return err.in("metadata", metadata)
			}
			metadata++
			i = end
		default:
			if i, err = skipUnknown(buf, i, j, tag, 1<<1|1<<3, "write request"); err != nil {
				return err
			}
		}
	}
	return nil
}

// metricType converts a MetricType enum value read as a varint. Like every
// protobuf decoder, it truncates the value to the enum's 32 bits; types the
// model does not know become TypeUnknown.
func metricType(v uint64) model.MetricType {
	if t := int32(v); t >= 0 && t <= int32(model.TypeStateset) {
		return model.MetricType(t)
	}
	return model.TypeUnknown
}

// readMetricType reads the MetricType (varint) field at b[i:] and returns
// it with the index just past it.
func readMetricType(b []byte, i int) (model.MetricType, int, *decodeError) {
	v, next, err := readVarint(b, i)
	if err != nil {
		return 0, 0, err.in("type", -1)
	}
	return metricType(v), next, nil
}

// decodeMetadata decodes the MetricMetadata in b[i:] and keeps it if it
// names a metric family.
func decodeMetadata(r *Request, b []byte, i int) *decodeError {
	var m model.Metadata
	for i < len(b) {
		tag, j, err := readTag(b, i)
		if err != nil {
			return err
		}
		switch tag {
		case tagMetaType:
			if m.Type, i, err = readMetricType(b, j); err != nil {
				return err
			}
		case tagMetaFamily, tagMetaHelp, tagMetaUnit:
			start, end, err := readLen(b, j)
			if err != nil {
				return err.in(metadataFieldName(tag), -1)
			}
			v := b[start:end:end]
			switch tag {
			case tagMetaFamily:
				m.Family = v
			case tagMetaHelp:
				m.Help = v
			default:
				m.Unit = v
			}
			i = end
		default:
			if i, err = skipUnknown(b, i, j, tag, 1<<1|1<<2|1<<4|1<<5, "metadata"); err != nil {
				return err
			}
		}
	}
	if len(m.Family) > 0 {
		r.Batch.Metadata = append(r.Batch.Metadata, m)
	}
	return nil
}

func metadataFieldName(tag uint64) string {
	switch tag {
	case tagMetaFamily:
		return "metric_family_name"
	case tagMetaHelp:
		return "help"
	}
	return "unit"
}

// decodeSeries decodes the TimeSeries in b[i:] and appends it to r.Batch.
func decodeSeries(r *Request, b []byte, i int) (err *decodeError) {
	// Work on local copies of the slices, which the compiler can keep in
	// registers; store them back however we return.
	labels, samples := r.Batch.Labels, r.Batch.Samples
	defer func() { r.Batch.Labels, r.Batch.Samples = labels, samples }()

	s := r.startSeries(labels, samples)
	// The series' labels are in wire form (model.AppendWireLabel) if they
	// all take the fast path, one after the other.
	wire := true
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
						labels = append(labels, model.Label{})
					}
					labels = labels[:k+1]
					labels[k].Name = b[p+2 : v : v]
					labels[k].Value = b[v+2 : end : end]
					if k == int(s.LabelsStart) {
						s.WireStart = int32(i)
					} else if int(s.WireEnd) != i {
						wire = false
					}
					s.WireEnd = int32(end)
					i = end
					continue
				}
			}
		}
		if b[i] == tagSample {
			if smp, end, ok := fastSample(b, i+1, false); ok {
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
			wire = false
			l, end, err := readLabel(b, j)
			if err != nil {
				return err.in("label", len(labels)-int(s.LabelsStart))
			}
			labels = append(labels, l)
			i = end
		case tagSample:
			smp, end, err := readSample(b, j, false)
			if err != nil {
				return err.in("sample", len(samples)-int(s.SamplesStart))
			}
			samples = append(samples, smp)
			i = end
		case tagExemplar:
			if i, err = r.readExemplar(&s, b, j, false); err != nil {
				return err
			}
		case tagHistogram:
			if i, err = r.readHistogram(&s, b, j); err != nil {
				return err
			}
		default:
			if i, err = skipUnknown(b, i, j, tag, 1<<1|1<<2|1<<3|1<<4, "timeseries"); err != nil {
				return err
			}
		}
	}
	if !wire {
		s.WireStart, s.WireEnd = 0, 0
	}
	labels = r.endSeries(&s, labels, samples)
	return nil
}

// The rest of this file serves Decode and DecodeV2: the two versions share
// the Series model, Sample and Exemplar values and timestamps, and
// histograms kept as raw messages.

// startSeries returns a Series whose elements start at the ends of labels,
// samples and r.Batch's other slices.
func (r *Request) startSeries(labels []model.Label, samples []model.Sample) model.Series {
	return model.Series{
		LabelsStart:     int32(len(labels)),
		SamplesStart:    int32(len(samples)),
		HistogramsStart: int32(len(r.Batch.Histograms)),
		ExemplarsStart:  int32(len(r.Batch.Exemplars)),
	}
}

// endSeries ends s at the ends of labels, samples and r.Batch's other
// slices, moves the labels of its exemplars after its own and appends it to
// r.Batch.Series. It returns labels.
func (r *Request) endSeries(s *model.Series, labels []model.Label, samples []model.Sample) []model.Label {
	s.LabelsEnd = int32(len(labels))
	s.SamplesEnd = int32(len(samples))
	s.HistogramsEnd = int32(len(r.Batch.Histograms))
	s.ExemplarsEnd = int32(len(r.Batch.Exemplars))
	if len(r.exLabels) > 0 {
		labels = r.moveExemplarLabels(s, labels)
	}
	r.Batch.Series = append(r.Batch.Series, *s)
	return labels
}

// readHistogram appends the length-prefixed Histogram at b[i:], a field of
// series s, to r.Batch.Histograms as it is, and returns the index just past
// it.
func (r *Request) readHistogram(s *model.Series, b []byte, i int) (int, *decodeError) {
	start, end, err := readLen(b, i)
	if err != nil {
		return 0, err.in("histogram", len(r.Batch.Histograms)-int(s.HistogramsStart))
	}
	r.Batch.Histograms = append(r.Batch.Histograms, b[start:end:end])
	return end, nil
}

// readExemplar decodes the length-prefixed Exemplar at b[i:], a field of
// series s, as decodeExemplar does, and returns the index just past it.
func (r *Request) readExemplar(s *model.Series, b []byte, i int, v2 bool) (int, *decodeError) {
	start, end, err := readLen(b, i)
	if err == nil {
		err = decodeExemplar(r, b[:end], start, v2)
	}
	if err != nil {
		return 0, err.in("exemplar", len(r.Batch.Exemplars)-int(s.ExemplarsStart))
	}
	return end, nil
}

// moveExemplarLabels appends the labels collected in r.exLabels for the
// exemplars of series s to labels, after the series' own labels, and points
// the exemplars at them.
func (r *Request) moveExemplarLabels(s *model.Series, labels []model.Label) []model.Label {
	off := int32(len(labels))
	labels = append(labels, r.exLabels...)
	ex := r.Batch.Exemplars[s.ExemplarsStart:s.ExemplarsEnd]
	for k := range ex {
		ex[k].LabelsStart += off
		ex[k].LabelsEnd += off
	}
	clear(r.exLabels)
	r.exLabels = r.exLabels[:0]
	return labels
}

// fastSample decodes a length-prefixed Sample at b[i:] if it is encoded as
// an optional value, an optional timestamp and, with v2, an optional start
// timestamp, in that order, with a one-byte length. Otherwise it returns
// ok == false and the general decoder takes over.
func fastSample(b []byte, i int, v2 bool) (s model.Sample, end int, ok bool) {
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
	if v2 && i < end && b[i] == tagV2SampleST {
		st, next := uvarint(b, i+1)
		if next < 0 {
			return s, 0, false
		}
		s.Start = int64(st)
		i = next
	}
	return s, end, i == end
}

// readLabel decodes the length-prefixed Label at b[i:] and returns it with
// the index just past it.
func readLabel(b []byte, i int) (l model.Label, end int, err *decodeError) {
	start, end, err := readLen(b, i)
	if err == nil {
		err = decodeLabel(&l, b[:end], start)
	}
	return l, end, err
}

// decodeLabel decodes the Label in b[i:] into l.
func decodeLabel(l *model.Label, b []byte, i int) *decodeError {
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
			if i, err = skipUnknown(b, i, j, tag, 1<<1|1<<2, "label"); err != nil {
				return err
			}
		}
	}
	return nil
}

// readSample decodes the length-prefixed Sample at b[i:] as decodeSample
// does and returns it with the index just past it.
func readSample(b []byte, i int, v2 bool) (s model.Sample, end int, err *decodeError) {
	start, end, err := readLen(b, i)
	if err == nil {
		err = decodeSample(&s, b[:end], start, v2)
	}
	return s, end, err
}

// decodeSample decodes the Sample in b[i:] into s. With v2 it decodes an
// io.prometheus.write.v2.Sample, which adds the start timestamp.
func decodeSample(s *model.Sample, b []byte, i int, v2 bool) *decodeError {
	known := fieldSet(1<<1 | 1<<2)
	if v2 {
		known |= 1 << 3
	}
	for i < len(b) {
		tag, j, err := readTag(b, i)
		if err != nil {
			return err
		}
		switch {
		case tag == tagSampleVal:
			if s.Value, i, err = readDouble(b, j); err != nil {
				return err
			}
		case tag == tagSampleTS:
			if s.Timestamp, i, err = readInt64(b, j, "timestamp"); err != nil {
				return err
			}
		case tag == tagV2SampleST && v2:
			if s.Start, i, err = readInt64(b, j, "start_timestamp"); err != nil {
				return err
			}
		default:
			if i, err = skipUnknown(b, i, j, tag, known, "sample"); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeExemplar decodes the Exemplar in b[i:] and appends it to
// r.Batch.Exemplars, its labels to r.exLabels. With v2 it decodes an
// io.prometheus.write.v2.Exemplar, whose labels are symbol refs, else a
// prometheus.Exemplar, whose labels are Label messages.
func decodeExemplar(r *Request, b []byte, i int, v2 bool) *decodeError {
	at := i
	e := model.Exemplar{LabelsStart: int32(len(r.exLabels))}
	var (
		name []byte // v2: a label name whose value ref is still to come
		odd  bool   // v2: an odd number of label refs so far
	)
	for i < len(b) {
		tag, j, err := readTag(b, i)
		if err != nil {
			return err
		}
		switch {
		case tag == tagExVal:
			if e.Value, i, err = readDouble(b, j); err != nil {
				return err
			}
		case tag == tagExTS:
			if e.Timestamp, i, err = readInt64(b, j, "timestamp"); err != nil {
				return err
			}
		case tag == tagLabel && !v2:
			l, end, err := readLabel(b, j)
			if err != nil {
				return err.in("label", len(r.exLabels)-int(e.LabelsStart))
			}
			r.exLabels = append(r.exLabels, l)
			i = end
		case (tag == tagV2Refs || tag == tagV2Ref) && v2:
			if r.exLabels, name, odd, i, err = readLabelRefs(r.exLabels, r.symbols, b, tag, j, name, odd); err != nil {
				return err
			}
		default:
			if i, err = skipUnknown(b, i, j, tag, 1<<1|1<<2|1<<3, "exemplar"); err != nil {
				return err
			}
		}
	}
	if odd {
		return oddRefs(at, len(r.exLabels)-int(e.LabelsStart))
	}
	e.LabelsEnd = int32(len(r.exLabels))
	r.Batch.Exemplars = append(r.Batch.Exemplars, e)
	return nil
}
