package receive

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/ferrymetrics/ferry/wal/model"
)

// Tags of the io.prometheus.write.v2 fields DecodeV2 understands, besides
// the Sample and Exemplar value and timestamp, which are those of
// Remote-Write 1.0. Request fields 1 to 3 are reserved (they were
// prometheus.WriteRequest's) and, like TimeSeries field 6 (the former
// created_timestamp), skipped as unknown.
const (
	tagV2Symbol    = 4<<3 | wireBytes  // Request.symbols
	tagV2Series    = 5<<3 | wireBytes  // Request.timeseries
	tagV2Refs      = 1<<3 | wireBytes  // TimeSeries.labels_refs, Exemplar.labels_refs (packed)
	tagV2Ref       = 1<<3 | wireVarint // the same, one ref not packed
	tagV2Sample    = 2<<3 | wireBytes  // TimeSeries.samples
	tagV2Histogram = 3<<3 | wireBytes  // TimeSeries.histograms
	tagV2Exemplar  = 4<<3 | wireBytes  // TimeSeries.exemplars
	tagV2Metadata  = 5<<3 | wireBytes  // TimeSeries.metadata
	tagV2SampleST  = 3<<3 | wireVarint // Sample.start_timestamp
	tagV2MetaType  = 1<<3 | wireVarint // Metadata.type
	tagV2MetaHelp  = 3<<3 | wireVarint // Metadata.help_ref
	tagV2MetaUnit  = 4<<3 | wireVarint // Metadata.unit_ref
)

// Names of elements in errors.
const (
	v2RequestName   = "request"
	v2SeriesName    = "timeseries"
	v2MetadataName  = "metadata"
	v2LabelRefsName = "labels_refs"
)

// DecodeV2 parses buf, an uncompressed protobuf io.prometheus.write.v2.Request
// (Remote-Write 2.0), into r.Batch. It resets r first and reuses its slices.
// Label names and values, and metadata help and unit, alias the symbols in
// buf; native histograms are kept as their raw Histogram messages. Use
// Validate to check the labels.
//
// DecodeV2 rejects what Decode rejects, with the same errors, and a varint
// of a packed field running past the field's end. It also rejects, with
// errors wrapping ErrCorrupt that name the element and the byte offset, the
// requests the Remote-Write 2.0 specification forbids: a non-empty symbols
// table whose first symbol is not the empty string, series without a
// symbols table, a label, exemplar label or metadata ref outside the
// symbols table, an odd number of label refs, and a series with both
// samples and histograms. A series with neither is accepted: Prometheus
// sends every exemplar in a series of its own, without samples. On error,
// r holds the series decoded before the problem.
func DecodeV2(buf []byte, r *Request) error {
	r.Reset()
	if len(buf) > maxInput {
		return fmt.Errorf("%w: decode write request: %d bytes exceed the limit of %d", ErrTooLarge, len(buf), maxInput)
	}
	// First pass: the symbols table, wherever its entries are in the
	// message, and the structure of the top level. Series refer to symbols
	// by index, so the table is complete before any series is decoded.
	firstSeries, firstSymbol, series := -1, -1, 0
	for i := 0; i < len(buf); {
		if buf[i] == tagV2Series { // fast path, as in Decode; errors are handled below
			if n, j := uvarint(buf, i+1); j > 0 && n <= uint64(len(buf)-j) {
				if firstSeries < 0 {
					firstSeries = i
				}
				series++
				i = j + int(n)
				continue
			}
		}
		tag, j, err := readTag(buf, i)
		if err != nil {
			return err
		}
		switch tag {
		case tagV2Symbol:
			start, end, err := readLen(buf, j)
			if err != nil {
				return err.in("symbol", len(r.symbols))
			}
			if firstSymbol < 0 {
				firstSymbol = i
			}
			r.symbols = append(r.symbols, buf[start:end:end])
			i = end
		case tagV2Series:
			_, end, err := readLen(buf, j)
			if err != nil {
				return err.in(v2SeriesName, series)
			}
			if firstSeries < 0 {
				firstSeries = i
			}
			series++
			i = end
		default:
			if i, err = skipUnknown(buf, i, j, tag, 1<<4|1<<5, v2RequestName); err != nil {
				return err
			}
		}
	}
	if len(r.symbols) > 0 && len(r.symbols[0]) > 0 {
		return corrupt(firstSymbol, kindSpec, "the symbols table does not start with the empty string").in("symbol", 0)
	}
	if series == 0 {
		return nil
	}
	if len(r.symbols) == 0 {
		return corrupt(firstSeries, kindSpec, "series without a symbols table").in(v2SeriesName, 0)
	}

	// Second pass: the series, in order. The first pass checked the
	// structure of the top level.
	for i := firstSeries; i < len(buf); {
		if buf[i] == tagV2Series { // fast path, as in Decode
			if n, j := uvarint(buf, i+1); j > 0 && n <= uint64(len(buf)-j) {
				end := j + int(n)
				if err := decodeSeriesV2(r, buf[:end], j); err != nil {
					return err.in(v2SeriesName, len(r.Batch.Series))
				}
				i = end
				continue
			}
		}
		tag, j, err := readTag(buf, i)
		if err != nil {
			return err
		}
		if tag != tagV2Series {
			if i, err = skipField(buf, j, tag); err != nil {
				return err.in("field", int(tag>>3))
			}
			continue
		}
		start, end, err := readLen(buf, j)
		if err == nil {
			err = decodeSeriesV2(r, buf[:end], start)
		}
		if err != nil {
			return err.in(v2SeriesName, len(r.Batch.Series))
		}
		i = end
	}
	return nil
}

