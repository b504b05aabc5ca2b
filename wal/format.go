package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/prometheus/tsdb/record"
)

// The record format: every record type the log writes or reads is named,
// encoded and decoded here and nowhere else. These type bytes are part of
// the on-disk format: a log written by any release must keep replaying.
//
//	type  name            payload
//	1     Series          tsdb/record Series: ref → labels
//	2     Samples         tsdb/record Samples (no start timestamps)
//	11    SamplesV2       tsdb/record SamplesV2 (per-sample start timestamps)
//	4     Exemplars       tsdb/record Exemplars: ref, timestamp, value, labels
//	200   RawHistograms   Ferry's: per histogram uvarint ref, uvarint length,
//	                      and the protobuf Histogram message as received
//	201   Types           Ferry's, read only (written by earlier releases):
//	                      per family one type byte, uvarint name length, name
//	202   Metadata        Ferry's: per family one type byte, then name, help
//	                      and unit, each as uvarint length and bytes
const (
	recordRawHistograms record.Type = 200
	recordTypes         record.Type = 201
	recordMetadata      record.Type = 202
)

// maxSamplesPerRecord bounds a Samples record, so that readers decode and
// checkpoint in steps of bounded size.
const maxSamplesPerRecord = 4096

// maxRawRecord bounds a raw histogram or metadata record.
const maxRawRecord = 1 << 20

// kind is what a record holds, as far as this package cares.
type kind uint8

const (
	kindOther kind = iota // a type this release does not know: skipped
	kindSeries
	kindSamples
	kindHistograms
	kindExemplars
	kindMetadata
)

// kindOf returns the kind of rec.
func kindOf(rec []byte) kind {
	if len(rec) == 0 {
		return kindOther
	}
	switch record.Type(rec[0]) {
	case record.Series:
		return kindSeries
	case record.Samples, record.SamplesV2:
		return kindSamples
	case recordRawHistograms:
		return kindHistograms
	case record.Exemplars:
		return kindExemplars
	case recordTypes, recordMetadata:
		return kindMetadata
	}
	return kindOther
}

// rawHistogram is one entry of a raw histogram record.
type rawHistogram struct {
	ref  Ref
	data []byte // aliases the record
}

// decoder decodes records into reusable slices. After decode returns, the
// slice of the record's kind holds its contents; the others are untouched.
type decoder struct {
	dec        record.Decoder
	series     []wireSeries
	seriesBuf  []byte
	seriesEnds []int
	samples    []record.RefSample
	histograms []rawHistogram
	exemplars  []record.RefExemplar
	metadata   []Metadata
}

func newDecoder(logger *slog.Logger) *decoder {
	return &decoder{dec: record.NewDecoder(nil, logger)}
}

// decode decodes rec and returns its kind.
func (d *decoder) decode(rec []byte) (kind, error) {
	var err error
	k := kindOf(rec)
	switch k {
	case kindSeries:
		err = d.decodeSeries(rec)
	case kindSamples:
		d.samples, err = d.dec.Samples(rec, d.samples[:0])
	case kindHistograms:
		d.histograms, err = decodeRawHistograms(rec, d.histograms[:0])
	case kindExemplars:
		d.exemplars, err = d.dec.Exemplars(rec, d.exemplars[:0])
	case kindMetadata:
		d.metadata, err = decodeMetadata(rec, d.metadata[:0])
	}
	if err != nil {
		return k, fmt.Errorf("decode %s record: %w", k, err)
	}
	return k, nil
}

// count returns the number of samples and histograms, and of exemplars, in
// rec, decoding as little as it can.
func (d *decoder) count(rec []byte) (samples, exemplars int, err error) {
	switch kindOf(rec) {
	case kindSamples, kindHistograms, kindExemplars:
		k, err := d.decode(rec)
		if err != nil {
			return 0, 0, err
		}
		switch k {
		case kindSamples:
			return len(d.samples), 0, nil
		case kindHistograms:
			return len(d.histograms), 0, nil
		}
		return 0, len(d.exemplars), nil
	}
	return 0, 0, nil
}

func (k kind) String() string {
	switch k {
	case kindSeries:
		return "series"
	case kindSamples:
		return "samples"
	case kindHistograms:
		return "histogram"
	case kindExemplars:
		return "exemplar"
	case kindMetadata:
		return "metadata"
	}
	return "unknown"
}

// encoder appends records to a buffer.
type encoder struct {
	enc record.Encoder
}

// wireSeries is one series of a Series record, its labels in wire form.
type wireSeries struct {
	Ref  Ref
	Wire []byte
}

// startSeries begins a Series record (tsdb/record's encoding: the type
// byte, then per series the ref as big-endian uint64, the label count and
// each name and value as uvarint-length-prefixed bytes).
func startSeries(b []byte) []byte { return append(b, byte(record.Series)) }

// appendSeries appends one series, its labels in wire form, to a Series
// record.
func appendSeries(b []byte, ref Ref, wire []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(ref))
	n := 0
	for off := 0; off < len(wire); n++ {
		_, _, off = model.NextWireLabel(wire, off)
	}
	b = binary.AppendUvarint(b, uint64(n))
	for off := 0; off < len(wire); {
		var name, value []byte
		name, value, off = model.NextWireLabel(wire, off)
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		b = binary.AppendUvarint(b, uint64(len(value)))
		b = append(b, value...)
	}
	return b
}

