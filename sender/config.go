package sender

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

// Config is what a sender knows of its endpoint. It comes complete: the
// caller applies defaults and validates (the agent does, when it loads
// the configuration file).
type Config struct {
	// Name labels the endpoint's metrics and logs and names its consumer
	// of the log.
	Name string
	// CheckpointKey names the endpoint's stored checkpoint. Cursors of
	// different logs need different keys.
	CheckpointKey string
	URL           *url.URL
	// Client sends the requests; the sender closes its idle connections
	// when it stops.
	Client  *http.Client
	Headers map[string]string
	// Timeout bounds each request.
	Timeout  time.Duration
	Protocol Protocol
	// StartAtHead makes a new endpoint (one without a checkpoint) start at
	// the log's head instead of its oldest retained entry.
	StartAtHead bool
	// ExternalLabels are added to every series that lacks them, before
	// write_relabel_configs, as Prometheus' global.external_labels.
	ExternalLabels      labels.Labels
	WriteRelabelConfigs []*relabel.Config
	// SendExemplars and SendHistograms false keep exemplars (native
	// histograms) from the endpoint; they are counted as dropped with
	// reason "config".
	SendExemplars, SendHistograms bool
	// SendMetadata sends the metadata of the metric families a request
	// carries; MaxMetadataPerSend caps the entries of a Remote-Write 1.0
	// request.
	SendMetadata       bool
	MaxMetadataPerSend int
	Queue              Queue
	// Tenant, if set, sends each series under the tenant its labels name
	// (see the package documentation).
	Tenant *Tenant
}

// Tenant splits an endpoint's requests by tenant, as multi-tenant
// receivers (Mimir, Cortex, Thanos, Loki) take them: one request per
// tenant, naming it in a header.
type Tenant struct {
	// Label is the series label whose value names the series' tenant, as
	// the series is sent (after external labels and write_relabel_configs).
	Label string
	// Header carries the tenant, e.g. X-Scope-OrgID.
	Header string
	// Default is the tenant of series without Label; when empty, such
	// series are sent without Header.
	Default string
	// DropLabel removes Label from the series sent.
	DropLabel bool
}

// Queue tunes batching, sharding and retries, with the meanings of
// Prometheus' queue_config. Samples, histograms and exemplars each count
// as one item.
type Queue struct {
	// Capacity is the number of items each shard buffers.
	Capacity             int
	MinShards, MaxShards int
	// MaxSamplesPerSend is the number of items a request carries, plus
	// the exemplars of its series queued right behind them (see the
	// package documentation).
	MaxSamplesPerSend      int
	BatchSendDeadline      time.Duration
	MinBackoff, MaxBackoff time.Duration
	// RetryOnRateLimit retries 429 answers; when false they drop the batch.
	RetryOnRateLimit bool
	// SampleAgeLimit, if positive, drops samples, histograms and
	// exemplars older than this (by the sender's clock) instead of sending
	// them: checked when a request is built and before each retry.
	SampleAgeLimit time.Duration
}

// Protocol is a Remote-Write version.
type Protocol int32

const (
	RemoteWrite1 Protocol = 1 // MessageV1
	RemoteWrite2 Protocol = 2 // MessageV2
)

func (v Protocol) String() string {
	if v == RemoteWrite2 {
		return "2.0"
	}
	return "1.0"
}

// The fully qualified names of the two Remote-Write messages (what
// Prometheus' protobuf_message takes).
const (
	MessageV1 = "prometheus.WriteRequest"
	MessageV2 = "io.prometheus.write.v2.Request"
)

// check finds what would keep a sender from working: a config the caller
// forgot to complete, not a user's mistake (those are reported when the
// configuration is loaded).
func (c *Config) check() error {
	var errs []error
	if c.CheckpointKey == "" {
		errs = append(errs, errors.New("no checkpoint key"))
	}
	if c.URL == nil {
		errs = append(errs, errors.New("no url"))
	}
	if c.Client == nil {
		errs = append(errs, errors.New("no HTTP client"))
	}
	if c.Protocol != RemoteWrite1 && c.Protocol != RemoteWrite2 {
		errs = append(errs, fmt.Errorf("unknown protocol %d", c.Protocol))
	}
	q := c.Queue
	if q.Capacity < 1 || q.MinShards < 1 || q.MaxShards < q.MinShards || q.MaxSamplesPerSend < 1 ||
		q.MinBackoff <= 0 || q.MaxBackoff < q.MinBackoff || c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("queue or timeout not set: %+v, timeout %s", q, c.Timeout))
	}
	if q.SampleAgeLimit < 0 {
		errs = append(errs, fmt.Errorf("negative sample age limit %s", q.SampleAgeLimit))
	}
	if t := c.Tenant; t != nil && (t.Label == "" || t.Header == "") {
		errs = append(errs, fmt.Errorf("tenant without label or header: %+v", *t))
	}
	return errors.Join(errs...)
}
