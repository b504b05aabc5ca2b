package receive

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
)

func zstdEncode(t testing.TB, data []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// zstdStream compresses n zero bytes as a stream, whose frame does not
// declare its content size, without holding the input in memory.
func zstdStream(t testing.TB, n int, opts ...zstd.EOption) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, opts...)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for ; n > 0; n -= len(chunk) {
		if _, err := enc.Write(chunk[:min(n, len(chunk))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zstdWindowFrame returns a zstd frame declaring a window of 1<<windowLog
// bytes and no content size, holding content in one raw block.
func zstdWindowFrame(windowLog int, content []byte) []byte {
	n := len(content)<<3 | 1 // last block, raw
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte(windowLog-10) << 3, byte(n), byte(n >> 8), byte(n >> 16)}
	return append(frame, content...)
}

// raceEnabled reports whether the test binary was built with -race, which
// changes allocation counts (sync.Pool drops items at random).
func raceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// allocatedBytes returns how many bytes f allocates on the heap.
func allocatedBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestDecodeBody(t *testing.T) {
	payload := benchRequest(50)
	snappyBody := snappy.Encode(nil, payload)
	zstdBody := zstdEncode(t, payload)
	twoFrames := append(zstdEncode(t, payload[:1000]), zstdEncode(t, payload[1000:])...)
	streamed := zstdStream(t, 3<<20)
	bigSnappyHeader := append(pbVarint(nil, 1<<30), 0, 1, 2, 3) // declares 1 GiB

	tests := []struct {
		name       string
		encoding   string
		body       []byte
		maxDecoded int
		want       []byte // decoded output, if no error
		wantErr    error
		wantMsg    string
	}{
		{name: "snappy", encoding: "snappy", body: snappyBody, maxDecoded: len(payload), want: payload},
		{name: "empty encoding is snappy", encoding: "", body: snappyBody, maxDecoded: 1 << 20, want: payload},
		{name: "snappy any case and spaces", encoding: " SnAppY ", body: snappyBody, maxDecoded: 1 << 20, want: payload},
		{name: "snappy empty payload", encoding: "snappy", body: []byte{0}, maxDecoded: 0, want: []byte{}},
		{name: "snappy one byte over limit", encoding: "snappy", body: snappyBody, maxDecoded: len(payload) - 1, wantErr: ErrTooLarge, wantMsg: "limit is"},
		{name: "snappy declared length too big", encoding: "snappy", body: bigSnappyHeader, maxDecoded: 1 << 20, wantErr: ErrTooLarge, wantMsg: "snappy body declares 1073741824 bytes, limit is 1048576"},
		{name: "snappy declared length beyond 32 bits", encoding: "snappy", body: pbVarint(nil, 1<<40), maxDecoded: 1 << 20, wantErr: ErrCorrupt},
		{name: "snappy empty body", encoding: "snappy", body: nil, maxDecoded: 1 << 20, wantErr: ErrCorrupt, wantMsg: "bad length header"},
		{name: "snappy corrupt", encoding: "snappy", body: []byte{10, 0xff, 0xff, 0xff}, maxDecoded: 1 << 20, wantErr: ErrCorrupt, wantMsg: "decode snappy body: snappy: corrupt input"},
		{name: "snappy truncated", encoding: "snappy", body: snappyBody[:len(snappyBody)/2], maxDecoded: 1 << 20, wantErr: ErrCorrupt},
		{name: "zstd", encoding: "zstd", body: zstdBody, maxDecoded: len(payload), want: payload},
		{name: "zstd any case", encoding: "ZSTD", body: zstdBody, maxDecoded: 1 << 20, want: payload},
		{name: "zstd two frames", encoding: "zstd", body: twoFrames, maxDecoded: len(payload), want: payload},
		{name: "zstd streamed frame", encoding: "zstd", body: streamed, maxDecoded: 3 << 20, want: make([]byte, 3<<20)},
		{name: "zstd empty body", encoding: "zstd", body: nil, maxDecoded: 1 << 20, want: []byte{}},
		{name: "zstd declared size over limit", encoding: "zstd", body: zstdBody, maxDecoded: len(payload) - 1, wantErr: ErrTooLarge},
		{name: "zstd two frames over limit", encoding: "zstd", body: twoFrames, maxDecoded: len(payload) - 1, wantErr: ErrTooLarge},
		{name: "zstd streamed frame over limit", encoding: "zstd", body: streamed, maxDecoded: 1 << 20, wantErr: ErrTooLarge},
		{name: "zstd 8 MiB window small limit", encoding: "zstd", body: zstdWindowFrame(23, []byte("abc")), maxDecoded: 3, want: []byte("abc")},
		{name: "zstd 8 MiB window over small limit", encoding: "zstd", body: zstdWindowFrame(23, []byte("abc")), maxDecoded: 2, wantErr: ErrTooLarge, wantMsg: "decodes to 3 bytes, limit is 2"},
		{name: "zstd 16 MiB window", encoding: "zstd", body: zstdWindowFrame(24, []byte("abc")), maxDecoded: 1 << 20, wantErr: ErrTooLarge, wantMsg: "window"},
		{name: "zstd corrupt", encoding: "zstd", body: []byte("definitely not zstd"), maxDecoded: 1 << 20, wantErr: ErrCorrupt, wantMsg: "decode zstd body"},
		{name: "zstd truncated", encoding: "zstd", body: zstdBody[:len(zstdBody)/2], maxDecoded: 1 << 20, wantErr: ErrCorrupt},
		{name: "gzip unsupported", encoding: "gzip", body: snappyBody, maxDecoded: 1 << 20, wantErr: ErrUnsupportedEncoding, wantMsg: `receive: unsupported content encoding "gzip"`},
		{name: "identity unsupported", encoding: "identity", body: payload, maxDecoded: 1 << 20, wantErr: ErrUnsupportedEncoding, wantMsg: `"identity"`},
		{name: "list unsupported", encoding: "snappy, zstd", body: snappyBody, maxDecoded: 1 << 20, wantErr: ErrUnsupportedEncoding},
		{name: "long encoding truncated", encoding: strings.Repeat("x", 10000), body: nil, maxDecoded: 1, wantErr: ErrUnsupportedEncoding, wantMsg: strings.Repeat("x", 64) + `..."`},
	}
	shared := NewBodyDecoder()
	defer shared.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, decode := range []func(string, []byte, int, []byte) ([]byte, error){DecodeBody, shared.Decode} {
				got, err := decode(tc.encoding, tc.body, tc.maxDecoded, nil)
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
						t.Fatalf("error %v, want %v containing %q", err, tc.wantErr, tc.wantMsg)
					}
					if len(err.Error()) > 200 {
						t.Errorf("error message of %d bytes", len(err.Error()))
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tc.want) {
					t.Fatalf("decoded %d bytes, want %d", len(got), len(tc.want))
				}
			}
		})
	}
}