// decodeSeriesV2 decodes the TimeSeries in b[i:] and appends it to r.Batch.
func decodeSeriesV2(r *Request, b []byte, i int) (err *decodeError) {
	// Work on local copies of the slices, which the compiler can keep in
	// registers; store them back however we return.
	labels, samples := r.Batch.Labels, r.Batch.Samples
	defer func() { r.Batch.Labels, r.Batch.Samples = labels, samples }()

	at := i
	s := r.startSeries(labels, samples)
	var (
		name []byte // name of a label whose value ref is still to come
		odd  bool   // an odd number of label refs so far
		meta metadataV2
	)
	for i < len(b) {
		switch b[i] {
		case tagV2Refs: // fast path: packed refs with a one-byte length
			if i+1 < len(b) && b[i+1] < 0x80 && int(b[i+1]) <= len(b)-i-2 {
				n := int(b[i+1])
				var err *decodeError
				labels, name, odd, err = appendLabelRefs(labels, r.symbols, b[:i+2+n], i+2, name, odd)
				if err != nil {
					return err.in(v2LabelRefsName, -1)
				}
				i += 2 + n
				continue
			}
		case tagV2Sample:
			if smp, end, ok := fastSample(b, i+1, true); ok {
				samples = append(samples, smp)
				i = end
				continue
			}
		case tagV2Metadata:
			// An empty message, as senders encoding metadata as a
			// non-optional field send for series without any, changes
			// nothing.
			if i+1 < len(b) && b[i+1] == 0 {
				i += 2
				continue
			}
		}
		tag, j, err := readTag(b, i)
		if err != nil {
			return err
		}
		switch tag {
		case tagV2Refs, tagV2Ref:
			if labels, name, odd, i, err = readLabelRefs(labels, r.symbols, b, tag, j, name, odd); err != nil {
				return err
			}
		case tagV2Sample:
			smp, end, err := readSample(b, j, true)
			if err != nil {
				return err.in("sample", len(samples)-int(s.SamplesStart))
			}
			samples = append(samples, smp)
			i = end
		case tagV2Histogram:
			if i, err = r.readHistogram(&s, b, j); err != nil {
				return err
			}
		case tagV2Exemplar:
			if i, err = r.readExemplar(&s, b, j, true); err != nil {
				return err
			}
		case tagV2Metadata:
			// A message field seen twice is merged: later fields win.
			start, end, err := readLen(b, j)
			if err == nil {
				err = decodeMetadataV2(&meta, b[:end], start)
			}
			if err != nil {
				return err.in(v2MetadataName, -1)
			}
			i = end
		default:
			if i, err = skipUnknown(b, i, j, tag, 1<<1|1<<2|1<<3|1<<4|1<<5, v2SeriesName); err != nil {
				return err
			}
		}
	}
	if odd {
		return oddRefs(at, len(labels)-int(s.LabelsStart))
	}
	nSamples, nHist := len(samples)-int(s.SamplesStart), len(r.Batch.Histograms)-int(s.HistogramsStart)
	if nSamples > 0 && nHist > 0 {
		return corrupt(at, kindSpec, fmt.Sprintf("%d samples and %d histograms in one series: a series carries samples or histograms, not both", nSamples, nHist))
	}
	if meta.seen {
		// Refs are resolved once the message is merged: a ref out of the
		// table counts only if no later occurrence replaced it.
		m := model.Metadata{Type: meta.typ}
		var err *decodeError
		if m.Help, err = symbol(r.symbols, meta.help, meta.helpAt, "help"); err != nil {
			return err.in("help_ref", -1).in(v2MetadataName, -1)
		}
		if m.Unit, err = symbol(r.symbols, meta.unit, meta.unitAt, "unit"); err != nil {
			return err.in("unit_ref", -1).in(v2MetadataName, -1)
		}
		if m.Type != model.TypeUnknown || len(m.Help) > 0 || len(m.Unit) > 0 {
			r.appendMetadataV2(&m, labels[s.LabelsStart:])
		}
	}
	labels = r.endSeries(&s, labels, samples)
	return nil
}

