package sender

import "github.com/prometheus/client_golang/prometheus"

// Metrics are shared by all senders, labelled by endpoint. Create them once
// per registry and pass them to every New.
type Metrics struct {
	sent          *prometheus.CounterVec
	sentBytes     *prometheus.CounterVec
	retried       *prometheus.CounterVec
	failed        *prometheus.CounterVec
	dropped       *prometheus.CounterVec
	inFlight      *prometheus.GaugeVec
	shards        *prometheus.GaugeVec
	lagSeconds    *prometheus.GaugeVec
	lagBytes      *prometheus.GaugeVec
	lagEntries    *prometheus.GaugeVec
	cpSegment     *prometheus.GaugeVec
	cpOffset      *prometheus.GaugeVec
	highestSent   *prometheus.GaugeVec
	duration      *prometheus.HistogramVec
	cpSaveErrors  *prometheus.CounterVec
	lastSendError *prometheus.GaugeVec

	exemplarsSent    *prometheus.CounterVec
	exemplarsDropped *prometheus.CounterVec
	metadataSent     *prometheus.CounterVec
	samplesPartial   *prometheus.CounterVec
	exemplarsPartial *prometheus.CounterVec
	fallbacks        *prometheus.CounterVec
	protocol         *prometheus.GaugeVec
	seriesForgotten  *prometheus.CounterVec
	tenantSent       *prometheus.CounterVec
	tenantsCatching  *prometheus.GaugeVec
	tenantCatchUps   *prometheus.CounterVec
}

