package receive

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/ferrymetrics/ferry/wal/model"
)

// ValidationScheme selects which metric and label names Validate accepts.
type ValidationScheme int

const (
	// LegacyValidation accepts the names of the Remote-Write 1.0
	// specification: metric names matching [a-zA-Z_:][a-zA-Z0-9_:]* and
	// label names matching [a-zA-Z_][a-zA-Z0-9_]*. It is the default.
	LegacyValidation ValidationScheme = iota
	// UTF8Validation accepts any non-empty valid UTF-8 metric or label name.
	UTF8Validation
)

// ValidationError reports the first invalid series of a Request.
type ValidationError struct {
	// Series is the index of the series in Request.Batch.Series.
	Series int
	// Labels renders the series' labels, truncated to a few hundred bytes,
	// e.g. {__name__="up", job="x"}.
	Labels string
	// Reason says what is wrong.
	Reason string
}

// Error returns a message naming the series and the problem, e.g.
//
//	receive: series 3 {__name__="up", job="x", a="b"}: label names not sorted: "a" after "job"
func (e *ValidationError) Error() string {
	return "receive: series " + strconv.Itoa(e.Series) + " " + e.Labels + ": " + e.Reason
}

// Validate checks every series of r.Batch. Each series must have at least
// one label and a __name__ label whose value is a valid metric name; every
// label name must be non-empty and valid under scheme, every value non-empty
// and valid UTF-8, and label names must be strictly increasing bytewise,
// which rules out duplicates. Exemplars may have no labels; their label
// names must be non-empty and valid under scheme, their values valid UTF-8
// (possibly empty), and their names distinct. Validate sorts each
// exemplar's labels by name. It returns a *ValidationError for the first
// invalid series, or nil. Validate does not allocate unless it fails.
func Validate(r *Request, scheme ValidationScheme) error {
	for i := range r.Batch.Series {
		if err := validateShape(&r.Batch, i, scheme); err != nil {
			return err
		}
		if err := ValidateSeries(r, i, scheme); err != nil {
			return err
		}
	}
	return nil
}

// ValidateShape is the part of Validate that does not look at series
// labels: every series' ranges lie within the batch, and exemplars are
// valid. With ValidateSeries for each series it is Validate; a writer that
// knows which series it already holds (which passed ValidateSeries before)
// calls ValidateSeries only for the others.
func ValidateShape(r *Request, scheme ValidationScheme) error {
	for i := range r.Batch.Series {
		if err := validateShape(&r.Batch, i, scheme); err != nil {
			return err
		}
	}
	return nil
}

func validateShape(b *model.Batch, i int, scheme ValidationScheme) error {
	s := &b.Series[i]
	if !inRange(s.LabelsStart, s.LabelsEnd, len(b.Labels)) || !inRange(s.SamplesStart, s.SamplesEnd, len(b.Samples)) ||
		!inRange(s.HistogramsStart, s.HistogramsEnd, len(b.Histograms)) || !inRange(s.ExemplarsStart, s.ExemplarsEnd, len(b.Exemplars)) {
		return &ValidationError{Series: i, Labels: "{}", Reason: badSeriesRanges(s, b)}
	}
	if s.ExemplarsEnd > s.ExemplarsStart {
		if reason := checkExemplars(b, s, scheme != UTF8Validation); reason != "" {
			return &ValidationError{Series: i, Labels: renderLabels(b.Labels[s.LabelsStart:s.LabelsEnd]), Reason: reason}
		}
	}
	return nil
}

// ValidateSeries checks the labels of series i of a request that passed
// ValidateShape.
func ValidateSeries(r *Request, i int, scheme ValidationScheme) error {
	s := &r.Batch.Series[i]
	ls := r.Batch.Labels[s.LabelsStart:s.LabelsEnd]
	if p, j := checkLabels(ls, scheme != UTF8Validation); p != problemNone {
		return &ValidationError{Series: i, Labels: renderLabels(ls), Reason: describe(p, ls, j)}
	}
	return nil
}

// inRange reports whether [start:end] is a valid range of a slice of n
// elements. As unsigned numbers, negative bounds are out of range: a
// negative start is above any non-negative end, a negative end above n.
func inRange(start, end int32, n int) bool {
	return uint32(start) <= uint32(end) && uint(int(end)) <= uint(n)
}

// badSeriesRanges describes the first range of s out of the bounds of b.
func badSeriesRanges(s *model.Series, b *model.Batch) string {
	for _, c := range []struct {
		what       string
		start, end int32
		n          int
	}{
		{"label", s.LabelsStart, s.LabelsEnd, len(b.Labels)},
		{"sample", s.SamplesStart, s.SamplesEnd, len(b.Samples)},
		{"histogram", s.HistogramsStart, s.HistogramsEnd, len(b.Histograms)},
		{"exemplar", s.ExemplarsStart, s.ExemplarsEnd, len(b.Exemplars)},
	} {
		if !inRange(c.start, c.end, c.n) {
			return fmt.Sprintf("%s range [%d:%d] out of bounds of %d %ss", c.what, c.start, c.end, c.n, c.what)
		}
	}
	return "valid"
}

