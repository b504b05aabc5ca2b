package targets

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
)

// The wire format of Prometheus' /api/v1/targets (web/api/v1/api.go: Target,
// DroppedTarget, TargetDiscovery, Response). Field names and types are part
// of the compatibility promise.

type apiResponse struct {
	Status    string `json:"status"`
	Data      any    `json:"data,omitempty"`
	ErrorType string `json:"errorType,omitempty"`
	Error     string `json:"error,omitempty"`
}

type activeTarget struct {
	DiscoveredLabels labels.Labels `json:"discoveredLabels"`
	Labels           labels.Labels `json:"labels"`

	ScrapePool string `json:"scrapePool"`
	ScrapeURL  string `json:"scrapeUrl"`
	GlobalURL  string `json:"globalUrl"`

	LastError          string              `json:"lastError"`
	LastScrape         time.Time           `json:"lastScrape"`
	LastScrapeDuration float64             `json:"lastScrapeDuration"`
	Health             scrape.TargetHealth `json:"health"`

	ScrapeInterval string `json:"scrapeInterval"`
	ScrapeTimeout  string `json:"scrapeTimeout"`
}

type droppedTarget struct {
	DiscoveredLabels labels.Labels `json:"discoveredLabels"`
	ScrapePool       string        `json:"scrapePool"`
}

type targetDiscovery struct {
	ActiveTargets       []*activeTarget  `json:"activeTargets"`
	DroppedTargets      []*droppedTarget `json:"droppedTargets"`
	DroppedTargetCounts map[string]int   `json:"droppedTargetCounts"`
}

func (h *Handlers) serveAPI(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	q := r.URL.Query()
	pool := q.Get("scrapePool")
	var showActive, showDropped bool
	switch strings.ToLower(q.Get("state")) {
	case "", "any":
		showActive, showDropped = true, true
	case "active":
		showActive = true
	case "dropped":
		showDropped = true
	default:
		h.apiError(w, r, http.StatusBadRequest, "bad_data",
			fmt.Sprintf("invalid parameter \"state\": %q is not one of active, dropped, any", q.Get("state")))
		return
	}

	res := &targetDiscovery{ActiveTargets: []*activeTarget{}, DroppedTargets: []*droppedTarget{}}
	b := labels.NewBuilder(labels.EmptyLabels())
	if showActive {
		byPool := h.src.TargetsActive()
		for _, name := range sortedPools(byPool) {
			if pool != "" && name != pool {
				continue
			}
			for _, t := range byPool[name] {
				res.ActiveTargets = append(res.ActiveTargets, h.active(b, name, t))
			}
		}
	}
	if showDropped {
		res.DroppedTargetCounts = h.src.TargetsDroppedCounts()
		byPool := h.src.TargetsDropped()
		for _, name := range sortedPools(byPool) {
			if pool != "" && name != pool {
				continue
			}
			for _, t := range byPool[name] {
				res.DroppedTargets = append(res.DroppedTargets, &droppedTarget{
					DiscoveredLabels: t.DiscoveredLabels(b),
					ScrapePool:       name,
				})
			}
		}
	}

	body, err := json.Marshal(&apiResponse{Status: "success", Data: res})
	if err != nil {
		h.apiError(w, r, http.StatusInternalServerError, "internal", fmt.Sprintf("encode targets: %v", err))
		return
	}
	h.write(w, r, "application/json", http.StatusOK, body)
}

// active describes one active target as Prometheus does, reading each field
// through the target's accessors.
func (h *Handlers) active(b *labels.Builder, pool string, t *scrape.Target) *activeTarget {
	scrapeURL := t.URL()
	lastErr := ""
	if err := t.LastError(); err != nil {
		lastErr = err.Error()
	}
	global, err := h.globalURL(t.URL())
	if err != nil {
		lastErr = fmt.Sprintf("%s: %v", lastErr, err)
	}
	return &activeTarget{
		DiscoveredLabels:   t.DiscoveredLabels(b),
		Labels:             t.Labels(b),
		ScrapePool:         pool,
		ScrapeURL:          scrapeURL.String(),
		GlobalURL:          global.String(),
		LastError:          lastErr,
		LastScrape:         t.LastScrape(),
		LastScrapeDuration: t.LastScrapeDuration().Seconds(),
		Health:             t.Health(),
		ScrapeInterval:     t.GetValue(model.ScrapeIntervalLabel),
		ScrapeTimeout:      t.GetValue(model.ScrapeTimeoutLabel),
	}
}

func (h *Handlers) apiError(w http.ResponseWriter, r *http.Request, code int, typ, msg string) {
	body, err := json.Marshal(&apiResponse{Status: "error", ErrorType: typ, Error: msg})
	if err != nil {
		http.Error(w, msg, code)
		return
	}
	h.write(w, r, "application/json", code, body)
}

func sortedPools[V any](byPool map[string]V) []string {
	names := make([]string, 0, len(byPool))
	for name := range byPool {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// localhosts are the host names Prometheus takes for this host.
var localhosts = []string{"127.0.0.1", "localhost", "::1"}

// globalURL rewrites u, the scrape URL of a target, into one reachable from
// outside this host, with Prometheus' rules: a target on localhost gets the
// external host name with its own port, unless its port is the one this
// server listens on, in which case it is this server and gets the external
// scheme and host:port. u is returned unchanged, with the error, when a host
// does not parse.
func (h *Handlers) globalURL(u *url.URL) (*url.URL, error) {
	ext := h.o.ExternalURL
	if ext == nil {
		return u, nil
	}
	host, port, err := splitHostPort(u.Host)
	if err != nil {
		return u, fmt.Errorf("split target host %q: %w", u.Host, err)
	}
	if !slices.Contains(localhosts, host) {
		return u, nil
	}
	_, ownPort, err := net.SplitHostPort(h.o.ListenAddress)
	if err != nil {
		return u, fmt.Errorf("split listen address %q: %w", h.o.ListenAddress, err)
	}
	if port == ownPort {
		u.Scheme = ext.Scheme
		u.Host = ext.Host
		return u, nil
	}
	extHost, _, err := splitHostPort(ext.Host)
	if err != nil {
		return u, fmt.Errorf("split external host %q: %w", ext.Host, err)
	}
	u.Host = extHost
	if port != "" {
		u.Host = net.JoinHostPort(extHost, port)
	}
	return u, nil
}

// splitHostPort is net.SplitHostPort that also accepts a host without a port
// (returning an empty port) and strips the brackets of an IPv6 host.
func splitHostPort(hostport string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(hostport)
	var ae *net.AddrError
	if errors.As(err, &ae) && ae.Err == "missing port in address" {
		if h, _, err2 := net.SplitHostPort(hostport + ":80"); err2 == nil {
			return h, "", nil
		}
	}
	return host, port, err
}