// appendMetadataV2 appends m, the metadata of a series with labels ls, to
// r.Batch.Metadata under the series' family name, unless the series has no
// metric name or the last metadata appended is the same. The family name
// is the metric name, less _bucket, _count or _sum for the series of a
// histogram or summary (whose 2.0 metadata names the family's type), so
// that foo_bucket, foo_count and foo_sum describe one family foo, as 1.0
// metadata and Prometheus' scrape cache have it.
func (r *Request) appendMetadataV2(m *model.Metadata, ls []model.Label) {
	for k := range ls {
		if string(ls[k].Name) == "__name__" {
			m.Family = ls[k].Value
			break
		}
	}
	if len(m.Family) == 0 {
		return
	}
	switch m.Type {
	case model.TypeHistogram, model.TypeGaugeHistogram, model.TypeSummary:
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if f, ok := bytes.CutSuffix(m.Family, []byte(suffix)); ok && len(f) > 0 {
				m.Family = f
				break
			}
		}
	}
	if n := len(r.Batch.Metadata); n > 0 {
		last := &r.Batch.Metadata[n-1]
		if last.Type == m.Type && bytes.Equal(last.Family, m.Family) && bytes.Equal(last.Help, m.Help) && bytes.Equal(last.Unit, m.Unit) {
			return
		}
	}
	r.Batch.Metadata = append(r.Batch.Metadata, *m)
}

// readLabelRefs resolves the label refs of the field with the given tag,
// packed or a single varint, whose value is at b[j:], as appendLabelRefs
// does, and returns the index just past the field.
func readLabelRefs(dst []model.Label, syms [][]byte, b []byte, tag uint64, j int, name []byte, odd bool) ([]model.Label, []byte, bool, int, *decodeError) {
	start, end := j, 0
	var err *decodeError
	if tag == tagV2Refs {
		start, end, err = readLen(b, j)
	} else {
		_, end, err = readVarint(b, j)
	}
	if err == nil {
		dst, name, odd, err = appendLabelRefs(dst, syms, b[:end], start, name, odd)
	}
	if err != nil {
		return dst, name, odd, 0, err.in(v2LabelRefsName, -1)
	}
	return dst, name, odd, end, nil
}

// oddRefs is the error for an odd number of label refs, pairs labels and a
// name, in the message at offset at.
func oddRefs(at, pairs int) *decodeError {
	return corrupt(at, kindSpec, fmt.Sprintf("odd number of label refs (%d)", 2*pairs+1)).in(v2LabelRefsName, -1)
}