// decodeSeries decodes a Series record into d.series, the labels in wire
// form in d.seriesBuf (valid until the next decode).
func (d *decoder) decodeSeries(rec []byte) error {
	d.series, d.seriesBuf, d.seriesEnds = d.series[:0], d.seriesBuf[:0], d.seriesEnds[:0]
	b := rec[1:]
	for len(b) > 0 {
		if len(b) < 8 {
			return fmt.Errorf("series %d: %w", len(d.series), io.ErrUnexpectedEOF)
		}
		ref := Ref(binary.BigEndian.Uint64(b))
		b = b[8:]
		n, k := binary.Uvarint(b)
		// Each label takes at least two bytes: a larger count is damage,
		// and must not size an allocation.
		if k <= 0 || n > uint64(len(b)-k)/2 {
			return fmt.Errorf("series %d (ref %d): bad label count", len(d.series), ref)
		}
		b = b[k:]
		for range n {
			var name, value []byte
			var err error
			if name, b, err = uvarintBytes(b); err == nil {
				value, b, err = uvarintBytes(b)
			}
			if err != nil {
				return fmt.Errorf("series %d (ref %d): %w", len(d.series), ref, err)
			}
			d.seriesBuf = model.AppendWireLabel(d.seriesBuf, name, value)
		}
		d.series = append(d.series, wireSeries{Ref: ref})
		d.seriesEnds = append(d.seriesEnds, len(d.seriesBuf))
	}
	start := 0
	for i, end := range d.seriesEnds {
		d.series[i].Wire = d.seriesBuf[start:end:end]
		start = end
	}
	return nil
}

// uvarintBytes reads a uvarint length and that many bytes.
func uvarintBytes(b []byte) (v, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, io.ErrUnexpectedEOF
	}
	b = b[k:]
	return b[:n], b[n:], nil
}

// samples appends a Samples record, or a SamplesV2 record if a sample has a
// start timestamp.
func (e *encoder) samples(samples []record.RefSample, b []byte) []byte {
	e.enc.EnableSTStorage = false
	for i := range samples {
		if samples[i].ST != 0 {
			e.enc.EnableSTStorage = true
			break
		}
	}
	return e.enc.Samples(samples, b)
}

// exemplars appends an Exemplars record.
func (e *encoder) exemplars(exemplars []record.RefExemplar, b []byte) []byte {
	return e.enc.Exemplars(exemplars, b)
}

// startHistograms begins a raw histogram record.
func startHistograms(b []byte) []byte { return append(b, byte(recordRawHistograms)) }

// appendHistogram appends one histogram to a raw histogram record.
func appendHistogram(b []byte, ref Ref, data []byte) []byte {
	b = binary.AppendUvarint(b, uint64(ref))
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

// histogramSize is what appendHistogram adds.
func histogramSize(ref Ref, data []byte) int {
	return uvarintLen(uint64(ref)) + uvarintLen(uint64(len(data))) + len(data)
}

// startMetadata begins a metadata record.
func startMetadata(b []byte) []byte { return append(b, byte(recordMetadata)) }

// appendMetadata appends one family to a metadata record.
func appendMetadata(b []byte, m model.MetricType, family, help, unit []byte) []byte {
	b = append(b, byte(m))
	for _, s := range [][]byte{family, help, unit} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// decodeRawHistograms appends the histograms of a raw histogram record; data
// aliases rec.
func decodeRawHistograms(rec []byte, hs []rawHistogram) ([]rawHistogram, error) {
	if len(rec) == 0 || record.Type(rec[0]) != recordRawHistograms {
		return hs, errors.New("not a raw histogram record")
	}
	b := rec[1:]
	for len(b) > 0 {
		ref, n := binary.Uvarint(b)
		if n <= 0 {
			return hs, fmt.Errorf("histogram %d: bad ref", len(hs))
		}
		b = b[n:]
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return hs, fmt.Errorf("histogram %d: bad length", len(hs))
		}
		b = b[n:]
		hs = append(hs, rawHistogram{ref: Ref(ref), data: b[:l:l]})
		b = b[l:]
	}
	return hs, nil
}

// decodeMetadata appends the families of a metadata or (legacy) types
// record.
func decodeMetadata(rec []byte, ms []Metadata) ([]Metadata, error) {
	if len(rec) == 0 {
		return ms, errors.New("empty record")
	}
	legacy := record.Type(rec[0]) == recordTypes
	b := rec[1:]
	str := func() (string, error) {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return "", fmt.Errorf("family %d: bad length", len(ms))
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		return s, nil
	}
	for len(b) > 0 {
		m := Metadata{Type: model.MetricType(b[0])}
		b = b[1:]
		var err error
		if m.Family, err = str(); err != nil {
			return ms, err
		}
		if !legacy {
			if m.Help, err = str(); err != nil {
				return ms, err
			}
			if m.Unit, err = str(); err != nil {
				return ms, err
			}
		}
		ms = append(ms, m)
	}
	return ms, nil
}
