package targets

import (
	"bytes"
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
)

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("targets").Parse(pageHTML))

// healthStates are the values of ?health=, in the order the filter offers them.
var healthStates = []scrape.TargetHealth{scrape.HealthGood, scrape.HealthBad, scrape.HealthUnknown}

type pageData struct {
	Pool      string // ?pool=, "" for all
	Health    string // ?health=, "" for all
	PoolNames []string
	Healths   []scrape.TargetHealth
	Pools     []poolView
	Up, Total int
	Now       string
}

type poolView struct {
	Name      string
	Up, Total int // over all active targets of the pool, whatever the filter
	Dropped   int
	Targets   []targetView // those that pass the filter
}

type targetView struct {
	ScrapeURL  string
	GlobalURL  string
	Health     scrape.TargetHealth
	Labels     []labels.Label
	Discovered []labels.Label
	LastScrape string // RFC 3339, "" before the first scrape
	Ago        string
	Duration   string
	Interval   string
	Timeout    string
	Error      string
}

func (h *Handlers) servePage(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	q := r.URL.Query()
	d := pageData{Pool: q.Get("pool"), Health: q.Get("health"), Healths: healthStates}
	if d.Health != "" && !slices.Contains(healthStates, scrape.TargetHealth(d.Health)) {
		http.Error(w, fmt.Sprintf("invalid health filter %q: want up, down or unknown", d.Health), http.StatusBadRequest)
		return
	}

	active := h.src.TargetsActive()
	dropped := h.src.TargetsDroppedCounts()
	now := h.now()
	d.Now = now.UTC().Format(time.RFC3339)
	d.PoolNames = sortedPools(active)
	b := labels.NewBuilder(labels.EmptyLabels())
	for _, name := range d.PoolNames {
		p := poolView{Name: name, Dropped: dropped[name]}
		for _, t := range active[name] {
			v := h.targetView(b, now, t)
			p.Total++
			if v.Health == scrape.HealthGood {
				p.Up++
			}
			if d.Health == "" || string(v.Health) == d.Health {
				p.Targets = append(p.Targets, v)
			}
		}
		d.Up += p.Up
		d.Total += p.Total
		if d.Pool != "" && name != d.Pool {
			continue
		}
		if d.Health != "" && len(p.Targets) == 0 {
			continue
		}
		slices.SortFunc(p.Targets, func(a, b targetView) int {
			return cmp.Or(cmp.Compare(a.ScrapeURL, b.ScrapeURL), cmp.Compare(labelsKey(a.Labels), labelsKey(b.Labels)))
		})
		d.Pools = append(d.Pools, p)
	}

	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, &d); err != nil {
		h.logger.Error("render targets page", "err", err)
		http.Error(w, "render targets page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	w.Header().Set("Cache-Control", "no-store")
	h.write(w, r, "text/html; charset=utf-8", http.StatusOK, buf.Bytes())
}

func (h *Handlers) targetView(b *labels.Builder, now time.Time, t *scrape.Target) targetView {
	v := targetView{
		ScrapeURL: t.URL().String(),
		Health:    t.Health(),
		Interval:  t.GetValue(model.ScrapeIntervalLabel),
		Timeout:   t.GetValue(model.ScrapeTimeoutLabel),
	}
	if err := t.LastError(); err != nil {
		v.Error = err.Error()
	}
	global, err := h.globalURL(t.URL())
	if err != nil {
		v.Error = fmt.Sprintf("%s: %v", v.Error, err)
	}
	v.GlobalURL = global.String()
	t.Labels(b).Range(func(l labels.Label) { v.Labels = append(v.Labels, l) })
	t.DiscoveredLabels(b).Range(func(l labels.Label) { v.Discovered = append(v.Discovered, l) })
	if last := t.LastScrape(); !last.IsZero() {
		v.LastScrape = last.UTC().Format(time.RFC3339Nano)
		v.Ago = ago(now.Sub(last))
		v.Duration = scrapeDuration(t.LastScrapeDuration())
	}
	return v
}

// ago renders the time since the last scrape: "2.5 s ago" under a minute,
// "3m12s ago" above.
func ago(d time.Duration) string {
	d = max(d, 0)
	if d < time.Minute {
		return fmt.Sprintf("%.1f s ago", d.Seconds())
	}
	return d.Truncate(time.Second).String() + " ago"
}

// scrapeDuration renders how long a scrape took: "12.3 ms" under a second,
// "1.234 s" above.
func scrapeDuration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}

func labelsKey(ls []labels.Label) string {
	var b bytes.Buffer
	for _, l := range ls {
		b.WriteString(l.Name)
		b.WriteByte(0)
		b.WriteString(l.Value)
		b.WriteByte(0)
	}
	return b.String()
}