// checkExemplars returns what is wrong with the first invalid exemplar of
// series s, or "". It sorts the labels of each exemplar by name.
func checkExemplars(b *model.Batch, s *model.Series, legacy bool) string {
	for k := s.ExemplarsStart; k < s.ExemplarsEnd; k++ {
		e := &b.Exemplars[k]
		if !inRange(e.LabelsStart, e.LabelsEnd, len(b.Labels)) {
			return fmt.Sprintf("exemplar %d: label range [%d:%d] out of bounds of %d labels", k-s.ExemplarsStart, e.LabelsStart, e.LabelsEnd, len(b.Labels))
		}
		ls := b.Labels[e.LabelsStart:e.LabelsEnd]
		if p, j := checkExemplarLabels(ls, legacy); p != problemNone {
			return fmt.Sprintf("exemplar %d: %s", k-s.ExemplarsStart, describe(p, ls, j))
		}
	}
	return ""
}

// checkExemplarLabels returns the first problem with the labels of one
// exemplar and the index of the label concerned, sorting them by name.
func checkExemplarLabels(ls []model.Label, legacy bool) (problemCode, int) {
	sorted := true
	for j := range ls {
		name, value := ls[j].Name, ls[j].Value
		switch {
		case len(name) == 0:
			return problemEmptyName, j
		case legacy && !validLegacy(name, labelFirst, labelRest) || !legacy && !validUTF8(name):
			return problemInvalidName, j
		case !validUTF8(value):
			return problemInvalidValue, j
		}
		if j > 0 && bytes.Compare(ls[j-1].Name, name) >= 0 {
			sorted = false
		}
	}
	if sorted {
		return problemNone, 0
	}
	slices.SortStableFunc(ls, func(a, b model.Label) int { return bytes.Compare(a.Name, b.Name) })
	for j := 1; j < len(ls); j++ {
		if bytes.Equal(ls[j-1].Name, ls[j].Name) {
			return problemDuplicate, j
		}
	}
	return problemNone, 0
}

// problemCode identifies what checkLabels found wrong.
type problemCode uint8

const (
	problemNone problemCode = iota
	problemNoLabels
	problemNoMetricName
	problemEmptyName
	problemInvalidName
	problemInvalidMetricName
	problemEmptyValue
	problemInvalidValue
	problemUnsorted
	problemDuplicate
)

// describe explains problem p of label j of ls.
func describe(p problemCode, ls []model.Label, j int) string {
	switch p {
	case problemNoLabels:
		return "no labels"
	case problemNoMetricName:
		return "no __name__ label"
	case problemEmptyName:
		return fmt.Sprintf("label %d has an empty name", j)
	case problemInvalidName:
		return "invalid label name " + quote(ls[j].Name)
	case problemInvalidMetricName:
		return "invalid metric name " + quote(ls[j].Value)
	case problemEmptyValue:
		return "empty value for label " + quote(ls[j].Name)
	case problemInvalidValue:
		return "value of label " + quote(ls[j].Name) + " is not valid UTF-8"
	case problemUnsorted:
		return "label names not sorted: " + quote(ls[j].Name) + " after " + quote(ls[j-1].Name)
	case problemDuplicate:
		return "duplicate label name " + quote(ls[j].Name)
	}
	return "valid"
}

// checkLabels returns the first problem with the labels of one series and
// the index of the label concerned.
func checkLabels(ls []model.Label, legacy bool) (problemCode, int) {
	if len(ls) == 0 {
		return problemNoLabels, 0
	}
	hasMetricName := false
	var prev []byte
	for j := range ls {
		name, value := ls[j].Name, ls[j].Value
		if !labelOK(name, value, legacy) {
			return labelProblem(name, value, legacy), j
		}
		// Adjacent names usually differ in their first byte; labelOK
		// checked that names are not empty.
		if j > 0 && prev[0] >= name[0] {
			if c := bytes.Compare(prev, name); c == 0 {
				return problemDuplicate, j
			} else if c > 0 {
				return problemUnsorted, j
			}
		}
		prev = name
		if len(name) == len("__name__") && string(name) == "__name__" {
			hasMetricName = true
			if legacy && !validLegacy(value, metricFirst, metricRest) {
				return problemInvalidMetricName, j
			}
		}
	}
	if !hasMetricName {
		return problemNoMetricName, 0
	}
	return problemNone, 0
}

// labelOK reports whether name and value are both non-empty, name is a
// valid label name and value valid UTF-8.
func labelOK(name, value []byte, legacy bool) bool {
	if len(name) == 0 || len(value) == 0 {
		return false
	}
	if legacy {
		if !validLegacy(name, labelFirst, labelRest) {
			return false
		}
	} else if !validUTF8(name) {
		return false
	}
	return orBytes(value)&0x8080808080808080 == 0 || utf8.Valid(value)
}