// appendLabelRefs resolves the varint symbol refs in b[i:] and appends the
// labels they make to dst. name and odd carry a name whose value ref is
// still to come across calls: label refs may come in several fields.
func appendLabelRefs(dst []model.Label, syms [][]byte, b []byte, i int, name []byte, odd bool) ([]model.Label, []byte, bool, *decodeError) {
	for i < len(b) {
		if !odd {
			if dst, i = appendRefPairs(dst, syms, b, i); i == len(b) {
				break
			}
		}
		sym, next, err := readSymbol(b, i, syms, "label")
		if err != nil {
			if err.kind == kindTruncated { // b ends with the packed field
				err.kind, err.msg = kindPacked, "varint runs past the end of the packed field"
			}
			return dst, nil, odd, err
		}
		if odd {
			dst = append(dst, model.Label{Name: name, Value: sym})
		} else {
			name = sym
		}
		odd = !odd
		i = next
	}
	return dst, name, odd, nil
}

// appendRefPairs is the fast path of appendLabelRefs: it appends the labels
// of the name and value refs at b[i:] while both are varints of one or two
// bytes within the symbols table, and returns the index of the first ref it
// left. It calls nothing in its loop, so that the compiler keeps its
// variables in registers.
func appendRefPairs(dst []model.Label, syms [][]byte, b []byte, i int) ([]model.Label, int) {
	dst = slices.Grow(dst, (len(b)-i)/2) // at most one label per 2 bytes
	out := dst[:cap(dst)]
	k := len(dst)
	for k < len(out) {
		n, j := shortRef(b, i)
		if j < 0 || n >= uint(len(syms)) {
			break
		}
		v, next := shortRef(b, j)
		if next < 0 || v >= uint(len(syms)) {
			break
		}
		// Store the fields one by one: building a Label and copying it
		// costs more.
		out[k].Name = syms[n]
		out[k].Value = syms[v]
		k++
		i = next
	}
	return out[:k], i
}

// shortRef decodes the varint at b[i:] if it takes one or two bytes, and
// returns it with the index just past it, or next < 0.
func shortRef(b []byte, i int) (ref uint, next int) {
	if i < len(b) {
		if c := b[i]; c < 0x80 {
			return uint(c), i + 1
		}
		if i+1 < len(b) && b[i+1] < 0x80 {
			return uint(b[i]&0x7f) | uint(b[i+1])<<7, i + 2
		}
	}
	return 0, -1
}

// readSymbol reads the varint symbol ref at b[i:] and returns the symbol it
// refers to with the index just past it. Like every protobuf decoder, it
// truncates the value to the field's 32 bits.
func readSymbol(b []byte, i int, syms [][]byte, what string) ([]byte, int, *decodeError) {
	v, next, err := readVarint(b, i)
	if err != nil {
		return nil, 0, err
	}
	sym, err := symbol(syms, uint32(v), i, what)
	return sym, next, err
}

// symbol returns the symbol ref refers to; the ref was read at offset at.
func symbol(syms [][]byte, ref uint32, at int, what string) ([]byte, *decodeError) {
	if uint64(ref) >= uint64(len(syms)) {
		return nil, corrupt(at, kindSpec, fmt.Sprintf("%s ref %d outside the symbols table of %d", what, ref, len(syms)))
	}
	return syms[ref], nil
}

// metadataV2 is a series' Metadata message as decoded so far.
type metadataV2 struct {
	seen           bool
	typ            model.MetricType
	help, unit     uint32 // symbol refs
	helpAt, unitAt int    // their offsets
}

// decodeMetadataV2 decodes the Metadata in b[i:] into m, merging it with
// what m holds: fields present replace those decoded before.
func decodeMetadataV2(m *metadataV2, b []byte, i int) *decodeError {
	m.seen = true
	for i < len(b) {
		tag, j, err := readTag(b, i)
		if err != nil {
			return err
		}
		switch tag {
		case tagV2MetaType:
			if m.typ, i, err = readMetricType(b, j); err != nil {
				return err
			}
		case tagV2MetaHelp, tagV2MetaUnit:
			v, next, err := readVarint(b, j)
			if err != nil {
				if tag == tagV2MetaHelp {
					return err.in("help_ref", -1)
				}
				return err.in("unit_ref", -1)
			}
			if tag == tagV2MetaHelp {
				m.help, m.helpAt = uint32(v), j
			} else {
				m.unit, m.unitAt = uint32(v), j
			}
			i = next
		default:
			if i, err = skipUnknown(b, i, j, tag, 1<<1|1<<3|1<<4, v2MetadataName); err != nil {
				return err
			}
		}
	}
	return nil
}
