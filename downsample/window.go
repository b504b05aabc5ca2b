package downsample

import "math"

// window accumulates one series' samples for one resolution. The counter
// fields carry over from window to window; the others describe the open
// window.
type window struct {
	Start         int64 // start of the open window (ms); its end is Start+res
	Count         uint64
	Sum, Min, Max float64
	FirstT, LastT int64
	FirstV, LastV float64
	// Total is the reset-adjusted running total of a counter at LastT: it
	// starts at the first raw value and grows by every increase, counting
	// a drop as a reset (the new raw value is the increase).
	Total   float64
	Prev    float64 // last raw value
	HasPrev bool
	// ClosedUntil is the end of the last closed window, if HasClosed:
	// samples before it are late.
	ClosedUntil int64
	HasClosed   bool
}

// closed is a window that just closed, with the values to emit.
type closed struct {
	Start, End    int64
	Count         uint64
	Sum, Min, Max float64
	LastT         int64
	LastV         float64
	Total         float64
}

// value returns the sample an aggregation emits for c.
func (c closed) value(agg string) float64 {
	switch agg {
	case "counter":
		return c.Total
	case "last":
		return c.LastV
	case "min":
		return c.Min
	case "max":
		return c.Max
	case "sum":
		return c.Sum
	case "count":
		return float64(c.Count)
	case "avg":
		return c.Sum / float64(c.Count)
	}
	return math.NaN()
}

// outcome of adding a sample.
type outcome int

const (
	accepted outcome = iota
	late             // older than a closed window (or than the last sample): dropped
	stale            // a NaN (staleness marker): not aggregated
)

// add aggregates sample (t, v). If it starts a new window, the open one is
// closed first and returned.
func (w *window) add(t int64, v float64, res int64) (*closed, outcome) {
	if math.IsNaN(v) {
		return nil, stale
	}
	if (w.HasClosed && t < w.ClosedUntil) || (w.Count > 0 && t <= w.LastT) {
		return nil, late
	}
	var c *closed
	if w.Count > 0 && t >= w.Start+res {
		cw := w.close(res)
		c = &cw
	}
	if w.Count == 0 {
		w.Start = floorDiv(t, res) * res
		w.Sum, w.Min, w.Max = 0, v, v
		w.FirstT, w.FirstV = t, v
	}
	w.Count++
	w.Sum += v
	w.Min = min(w.Min, v)
	w.Max = max(w.Max, v)
	w.LastT, w.LastV = t, v
	switch {
	case !w.HasPrev:
		w.Total = v
	case v < w.Prev:
		w.Total += v
	default:
		w.Total += v - w.Prev
	}
	w.Prev, w.HasPrev = v, true
	return c, accepted
}

// close ends the open window.
func (w *window) close(res int64) closed {
	c := closed{Start: w.Start, End: w.Start + res, Count: w.Count, Sum: w.Sum, Min: w.Min, Max: w.Max,
		LastT: w.LastT, LastV: w.LastV, Total: w.Total}
	w.ClosedUntil, w.HasClosed = w.Start+res, true
	w.Count = 0
	return c
}

// due reports whether the open window should close because the clock
// (ms) passed its end plus maxDelay and no sample of the series arrived for
// maxDelay (lastArrival, wall clock ms): a series being replayed from an
// upstream's backlog keeps its windows open until its data closes them.
func (w *window) due(now, lastArrival, res, maxDelay int64) bool {
	return w.Count > 0 && now >= w.Start+res+maxDelay && now-lastArrival >= maxDelay
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
