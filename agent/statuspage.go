package agent

import (
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strings"
	"time"
)

// The status page at /: the agent's Status as server-rendered HTML that
// refreshes itself every 10 seconds, readable without JavaScript and with
// no external assets. Each endpoint's backlog over the last hour is drawn
// as an inline SVG chart from the agent's in-memory history.

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes":     FormatBytes,
	"dur":       FormatSeconds,
	"durp":      func(p *float64) string { return humanDurationPtr(p) },
	"ago":       humanAgo,
	"rate":      func(f float64) string { return fmt.Sprintf("%.1f/s", f) },
	"chart":     lagChart,
	"lagText":   lagText,
	"bytes64":   humanBytesRate,
	"drain":     drainText,
	"stateCSS":  func(s string) string { return strings.ReplaceAll(s, "_", "-") },
	"stateText": func(s string) string { return strings.ReplaceAll(s, "_", " ") },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="10">
<title>Ferry status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .2em; } h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; } th, td { text-align: left; padding: .25em .8em .25em 0; vertical-align: top; }
th { font-weight: 600; color: #555; } .num { text-align: right; }
.state { font-weight: 600; padding: 0 .4em; border-radius: 3px; }
.healthy { background: #d8f3dc; } .catching-up, .retrying { background: #fff3bf; } .failing, .dropping-at-disk-cap { background: #ffd6d6; }
.muted { color: #777; } svg { background: #fafafa; border: 1px solid #ddd; }
</style>
</head>
<body>
<h1>Ferry {{.Version}}</h1>
<p class="muted">Started {{ago .Started .Time}} ago · {{if .Ready}}ready{{else}}starting (WAL replay){{end}} ·
{{if .Healthy}}every endpoint healthy{{else}}<strong>not every endpoint is healthy</strong>{{end}} ·
<a href="/api/v1/status">JSON</a> · <a href="/targets">targets</a> · <a href="/metrics">metrics</a></p>

<h2>Endpoints</h2>
{{if not .Endpoints}}<p>No endpoints configured.</p>{{end}}
{{range .Endpoints}}
<table id="endpoint-{{.Name}}" class="endpoint">
<tr><th>Endpoint</th><td><strong>{{.Name}}</strong> <span class="muted">{{.URL}}</span></td></tr>
<tr><th>State</th><td><span class="state {{stateCSS .State}}">{{stateText .State}}</span>{{if .FellBack}} · fell back to Remote-Write 1.0{{end}} · {{.Protocol}}</td></tr>
{{if .LastError}}<tr><th>Last error</th><td>{{.LastError}} <span class="muted">({{ago .LastErrorAt $.Time}} ago{{if not .FailingSince.IsZero}}, failing for {{ago .FailingSince $.Time}}{{end}})</span></td></tr>{{end}}
<tr><th>Last success</th><td>{{if .LastSuccess.IsZero}}none yet{{else}}{{ago .LastSuccess $.Time}} ago{{end}}</td></tr>
<tr><th>Backlog</th><td>{{lagText .Lag .LagUnit}} · {{if and (gt .Lag 0) (eq .SentSamples 0)}}nothing acknowledged yet{{else}}{{dur .LagSeconds}} behind{{end}} · checkpoint {{.Checkpoint}}</td></tr>
<tr><th>Caught up in</th><td class="eta">{{if eq .Lag 0}}caught up{{else}}{{durp .SecondsToCaughtUp}}{{end}}</td></tr>
<tr><th>Rates</th><td>sending {{rate .SendRate}} samples · backlog {{drain .DrainRate .LagUnit}}</td></tr>
<tr><th>Totals</th><td>{{.SentSamples}} samples ({{bytes .SentBytes}}) sent · {{.FailedSamples}} refused for good · {{.CapDropped}} dropped by the disk cap</td></tr>
<tr><th>Backlog, last hour</th><td>{{chart .History .LagUnit}}</td></tr>
</table>
{{end}}

{{with .WAL}}
<h2>Write-ahead log</h2>
<table id="wal">
<tr><th>Size</th><td>{{bytes .SizeBytes}}{{if gt .MaxSizeBytes 0}} of {{bytes .MaxSizeBytes}} (max_size){{else}} (no max_size){{end}} · {{.Segments}} segments · head {{.Head}}</td></tr>
<tr><th>Free disk</th><td>{{if ge .FreeBytes 0}}{{bytes .FreeBytes}} free, {{bytes .MinFreeBytes}} kept free (min_free_disk){{else}}unknown{{end}}</td></tr>
<tr><th>Ingest</th><td>{{rate .IngestRate}} samples · growing {{bytes64 .GrowthRate}}/s · {{.Series}} series</td></tr>
<tr><th>Disk cap in</th><td class="eta">{{if .SecondsToCap}}{{durp .SecondsToCap}} at this rate, then {{.WhenFull}}{{else}}not approaching{{end}}</td></tr>
</table>
{{end}}

{{with .Compactor}}
<h2>Compactor</h2>
<table id="compactor">
<tr><th>Position</th><td>{{.Position}} · {{bytes .LagBytes}} behind · {{.Series}} series · {{.OpenWindows}} open windows</td></tr>
{{range .Logs}}<tr><th>{{.Resolution}} rollups</th><td>{{.Entries}} entries · {{.Series}} series · retention {{.Retention}}{{if not .Newest.IsZero}} · newest {{.Newest.Format "2006-01-02 15:04:05Z07:00"}}{{end}}</td></tr>{{end}}
</table>
{{end}}

<h2>Scraping</h2>
<p id="scrape">{{if .Scrape.Targets}}{{.Scrape.Targets}} targets: {{.Scrape.Up}} up, {{.Scrape.Down}} down. <a href="/targets">Targets</a>{{else}}No scrape targets.{{end}}</p>
</body>
</html>
`))

// drainText says how fast a backlog shrinks (a positive rate) or grows.
func drainText(rate float64, unit string) string {
	verb := "shrinking"
	if rate < 0 {
		verb, rate = "growing", -rate
	}
	if rate == 0 {
		return "steady"
	}
	if unit == "bytes" {
		return verb + " " + FormatBytes(int64(rate)) + "/s"
	}
	return fmt.Sprintf("%s %.1f %s/s", verb, rate, unit)
}

func humanBytesRate(f float64) string {
	if f < 0 {
		return "-" + FormatBytes(int64(-f))
	}
	return FormatBytes(int64(f))
}

func (a *Agent) serveStatusPage(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := statusPage.Execute(w, a.Status()); err != nil {
		a.logger.Named("status").Warn("Rendering the status page failed")
	}
}

// FormatBytes writes n bytes with a binary unit (KiB, MiB, …).
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// FormatSeconds writes a duration in seconds for people: whole seconds
// under a minute, whole minutes under two days, then days.
func FormatSeconds(s float64) string {
	if s <= 0 || math.IsNaN(s) {
		return "0s"
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	default:
		return fmt.Sprintf("%.1f days", d.Hours()/24)
	}
}

func humanDurationPtr(p *float64) string {
	if p == nil {
		return "unknown: not draining yet"
	}
	return FormatSeconds(*p)
}

func humanAgo(t, now time.Time) string { return FormatSeconds(now.Sub(t).Seconds()) }

func lagText(lag int64, unit string) string {
	if unit == "bytes" {
		return FormatBytes(lag) + " of WAL"
	}
	return fmt.Sprintf("%d %s", lag, unit)
}

// lagChart draws the backlog history as an SVG polyline (lag in its unit,
// scaled to the largest) over the last hour.
func lagChart(h []HistoryPoint, unit string) template.HTML {
	const w, ht = 360.0, 60.0
	if len(h) == 0 {
		return ""
	}
	// The axis spans the last hour, or the time since start if shorter.
	end := h[len(h)-1].Time
	start := end.Add(-time.Hour)
	if h[0].Time.After(start) {
		start = h[0].Time
	}
	span := max(end.Sub(start).Seconds(), 1)
	var peak int64
	for _, p := range h {
		peak = max(peak, p.Lag)
	}
	label := "peak " + lagText(peak, unit)
	if peak == 0 {
		label, peak = "no backlog", 1
	}
	var pts strings.Builder
	for _, p := range h {
		x := w * p.Time.Sub(start).Seconds() / span
		y := ht - 2 - (ht-4)*float64(p.Lag)/float64(peak)
		fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
	}
	label = template.HTMLEscapeString(label)
	return template.HTML(fmt.Sprintf(`<svg class="lag-chart" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="backlog over the last hour: %s"><polyline fill="none" stroke="#c0392b" stroke-width="1.5" points="%s"/></svg> <span class="muted">%s</span>`,
		w, ht, w, ht, label, pts.String(), label))
}
