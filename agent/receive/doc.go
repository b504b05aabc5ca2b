// Package receive turns the body of a Prometheus Remote-Write 1.0 HTTP
// request into validated samples. Every input is untrusted: no input makes
// the package panic, and memory use is bounded by the caller's limits and
// the bytes actually decoded, never by a length the input merely declares.
//
// Receiving a request takes three separable steps:
//
//	body, err := bodyDec.Decode(req.Header.Get("Content-Encoding"), raw, maxDecoded, body[:0])
//	err = receive.Decode(body, &wr)                        // protobuf structure
//	err = receive.Validate(&wr, receive.LegacyValidation)  // labels
//
// # Bodies
//
// DecodeBody and BodyDecoder.Decode accept the snappy block format (the
// Remote-Write 1.0 encoding, selected by an empty Content-Encoding or
// "snappy") and zstd ("zstd"); encoding names are matched case-insensitively.
// A body that decodes to more than maxDecoded bytes fails with ErrTooLarge:
//
//   - Snappy bodies declare their decoded length up front and are rejected
//     before anything is allocated.
//   - Zstd bodies whose first frame declares a larger content size are
//     rejected before decoding. Otherwise decoding stops once the output
//     passes max(maxDecoded, 8 MiB), having allocated a few times that as the
//     output grew, and the result is then checked against maxDecoded. The
//     8 MiB floor admits the windows streaming encoders declare for small
//     content; frames declaring a window above max(maxDecoded, 8 MiB) fail
//     with ErrTooLarge.
//
// Other encodings fail with ErrUnsupportedEncoding, malformed snappy or zstd
// data (including zstd dictionaries, which are not supported) with
// ErrCorrupt.
//
// # Protobuf
//
// Decode parses a prometheus.WriteRequest (prompb/remote.proto) into a
// reusable, flat Request whose label names and values alias the decoded
// body. It decodes series labels and float samples, counts exemplars,
// histograms and metadata without decoding them, and skips unknown fields of
// wire types varint, fixed64, length-delimited and fixed32. Float values
// keep their exact bit patterns, including NaN payloads such as the stale
// marker. For repeated occurrences of a scalar field the last one wins. After
// a Request has grown to the size of typical requests, Decode does not
// allocate.
//
// Decode fails with an error wrapping ErrCorrupt, naming the element being
// decoded (with zero-based indices, e.g. "decode timeseries 3: label 2:
// value: ...") and the byte offset, on truncated input, a length prefix past
// the end of its enclosing message, a varint overflowing 64 bits, field
// number 0 or one above 2^31-1, group wire types (3, 4), invalid wire types
// (6, 7), or a known field with the wrong wire type. Those rules are a little
// stricter than the gogo-generated prompb unmarshaller Prometheus uses, which
// skips unknown groups and silently truncates overflowing varints and field
// numbers; protobuf encoders never produce such input. Inputs of 2 GiB or
// more fail with ErrTooLarge.
//
// Decoded memory is proportional to the input: each label, sample or series
// costs at most 48 bytes of Request per 2 bytes of input. Decode imposes no
// other limit on the number of series, labels or samples.
//
// # Validation
//
// Validate checks what Decode does not: every series has at least one label
// and a __name__ label; label names are non-empty, valid under the
// ValidationScheme (LegacyValidation: the Remote-Write 1.0 character sets;
// UTF8Validation: any valid UTF-8) and strictly increasing bytewise, which
// excludes duplicates; label values are non-empty valid UTF-8, and the
// __name__ value is a valid metric name. Samples are not checked: any
// float64 bit pattern and timestamp is accepted, and a series may carry
// histograms and no float samples. The first invalid series is reported as a
// *ValidationError whose message names the series (at most 10 labels and
// about 256 bytes of it) and the problem. Validate does not allocate when the
// request is valid.
package receive
