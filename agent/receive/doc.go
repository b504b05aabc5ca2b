// Package receive turns the body of a Prometheus Remote-Write 1.0 or 2.0
// HTTP request into a validated model.Batch, ready for the WAL. Every input
// is untrusted: no input makes the package panic, and memory use is bounded
// by the caller's limits and the bytes actually decoded, never by a length
// the input merely declares.
//
// Receiving a request takes three separable steps:
//
//	body, err := bodyDec.Decode(req.Header.Get("Content-Encoding"), raw, maxDecoded, body[:0])
//	err = receive.Decode(body, &req)   // or DecodeV2: protobuf structure
//	err = receive.Validate(&req, receive.LegacyValidation)  // labels
//	err = wal.Append(&req.Batch)
//
// The caller picks Decode or DecodeV2 by the request's Content-Type; this
// package does not look at headers other than Content-Encoding.
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
// Decode parses a prometheus.WriteRequest (Remote-Write 1.0,
// prompb/remote.proto) and DecodeV2 an io.prometheus.write.v2.Request
// (Remote-Write 2.0, prompb/io/prometheus/write/v2/types.proto) into the
// Batch of a reusable Request. Both keep everything the request carries:
//
//   - series labels, in wire order, and float samples; 2.0 samples keep
//     their start_timestamp in Sample.Start (0 if absent);
//   - native histograms as their raw Histogram messages, exactly as
//     received: prometheus.Histogram for 1.0, io.prometheus.write.v2.
//     Histogram for 2.0 (wire-identical in fields 1-16, field 17 being the
//     start timestamp), custom buckets (schema -53) included;
//   - exemplars with their value, timestamp and labels; a series' exemplar
//     labels follow its own labels in Batch.Labels, whatever the field
//     order on the wire;
//   - metadata. For 1.0, every MetricMetadata with a non-empty
//     metric_family_name, whatever its type. For 2.0, a series' metadata
//     becomes a Metadata whose Family is the series' __name__ value, when
//     its type is set or its help or unit is non-empty and the series has a
//     metric name; an entry equal to the one appended just before it is
//     not repeated. Metric types outside the known ones (1 to 7) become
//     TypeUnknown.
//
// Label names and values, histograms and metadata strings alias the decoded
// body; 2.0 labels alias the symbols table, so series sharing a string share
// its bytes. Unknown fields of wire types varint, fixed64, length-delimited
// and fixed32 are skipped, including the reserved fields of 2.0 (Request 1
// to 3, TimeSeries 6). Float values keep their exact bit patterns, including
// NaN payloads such as the stale marker. For repeated occurrences of a
// scalar field the last one wins; a 2.0 metadata message sent twice is
// merged field by field. Like every protobuf decoder, both truncate varints
// to the width of 32-bit fields (metric types, symbol refs). After a
// Request has grown to the size of typical requests, neither allocates.
//
// Both fail with an error wrapping ErrCorrupt, naming the element being
// decoded (with zero-based indices, e.g. "decode timeseries 3: label 2:
// value: ...") and the byte offset, on truncated input, a length prefix past
// the end of its enclosing message, a varint overflowing 64 bits, field
// number 0 or one above 2^31-1, group wire types (3, 4), invalid wire types
// (6, 7), a known field with the wrong wire type, or a varint of a packed
// field running past the field's end. Those rules are a little stricter than
// the gogo-generated unmarshallers Prometheus uses, which skip unknown
// groups, silently truncate overflowing varints and field numbers, and read
// a packed varint on into the bytes after its field; protobuf encoders never
// produce such input. Inputs of 2 GiB or
// more fail with ErrTooLarge.
//
// DecodeV2 also enforces the rules of the Remote-Write 2.0 specification
// that concern the encoding, failing with an error wrapping ErrCorrupt: a
// non-empty symbols table must start with the empty string; series need a
// symbols table; every label, exemplar label, help and unit ref must point
// into it; label refs come in pairs; and a series carries samples or
// histograms, not both. A series with neither is accepted, although the
// specification asks for one: Prometheus 3 sends each exemplar in a
// series of its own, without samples, and a forwarder must not refuse what
// its upstream sends (its exemplars and metadata are kept). The symbols
// table may come
// anywhere in the message, even after the series or split around them.
// Duplicate symbols are accepted. Proto3 cannot tell an exemplar's value or
// timestamp of 0 from an absent one; both are accepted.
//
// Decoded memory is proportional to the input: each label, sample,
// histogram, exemplar, symbol or series costs at most 48 bytes of Request
// per 2 bytes of input (exemplar labels twice that: they are collected per
// series before they join the series' labels), and each metadata entry 80
// bytes per 5 bytes. Neither decoder imposes another limit on the number of
// series, labels or samples.
//
// # Validation
//
// Validate checks what the decoders do not, for both protocols: every series
// has at least one label and a __name__ label; label names are non-empty,
// valid under the ValidationScheme (LegacyValidation: the Remote-Write 1.0
// character sets; UTF8Validation: any valid UTF-8) and strictly increasing
// bytewise, which excludes duplicates; label values are non-empty valid
// UTF-8, and the __name__ value is a valid metric name. Exemplars may have
// no labels; their label names follow the same rules, their values are
// valid UTF-8 and may be empty, and their names are distinct: Validate
// sorts each exemplar's labels by name, as senders should have. Samples,
// histograms and metadata are not checked: any float64 bit pattern and
// timestamp is accepted, and a 1.0 series may carry histograms and no float
// samples, or nothing at all. The first invalid series is reported as a
// *ValidationError whose message names the series (at most 10 labels and
// about 256 bytes of it) and the problem. Validate does not allocate when
// the request is valid.
//
// Validate is ValidateShape (ranges and exemplars) plus ValidateSeries for
// each series. A writer that holds series already validated calls
// ValidateShape and then ValidateSeries for the new series only: Ferry's
// receiver validates a series' labels once, when the WAL first sees it.
package receive
