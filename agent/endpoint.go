package agent

import (
	"fmt"
	"strings"
	"time"

	"github.com/ferrymetrics/ferry/downsample"
	"github.com/ferrymetrics/ferry/sender"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/storage/remote/googleiam"
)

// RemoteWriteConfig is one endpoint: a Prometheus remote_write entry plus
// Ferry's own fields. Its YAML form is what prometheus.yml accepts, so an
// entry can be pasted from there.
type RemoteWriteConfig struct {
	// Name keys the endpoint's checkpoint; it must be unique and stable.
	Name          string            `yaml:"name"`
	URL           *config.URL       `yaml:"url"`
	RemoteTimeout model.Duration    `yaml:"remote_timeout,omitempty"`
	Headers       map[string]string `yaml:"headers,omitempty"`

	WriteRelabelConfigs []*relabel.Config `yaml:"write_relabel_configs,omitempty"`
	QueueConfig         QueueConfig       `yaml:"queue_config,omitempty"`
	// StartFrom is where a new endpoint (one without a checkpoint) starts
	// reading: "oldest" retained sample or "now".
	StartFrom string `yaml:"start_from,omitempty"`
	// StoragePolicy, if set, makes the endpoint receive rollups of this
	// resolution instead of raw samples.
	StoragePolicy *downsample.StoragePolicy `yaml:"storage_policy,omitempty"`
	// Tenant, if set, sends each series under the tenant a label of it
	// names, one request per tenant.
	Tenant *TenantConfig `yaml:"tenant,omitempty"`

	// ProtobufMessage picks the protocol: sender.MessageV1 (Remote-Write
	// 1.0, the default) or sender.MessageV2 (Remote-Write 2.0, which falls
	// back to 1.0 for good when the endpoint answers 415).
	ProtobufMessage string `yaml:"protobuf_message,omitempty"`
	// SendExemplars and SendNativeHistograms default to true: Ferry
	// forwards everything it holds. When false, exemplars (histograms) are
	// not sent and are counted as dropped with reason "config".
	SendExemplars        *bool          `yaml:"send_exemplars,omitempty"`
	SendNativeHistograms *bool          `yaml:"send_native_histograms,omitempty"`
	MetadataConfig       MetadataConfig `yaml:"metadata_config,omitempty"`

	HTTPClientConfig config.HTTPClientConfig `yaml:",inline"`
	// Cloud authentication, as in Prometheus' remote_write (see auth.go):
	// an endpoint uses at most one of these, basic_auth, authorization and
	// oauth2.
	SigV4Config     *SigV4Config      `yaml:"sigv4,omitempty"`
	AzureADConfig   *AzureADConfig    `yaml:"azuread,omitempty"`
	GoogleIAMConfig *googleiam.Config `yaml:"google_iam,omitempty"`
	// RoundRobinDNS connects each new connection to one of the url host's
	// addresses at random (see roundRobinDial).
	RoundRobinDNS bool `yaml:"round_robin_dns,omitempty"`
}

// QueueConfig tunes batching, sharding and retries, with Prometheus' names
// and meanings. Samples, histograms and exemplars each count as one item.
type QueueConfig struct {
	// Capacity is the number of items each shard buffers.
	Capacity  int `yaml:"capacity,omitempty"`
	MinShards int `yaml:"min_shards,omitempty"`
	MaxShards int `yaml:"max_shards,omitempty"`
	// MaxSamplesPerSend is the number of items a request carries, plus
	// the exemplars of its series queued right behind them (see the
	// sender package's documentation).
	MaxSamplesPerSend int            `yaml:"max_samples_per_send,omitempty"`
	BatchSendDeadline model.Duration `yaml:"batch_send_deadline,omitempty"`
	MinBackoff        model.Duration `yaml:"min_backoff,omitempty"`
	MaxBackoff        model.Duration `yaml:"max_backoff,omitempty"`
	// RetryOnRateLimit retries 429 answers; when false they drop the batch.
	RetryOnRateLimit *bool `yaml:"retry_on_http_429,omitempty"`
	// SampleAgeLimit, if set, drops samples older than this instead of
	// sending them (counted with reason too_old), as Prometheus does: a
	// receiver that refuses old samples with a 5xx would otherwise be
	// retried forever after a long outage. 0 (the default) is no limit.
	SampleAgeLimit model.Duration `yaml:"sample_age_limit,omitempty"`
}

