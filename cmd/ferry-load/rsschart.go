package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// rssChart draws RSS over time as a self-contained SVG line chart: MiB
// against minutes since the push started, the warm-up shaded grey, the
// first and last thirds of the push after it shaded and each marked with
// its peak, and the end of the push as a dashed line (what follows is the
// drain).
type rssChart struct {
	title   string
	samples []rssSample
	warmup  time.Duration
	push    time.Duration // how long the push ran
}

// Geometry of the chart, in SVG user units.
const (
	chartWidth, chartHeight = 900, 440
	marginLeft, marginRight = 76, 28
	marginTop, marginBottom = 56, 60
	plotWidth               = chartWidth - marginLeft - marginRight
	plotHeight              = chartHeight - marginTop - marginBottom
)

// writeFile writes the chart to path.
func (c rssChart) writeFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, c.svg()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// svg returns the chart as an SVG document.
func (c rssChart) svg() string {
	var b strings.Builder
	pf := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	minutes := func(d time.Duration) float64 { return d.Minutes() }

	xMax := minutes(c.push)
	yMax := 0.0
	for _, s := range c.samples {
		xMax = max(xMax, minutes(s.t))
		yMax = max(yMax, mib(s.rss))
	}
	xStep := niceStep(max(xMax, 1.0/60), 10)
	xTop := math.Ceil(xMax/xStep-1e-9) * xStep
	yStep := niceStep(max(yMax*1.05, 1), 6)
	yTop := math.Ceil(yMax*1.05/yStep-1e-9) * yStep
	yTop = max(yTop, yStep)
	x := func(m float64) float64 { return marginLeft + m/xTop*plotWidth }
	y := func(v float64) float64 { return marginTop + plotHeight - v/yTop*plotHeight }

	pf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight)
	pf(`<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, chartHeight)
	pf(`<text x="%d" y="24" font-size="16" font-weight="bold" text-anchor="middle">%s</text>`+"\n",
		chartWidth/2, html.EscapeString(c.title))

	// Regions: warm-up, first and last third of the push after it.
	region := func(from, to time.Duration, fill, label string) {
		if to <= from {
			return
		}
		x0, x1 := x(minutes(from)), x(minutes(to))
		pf(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, marginTop, x1-x0, plotHeight, fill)
		pf(`<text x="%.1f" y="%d" text-anchor="middle" fill="#555555">%s</text>`+"\n", (x0+x1)/2, marginTop-6, label)
	}
	region(0, c.warmup, "#e6e6e6", "warm-up")
	first, last := rssThirds(c.samples, c.warmup, c.push)
	if c.push > c.warmup {
		third := (c.push - c.warmup) / 3
		region(c.warmup, c.warmup+third, "#dcebf7", "first third")
		region(c.push-third, c.push, "#fde5d0", "last third")
		peak := func(from, to time.Duration, v int64) {
			if v <= 0 {
				return
			}
			pf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="6 3"/>`+"\n",
				x(minutes(from)), y(mib(v)), x(minutes(to)), y(mib(v)))
			pf(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#d62728">peak %.1f MiB</text>`+"\n",
				x(minutes(from+to)/2), y(mib(v))-5, mib(v))
		}
		peak(c.warmup, c.warmup+third, first)
		peak(c.push-third, c.push, last)
	}

	// Grid, ticks and axes.
	for k := 0; float64(k)*xStep <= xTop+1e-9; k++ {
		m := float64(k) * xStep
		pf(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000000" stroke-opacity="0.08"/>`+"\n", x(m), marginTop, x(m), marginTop+plotHeight)
		pf(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000000"/>`+"\n", x(m), marginTop+plotHeight, x(m), marginTop+plotHeight+5)
		pf(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(m), marginTop+plotHeight+19, tickLabel(m, xStep))
	}
	for k := 0; float64(k)*yStep <= yTop+1e-9; k++ {
		v := float64(k) * yStep
		pf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#000000" stroke-opacity="0.08"/>`+"\n", marginLeft, y(v), marginLeft+plotWidth, y(v))
		pf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#000000"/>`+"\n", marginLeft-5, y(v), marginLeft, y(v))
		pf(`<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", marginLeft-8, y(v)+4, tickLabel(v, yStep))
	}
	pf(`<path d="M%d %dV%dH%d" fill="none" stroke="#000000"/>`+"\n", marginLeft, marginTop, marginTop+plotHeight, marginLeft+plotWidth)
	pf(`<text x="%d" y="%d" text-anchor="middle">minutes since the push started</text>`+"\n",
		marginLeft+plotWidth/2, chartHeight-18)
	pf(`<text x="18" y="%d" text-anchor="middle" transform="rotate(-90 18 %d)">RSS (MiB)</text>`+"\n",
		marginTop+plotHeight/2, marginTop+plotHeight/2)

	// End of the push; what follows is the drain.
	if c.push > 0 {
		pf(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#555555" stroke-dasharray="3 3"/>`+"\n",
			x(minutes(c.push)), marginTop, x(minutes(c.push)), marginTop+plotHeight)
		if x(xTop)-x(minutes(c.push)) > 40 {
			pf(`<text x="%.1f" y="%d" fill="#555555">drain</text>`+"\n", x(minutes(c.push))+4, marginTop+plotHeight-6)
		}
	}

	// The line: per pixel column the lowest and highest reading, in time
	// order, so that hours of 200ms samples stay a small file and no peak
	// is lost.
	if len(c.samples) > 0 {
		b.WriteString(`<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" stroke-linejoin="round" points="`)
		for _, s := range envelope(c.samples, x, minutes) {
			pf("%.1f,%.1f ", x(minutes(s.t)), y(mib(s.rss)))
		}
		b.WriteString("\"/>\n")
	} else {
		pf(`<text x="%d" y="%d" text-anchor="middle" fill="#555555">no samples</text>`+"\n",
			marginLeft+plotWidth/2, marginTop+plotHeight/2)
	}
	if first > 0 && last > 0 {
		pf(`<text x="%d" y="%d" text-anchor="end" fill="#555555">last third / first third = %.3f</text>`+"\n",
			marginLeft+plotWidth, chartHeight-18, float64(last)/float64(first))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// envelope keeps, of the samples falling in each pixel column, the first,
// lowest, highest and last, in time order.
func envelope(samples []rssSample, x func(float64) float64, minutes func(time.Duration) float64) []rssSample {
	var out []rssSample
	for i := 0; i < len(samples); {
		col := math.Floor(x(minutes(samples[i].t)))
		j := i
		lo, hi := i, i
		for ; j < len(samples) && math.Floor(x(minutes(samples[j].t))) == col; j++ {
			if samples[j].rss < samples[lo].rss {
				lo = j
			}
			if samples[j].rss > samples[hi].rss {
				hi = j
			}
		}
		keep := []int{i, lo, hi, j - 1}
		if lo > hi {
			keep[1], keep[2] = hi, lo
		}
		prev := -1
		for _, k := range keep {
			if k != prev {
				out = append(out, samples[k])
				prev = k
			}
		}
		i = j
	}
	return out
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// niceStep is the tick step of 1, 2 or 5 times a power of ten that cuts
// span into at most n intervals.
func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw*(1-1e-9) {
			return m * mag
		}
	}
	return 10 * mag
}

// tickLabel formats a tick value with as many decimals as step needs.
func tickLabel(v, step float64) string {
	dec := max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
	return fmt.Sprintf("%.*f", dec, v)
}
