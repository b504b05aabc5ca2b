// Package sender forwards the WAL to remote-write endpoints, one Sender per
// endpoint, each independent of the others and of ingest. An endpoint with
// a storage policy is sent a rollup log instead; what is said of the WAL
// below holds for it too, except that only the WAL has a disk cap.
//
// # Logs and cursors
//
// A sender reads a Log through a Source, and knows where it is by a
// Cursor: 16 bytes only the Log interprets, ordered like the entries they
// follow. The WAL's cursor (WALLog) is a wal.Position, its segment and
// byte offset; a rollup log's is the sequence number of its next entry.
// Lag is measured in the Log's own unit: ferry_sender_lag_bytes for the
// WAL, ferry_sender_lag_entries for a rollup log. Only WAL endpoints export
// ferry_sender_checkpoint_segment and ferry_sender_checkpoint_offset_bytes.
//
// # What a sender promises
//
// Every sample in the WAL reaches the endpoint at least once, unless the
// endpoint refuses it for good (a 4xx other than 429), write_relabel_configs
// drop it, it is older than sample_age_limit when it would be sent, or the
// WAL's disk cap deletes it before it was delivered; each of those is
// counted in ferry_sender_samples_failed_total or
// ferry_sender_samples_dropped_total and logged. "Samples" here are float
// samples and native histograms; exemplars travel the same way, are
// acknowledged and checkpointed the same way, and have counters of their
// own (see below).
//
// When the disk cap deletes segments the sender has not finished, it counts
// the samples it had not read yet and writes off those it had read but not
// delivered: the shards discard them, and the checkpoint moves past them.
// Each is counted once, when the segments go, so a crash afterwards loses
// nothing uncounted. A request already in flight at that moment may still
// succeed: its samples are then both delivered and counted as dropped (at
// most one batch per shard).
//
// Samples of one series are sent in WAL order: series are spread over shards
// by their ref, a shard has one request in flight at a time, and gathering
// a series' items in a batch keeps their order.
//
// # Labels on the hot path
//
// Items carry their series' labels in wire form (wal.Entry.Wire), which a
// 1.0 request copies as it is and a 2.0 encoder reads its symbols from. An
// endpoint that changes labels (external_labels, write_relabel_configs, a
// drop rule) or splits requests by tenant works out each series' labels and
// tenant once and keeps them, marshalled, in a memo keyed by ref; the memo
// forgets series not seen for two rounds of lookups (a round is at least
// four lookups per remembered series), so churned series leave it.
//
// # Protocols
//
// protobuf_message picks Remote-Write 1.0 (prometheus.WriteRequest, the
// default; headers Content-Type: application/x-protobuf and
// X-Prometheus-Remote-Write-Version: 0.1.0) or 2.0
// (io.prometheus.write.v2.Request; Content-Type:
// application/x-protobuf;proto=io.prometheus.write.v2.Request and
// X-Prometheus-Remote-Write-Version: 2.0.0). Both are snappy-compressed and
// carry:
//
//   - float samples; in 2.0 with their start timestamp when the WAL has one
//     (1.0 has no field for it);
//   - native histograms, as received. 1.0 requests drop the histogram's
//     start_timestamp (field 17, which only 2.0 defines); 2.0 requests carry
//     the bytes unchanged. A series' floats and histograms go in separate
//     2.0 TimeSeries, as the spec requires;
//   - exemplars, with their series. In 1.0 a histogram series' exemplars
//     go in a second TimeSeries after its histograms: Prometheus 2.x
//     appends a TimeSeries' exemplars before its histograms and refuses an
//     exemplar of a series it does not have yet;
//   - metadata (type, help, unit) of the metric families in the request,
//     as the log knows it now (not as it was when the samples were
//     written): looked up by metric name, then by the name less one of
//     _bucket, _sum, _count, _total, _created, _info. 1.0 sends each family
//     found once per request in WriteRequest.metadata, under the name it
//     was found as, at most metadata_config.max_samples_per_send of them;
//     2.0 sets every TimeSeries' metadata. metadata_config.send: false sends
//     none; send_interval is accepted for compatibility and has no effect:
//     metadata rides with the samples, not on a timer.
//
// A 2.0 TimeSeries must hold a sample or a histogram, so an exemplar whose
// request carries neither for its series cannot be sent in 2.0: it is
// counted in ferry_sender_exemplars_dropped_total{reason="no_sample"}. To
// keep that rare, a shard gathers a series' items into one TimeSeries and
// moves into a batch the exemplars, queued just behind it, of the series it
// holds samples of (the WAL writes a batch's exemplars after its samples),
// so a batch may exceed max_samples_per_send by those exemplars.
//
// send_exemplars: false and send_native_histograms: false (both default to
// true: Ferry forwards everything) keep exemplars or histograms from the
// endpoint; they are counted as ferry_sender_exemplars_dropped_total and
// ferry_sender_samples_dropped_total with reason "config" and checkpointed
// as delivered.
//
// # Falling back from 2.0 to 1.0
//
// An endpoint that answers a 2.0 request with 415 Unsupported Media Type,
// or with a 2xx without any X-Prometheus-Remote-Write-*-Written header
// (what a 1.0 receiver that ignores Content-Type does, having decoded an
// empty request; the spec says to take that as 415), is sent the same batch
// again as 1.0, and only 1.0 from then on, until the endpoint's sender is
// rebuilt (restart, or a reload that changes its configuration). Nothing
// is acknowledged before the 1.0 request is. The switch is logged once and
// counted in ferry_sender_protocol_fallbacks_total; ferry_sender_protocol
// {version} shows the version in use.
//
// # Partial writes
//
// A 2.0 endpoint reports in X-Prometheus-Remote-Write-{Samples,Histograms,
// Exemplars}-Written how many items it wrote; when some are present, a
// missing one means 0, as the spec allows. A 2xx whose counts are below
// what the request carried is a partial write: the receiver accepted the
// request and chose what to keep, so it is not retried (re-sending would
// not change its mind), and the difference is counted in
// ferry_sender_samples_partial_total and ferry_sender_exemplars_partial_total
// and logged (at most every 10 seconds). Delivery stays at-least-once in
// the sense that nothing is lost uncounted. ferry_sender_samples_sent_total
// counts what 2xx-answered requests carried.
//
// # Exemplar counters
//
// ferry_sender_exemplars_sent_total counts exemplars in 2xx-answered
// requests; ferry_sender_exemplars_dropped_total counts the others by
// reason: config, relabel, rule, unknown_series and disk_cap as for
// samples, no_sample (above), and refused (in a request the endpoint
// refused for good). ferry_sender_metadata_sent_total counts the metadata
// entries (1.0) or TimeSeries with metadata (2.0) of 2xx-answered requests.
//
// # Retries
//
// A request that fails with a network error, a 5xx, or a 429 (unless
// retry_on_http_429 is false) is sent again, without limit, after an
// exponential backoff from min_backoff to max_backoff, or after the
// endpoint's Retry-After (capped at 5 minutes). When the connection cannot
// be made at all (refused, unreachable), the wait is at most 250 ms:
// such a retry costs the endpoint nothing, and the backlog of an outage
// starts draining within a quarter of a second of its return. A 400, 413 or 422 may be
// caused by some samples only (Prometheus refuses a whole batch when one
// sample is a duplicate, as a batch re-sent after a crash can be): the batch
// is split in two at a series boundary and each half delivered in turn,
// down to single series' runs, so only what the endpoint refuses on its own
// is dropped. A 415 to a 2.0 request falls back to 1.0 (above). Any other
// 4xx drops the batch. Dropped samples are counted and the endpoint's
// message is logged (the first time in full, then at most every 10
// seconds).
//
// # Old samples
//
// queue_config.sample_age_limit (0, the default, is no limit) keeps samples,
// histograms and exemplars older than the limit, by the sender's clock,
// from the endpoint: a shard checks its batch when it builds the request and
// again before every retry, so a batch retried through a long outage sheds
// what aged past the limit and sends the rest. What it sheds is counted in
// ferry_sender_samples_dropped_total and ferry_sender_exemplars_dropped_total
// with reason too_old, logged (at most every 10 seconds), and checkpointed
// as delivered: a batch left empty is done. Without a limit, a receiver
// that answers 5xx to samples it finds too old (Thanos does) is retried
// forever.
//
// # Tenants
//
// An endpoint with a tenant label sends each series under the tenant the
// label names, as its labels are sent (after external_labels and
// write_relabel_configs), in the tenant header (X-Scope-OrgID by default);
// a series without the label goes to the default tenant, or without the
// header if there is none, and drop_label removes the label from what is
// sent. A series whose tenant holds control characters cannot be sent in a
// header: it is dropped, counted with reason tenant. A shard splits each
// batch by tenant and sends one request per tenant, in turn, each retried,
// split, refused or fallen back as above on its own: a 4xx for one tenant
// fails only that tenant's items. Series keep their shard and their order;
// the checkpoint passes an entry only once every tenant's request holding
// its items was acknowledged.
//
// A tenant whose requests fail while the others' are delivered does not
// hold the others up. A shard tries a tenant whose first attempt failed
// again after the batch's other tenants; if it fails again and some
// request was delivered in between, the tenant is set aside
// (ferry_sender_tenants_catching_up, ferry_sender_tenant_catch_ups_total,
// logged): the reading goroutine stops routing its items to the shards,
// and a catch-up of its own first sends what the shards held of it, then
// reads the log again from where the skipping began and sends the
// tenant's items, retried in place, until it reaches the reading
// goroutine; then the tenant goes back to the shards. Each series' items
// go out in log order throughout: a series is on one shard, which hands
// its items over in order, and the catch-up reads the log again only once
// no shard holds anything older than where the skipping began. The
// skipped items stay in their records' counts, so the
// checkpoint waits for them, a restart sends them again, and the disk cap
// counts them as any undelivered sample. When every tenant fails, none is
// set aside (the endpoint is down, and one re-reading of the backlog per
// tenant would only slow its recovery); at most 8 are set aside at once,
// and while any is, reading pauses once a million records wait for
// acknowledgement (about 32 MiB). Past those bounds, and for the halves of
// a batch split after a 400, a failing tenant holds up its shard, and once
// the shard's queue is full, reading; sample_age_limit bounds how long.
// The endpoint counts as failing while any tenant's request is being
// retried, a tenant set aside's included.
// ferry_sender_tenant_samples_sent_total{tenant} counts the samples each
// tenant acknowledged, for the first 100 tenants of the endpoint (by first
// appearance); the others are counted together under tenant "_other".
// Every other metric is the endpoint's, as without tenants.
//
// # Checkpoints
//
// The checkpoint is the cursor at the end of the longest run of entries
// whose every sample was acknowledged (2xx) or deliberately dropped. It is
// persisted (see PebbleCheckpoints), fsynced, every CheckpointInterval and
// at Stop, and only then reported to the log: the WAL may then delete
// segments before it. A restarted sender resumes
// from it, so samples acknowledged after the last persist are sent again:
// delivery is at-least-once, never at-most-once.
//
// Stop lets the shards send what they hold until its context ends, but not
// while a send is failing: everything unsent is in the log already, and an
// endpoint that is down would only hold the shutdown up.
//
// # Sharding
//
// A sender starts with min_shards shards and reconsiders every
// ReshardInterval: it doubles them (up to max_shards) when they were busy
// more than 70% of the time and the WAL is ahead of it, and halves them
// (down to min_shards) when they were busy less than 20%. It does not
// reshard while requests are failing. Resharding drains the old shards
// first, which keeps per-series order.
package sender
