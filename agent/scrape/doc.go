// Package scrape is Ferry's scraper: Prometheus' own service discovery and
// scrape loops (github.com/prometheus/prometheus/discovery and scrape),
// configured by prometheus.yml's global, scrape_configs and
// scrape_config_files, committing every scrape to the WAL.
//
// # Configuration
//
// ParseConfig loads those sections with Prometheus' loader, so defaults,
// validation and error messages are Prometheus'. Only the static, file, http
// and dns service discoveries are built in (the others carry cloud SDKs);
// a scrape config naming another is an error that lists them.
//
// # Commit contract
//
// A scrape loop appends a scrape's samples, native histograms (kept as
// protobuf Histogram messages with their start timestamp), exemplars and
// metadata to one appender; Commit writes them with one WAL append: one
// write, and under sync: always one fsync, before Commit returns. A scrape
// whose Commit returned nil is in the WAL and reaches every endpoint like
// pushed data. A crash before that loses only the scrape in flight, which
// nobody was told was stored. Series refs are the WAL's: the scrape
// cache keeps them, so a steady scrape hashes no labels; a ref truncation
// forgot is resolved again from the series' labels.
//
// A scrape the WAL refuses (disk cap under backpressure, a write or fsync
// failure) is not stored, its up and scrape_* series included: it is logged
// and counted in ferry_scrape_rejected_samples_total and
// ferry_scrape_commits_total{result="error"}.
//
// # Staleness and reload
//
// The scrape loops write staleness markers for series that vanish from a
// target and for targets that vanish from discovery. ApplyConfig also
// retires removed jobs through discovery first: their targets are dropped,
// their loops write markers (two scrape intervals later), and only then does
// the job leave the scrape manager. Stop writes no markers: the series go on
// after a restart.
//
// external_labels are not added here but by the senders, to everything
// they send.
package scrape
