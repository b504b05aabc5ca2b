// Package targets serves the scrape targets of Ferry's built-in scraper over
// HTTP: a JSON API compatible with Prometheus' and an HTML page for people.
// It reads targets from a Source, which *scrape.Manager of
// github.com/prometheus/prometheus satisfies, and never changes them.
//
// # GET /api/v1/targets
//
// The same document as Prometheus' /api/v1/targets (web/api/v1 in Prometheus
// 3.x), so that tools written against Prometheus read it unchanged:
//
//	{"status":"success","data":{
//	  "activeTargets":[{"discoveredLabels":{...},"labels":{...},
//	    "scrapePool":"job","scrapeUrl":"http://host:9100/metrics",
//	    "globalUrl":"http://host:9100/metrics","lastError":"",
//	    "lastScrape":"2026-01-02T15:04:05.123456789Z","lastScrapeDuration":0.0123,
//	    "health":"up","scrapeInterval":"15s","scrapeTimeout":"10s"}],
//	  "droppedTargets":[{"discoveredLabels":{...},"scrapePool":"job"}],
//	  "droppedTargetCounts":{"job":1}}}
//
// In detail:
//
//   - discoveredLabels are the labels before relabeling, labels the public
//     labels after it (no "__" prefix); both are JSON objects.
//   - lastScrape is RFC 3339 with nanoseconds ("0001-01-01T00:00:00Z" before
//     the first scrape), lastScrapeDuration is in seconds, health is "up",
//     "down" or "unknown" (not scraped yet).
//   - globalUrl is scrapeUrl as seen from outside this host: with
//     Options.ExternalURL set, a target on localhost gets the external host
//     name, and a target on localhost at Options.ListenAddress's port (Ferry
//     scraping itself) gets the external scheme and host too. Without
//     ExternalURL it equals scrapeUrl. An error in that rewriting is appended
//     to lastError, as Prometheus does.
//   - Active targets are ordered by scrape pool name, then in the order the
//     Source returns them (Prometheus does the same; the manager's order is
//     not stable between requests). Dropped targets likewise.
//
// Query parameters, as in Prometheus: state=active|dropped|any
// (case-insensitive; absent means any) and scrapePool=NAME. With
// state=active, droppedTargets is [] and droppedTargetCounts null; with
// state=dropped, activeTargets is []. droppedTargetCounts always covers every
// pool, whatever scrapePool says, and counts dropped targets beyond the
// keep_dropped_targets limit that droppedTargets is subject to.
//
// One deliberate difference: Prometheus answers an unknown state with two
// empty lists; this handler answers 400 with Prometheus' error envelope,
// {"status":"error","errorType":"bad_data","error":"..."}, so that a typo is
// not mistaken for an empty scraper.
//
// # GET /targets
//
// An HTML page without scripts or external assets: one section per scrape
// pool, headed by "N/M up" and the pool's dropped-target count, with a row
// per active target showing its endpoint, health, labels after relabeling
// (and, in a <details> element, the discovered labels before it), the time
// since the last scrape by the handler's clock, the scrape duration and the
// last error. Rows are ordered by scrape URL. ?pool=NAME shows one pool and
// ?health=up|down|unknown only targets in that state; any other health is
// a 400. Every label, URL and error is escaped by html/template.
//
// Selectors are stable for tests and scripts: section.pool[data-pool],
// .summary, .dropped, tr.target[data-health], td.endpoint, td.health (with
// class health-up, health-down or health-unknown), td.labels,
// details.discovered, td.last-scrape, td.duration, td.error.
//
// # Both endpoints
//
// They answer GET and HEAD, and 405 with an Allow header to anything else.
// They hold no lock of their own and take the Source's locks only through its
// methods, each of which copies the target lists and releases the lock, as
// Prometheus' handler does; per-target fields are then read through the
// target's own accessors. Responses are built in memory before the first
// byte is written, so a slow client delays nobody.
package targets
