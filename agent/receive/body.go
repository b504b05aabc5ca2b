package receive

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
)

// Sentinel errors. Errors returned by this package wrap one of them, except
// validation failures, which are *ValidationError.
var (
	// ErrTooLarge reports that a body decodes, or declares that it decodes,
	// to more than the allowed number of bytes.
	ErrTooLarge = errors.New("receive: body too large")
	// ErrUnsupportedEncoding reports a Content-Encoding other than snappy
	// or zstd.
	ErrUnsupportedEncoding = errors.New("receive: unsupported content encoding")
	// ErrCorrupt reports a body that is not valid snappy, zstd or protobuf.
	ErrCorrupt = errors.New("receive: corrupt input")
)

// errClosed is returned by a BodyDecoder used for zstd after Close.
var errClosed = errors.New("receive: body decoder is closed")

// maxEncodingInError bounds how much of an unsupported Content-Encoding
// value is echoed in the error.
const maxEncodingInError = 64

// DecodeBody decompresses a request body according to its Content-Encoding
// and returns the result, which reuses dst's storage when it is large enough.
// dst may be nil and must not overlap body.
//
// An empty encoding or "snappy" selects the snappy block format, "zstd"
// selects zstd; matching ignores case and surrounding spaces. Bodies that
// decode to more than maxDecoded bytes are rejected with an error wrapping
// ErrTooLarge; for snappy, before anything is allocated.
//
// DecodeBody creates a zstd decoder for every zstd body; servers should use
// a long-lived BodyDecoder instead.
func DecodeBody(contentEncoding string, body []byte, maxDecoded int, dst []byte) ([]byte, error) {
	isZstd, err := parseEncoding(contentEncoding)
	switch {
	case err != nil:
		return nil, err
	case !isZstd:
		return decodeSnappy(body, maxDecoded, dst)
	}
	d := NewBodyDecoder()
	defer d.Close()
	return d.decodeZstd(body, maxDecoded, dst)
}

// parseEncoding reports whether contentEncoding selects zstd rather than
// snappy, or returns an error wrapping ErrUnsupportedEncoding.
func parseEncoding(contentEncoding string) (zstd bool, err error) {
	enc := strings.TrimSpace(contentEncoding)
	switch {
	case enc == "" || strings.EqualFold(enc, "snappy"):
		return false, nil
	case strings.EqualFold(enc, "zstd"):
		return true, nil
	}
	if len(enc) > maxEncodingInError {
		enc = enc[:maxEncodingInError] + "..."
	}
	return false, fmt.Errorf("%w %q (want snappy or zstd)", ErrUnsupportedEncoding, enc)
}

// BodyDecoder decompresses request bodies, keeping zstd decoders for reuse
// between calls. It is safe for concurrent use. The zero value is ready to
// use; Close releases the retained decoders.
type BodyDecoder struct {
	mu     sync.Mutex
	free   []*zstdDecoder // idle decoders, at most GOMAXPROCS
	closed bool
}

// zstdDecoder is a single-threaded zstd decoder and the output limit it is
// currently configured with.
type zstdDecoder struct {
	dec   *zstd.Decoder
	limit uint64
}

// NewBodyDecoder returns a BodyDecoder ready for use.
func NewBodyDecoder() *BodyDecoder { return &BodyDecoder{} }

// Decode is DecodeBody reusing d's zstd decoders.
func (d *BodyDecoder) Decode(contentEncoding string, body []byte, maxDecoded int, dst []byte) ([]byte, error) {
	isZstd, err := parseEncoding(contentEncoding)
	switch {
	case err != nil:
		return nil, err
	case isZstd:
		return d.decodeZstd(body, maxDecoded, dst)
	}
	return decodeSnappy(body, maxDecoded, dst)
}

// Close releases the zstd decoders retained by d. Decoding zstd with d
// after Close fails; snappy still works.
func (d *BodyDecoder) Close() {
	d.mu.Lock()
	free := d.free
	d.free, d.closed = nil, true
	d.mu.Unlock()
	for _, z := range free {
		z.dec.Close()
	}
}