func TestDecodeBodyReusesDst(t *testing.T) {
	payload := benchRequest(20)
	d := NewBodyDecoder()
	defer d.Close()
	for _, tc := range []struct {
		encoding string
		body     []byte
	}{
		{"snappy", snappy.Encode(nil, payload)},
		{"zstd", zstdEncode(t, payload)},
	} {
		dst := make([]byte, 0, len(payload)+1024)
		got, err := d.Decode(tc.encoding, tc.body, 1<<20, dst)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("%s: %v", tc.encoding, err)
		}
		if &got[0] != &dst[:1][0] {
			t.Errorf("%s: output does not reuse dst", tc.encoding)
		}
		if raceEnabled() {
			continue
		}
		if n := testing.AllocsPerRun(20, func() { got, _ = d.Decode(tc.encoding, tc.body, 1<<20, got[:0]) }); n > 0 {
			t.Errorf("%s: %v allocs per decode into a large enough dst", tc.encoding, n)
		}
	}
}

func TestSnappyTooLargeDoesNotAllocate(t *testing.T) {
	body := append(pbVarint(nil, 1<<30), 0, 1, 2, 3)
	const runs = 100
	n := allocatedBytes(func() {
		for range runs {
			if _, err := DecodeBody("snappy", body, 1<<20, nil); !errors.Is(err, ErrTooLarge) {
				t.Fatal(err)
			}
		}
	})
	if n > runs*1024 {
		t.Errorf("rejecting a snappy body declaring 1 GiB allocated %d bytes over %d runs", n, runs)
	}
	// Only the error is allocated.
	if a := testing.AllocsPerRun(runs, func() { _, _ = DecodeBody("snappy", body, 1<<20, nil) }); a > 4 && !raceEnabled() {
		t.Errorf("%v allocs per rejection", a)
	}
}