// MetadataConfig is Prometheus' remote_write metadata_config. Ferry sends
// the metadata of the metric families a request carries with the request
// itself, not on a timer: Send is honoured, MaxSamplesPerSend caps the
// metadata entries of a Remote-Write 1.0 request, and SendInterval is
// accepted for compatibility and has no effect.
type MetadataConfig struct {
	// Send defaults to true.
	Send              *bool          `yaml:"send,omitempty"`
	SendInterval      model.Duration `yaml:"send_interval,omitempty"`
	MaxSamplesPerSend int            `yaml:"max_samples_per_send,omitempty"`
}

// TenantConfig makes an endpoint multi-tenant, as Mimir, Cortex, Thanos
// and Loki receivers are: each series is sent under the tenant its Label
// names (after external_labels and write_relabel_configs), in Header; a
// batch holding several tenants' series is sent as one request per tenant.
type TenantConfig struct {
	Label string `yaml:"label"`
	// Header defaults to DefaultTenantHeader.
	Header string `yaml:"header,omitempty"`
	// Default is the tenant of series without Label; when empty they are
	// sent without Header.
	Default string `yaml:"default,omitempty"`
	// DropLabel removes Label from the series sent.
	DropLabel bool `yaml:"drop_label,omitempty"`
}

// DefaultTenantHeader is the header Mimir, Cortex and Loki read the tenant
// from.
const DefaultTenantHeader = "X-Scope-OrgID"

// validate reports every problem with t, whose defaults are applied.
func (t *TenantConfig) validate(headers map[string]string) []error {
	var errs []error
	if t.Label == "" || !model.UTF8Validation.IsValidLabelName(t.Label) || strings.HasPrefix(t.Label, "__") {
		errs = append(errs, fmt.Errorf("tenant.label %q: must be a label name, not starting with __", t.Label))
	}
	if !validHeaderName(t.Header) {
		errs = append(errs, fmt.Errorf("tenant.header %q: not a valid HTTP header name", t.Header))
	}
	if strings.ContainsFunc(t.Default, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
		errs = append(errs, fmt.Errorf("tenant.default %q: a header value cannot hold control characters", t.Default))
	}
	for h := range headers {
		if strings.EqualFold(h, t.Header) {
			errs = append(errs, fmt.Errorf("headers set %s, the tenant header: tenant sets it per series", h))
		}
	}
	return errs
}

// validHeaderName reports whether s is an HTTP header name (an RFC 9110
// token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// Start positions for a new endpoint.
const (
	StartOldest = "oldest"
	StartNow    = "now"
)

// DefaultQueueConfig holds the defaults, which are Prometheus' except that
// 429 is retried and a request carries up to 10,000 samples (Prometheus
// 2,000; vmagent's blocks hold 10,000 rows): a fifth of the requests for
// the same data cuts the sender's CPU per sample by 5-8%
// (docs/benchmarks.md). Each shard buffers two requests' worth.
var DefaultQueueConfig = QueueConfig{
	Capacity:          20000,
	MinShards:         1,
	MaxShards:         50,
	MaxSamplesPerSend: 10000,
	BatchSendDeadline: model.Duration(5 * time.Second),
	MinBackoff:        model.Duration(30 * time.Millisecond),
	MaxBackoff:        model.Duration(5 * time.Second),
}