// NewMetrics creates and registers the sender metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	ep := []string{"endpoint"}
	m := &Metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_samples_sent_total", Help: "Samples the endpoint acknowledged with a 2xx.",
		}, ep),
		sentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_sent_bytes_total", Help: "Compressed request bytes the endpoint acknowledged.",
		}, ep),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_samples_retried_total", Help: "Send attempts that failed with a 5xx, a 429 or a network error and were retried, counted in samples per attempt: it grows with every retry of the same samples, so it is not the backlog (see ferry_sender_lag_bytes and ferry_sender_lag_seconds).",
		}, ep),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_samples_failed_total", Help: "Samples in batches the endpoint refused with a non-retryable 4xx; they are not sent again.",
		}, ep),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_samples_dropped_total", Help: "Samples (floats and native histograms) not sent: reason disk_cap (WAL cap deleted them unread), retention (rollups past their retention before they were sent), relabel (write_relabel_configs), rule (a mapping rule with drop: true), unknown_series (series record lost to damage), config (native histograms with send_native_histograms: false), too_old (older than queue_config.sample_age_limit when a request was built or retried), tenant (the series' tenant label holds characters a header cannot carry).",
		}, []string{"endpoint", "reason"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sender_batches_in_flight", Help: "Requests being sent or retried.",
		}, ep),
		shards: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sender_shards", Help: "Parallel senders of the endpoint.",
		}, ep),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sender_lag_seconds", Help: "Highest timestamp in the WAL minus the highest the endpoint acknowledged.",
		}, ep),
		lagBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sender_lag_bytes", Help: "WAL bytes between the endpoint's checkpoint and the WAL head (endpoints without a storage_policy).",
		}, ep),
		lagEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sender_lag_entries", Help: "Rollup log entries between the endpoint's checkpoint and the log's head (endpoints with a storage_policy).",
		}, ep),
		cpSegment: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sender_checkpoint_segment", Help: "WAL segment of the endpoint's persisted checkpoint (endpoints without a storage_policy).",
		}, ep),
		cpOffset: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sender_checkpoint_offset_bytes", Help: "Offset in that segment of the endpoint's persisted checkpoint (endpoints without a storage_policy).",
		}, ep),
		highestSent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sender_highest_sent_timestamp_seconds", Help: "Highest sample timestamp the endpoint acknowledged.",
		}, ep),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_sender_request_duration_seconds", Help: "Duration of remote-write requests, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"endpoint", "outcome"}),
		cpSaveErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_checkpoint_save_errors_total", Help: "Failed checkpoint writes.",
		}, ep),
		lastSendError: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sender_last_error_timestamp_seconds", Help: "When a request last failed.",
		}, ep),
		exemplarsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_exemplars_sent_total", Help: "Exemplars in requests the endpoint acknowledged with a 2xx.",
		}, ep),
		exemplarsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_exemplars_dropped_total", Help: "Exemplars not delivered: reason config (send_exemplars: false), relabel, rule, unknown_series, disk_cap (as for samples), no_sample (Remote-Write 2.0 request without a sample of their series), refused (the endpoint refused the request for good), too_old and tenant (as for samples).",
		}, []string{"endpoint", "reason"}),
		metadataSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_metadata_sent_total", Help: "Metadata in acknowledged requests: MetricMetadata entries (Remote-Write 1.0) or series carrying metadata (2.0).",
		}, ep),
		samplesPartial: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_samples_partial_total", Help: "Samples and histograms in 2xx-acknowledged Remote-Write 2.0 requests that the endpoint's Written headers say it did not write.",
		}, ep),
		exemplarsPartial: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_exemplars_partial_total", Help: "Exemplars in 2xx-acknowledged Remote-Write 2.0 requests that the endpoint's Written headers say it did not write.",
		}, ep),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_protocol_fallbacks_total", Help: "Switches from Remote-Write 2.0 to 1.0 after the endpoint answered 415 (or 2xx without Written headers).",
		}, ep),
		protocol: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sender_protocol", Help: "1 for the Remote-Write version the endpoint is sent, 0 for the other.",
		}, []string{"endpoint", "version"}),
		seriesForgotten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_series_forgotten_total", Help: "Series whose relabelled labels an endpoint that changes labels stopped holding, because they were not sent for a round of lookups (departed series).",
		}, ep),
		tenantSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_tenant_samples_sent_total", Help: "Samples (floats and native histograms) an endpoint with a tenant label acknowledged with a 2xx, by tenant: the first 100 tenants of an endpoint under their name (\"\" for series sent without a tenant header), the others together under \"_other\".",
		}, []string{"endpoint", "tenant"}),
		tenantsCatching: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_sender_tenants_catching_up", Help: "Tenants of the endpoint set aside because their requests failed while other tenants' succeeded: the shards skip them, and each is re-read from the WAL and retried on its own until it catches up.",
		}, ep),
		tenantCatchUps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sender_tenant_catch_ups_total", Help: "Times a failing tenant of the endpoint was set aside to catch up on its own.",
		}, ep),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.sentBytes, m.retried, m.failed, m.dropped, m.inFlight, m.shards,
			m.lagSeconds, m.lagBytes, m.lagEntries, m.cpSegment, m.cpOffset, m.highestSent, m.duration, m.cpSaveErrors,
			m.lastSendError, m.exemplarsSent, m.exemplarsDropped, m.metadataSent, m.samplesPartial,
			m.exemplarsPartial, m.fallbacks, m.protocol, m.seriesForgotten, m.tenantSent, m.tenantsCatching, m.tenantCatchUps)
	}
	return m
}

// forget removes an endpoint's series, when it is removed from the config.
func (m *Metrics) forget(name string) {
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.sent, m.sentBytes, m.retried, m.failed, m.dropped, m.inFlight, m.shards, m.lagSeconds,
		m.lagBytes, m.lagEntries, m.cpSegment, m.cpOffset, m.highestSent, m.duration, m.cpSaveErrors, m.lastSendError,
		m.exemplarsSent, m.exemplarsDropped, m.metadataSent, m.samplesPartial, m.exemplarsPartial,
		m.fallbacks, m.protocol, m.seriesForgotten, m.tenantSent, m.tenantsCatching, m.tenantCatchUps,
	} {
		v.DeletePartialMatch(prometheus.Labels{"endpoint": name})
	}
}