func TestZstdBomb(t *testing.T) {
	const limit = 1 << 20
	d := NewBodyDecoder()
	defer d.Close()
	for _, tc := range []struct {
		name     string
		body     []byte
		maxAlloc uint64
	}{
		// 256 MiB of zeros in a few KiB. A declared size is rejected up
		// front; otherwise decoding stops after max(limit, 8 MiB), having
		// allocated a few times that as the output grew.
		{"declared size", zstdEncode(t, make([]byte, 256<<20), zstd.WithEncoderLevel(zstd.SpeedFastest)), 64 << 10},
		{"streamed", zstdStream(t, 256<<20), 8 * zstdMinLimit},
		{"window over 8 MiB", zstdWindowFrame(24, []byte("abc")), 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := allocatedBytes(func() {
				if _, err := d.Decode("zstd", tc.body, limit, nil); !errors.Is(err, ErrTooLarge) {
					t.Fatalf("error %v, want ErrTooLarge", err)
				}
			})
			t.Logf("%d-byte body: %d bytes allocated", len(tc.body), n)
			if n > tc.maxAlloc {
				t.Errorf("rejecting the bomb allocated %d bytes, want at most %d", n, tc.maxAlloc)
			}
		})
	}
}

func TestBodyDecoderConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var payloads, bodies [][]byte
	for range 8 {
		p := make([]byte, rng.IntN(200_000))
		for k := range p {
			p[k] = byte(rng.IntN(16)) // compressible
		}
		payloads = append(payloads, p)
		bodies = append(bodies, zstdEncode(t, p))
	}
	d := NewBodyDecoder()
	defer d.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			var dst []byte
			for k := range 50 {
				i := (g + k) % len(bodies)
				limit := len(payloads[i]) + k%3 - 1 // vary limits: one below, exact, one above
				out, err := d.Decode("zstd", bodies[i], limit, dst)
				switch {
				case limit < len(payloads[i]):
					if !errors.Is(err, ErrTooLarge) {
						t.Errorf("limit %d, payload %d: %v, want ErrTooLarge", limit, len(payloads[i]), err)
					}
				case err != nil || !bytes.Equal(out, payloads[i]):
					t.Errorf("payload %d: %v", i, err)
				default:
					dst = out[:0]
				}
			}
		})
	}
	wg.Wait()
}

func TestBodyDecoderClose(t *testing.T) {
	payload := benchRequest(5)
	var d BodyDecoder // the zero value works
	if _, err := d.Decode("zstd", zstdEncode(t, payload), 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d.Close() // idempotent
	if _, err := d.Decode("zstd", zstdEncode(t, payload), 1<<20, nil); err == nil {
		t.Error("zstd decode after Close succeeded")
	}
	if got, err := d.Decode("snappy", snappy.Encode(nil, payload), 1<<20, nil); err != nil || !bytes.Equal(got, payload) {
		t.Errorf("snappy decode after Close: %v", err)
	}
}

func BenchmarkDecodeBody(b *testing.B) {
	payload := benchRequest(1000)
	for _, tc := range []struct{ encoding, body string }{
		{"snappy", string(snappy.Encode(nil, payload))},
		{"zstd", string(zstdEncode(b, payload))},
	} {
		b.Run(tc.encoding, func(b *testing.B) {
			d := NewBodyDecoder()
			defer d.Close()
			body := []byte(tc.body)
			var dst []byte
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				out, err := d.Decode(tc.encoding, body, 32<<20, dst)
				if err != nil {
					b.Fatal(err)
				}
				dst = out[:0]
			}
		})
	}
}
