package receive

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"unicode/utf8"
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
	// Series is the index of the series in Request.Series.
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

// Validate checks every series of r. Each series must have at least one
// label and a __name__ label whose value is a valid metric name; every label
// name must be non-empty and valid under scheme, every value non-empty and
// valid UTF-8, and label names must be strictly increasing bytewise, which
// rules out duplicates. It returns a *ValidationError for the first invalid
// series, or nil. Validate does not allocate unless it fails.
func Validate(r *Request, scheme ValidationScheme) error {
	legacy := scheme != UTF8Validation
	for i := range r.Series {
		s := &r.Series[i]
		if s.LabelsStart < 0 || s.LabelsStart > s.LabelsEnd || int(s.LabelsEnd) > len(r.Labels) {
			return &ValidationError{Series: i, Labels: "{}", Reason: fmt.Sprintf("label range [%d:%d] out of bounds of %d labels", s.LabelsStart, s.LabelsEnd, len(r.Labels))}
		}
		if s.SamplesStart < 0 || s.SamplesStart > s.SamplesEnd || int(s.SamplesEnd) > len(r.Samples) {
			return &ValidationError{Series: i, Labels: "{}", Reason: fmt.Sprintf("sample range [%d:%d] out of bounds of %d samples", s.SamplesStart, s.SamplesEnd, len(r.Samples))}
		}
		ls := r.Labels[s.LabelsStart:s.LabelsEnd]
		if p, j := checkLabels(ls, legacy); p != problemNone {
			return &ValidationError{Series: i, Labels: renderLabels(ls), Reason: describe(p, ls, j)}
		}
	}
	return nil
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
func describe(p problemCode, ls []Label, j int) string {
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
func checkLabels(ls []Label, legacy bool) (problemCode, int) {
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
func renderLabels(ls []Label) string {
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