// labelProblem says why labelOK rejected name and value.
func labelProblem(name, value []byte, legacy bool) problemCode {
	switch {
	case len(name) == 0:
		return problemEmptyName
	case legacy && !validLegacy(name, labelFirst, labelRest) || !legacy && !utf8.Valid(name):
		return problemInvalidName
	case len(value) == 0:
		return problemEmptyValue
	}
	return problemInvalidValue
}

// validUTF8 is utf8.Valid with a fast path for ASCII strings.
func validUTF8(s []byte) bool {
	return len(s) == 0 || orBytes(s)&0x8080808080808080 == 0 || utf8.Valid(s)
}

// orBytes returns the bitwise OR of words covering all bytes of the
// non-empty s: s is ASCII iff no byte of the result has its top bit set.
// It reads overlapping words rather than looping over short strings byte by
// byte: label values vary in length, and a loop whose trip count the branch
// predictor cannot guess costs more than the check itself.
func orBytes(s []byte) (acc uint64) {
	switch n := len(s); {
	case n >= 8:
		for k := 0; k < n-8; k += 8 {
			acc |= binary.LittleEndian.Uint64(s[k:])
		}
		return acc | binary.LittleEndian.Uint64(s[n-8:])
	case n >= 4:
		return uint64(binary.LittleEndian.Uint32(s) | binary.LittleEndian.Uint32(s[n-4:]))
	default:
		return uint64(s[0] | s[n/2] | s[n-1])
	}
}

// Character classes of legacy names, as bits in nameChars.
const (
	labelFirst  = 1 << iota // [a-zA-Z_]
	labelRest               // [a-zA-Z0-9_]
	metricFirst             // [a-zA-Z_:]
	metricRest              // [a-zA-Z0-9_:]
)

// nameChars maps each byte to the legacy name positions it may occupy.
var nameChars = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
		digit := c >= '0' && c <= '9'
		if alpha {
			t[c] |= labelFirst | labelRest | metricFirst | metricRest
		}
		if digit {
			t[c] |= labelRest | metricRest
		}
		if c == ':' {
			t[c] |= metricFirst | metricRest
		}
	}
	return t
}()

// validLegacy reports whether the non-empty s has its first byte in class
// first and every following byte in class rest.
func validLegacy(s []byte, first, rest uint8) bool {
	if nameChars[s[0]]&first == 0 {
		return false
	}
	// Check the remaining bytes four at a time, the last group overlapping
	// the previous one; that beats a byte loop by a third. Rechecking the
	// first byte is harmless: class first is part of class rest.
	if len(s) < 5 {
		c := nameChars[s[len(s)-1]] & nameChars[s[len(s)/2]] & rest
		if len(s) == 4 {
			c &= nameChars[s[1]]
		}
		return c != 0 || len(s) == 1
	}
	for k := 1; k < len(s)-4; k += 4 {
		if nameChars[s[k]]&nameChars[s[k+1]]&nameChars[s[k+2]]&nameChars[s[k+3]]&rest == 0 {
			return false
		}
	}
	n := len(s)
	return nameChars[s[n-4]]&nameChars[s[n-3]]&nameChars[s[n-2]]&nameChars[s[n-1]]&rest != 0
}

// Limits of renderLabels and quote, so that errors never echo megabytes.
const (
	renderMaxLabels = 10
	renderMaxBytes  = 256
	quoteMaxBytes   = 64
)

// renderLabels formats ls like {__name__="up", job="x"}, with at most
// renderMaxLabels labels and about renderMaxBytes bytes.
func renderLabels(ls []model.Label) string {
	b := make([]byte, 0, renderMaxBytes+8)
	b = append(b, '{')
	for j, l := range ls {
		mark := len(b)
		if j > 0 {
			b = append(b, ", "...)
		}
		if len(l.Name) > 0 && len(l.Name) <= quoteMaxBytes && validLegacy(l.Name, labelFirst, labelRest) {
			b = append(b, l.Name...)
		} else {
			b = appendQuoted(b, l.Name)
		}
		b = append(b, '=')
		b = appendQuoted(b, l.Value)
		if j > 0 && len(b) > renderMaxBytes || j == renderMaxLabels {
			b = append(b[:mark], ", ..."...)
			break
		}
	}
	return string(append(b, '}'))
}

// quote returns s quoted with Go escapes, truncated to quoteMaxBytes.
func quote(s []byte) string { return string(appendQuoted(nil, s)) }

func appendQuoted(b, s []byte) []byte {
	t := s
	if len(t) > quoteMaxBytes {
		t = t[:quoteMaxBytes]
		// Cut at a rune boundary, unless s is not UTF-8 there anyway.
		for k := len(t); k > len(t)-utf8.UTFMax && k > 0; k-- {
			if utf8.RuneStart(s[k]) {
				t = t[:k]
				break
			}
		}
	}
	b = strconv.AppendQuote(b, string(t))
	if len(t) < len(s) {
		b = append(b, "..."...)
	}
	return b
}