// applyDefaults fills unset fields; ParseConfig calls it once per entry.
func (c *RemoteWriteConfig) applyDefaults() {
	// An endpoint pasted from prometheus.yml may have no name: its URL
	// names it (and so keys its checkpoint).
	if c.Name == "" && c.URL != nil && c.URL.URL != nil {
		c.Name = c.URL.Host + c.URL.Path
	}
	if c.RemoteTimeout == 0 {
		c.RemoteTimeout = model.Duration(30 * time.Second)
	}
	if c.StartFrom == "" {
		c.StartFrom = StartOldest
	}
	if c.ProtobufMessage == "" {
		c.ProtobufMessage = sender.MessageV1
	}
	c.SendExemplars = orTrue(c.SendExemplars)
	c.SendNativeHistograms = orTrue(c.SendNativeHistograms)
	mc := &c.MetadataConfig
	mc.Send = orTrue(mc.Send)
	if mc.SendInterval == 0 {
		mc.SendInterval = model.Duration(time.Minute)
	}
	if mc.MaxSamplesPerSend == 0 {
		mc.MaxSamplesPerSend = 2000
	}
	q, d := &c.QueueConfig, DefaultQueueConfig
	if q.Capacity == 0 {
		q.Capacity = d.Capacity
	}
	if q.MinShards == 0 {
		q.MinShards = d.MinShards
	}
	if q.MaxShards == 0 {
		q.MaxShards = max(d.MaxShards, q.MinShards)
	}
	if q.MaxSamplesPerSend == 0 {
		q.MaxSamplesPerSend = d.MaxSamplesPerSend
	}
	if q.BatchSendDeadline == 0 {
		q.BatchSendDeadline = d.BatchSendDeadline
	}
	if q.MinBackoff == 0 {
		q.MinBackoff = d.MinBackoff
	}
	if q.MaxBackoff == 0 {
		q.MaxBackoff = d.MaxBackoff
	}
	q.RetryOnRateLimit = orTrue(q.RetryOnRateLimit)
	if c.Tenant != nil && c.Tenant.Header == "" {
		c.Tenant.Header = DefaultTenantHeader
	}
}

// orTrue returns b, or a pointer to true if b is unset.
func orTrue(b *bool) *bool {
	if b != nil {
		return b
	}
	t := true
	return &t
}

// UnmarshalYAML starts from Prometheus 3's remote-write HTTP client
// defaults: redirects followed, HTTP/2 off unless enable_http2 is true
// (common's defaults, for scraping, turn it on).
func (c *RemoteWriteConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = RemoteWriteConfig{HTTPClientConfig: promconfig.DefaultRemoteWriteHTTPClientConfig}
	type plain RemoteWriteConfig
	return unmarshal((*plain)(c))
}

// validate reports every problem with c, whose defaults are applied, one
// error each.
func (c *RemoteWriteConfig) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Name == "" {
		add("name or url is required (the name keys the endpoint's checkpoint)")
	}
	switch {
	case c.URL == nil || c.URL.URL == nil:
		add("url is required")
	case c.URL.Scheme != "http" && c.URL.Scheme != "https":
		add("url %q: scheme must be http or https%s", c.URL.String(), urlHint(c.URL.String()))
	case c.URL.Host == "":
		add("url %q: host is missing", c.URL.String())
	case c.URL.Port() != "":
		if err := checkPort(c.URL.Port()); err != nil {
			add("url %q: %v", c.URL.String(), err)
		}
	}
	if c.StartFrom != StartOldest && c.StartFrom != StartNow {
		add("start_from %q: must be %q or %q", c.StartFrom, StartOldest, StartNow)
	}
	if c.ProtobufMessage != sender.MessageV1 && c.ProtobufMessage != sender.MessageV2 {
		add("protobuf_message %q: must be %q (Remote-Write 1.0) or %q (Remote-Write 2.0)", c.ProtobufMessage, sender.MessageV1, sender.MessageV2)
	}
	if mc := c.MetadataConfig; mc.SendInterval < 0 || mc.MaxSamplesPerSend < 0 {
		add("metadata_config: send_interval (%s) and max_samples_per_send (%d) must not be negative", mc.SendInterval, mc.MaxSamplesPerSend)
	}
	q := c.QueueConfig
	if q.Capacity < 1 {
		add("queue_config.capacity must be positive")
	}
	if q.MinShards < 1 {
		add("queue_config.min_shards must be positive")
	}
	if q.MaxShards < q.MinShards {
		add("queue_config.max_shards (%d) must be at least min_shards (%d)", q.MaxShards, q.MinShards)
	}
	if q.MaxSamplesPerSend < 1 {
		add("queue_config.max_samples_per_send must be positive")
	}
	if q.MinBackoff <= 0 || q.MaxBackoff < q.MinBackoff {
		add("queue_config: min_backoff (%s) must be positive and at most max_backoff (%s)", q.MinBackoff, q.MaxBackoff)
	}
	if q.SampleAgeLimit < 0 {
		add("queue_config.sample_age_limit (%s) must not be negative", q.SampleAgeLimit)
	}
	if c.Tenant != nil {
		errs = append(errs, c.Tenant.validate(c.Headers)...)
	}
	if c.RemoteTimeout <= 0 {
		add("remote_timeout must be positive")
	}
	for i, rc := range c.WriteRelabelConfigs {
		if rc == nil {
			add("write_relabel_configs[%d] is empty", i)
			continue
		}
		if err := rc.Validate(model.UTF8Validation); err != nil {
			add("write_relabel_configs[%d]: %w", i, err)
		}
	}
	errs = append(errs, c.validateAuth()...)
	if err := c.HTTPClientConfig.Validate(); err != nil {
		add("%w", err)
	}
	for h := range c.Headers {
		if h == "" {
			add("headers: empty header name")
		}
	}
	return errs
}