func decodeSnappy(body []byte, maxDecoded int, dst []byte) ([]byte, error) {
	n, err := snappy.DecodedLen(body)
	if errors.Is(err, snappy.ErrTooLarge) {
		return nil, fmt.Errorf("%w: snappy body declares a length beyond the platform limit", ErrTooLarge)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: decode snappy body: bad length header", ErrCorrupt)
	}
	if n > maxDecoded {
		return nil, fmt.Errorf("%w: snappy body declares %d bytes, limit is %d", ErrTooLarge, n, maxDecoded)
	}
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	out, err := snappy.Decode(dst[:n], body)
	if err != nil {
		return nil, fmt.Errorf("%w: decode snappy body: %v", ErrCorrupt, err)
	}
	return out, nil
}

// zstdMinLimit is the smallest output limit zstd decoders are configured
// with. They reject frames whose window exceeds their limit, and streaming
// encoders declare windows of up to 8 MiB however small the content
// (klauspost/compress by default, libzstd below level 20), so a smaller
// maxDecoded is enforced after decoding: a bomb then costs at most 8 MiB.
const zstdMinLimit = 8 << 20

func (d *BodyDecoder) decodeZstd(body []byte, maxDecoded int, dst []byte) ([]byte, error) {
	// Reject a first frame declaring too much before allocating for it.
	var h zstd.Header
	if h.Decode(body) == nil && h.HasFCS && h.FrameContentSize > uint64(max(maxDecoded, 0)) {
		return nil, fmt.Errorf("%w: zstd frame declares %d bytes, limit is %d", ErrTooLarge, h.FrameContentSize, maxDecoded)
	}
	z, err := d.get(uint64(max(maxDecoded, zstdMinLimit)))
	if err != nil {
		return nil, err
	}
	out, err := z.dec.DecodeAll(body, dst[:0])
	d.put(z)
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded):
		return nil, fmt.Errorf("%w: zstd body decodes to more than %d bytes, or declares a window over %d bytes", ErrTooLarge, maxDecoded, max(maxDecoded, zstdMinLimit))
	case err != nil:
		return nil, fmt.Errorf("%w: decode zstd body: %v", ErrCorrupt, err)
	case len(out) > maxDecoded:
		return nil, fmt.Errorf("%w: zstd body decodes to %d bytes, limit is %d", ErrTooLarge, len(out), maxDecoded)
	}
	return out, nil
}

// get returns an idle decoder configured for limit, creating one if needed.
func (d *BodyDecoder) get(limit uint64) (*zstdDecoder, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, errClosed
	}
	var z *zstdDecoder
	if n := len(d.free); n > 0 {
		z = d.free[n-1]
		d.free[n-1] = nil
		d.free = d.free[:n-1]
	}
	d.mu.Unlock()

	if z == nil {
		// Concurrency 1: DecodeAll runs on the caller's goroutine and the
		// decoder starts no goroutines of its own.
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(limit))
		if err != nil {
			return nil, fmt.Errorf("receive: create zstd decoder: %w", err)
		}
		return &zstdDecoder{dec: dec, limit: limit}, nil
	}
	if z.limit != limit {
		if err := z.dec.ResetWithOptions(nil, zstd.WithDecoderMaxMemory(limit)); err != nil {
			z.dec.Close()
			return nil, fmt.Errorf("receive: configure zstd decoder: %w", err)
		}
		z.limit = limit
	}
	return z, nil
}

// put returns z to the idle list, or closes it if the list is full or d is
// closed.
func (d *BodyDecoder) put(z *zstdDecoder) {
	d.mu.Lock()
	if !d.closed && len(d.free) < runtime.GOMAXPROCS(0) {
		d.free = append(d.free, z)
		z = nil
	}
	d.mu.Unlock()
	if z != nil {
		z.dec.Close()
	}
}
