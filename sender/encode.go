package sender

import (
	"encoding/binary"
	"math"
	"math/bits"

	"github.com/ferrymetrics/ferry/wal"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// itemKind says what an item carries.
type itemKind uint8

const (
	kindSample    itemKind = iota // a float sample: t, v, st
	kindHistogram                 // a native histogram: hist
	kindExemplar                  // an exemplar: t, v, ex
)

// item is one sample, native histogram or exemplar waiting in a shard. t
// is the timestamp of any of them.
type item struct {
	wire []byte // the series' labels in wire form, shared: never modified
	ref  uint64
	t    int64
	v    float64
	st   int64  // a float sample's start timestamp in ms, 0 if unknown
	rec  uint64 // sequence number of the WAL record it came from
	x    *extra // a histogram's or an exemplar's data; nil for a float sample
	kind itemKind
	// tenant is the series' tenant's index in the sender's tenantTable,
	// for an endpoint that splits requests by tenant. It fits in what
	// would be padding.
	tenant uint32
}

// extra is the part of a histogram or an exemplar that does not fit the
// fields of a float sample, kept apart so that the items of float samples,
// most of a queue, stay small.
type extra struct {
	hist []byte        // a native histogram: a protobuf Histogram message
	ex   labels.Labels // an exemplar's own labels
}

// Protobuf tags (field number << 3 | wire type) of the messages the encoder
// writes. Remote-Write 1.0: prompb/remote.proto and prompb/types.proto.
const (
	tagV1Timeseries = 1<<3 | 2 // WriteRequest.timeseries
	tagV1Metadata   = 3<<3 | 2 // WriteRequest.metadata
	tagV1Labels     = 1<<3 | 2 // TimeSeries.labels
	tagV1Samples    = 2<<3 | 2 // TimeSeries.samples
	tagV1Exemplars  = 3<<3 | 2 // TimeSeries.exemplars
	tagV1Histograms = 4<<3 | 2 // TimeSeries.histograms
	tagName         = 1<<3 | 2 // Label.name
	tagValue        = 2<<3 | 2 // Label.value
	tagSampleV      = 1<<3 | 1 // Sample.value, fixed64
	tagSampleT      = 2 << 3   // Sample.timestamp, varint
	tagV1ExLabels   = 1<<3 | 2 // Exemplar.labels
	tagExV          = 2<<3 | 1 // Exemplar.value (1.0 and 2.0), fixed64
	tagExT          = 3 << 3   // Exemplar.timestamp (1.0 and 2.0), varint
	tagMetaType     = 1 << 3   // MetricMetadata.type, varint
	tagMetaFamily   = 2<<3 | 2 // MetricMetadata.metric_family_name
	tagMetaHelp     = 4<<3 | 2 // MetricMetadata.help
	tagMetaUnit     = 5<<3 | 2 // MetricMetadata.unit
)

// Remote-Write 2.0: prompb/io/prometheus/write/v2/types.proto.
const (
	tagV2Symbols    = 4<<3 | 2 // Request.symbols
	tagV2Timeseries = 5<<3 | 2 // Request.timeseries
	tagV2LabelsRefs = 1<<3 | 2 // TimeSeries.labels_refs, packed
	tagV2Samples    = 2<<3 | 2 // TimeSeries.samples
	tagV2Histograms = 3<<3 | 2 // TimeSeries.histograms
	tagV2Exemplars  = 4<<3 | 2 // TimeSeries.exemplars
	tagV2Metadata   = 5<<3 | 2 // TimeSeries.metadata
	tagV2SampleST   = 3 << 3   // Sample.start_timestamp, varint
	tagV2ExRefs     = 1<<3 | 2 // Exemplar.labels_refs, packed
	tagV2MetaType   = 1 << 3   // Metadata.type, varint
	tagV2MetaHelp   = 3 << 3   // Metadata.help_ref, varint
	tagV2MetaUnit   = 4 << 3   // Metadata.unit_ref, varint
)

// histogramStartTimestampField is io.prometheus.write.v2.Histogram's
// start_timestamp, which prometheus.Histogram does not define; the two
// messages agree on fields 1 to 16.
const histogramStartTimestampField = 17

func sizeVarint(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// sizeField is the size of a length-delimited field of n bytes.
func sizeField(n int) int { return 1 + sizeVarint(uint64(n)) + n }

func appendField(b []byte, tag byte, n int) []byte {
	return binary.AppendUvarint(append(b, tag), uint64(n))
}

func labelSize(name, value string) int { return sizeField(len(name)) + sizeField(len(value)) }

// appendValueTime appends the value (fixed64) and timestamp (varint) fields
// of a Sample or an Exemplar, with tags vTag and tTag.
func appendValueTime(b []byte, vTag, tTag byte, v float64, t int64) []byte {
	b = binary.LittleEndian.AppendUint64(append(b, vTag), math.Float64bits(v))
	return binary.AppendUvarint(append(b, tTag), uint64(t))
}

func sampleSize(t int64) int { return 1 + 8 + 1 + sizeVarint(uint64(t)) }

func sampleSizeV2(t, st int64) int {
	n := sampleSize(t)
	if st != 0 {
		n += 1 + sizeVarint(uint64(st))
	}
	return n
}

// labelsSizeV1 is the size of ls as repeated Label fields.
func labelsSizeV1(ls labels.Labels) int {
	n := 0
	ls.Range(func(l labels.Label) { n += sizeField(labelSize(l.Name, l.Value)) })
	return n
}

func appendLabelsV1(b []byte, tag byte, ls labels.Labels) []byte {
	ls.Range(func(l labels.Label) {
		b = appendField(b, tag, labelSize(l.Name, l.Value))
		b = append(appendField(b, tagName, len(l.Name)), l.Name...)
		b = append(appendField(b, tagValue, len(l.Value)), l.Value...)
	})
	return b
}

func exemplarSizeV1(it *item) int {
	return labelsSizeV1(it.x.ex) + 1 + 8 + 1 + sizeVarint(uint64(it.t))
}

func sizeRefs(refs []uint32) int {
	n := 0
	for _, r := range refs {
		n += sizeVarint(uint64(r))
	}
	return n
}

func appendRefs(b []byte, tag byte, refs []uint32) []byte {
	if len(refs) == 0 {
		return b
	}
	b = appendField(b, tag, sizeRefs(refs))
	for _, r := range refs {
		b = binary.AppendUvarint(b, uint64(r))
	}
	return b
}

// encoded is a request body and what it carries.
type encoded struct {
	body    []byte
	version Protocol
	// samples, histograms and exemplars count what the body carries;
	// metadata counts MetricMetadata entries (1.0) or series with metadata
	// (2.0).
	samples, histograms, exemplars, metadata int
	// orphans counts exemplars left out of a 2.0 request because it
	// carries no sample or histogram of their series.
	orphans int
}

// family is the metadata found for a metric name in one request.
type family struct {
	name             string // the family it was found under
	md               wal.Metadata
	helpRef, unitRef uint32 // 2.0 symbols, once interned
	interned         bool
}

// encoder builds snappy-compressed Remote-Write 1.0 and 2.0 requests
// without allocating once its buffers and tables have grown.
type encoder struct {
	// meta supplies metric metadata; nil sends none.
	meta wal.MetadataSource
	// maxMetadata caps the MetricMetadata entries of a 1.0 request; 0 for
	// no cap.
	maxMetadata int

	pb, ts, comp []byte
	sink         byte // keeps prefetch's loads

	// Per request.
	syms    map[string]uint32 // 2.0 symbol → index in symList
	symList []string
	refs    []uint32 // labels_refs of the current series
	// prev holds the previous series' label names and values with their
	// symbols, by position: series of a batch share most of them, and a
	// string comparison is cheaper than a map lookup.
	prev     []symbolRef
	exRefs   []uint32 // labels_refs of the current series' exemplars...
	exEnds   []int    // ...each ending here in exRefs
	byName   map[string]int32
	families []family
}

// encode marshals items in version v, one TimeSeries per run of
// consecutive items of the same series (two in 2.0 when the run holds both
// floats and histograms), and snappy-compresses it. The body is valid until
// the next call.
func (e *encoder) encode(items []item, v Protocol) encoded {
	if e.meta != nil {
		if e.byName == nil {
			e.byName = map[string]int32{}
		}
		clear(e.byName)
		clear(e.families)
		e.families = e.families[:0]
	}
	var out encoded
	if v == RemoteWrite2 {
		out = e.encodeV2(items)
	} else {
		out = e.encodeV1(items)
	}
	out.version = v
	// s2's snappy-compatible encoder: standard snappy block format, faster
	// than github.com/golang/snappy's.
	if n := s2.MaxEncodedLen(len(e.pb)); cap(e.comp) < n {
		e.comp = make([]byte, n)
	}
	e.comp = s2.EncodeSnappy(e.comp[:cap(e.comp)], e.pb)
	out.body = e.comp
	return out
}

// runEnd returns the end of the run of items of items[i]'s series starting
// at i, and what kinds it holds.
func runEnd(items []item, i int) (j, samples, histograms, exemplars int) {
	ref := items[i].ref
	for j = i; j < len(items) && items[j].ref == ref; j++ {
		switch items[j].kind {
		case kindSample:
			samples++
		case kindHistogram:
			histograms++
		default:
			exemplars++
		}
	}
	return j, samples, histograms, exemplars
}

// appendExemplarsV1 appends the exemplars of run as TimeSeries.exemplars.
func appendExemplarsV1(b []byte, run []item) []byte {
	for k := range run {
		if it := &run[k]; it.kind == kindExemplar {
			b = appendField(b, tagV1Exemplars, exemplarSizeV1(it))
			b = appendLabelsV1(b, tagV1ExLabels, it.x.ex)
			b = appendValueTime(b, tagExV, tagExT, it.v, it.t)
		}
	}
	return b
}

// prefetch loads the encoded labels of the series of items, as
// seriesMemo.prefetch does for refs.
func (e *encoder) prefetch(items []item) {
	var sink byte
	for k := range items {
		if w := items[k].wire; len(w) > 0 {
			sink += w[0] + w[len(w)-1]
		}
	}
	e.sink = sink
}

func (e *encoder) encodeV1(items []item) encoded {
	var out encoded
	b := e.pb[:0]
	next := 0 // items before it were prefetched
	for i := 0; i < len(items); {
		if i >= next {
			next = min(i+prefetchAhead, len(items))
			e.prefetch(items[i:next])
		}
		j, ns, nh, nx := runEnd(items, i)
		run := items[i:j]
		i = j
		lb := run[0].wire
		if e.meta != nil {
			e.family(wireName(lb))
		}
		out.samples += ns
		out.histograms += nh
		out.exemplars += nx
		// Prometheus 2.x appends a TimeSeries' exemplars before its
		// histograms, and refuses an exemplar of a series that does not
		// exist yet: a histogram series' exemplars go in a TimeSeries of
		// their own after its histograms.
		split := nh > 0 && nx > 0
		tsSize, exSize := len(lb), 0
		for k := range run {
			it := &run[k]
			switch it.kind {
			case kindSample:
				tsSize += sizeField(sampleSize(it.t))
			case kindHistogram:
				tsSize += sizeField(histogramLenV1(it.x.hist))
			default:
				exSize += sizeField(exemplarSizeV1(it))
			}
		}
		if !split {
			tsSize += exSize
		}
		b = appendField(b, tagV1Timeseries, tsSize)
		b = append(b, lb...)
		// Fields in field order: samples, exemplars, histograms.
		for k := range run {
			if it := &run[k]; it.kind == kindSample {
				b = appendField(b, tagV1Samples, sampleSize(it.t))
				b = appendValueTime(b, tagSampleV, tagSampleT, it.v, it.t)
			}
		}
		if nx > 0 && !split {
			b = appendExemplarsV1(b, run)
		}
		if nh > 0 {
			for k := range run {
				if it := &run[k]; it.kind == kindHistogram {
					b = appendField(b, tagV1Histograms, histogramLenV1(it.x.hist))
					b = appendHistogramV1(b, it.x.hist)
				}
			}
		}
		if split {
			b = appendField(b, tagV1Timeseries, len(lb)+exSize)
			b = append(b, lb...)
			b = appendExemplarsV1(b, run)
		}
	}
	for k := range e.families {
		f := &e.families[k]
		if e.maxMetadata > 0 && out.metadata >= e.maxMetadata {
			break
		}
		n := sizeField(len(f.name))
		if f.md.Type != 0 {
			n += 1 + sizeVarint(uint64(f.md.Type))
		}
		if f.md.Help != "" {
			n += sizeField(len(f.md.Help))
		}
		if f.md.Unit != "" {
			n += sizeField(len(f.md.Unit))
		}
		b = appendField(b, tagV1Metadata, n)
		if f.md.Type != 0 {
			b = binary.AppendUvarint(append(b, tagMetaType), uint64(f.md.Type))
		}
		b = append(appendField(b, tagMetaFamily, len(f.name)), f.name...)
		if f.md.Help != "" {
			b = append(appendField(b, tagMetaHelp, len(f.md.Help)), f.md.Help...)
		}
		if f.md.Unit != "" {
			b = append(appendField(b, tagMetaUnit, len(f.md.Unit)), f.md.Unit...)
		}
		out.metadata++
	}
	e.pb = b
	return out
}

// family returns the index in e.families of the metadata of the family a
// metric called name belongs to (wal.FamilyOf), or -1 if there is none.
// Each family appears once per request.
func (e *encoder) family(name string) int32 {
	if name == "" {
		return -1
	}
	if k, ok := e.byName[name]; ok {
		return k
	}
	k := int32(-1)
	if md, ok := e.meta.Metadata(name); ok {
		var seen bool
		if k, seen = e.byName[md.Family]; !seen {
			k = e.addFamily(md.Family, md)
			e.byName[md.Family] = k
		}
	}
	e.byName[name] = k
	return k
}

func (e *encoder) addFamily(name string, md wal.Metadata) int32 {
	e.families = append(e.families, family{name: name, md: md})
	return int32(len(e.families) - 1)
}

type symbolRef struct {
	s   string
	ref uint32
}

// cachedSymbol is symbol for the k-th string of a series' labels.
func (e *encoder) cachedSymbol(k int, s string) uint32 {
	if k < len(e.prev) {
		if p := &e.prev[k]; p.s == s {
			return p.ref
		}
		r := e.symbol(s)
		e.prev[k] = symbolRef{s, r}
		return r
	}
	r := e.symbol(s)
	e.prev = append(e.prev, symbolRef{s, r})
	return r
}

// symbol returns s's index in the 2.0 symbols table, adding it.
func (e *encoder) symbol(s string) uint32 {
	if r, ok := e.syms[s]; ok {
		return r
	}
	r := uint32(len(e.symList))
	e.symList = append(e.symList, s)
	e.syms[s] = r
	return r
}

func (e *encoder) encodeV2(items []item) encoded {
	var out encoded
	if e.syms == nil {
		e.syms = map[string]uint32{}
	}
	clear(e.syms)
	clear(e.symList)
	e.symList = e.symList[:0]
	clear(e.prev)
	e.prev = e.prev[:0]
	e.symbol("") // the table starts with the empty string
	b := e.ts[:0]
	for i := 0; i < len(items); {
		j, ns, nh, nx := runEnd(items, i)
		run := items[i:j]
		i = j
		if ns == 0 && nh == 0 {
			// A TimeSeries without samples or histograms is invalid in
			// 2.0 (Prometheus refuses the whole request).
			out.orphans += nx
			continue
		}
		refs := e.refs[:0]
		name := ""
		for w, off := run[0].wire, 0; off < len(w); {
			var lname, lvalue string
			lname, lvalue, off = wireLabel(w, off)
			if lname == model.MetricNameLabel {
				name = lvalue
			}
			k := len(refs)
			refs = append(refs, e.cachedSymbol(k, lname), e.cachedSymbol(k+1, lvalue))
		}
		e.refs = refs
		var md wal.Metadata
		var helpRef, unitRef uint32
		if e.meta != nil {
			if k := e.family(name); k >= 0 {
				f := &e.families[k]
				if !f.interned {
					f.helpRef, f.unitRef, f.interned = e.symbol(f.md.Help), e.symbol(f.md.Unit), true
				}
				md, helpRef, unitRef = f.md, f.helpRef, f.unitRef
			}
		}
		metaSize := 0
		if md.Type != 0 {
			metaSize += 1 + sizeVarint(uint64(md.Type))
		}
		if helpRef != 0 {
			metaSize += 1 + sizeVarint(uint64(helpRef))
		}
		if unitRef != 0 {
			metaSize += 1 + sizeVarint(uint64(unitRef))
		}
		// Exemplars ride with the floats, or else with the histograms.
		exSize := 0
		if nx > 0 {
			e.exRefs, e.exEnds = e.exRefs[:0], e.exEnds[:0]
			for k := range run {
				it := &run[k]
				if it.kind != kindExemplar {
					continue
				}
				start := len(e.exRefs)
				it.x.ex.Range(func(l labels.Label) {
					e.exRefs = append(e.exRefs, e.symbol(l.Name), e.symbol(l.Value))
				})
				e.exEnds = append(e.exEnds, len(e.exRefs))
				exSize += sizeField(exemplarSizeV2(e.exRefs[start:], it.t))
			}
			out.exemplars += nx
		}
		refsSize := sizeRefs(refs)
		head := sizeField(refsSize)
		if metaSize > 0 {
			head += sizeField(metaSize)
		}
		for pass := range 2 {
			kind, n := kindSample, ns
			if pass == 1 {
				kind, n = kindHistogram, nh
			}
			if n == 0 {
				continue
			}
			withExemplars := nx > 0 && (kind == kindSample || ns == 0)
			tsSize := head
			for k := range run {
				it := &run[k]
				if it.kind != kind {
					continue
				}
				if kind == kindSample {
					tsSize += sizeField(sampleSizeV2(it.t, it.st))
				} else {
					tsSize += sizeField(len(it.x.hist))
				}
			}
			if withExemplars {
				tsSize += exSize
			}
			b = appendField(b, tagV2Timeseries, tsSize)
			b = appendRefs(b, tagV2LabelsRefs, refs)
			for k := range run {
				it := &run[k]
				if it.kind != kind {
					continue
				}
				if kind == kindHistogram {
					b = append(appendField(b, tagV2Histograms, len(it.x.hist)), it.x.hist...)
					continue
				}
				b = appendField(b, tagV2Samples, sampleSizeV2(it.t, it.st))
				b = appendValueTime(b, tagSampleV, tagSampleT, it.v, it.t)
				if it.st != 0 {
					b = binary.AppendUvarint(append(b, tagV2SampleST), uint64(it.st))
				}
			}
			if withExemplars {
				x, start := 0, 0
				for k := range run {
					it := &run[k]
					if it.kind != kindExemplar {
						continue
					}
					exRefs := e.exRefs[start:e.exEnds[x]]
					start = e.exEnds[x]
					x++
					b = appendField(b, tagV2Exemplars, exemplarSizeV2(exRefs, it.t))
					b = appendRefs(b, tagV2ExRefs, exRefs)
					b = appendValueTime(b, tagExV, tagExT, it.v, it.t)
				}
			}
			if metaSize > 0 {
				b = appendField(b, tagV2Metadata, metaSize)
				if md.Type != 0 {
					b = binary.AppendUvarint(append(b, tagV2MetaType), uint64(md.Type))
				}
				if helpRef != 0 {
					b = binary.AppendUvarint(append(b, tagV2MetaHelp), uint64(helpRef))
				}
				if unitRef != 0 {
					b = binary.AppendUvarint(append(b, tagV2MetaUnit), uint64(unitRef))
				}
			}
			if metaSize > 0 {
				out.metadata++
			}
		}
		out.samples += ns
		out.histograms += nh
	}
	e.ts = b
	// The symbols go first, as in the canonical field order, for receivers
	// that resolve references while they read.
	p := e.pb[:0]
	for _, s := range e.symList {
		p = append(appendField(p, tagV2Symbols, len(s)), s...)
	}
	e.pb = append(p, b...)
	return out
}

func exemplarSizeV2(refs []uint32, t int64) int {
	n := 1 + 8 + 1 + sizeVarint(uint64(t))
	if len(refs) > 0 {
		n += sizeField(sizeRefs(refs))
	}
	return n
}

// nextField returns the number of the top-level protobuf field starting at
// b[off] and the offset just past it; ok is false if b is malformed there.
func nextField(b []byte, off int) (num uint64, end int, ok bool) {
	tag, n := binary.Uvarint(b[off:])
	if n <= 0 {
		return 0, 0, false
	}
	end = off + n
	switch tag & 7 {
	case 0: // varint
		_, n = binary.Uvarint(b[end:])
		if n <= 0 {
			return 0, 0, false
		}
		end += n
	case 1: // fixed64
		end += 8
	case 2: // length-delimited
		l, n := binary.Uvarint(b[end:])
		if n <= 0 || l > uint64(len(b)) {
			return 0, 0, false
		}
		end += n + int(l)
	case 5: // fixed32
		end += 4
	default: // groups are not used by these messages
		return 0, 0, false
	}
	if end > len(b) {
		return 0, 0, false
	}
	return tag >> 3, end, true
}

// histogramLenV1 returns the length of the histogram message h without its
// start_timestamp field, which Remote-Write 1.0 receivers do not know. A
// message that does not parse is forwarded as it is.
func histogramLenV1(h []byte) int {
	n := len(h)
	for off := 0; off < len(h); {
		num, end, ok := nextField(h, off)
		if !ok {
			return len(h)
		}
		if num == histogramStartTimestampField {
			n -= end - off
		}
		off = end
	}
	return n
}

// histogramTimestampField is the timestamp of prometheus.Histogram and
// io.prometheus.write.v2.Histogram, a varint.
const histogramTimestampField = 15

// histogramTimestamp returns the timestamp (ms) of the protobuf Histogram
// message h, or 0 if it has none or does not parse.
func histogramTimestamp(h []byte) int64 {
	for off := 0; off < len(h); {
		num, end, ok := nextField(h, off)
		if !ok {
			return 0
		}
		if num == histogramTimestampField {
			tag, n := binary.Uvarint(h[off:])
			if tag&7 != 0 {
				return 0
			}
			v, _ := binary.Uvarint(h[off+n:])
			return int64(v)
		}
		off = end
	}
	return 0
}

// appendHistogramV1 appends h less its start_timestamp field; it agrees
// with histogramLenV1.
func appendHistogramV1(b, h []byte) []byte {
	if histogramLenV1(h) == len(h) {
		return append(b, h...)
	}
	for off := 0; off < len(h); {
		num, end, _ := nextField(h, off)
		if num != histogramStartTimestampField {
			b = append(b, h[off:end]...)
		}
		off = end
	}
	return b
}
