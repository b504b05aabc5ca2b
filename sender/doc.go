// Package sender forwards the WAL to remote-write endpoints, one Sender per
// endpoint, each independent of the others and of ingest.
//
// # What a sender promises
//
// Every sample in the WAL reaches the endpoint at least once, unless the
// endpoint refuses it for good (a 4xx other than 429), write_relabel_configs
// drop it, or the WAL's disk cap deletes it before it was delivered; each of
// those is counted in ferry_sender_samples_failed_total or
// ferry_sender_samples_dropped_total and logged.
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
// by their ref, and a shard has one request in flight at a time.
//
// # Retries
//
// A request that fails with a network error, a 5xx, or a 429 (unless
// retry_on_http_429 is false) is sent again, without limit, after an
// exponential backoff from min_backoff to max_backoff, or after the
// endpoint's Retry-After (capped at 5 minutes). A 400, 413 or 422 may be
// caused by some samples only (Prometheus refuses a whole batch when one
// sample is a duplicate, as a batch re-sent after a crash can be): the batch
// is split in two at a series boundary and each half delivered in turn,
// down to single series' runs, so only what the endpoint refuses on its own
// is dropped. Any other 4xx drops the batch. Dropped samples are counted and
// the endpoint's message is logged (the first time in full, then at most
// every 10 seconds).
//
// # Checkpoints
//
// The checkpoint is the end of the longest run of WAL records whose every
// sample was acknowledged (2xx) or deliberately dropped. It is persisted,
// fsynced, every CheckpointInterval and at Stop, and only then reported to
// the WAL, which may delete segments before it. A restarted sender resumes
// from it, so samples acknowledged after the last persist are sent again:
// delivery is at-least-once, never at-most-once.
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
