package main

import (
	"fmt"
	"math"
	"strconv"
)

// contentType is the Prometheus text exposition format the targets serve.
const contentType = "text/plain; version=0.0.4; charset=utf-8"

// valueKind says how a series' value follows time.
type valueKind uint8

const (
	counter      valueKind = iota // floor(rate × factor × elapsed)
	floatCounter                  // rate × factor × elapsed
	gauge                         // level + amp × sin(2π elapsed / period + phase)
	intGauge                      // gauge, rounded
)

// line is one sample line of the exposition. Its prefix holds everything
// before the value: the HELP and TYPE lines when the series is the first of
// its family, then the series name and labels.
type line struct {
	prefix []byte
	kind   valueKind
	rate   float64 // counters: increase per second
	level  float64 // gauges
	amp    float64
	period float64 // seconds
	phase  float64 // radians
}

// Bucket bounds of the two histograms; each also has a +Inf bucket.
var (
	durationBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	sizeBounds     = []float64{100, 1000, 10000, 100000, 1e6}
)

var (
	methods = []string{"GET", "POST", "PUT", "DELETE"}
	codes   = []string{"200", "201", "204", "304", "400", "404", "500", "503"}
)

// minSeries is the smallest --series the layout can fill: two histograms
// of one bound each, one counter and one gauge.
const minSeries = 10

// newLayout returns the lines of one target, exactly n (>= minSeries) of
// them. Every target exposes the same series; only their values differ. About
// an eighth of the series belong to two classic histograms, the rest are 60%
// counters and 40% gauges, in six families.
func newLayout(n int) []line {
	var b layoutBuilder
	buckets := min(max(n/8, 2), len(durationBounds)+1)
	hist := buckets + 2 + min(buckets, len(sizeBounds)+1) + 2
	rest := n - hist
	counters := rest * 6 / 10
	gauges := rest - counters

	b.family("sim_requests_total", "counter", "Requests handled, by handler, method and status code.")
	for i := range counters - counters/4 {
		b.add(fmt.Sprintf(`sim_requests_total{handler="/api/v1/resource%d",method="%s",code="%s"}`,
			i/32, methods[i%4], codes[i/4%8]), line{kind: counter, rate: 10 / float64(1+i%32)})
	}
	b.family("sim_sent_bytes_total", "counter", "Response bytes sent, by handler.")
	for i := range counters / 4 {
		b.add(fmt.Sprintf(`sim_sent_bytes_total{handler="/api/v1/resource%d"}`, i),
			line{kind: counter, rate: 20000 / float64(1+i)})
	}
	b.histogram("sim_request_duration_seconds", "Request latency.", durationBounds[:buckets-1], 0.2, 10)
	b.histogram("sim_response_size_bytes", "Response size.", sizeBounds[:min(buckets-1, len(sizeBounds))], 5000, 10)
	b.family("sim_queue_length", "gauge", "Items waiting, by queue.")
	for i := range gauges / 2 {
		b.add(fmt.Sprintf(`sim_queue_length{queue="q%d"}`, i),
			line{kind: intGauge, level: 50, amp: 40, period: 300 + 7*float64(i), phase: float64(i)})
	}
	b.family("sim_temperature_celsius", "gauge", "Sensor temperature.")
	for i := range gauges - gauges/2 {
		b.add(fmt.Sprintf(`sim_temperature_celsius{sensor="s%d"}`, i),
			line{kind: gauge, level: 40 + float64(i%10), amp: 5, period: 600 + 13*float64(i), phase: float64(i)})
	}
	return b.lines
}

// layoutBuilder collects lines, putting a family's HELP and TYPE before its
// first series; a family without series leaves no trace.
type layoutBuilder struct {
	lines  []line
	header string
}

func (b *layoutBuilder) family(name, typ, help string) {
	b.header = fmt.Sprintf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (b *layoutBuilder) add(series string, l line) {
	l.prefix = []byte(b.header + series + " ")
	b.header = ""
	b.lines = append(b.lines, l)
}

// histogram adds a classic histogram of observations exponentially
// distributed with the given mean, made at rate per second.
func (b *layoutBuilder) histogram(name, help string, bounds []float64, mean, rate float64) {
	b.family(name, "histogram", help)
	for _, le := range bounds {
		b.add(fmt.Sprintf(`%s_bucket{le="%s"}`, name, strconv.FormatFloat(le, 'g', -1, 64)),
			line{kind: counter, rate: rate * (1 - math.Exp(-le/mean))})
	}
	b.add(name+`_bucket{le="+Inf"}`, line{kind: counter, rate: rate})
	b.add(name+"_sum", line{kind: floatCounter, rate: rate * mean})
	b.add(name+"_count", line{kind: counter, rate: rate})
}

// appendBody appends the exposition of target (0-based) at elapsed seconds
// since the simulator started. Values are a function of (target, elapsed)
// only, so every scraper sees the same value at the same second, and
// counters never decrease. Targets differ by a rate factor and a phase.
func appendBody(dst []byte, lines []line, target int, elapsed float64) []byte {
	factor := 1 + float64(target%10)/10
	shift := 0.7 * float64(target)
	for i := range lines {
		l := &lines[i]
		var v float64
		switch l.kind {
		case counter:
			v = math.Floor(l.rate * factor * elapsed)
		case floatCounter:
			v = l.rate * factor * elapsed
		case gauge, intGauge:
			v = l.level + l.amp*math.Sin(2*math.Pi*elapsed/l.period+l.phase+shift)
			if l.kind == intGauge {
				v = math.Round(v)
			}
		}
		dst = append(dst, l.prefix...)
		dst = strconv.AppendFloat(dst, v, 'g', -1, 64)
		dst = append(dst, '\n')
	}
	return dst
}
