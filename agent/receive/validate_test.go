package receive

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ferrymetrics/ferry/wal/model"
)

// requestOf builds a Request holding one series per argument, each given
// as alternating label names and values.
func requestOf(t *testing.T, series ...[]string) *Request {
	t.Helper()
	var enc [][]byte
	for _, kv := range series {
		enc = append(enc, pbSeries(0x3ff0000000000000, 1, kv...))
	}
	var r Request
	if err := Decode(pbRequest(enc...), &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestValidate(t *testing.T) {
	type scheme = ValidationScheme
	both := []scheme{LegacyValidation, UTF8Validation}
	legacy := []scheme{LegacyValidation}
	tests := []struct {
		name    string
		series  [][]string
		schemes []scheme // schemes under which the request is invalid; valid under the others
		msg     string   // the full error message
	}{
		{name: "valid", series: [][]string{{"__name__", "up", "job", "x"}}},
		{name: "valid recording rule name", series: [][]string{{"__name__", "job:up:sum_rate5m", "_private", "1", "job", "x"}}},
		{name: "upper case sorts before __name__", series: [][]string{{"Zone", "a", "__name__", "up"}}},
		{name: "prefix sorts first", series: [][]string{{"__name__", "up", "jo", "1", "job", "2"}}},
		{
			name: "no labels", series: [][]string{{}}, schemes: both,
			msg: `receive: series 0 {}: no labels`,
		},
		{
			name: "missing __name__", series: [][]string{{"__name__", "up"}, {"instance", "a", "job", "x"}}, schemes: both,
			msg: `receive: series 1 {instance="a", job="x"}: no __name__ label`,
		},
		{
			name: "unsorted", series: [][]string{{"__name__", "up", "job", "x", "a", "b"}}, schemes: both,
			msg: `receive: series 0 {__name__="up", job="x", a="b"}: label names not sorted: "a" after "job"`,
		},
		{
			name: "unsorted with common first byte", series: [][]string{{"__name__", "up", "job", "x", "ja", "b"}}, schemes: both,
			msg: `receive: series 0 {__name__="up", job="x", ja="b"}: label names not sorted: "ja" after "job"`,
		},
		{
			name: "unsorted prefix", series: [][]string{{"__name__", "up", "job", "x", "jo", "b"}}, schemes: both,
			msg: `receive: series 0 {__name__="up", job="x", jo="b"}: label names not sorted: "jo" after "job"`,
		},
		{
			name: "duplicate name", series: [][]string{{"__name__", "up", "job", "x", "job", "y"}}, schemes: both,
			msg: `receive: series 0 {__name__="up", job="x", job="y"}: duplicate label name "job"`,
		},
		{
			name: "duplicate __name__", series: [][]string{{"__name__", "up", "__name__", "up"}}, schemes: both,
			msg: `receive: series 0 {__name__="up", __name__="up"}: duplicate label name "__name__"`,
		},
		{
			name: "empty name", series: [][]string{{"", "x", "__name__", "up"}}, schemes: both,
			msg: `receive: series 0 {""="x", __name__="up"}: label 0 has an empty name`,
		},
		{
			name: "empty value", series: [][]string{{"__name__", "up", "job", ""}}, schemes: both,
			msg: `receive: series 0 {__name__="up", job=""}: empty value for label "job"`,
		},
		{
			name: "empty metric name", series: [][]string{{"__name__", ""}}, schemes: both,
			msg: `receive: series 0 {__name__=""}: empty value for label "__name__"`,
		},
		{
			name: "invalid metric name", series: [][]string{{"__name__", "0up"}}, schemes: legacy,
			msg: `receive: series 0 {__name__="0up"}: invalid metric name "0up"`,
		},
		{
			name: "metric name with dot", series: [][]string{{"__name__", "http.requests", "job", "x"}}, schemes: legacy,
			msg: `receive: series 0 {__name__="http.requests", job="x"}: invalid metric name "http.requests"`,
		},
		{
			name: "invalid label name", series: [][]string{{"__name__", "up", "a-b", "x"}}, schemes: legacy,
			msg: `receive: series 0 {__name__="up", "a-b"="x"}: invalid label name "a-b"`,
		},
		{
			name: "label name with colon", series: [][]string{{"__name__", "up", "a:b", "x"}}, schemes: legacy,
			msg: `receive: series 0 {__name__="up", "a:b"="x"}: invalid label name "a:b"`,
		},
		{
			name: "label name starting with digit", series: [][]string{{"0a", "x", "__name__", "up"}}, schemes: legacy,
			msg: `receive: series 0 {"0a"="x", __name__="up"}: invalid label name "0a"`,
		},
		{
			name: "unicode names", series: [][]string{{"__name__", "résumé.count", "ünï", "x"}}, schemes: legacy,
			msg: `receive: series 0 {__name__="résumé.count", "ünï"="x"}: invalid metric name "résumé.count"`,
		},
		{
			name: "invalid UTF-8 value", series: [][]string{{"__name__", "up", "job", "a\xffb"}}, schemes: both,
			msg: `receive: series 0 {__name__="up", job="a\xffb"}: value of label "job" is not valid UTF-8`,
		},
		{
			name: "invalid UTF-8 metric name", series: [][]string{{"__name__", "up\xc3"}}, schemes: both,
			msg: `receive: series 0 {__name__="up\xc3"}: value of label "__name__" is not valid UTF-8`,
		},
		{
			name: "invalid UTF-8 label name", series: [][]string{{"__name__", "up", "j\xffb", "x"}}, schemes: both,
			msg: `receive: series 0 {__name__="up", "j\xffb"="x"}: invalid label name "j\xffb"`,
		},
		{
			name: "valid only as UTF-8", series: [][]string{{"__name__", "up", "kube.pod", "x", "ünï", "y"}}, schemes: legacy,
			msg: `receive: series 0 {__name__="up", "kube.pod"="x", "ünï"="y"}: invalid label name "kube.pod"`,
		},
		{
			name: "valid under UTF-8 only after sorting", series: [][]string{{"__name__", "up", "ü", "x", "z", "y"}}, schemes: both,
			msg: `receive: series 0 {__name__="up", "ü"="x", z="y"}: `,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := requestOf(t, tc.series...)
			for _, s := range []scheme{LegacyValidation, UTF8Validation} {
				err := Validate(r, s)
				wantInvalid := false
				for _, x := range tc.schemes {
					wantInvalid = wantInvalid || x == s
				}
				if !wantInvalid {
					if err != nil {
						t.Errorf("scheme %d: %v", s, err)
					}
					continue
				}
				var ve *ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("scheme %d: error %v, want *ValidationError", s, err)
				}
				if !strings.HasPrefix(err.Error(), tc.msg) {
					t.Errorf("scheme %d:\n got %s\nwant %s", s, err, tc.msg)
				}
			}
		})
	}
}

