package targets

import (
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/prometheus/scrape"
)

// Source lists scrape targets by scrape pool. *scrape.Manager implements it.
type Source interface {
	// TargetsActive returns the targets being scraped.
	TargetsActive() map[string][]*scrape.Target
	// TargetsDropped returns the targets dropped by relabeling, up to each
	// pool's keep_dropped_targets limit.
	TargetsDropped() map[string][]*scrape.Target
	// TargetsDroppedCounts returns the number of targets dropped by
	// relabeling in each pool, including those beyond the limit.
	TargetsDroppedCounts() map[string]int
}

// Options configure Handlers. The zero value is usable.
type Options struct {
	// ExternalURL is the URL under which users reach this server; its
	// scheme and host make the globalUrl of targets on localhost. Nil
	// leaves globalUrl equal to scrapeUrl.
	ExternalURL *url.URL
	// ListenAddress is the host:port this server listens on; a target on
	// localhost at its port is this server itself. Used only with
	// ExternalURL.
	ListenAddress string
	// Logger receives failures to write a response. Nil discards them.
	Logger *slog.Logger
}

// Handlers serve the targets of a Source. They are safe for concurrent use.
type Handlers struct {
	src    Source
	now    func() time.Time
	o      Options
	logger *slog.Logger
}

// New returns the handlers for the targets of src. now is the clock the HTML
// page measures "seconds ago" with; nil means time.Now.
func New(src Source, now func() time.Time, o Options) *Handlers {
	if now == nil {
		now = time.Now
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handlers{src: src, now: now, o: o, logger: logger}
}

// API returns the handler of GET /api/v1/targets.
func (h *Handlers) API() http.Handler { return http.HandlerFunc(h.serveAPI) }

// Page returns the handler of GET /targets.
func (h *Handlers) Page() http.Handler { return http.HandlerFunc(h.servePage) }

// Register mounts API at /api/v1/targets and Page at /targets on mux.
func (h *Handlers) Register(mux *http.ServeMux) {
	mux.Handle("/api/v1/targets", h.API())
	mux.Handle("/targets", h.Page())
}

// allowGet answers 405 to anything but GET and HEAD and reports whether the
// request may go on.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method "+r.Method+" not allowed: use GET", http.StatusMethodNotAllowed)
	return false
}

// write sends a complete response body and logs a failure to do so.
func (h *Handlers) write(w http.ResponseWriter, r *http.Request, contentType string, code int, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if _, err := w.Write(body); err != nil {
		h.logger.Debug("write targets response", "url", r.URL.String(), "err", err)
	}
}
