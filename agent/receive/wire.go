package receive

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// maxInput is the largest buffer Decode and DecodeV2 accept. It keeps every
// index into the Batch's slices within int32: each label, sample, histogram,
// exemplar and series takes at least two bytes of input.
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

// readFixed64 reads the little-endian fixed64 at b[i:] and returns it with
// the index just past it.
func readFixed64(b []byte, i int) (uint64, int, *decodeError) {
	if len(b)-i < 8 {
		return 0, 0, corrupt(i, kindTruncated, "truncated fixed64")
	}
	return binary.LittleEndian.Uint64(b[i:]), i + 8, nil
}

// readDouble reads the double (fixed64) value field at b[i:] and returns it
// with the index just past it.
func readDouble(b []byte, i int) (float64, int, *decodeError) {
	v, next, err := readFixed64(b, i)
	if err != nil {
		return 0, 0, err.in("value", -1)
	}
	return math.Float64frombits(v), next, nil
}

// readInt64 reads the int64 (varint) field called name at b[i:] and returns
// it with the index just past it.
func readInt64(b []byte, i int, name string) (int64, int, *decodeError) {
	v, next, err := readVarint(b, i)
	if err != nil {
		return 0, 0, err.in(name, -1)
	}
	return int64(v), next, nil
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

// skipUnknown skips the value at b[j:] of the field with the given tag,
// read at b[i:], and returns the index just past it. A field whose number is
// set in known, a field of the message msg with another wire type, is an
// error.
func skipUnknown(b []byte, i, j int, tag uint64, known fieldSet, msg string) (int, *decodeError) {
	if f := tag >> 3; f < 64 && known&(1<<f) != 0 {
		return 0, wrongWireType(i, tag, msg)
	}
	next, err := skipField(b, j, tag)
	if err != nil {
		return 0, err.in("field", int(tag>>3))
	}
	return next, nil
}

// fieldSet is a set of field numbers below 64, field f as bit 1<<f.
type fieldSet uint64

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
	kindSpec                           // well-formed protobuf breaking a Remote-Write 2.0 rule
	kindPacked                         // a varint of a packed field runs past the field's end
)

// decodeError is a protobuf structure error. It wraps ErrCorrupt.
type decodeError struct {
	off  int     // byte offset in the buffer passed to Decode or DecodeV2
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
