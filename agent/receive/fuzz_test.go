package receive

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/prometheus/prompb"
)

// stricterThanGogo reports whether err is a rejection of input that the
// gogo-generated prompb unmarshaller accepts on purpose: varints overflowing
// 64 bits (gogo drops the excess bits), field numbers above 2^31-1 (gogo
// truncates them to int32, possibly into a known field) and groups (gogo
// skips unknown ones).
func stricterThanGogo(err error) bool {
	var de *decodeError
	return errors.As(err, &de) && (de.kind == kindOverflow || de.kind == kindFieldNumber || de.kind == kindGroup)
}

// FuzzDecode checks Decode against prompb.WriteRequest.Unmarshal: whatever
// prompb accepts, Decode accepts too (except as stricterThanGogo allows) with
// bit-identical labels and samples and the same counts of exemplars,
// histograms and metadata. Decode and Validate must never panic, and a
// reused Request must decode like a fresh one.
func FuzzDecode(f *testing.F) {
	f.Add(benchRequest(3))
	rng := rand.New(rand.NewPCG(7, 8))
	for range 5 {
		buf, err := randomWriteRequest(rng, 2).Marshal() // small seeds minimize quickly
		if err != nil {
			f.Fatal(err)
		}
		f.Add(buf)
	}
	f.Add(pbRequest(pbSeries(staleNaN, -1, "__name__", "up", "job", "x")))
	f.Add([]byte{0x0a, 0x05, 0x0a})
	f.Add([]byte{0x2b, 0x2c})

	var reused Request
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		err := Decode(data, &r)
		if err != nil {
			var de *decodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not a decode error wrapping ErrCorrupt", err)
			}
			if de.off < 0 || de.off > len(data) {
				t.Fatalf("error %v: offset outside the input of %d bytes", err, len(data))
			}
		}

		var pb prompb.WriteRequest
		if pbErr := pb.Unmarshal(data); pbErr == nil {
			if err != nil && !stricterThanGogo(err) {
				t.Fatalf("prompb accepts the input, Decode fails: %v", err)
			}
			if err == nil {
				if diff := compareWithPrompb(&r, &pb); diff != nil {
					t.Fatalf("Decode differs from prompb: %v", diff)
				}
			}
		}

		// Decoding into a used Request gives the same result.
		if err2 := Decode(data, &reused); (err2 == nil) != (err == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("reused Request: error %v, fresh Request: %v", err2, err)
		}
		if err != nil {
			return
		}
		if len(reused.Series) != len(r.Series) || len(reused.Labels) != len(r.Labels) || len(reused.Samples) != len(r.Samples) || reused.Metadata != r.Metadata {
			t.Fatalf("reused Request decoded differently")
		}
		for i, s := range r.Series {
			if s.LabelsStart > s.LabelsEnd || s.SamplesStart > s.SamplesEnd || s != reused.Series[i] {
				t.Fatalf("series %d: bad ranges %+v, reused %+v", i, s, reused.Series[i])
			}
		}
		for _, scheme := range []ValidationScheme{LegacyValidation, UTF8Validation} {
			if err := Validate(&r, scheme); err != nil {
				var ve *ValidationError
				if !errors.As(err, &ve) || len(err.Error()) > 2048 {
					t.Fatalf("validation error %T of %d bytes: %.300s", err, len(err.Error()), err)
				}
			}
		}
	})
}