// senderTenant is t as the sender takes it; nil if t is.
func (t *TenantConfig) senderTenant() *sender.Tenant {
	if t == nil {
		return nil
	}
	return &sender.Tenant{Label: t.Label, Header: t.Header, Default: t.Default, DropLabel: t.DropLabel}
}

// checkpointKey names the endpoint's stored checkpoint: cursors of the WAL
// and of a rollup log are not interchangeable, so a rollup endpoint's key
// names its policy.
func (c *RemoteWriteConfig) checkpointKey() string {
	if c.StoragePolicy == nil {
		return c.Name
	}
	return c.Name + "@rollup:" + c.StoragePolicy.String()
}

// senderConfig is what the endpoint's sender needs of c, a loaded (and so
// defaulted and valid) entry.
func (c *RemoteWriteConfig) senderConfig(userAgent string) (sender.Config, error) {
	client, err := c.httpClient(userAgent)
	if err != nil {
		return sender.Config{}, fmt.Errorf("endpoint %q: build HTTP client: %w", c.Name, err)
	}
	q := c.QueueConfig
	p := sender.RemoteWrite1
	if c.ProtobufMessage == sender.MessageV2 {
		p = sender.RemoteWrite2
	}
	return sender.Config{
		Name:                c.Name,
		CheckpointKey:       c.checkpointKey(),
		URL:                 c.URL.URL,
		Client:              client,
		Headers:             c.Headers,
		Timeout:             time.Duration(c.RemoteTimeout),
		Protocol:            p,
		StartAtHead:         c.StartFrom == StartNow,
		WriteRelabelConfigs: c.WriteRelabelConfigs,
		SendExemplars:       *c.SendExemplars,
		SendHistograms:      *c.SendNativeHistograms,
		SendMetadata:        *c.MetadataConfig.Send,
		MaxMetadataPerSend:  c.MetadataConfig.MaxSamplesPerSend,
		Queue: sender.Queue{
			Capacity:          q.Capacity,
			MinShards:         q.MinShards,
			MaxShards:         q.MaxShards,
			MaxSamplesPerSend: q.MaxSamplesPerSend,
			BatchSendDeadline: time.Duration(q.BatchSendDeadline),
			MinBackoff:        time.Duration(q.MinBackoff),
			MaxBackoff:        time.Duration(q.MaxBackoff),
			RetryOnRateLimit:  *q.RetryOnRateLimit,
			SampleAgeLimit:    time.Duration(q.SampleAgeLimit),
		},
		Tenant: c.Tenant.senderTenant(),
	}, nil
}
