package model

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/prompb"
)

// The wire form of labels is what protobuf marshals for a Remote-Write 1.0
// TimeSeries holding only them, for every length of varint.
func TestAppendWireLabelMatchesProtobuf(t *testing.T) {
	var ts prompb.TimeSeries
	var got []byte
	for _, n := range []int{1, 2, 127, 128, 300, 16383, 16384, 70000} {
		name, value := strings.Repeat("n", n%200+1), strings.Repeat("v", n)
		ts.Labels = append(ts.Labels, prompb.Label{Name: name, Value: value})
		got = AppendWireLabel(got, []byte(name), []byte(value))
	}
	want, err := ts.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("wire form differs from protobuf's encoding (%d vs %d bytes)", len(got), len(want))
	}
}