func TestValidateMalformedRequest(t *testing.T) {
	r := requestOf(t, []string{"__name__", "up"})
	for _, s := range []model.Series{
		{LabelsStart: 0, LabelsEnd: 2},
		{LabelsStart: 1, LabelsEnd: 0},
		{LabelsStart: -1, LabelsEnd: 1},
		{LabelsStart: 0, LabelsEnd: -1},
		{LabelsStart: 0, LabelsEnd: 1, SamplesStart: 0, SamplesEnd: 5},
		{LabelsStart: 0, LabelsEnd: 1, SamplesStart: -3, SamplesEnd: 0},
		{LabelsStart: 0, LabelsEnd: 1, HistogramsStart: 0, HistogramsEnd: 1},
		{LabelsStart: 0, LabelsEnd: 1, ExemplarsStart: 0, ExemplarsEnd: 1},
		{LabelsStart: 0, LabelsEnd: 1, ExemplarsStart: -1, ExemplarsEnd: -1},
	} {
		r.Batch.Series[0] = s
		var ve *ValidationError
		if err := Validate(r, LegacyValidation); !errors.As(err, &ve) || !strings.Contains(err.Error(), "out of bounds") {
			t.Errorf("%+v: %v", s, err)
		}
	}
}

// requestWithExemplar builds a Request holding the series up with one
// exemplar labelled by kv, alternating names and values.
func requestWithExemplar(t *testing.T, kv ...string) *Request {
	t.Helper()
	var ex []byte
	for k := 0; k+1 < len(kv); k += 2 {
		ex = pbBytes(ex, 1, pbLabel(kv[k], kv[k+1]))
	}
	series := cat(pbSeries(0, 1, "__name__", "up"), pbBytes(nil, 3, pbFixed64(ex, 2, 0)))
	var r Request
	if err := Decode(pbRequest(series), &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestValidateExemplars(t *testing.T) {
	for _, tc := range []struct {
		name       string
		labels     []string
		utf8       bool
		wantReason string // "" if valid
		wantSorted []string
	}{
		{name: "no labels"},
		{name: "trace id", labels: []string{"trace_id", "abc"}, wantSorted: []string{"trace_id", "abc"}},
		{name: "empty value", labels: []string{"trace_id", ""}, wantSorted: []string{"trace_id", ""}},
		{name: "unsorted are sorted", labels: []string{"trace_id", "a", "span_id", "b"}, wantSorted: []string{"span_id", "b", "trace_id", "a"}},
		{name: "UTF-8 name under UTF-8 validation", labels: []string{"trace.id", "a"}, utf8: true, wantSorted: []string{"trace.id", "a"}},
		{name: "empty name", labels: []string{"", "a"}, wantReason: "exemplar 0: label 0 has an empty name"},
		{name: "invalid legacy name", labels: []string{"trace.id", "a"}, wantReason: `exemplar 0: invalid label name "trace.id"`},
		{name: "invalid UTF-8 name", labels: []string{"a\xff", "a"}, utf8: true, wantReason: `exemplar 0: invalid label name "a\xff"`},
		{name: "invalid UTF-8 value", labels: []string{"trace_id", "\xff"}, wantReason: `exemplar 0: value of label "trace_id" is not valid UTF-8`},
		{name: "duplicate names", labels: []string{"b", "1", "a", "2", "b", "3"}, wantReason: `exemplar 0: duplicate label name "b"`},
		{name: "adjacent duplicate names", labels: []string{"a", "1", "a", "2"}, wantReason: `exemplar 0: duplicate label name "a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := requestWithExemplar(t, tc.labels...)
			scheme := LegacyValidation
			if tc.utf8 {
				scheme = UTF8Validation
			}
			err := Validate(r, scheme)
			if tc.wantReason != "" {
				var ve *ValidationError
				if !errors.As(err, &ve) || ve.Reason != tc.wantReason || ve.Labels != `{__name__="up"}` {
					t.Fatalf("Validate: %v, want reason %q", err, tc.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			e := r.Batch.SeriesExemplars(0)[0]
			var got []string
			for _, l := range r.Batch.ExemplarLabels(&e) {
				got = append(got, string(l.Name), string(l.Value))
			}
			if strings.Join(got, "\x00") != strings.Join(tc.wantSorted, "\x00") {
				t.Errorf("exemplar labels %q, want %q", got, tc.wantSorted)
			}
		})
	}
}

func TestValidationErrorIsBounded(t *testing.T) {
	huge := strings.Repeat("v", 1<<20)
	var kv []string
	for i := range 50 {
		kv = append(kv, "l"+strings.Repeat("x", i)+strings.Repeat("\xff", 100), huge)
	}
	for _, series := range [][]string{
		kv, // many labels with long names and values, missing __name__
		{"__name__", "up", strings.Repeat("-", 1<<20), "x"},                // long invalid name
		{"__name__", strings.Repeat("\xff", 1<<20)},                        // long invalid value
		{"__name__", "up", "a", "a" + strings.Repeat("é", 1<<19), "b", ""}, // cut inside a rune
	} {
		err := Validate(requestOf(t, series), LegacyValidation)
		if err == nil {
			t.Fatal("valid")
		}
		if n := len(err.Error()); n > 1500 {
			t.Errorf("error message of %d bytes: %.200s...", n, err)
		}
		if !utf8.ValidString(err.Error()) {
			t.Errorf("error message is not valid UTF-8: %q", err)
		}
	}
	got := renderLabels([]model.Label{{Name: []byte("a"), Value: []byte(strings.Repeat("é", 40))}})
	if want := `{a="` + strings.Repeat("é", 32) + `"...}`; got != want {
		t.Errorf("renderLabels cut a value as %s, want %s", got, want)
	}
	var many []model.Label
	for range 20 {
		many = append(many, model.Label{Name: []byte("n"), Value: []byte("v")})
	}
	if got, want := renderLabels(many), "{"+strings.Repeat(`n="v", `, 10)+"...}"; got != want {
		t.Errorf("renderLabels of 20 labels: %s, want %s", got, want)
	}
}

func TestValidLegacyMatchesRegexp(t *testing.T) {
	metric := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	label := regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	alphabet := []byte("aZ09_:-\x80é")
	var s []byte
	var check func(n int)
	check = func(n int) {
		if len(s) > 0 {
			if got, want := validLegacy(s, metricFirst, metricRest), metric.Match(s); got != want {
				t.Fatalf("metric name %q: %v, want %v", s, got, want)
			}
			if got, want := validLegacy(s, labelFirst, labelRest), label.Match(s); got != want {
				t.Fatalf("label name %q: %v, want %v", s, got, want)
			}
		}
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			s = append(s, c)
			check(n - 1)
			s = s[:len(s)-1]
		}
	}
	check(5)
	for c := range 256 { // every byte at every position of longer names
		for n := 1; n <= 20; n++ {
			for pos := range n {
				s := bytes.Repeat([]byte("a"), n)
				s[pos] = byte(c)
				if got, want := validLegacy(s, labelFirst, labelRest), label.Match(s); got != want {
					t.Fatalf("label name %q: %v, want %v", s, got, want)
				}
			}
		}
	}
}

func TestValidUTF8MatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n := 0; n <= 40; n++ {
		for pos := -1; pos < n; pos++ {
			for _, c := range []byte{0x7f, 0x80, 0xc3, 0xff} {
				s := bytes.Repeat([]byte("a"), n)
				if pos >= 0 {
					s[pos] = c
				}
				if got, want := validUTF8(s), utf8.Valid(s); got != want {
					t.Fatalf("%q: %v, want %v", s, got, want)
				}
			}
		}
	}
	for range 100000 {
		s := make([]byte, rng.IntN(30))
		for k := range s {
			s[k] = byte(rng.IntN(256))
			if rng.IntN(4) > 0 {
				s[k] &= 0x7f
			}
		}
		if got, want := validUTF8(s), utf8.Valid(s); got != want {
			t.Fatalf("%q: %v, want %v", s, got, want)
		}
	}
}
