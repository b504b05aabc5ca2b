// Package downsample is the compactor: a WAL consumer that rolls samples up
// into per-resolution rollups, which endpoints with a storage policy receive
// instead of raw samples.
//
// # Model
//
// For every resolution some endpoint's storage policy asks for, each series
// routed to it has an open window [start, start+resolution). Its aggregate
// holds count, sum, min, max, first and last (value and timestamp), and a
// reset-adjusted running total for counters. A window closes when a sample
// of the series at or after its end arrives, or when the clock passes its
// end plus max_delay and no sample of the series arrived for max_delay (a
// series that stopped). A sample older than a closed window, or not newer
// than the series' previous sample, is late: dropped and counted. NaN
// staleness markers are not aggregated.
//
// What a closed window emits, at its last sample's timestamp:
//
//	counter  the running total (starts at the first raw value, adds every
//	         increase, counting a drop as a reset), so increase() and rate()
//	         over the rollups equal those over the raw samples between
//	         window boundaries, whatever the resets
//	last     the last value (the default for gauges)
//	min, max, sum, count, avg  over the window
//
// A series is a counter when metadata says so (a counter family, or the
// _count, _sum and _bucket series of a histogram or summary family), or,
// without metadata, when its name ends in _total, _count, _sum or _bucket.
// The decision is made once per series and kept with its state. Mapping
// rules may ask for other aggregations. The default
// aggregation keeps the series' labels; every other one is its own series
// named <metric>:<aggregation>. Rollup rules aggregate across series (see
// group).
//
// # Storage and crash behaviour
//
// Window state, rollup-rule state, closed-window samples and the
// compactor's WAL position are written to Pebble in one synced batch every
// commit_interval (keys in rolluplog.go). What a commit only adds, the
// labels of new series and new rollup series, goes ahead of it in unsynced
// batches of at most 4 MiB, which keeps the synced batch, and the memory it
// takes, to the size of the window state; a crash between them leaves only
// entries nothing refers to. After a crash the compactor
// reloads the last commit and re-reads the WAL from its position: no window
// is counted twice or missed, and the rollups equal those of an
// uninterrupted run. WAL truncation waits for the compactor's committed
// position as for any consumer. When the WAL's disk cap (drop_oldest) drops
// segments the compactor has not committed past, it commits first, so a
// crash then loses nothing it had aggregated; samples it had not read yet
// are counted in ferry_downsample_skipped_samples_total{reason="disk_cap"}
// and their windows are incomplete.
//
// # Rollup logs
//
// Each resolution has an ordered log of rollup samples (tsdb/record Samples
// records referencing interned rollup series). It is a sender.Log:
// endpoints read it from their own checkpoint with the same sender, retries
// and guarantees as raw endpoints. Its cursor is the sequence number of the
// next entry to read, and its lag counts entries. Entries whose newest
// sample is older than the longest retention of the policies of that
// resolution are deleted, whether or not endpoints read them: every open
// reader that had not read them is told how many samples it lost (counted
// as ferry_sender_samples_dropped_total{reason="retention"}) and skips to
// the oldest retained entry. An endpoint that starts from the oldest entry
// backfills everything retained.
//
// # Series churn
//
// What departed series hold is freed, so that churn does not grow memory:
//
//   - A WAL series' window state goes once its windows closed and it had no
//     sample for two of the longest windows plus max_delay; if it comes
//     back, its counter total starts again.
//   - A rollup series' labels leave memory once every open reader read its
//     newest entry and two windows passed without a rollup of it
//     (ferry_downsample_rollup_series_released_total). Their labels move
//     from ds/series/ to ds/rseries/, listed by newest entry under
//     ds/released/, so that a start loads only the series held in memory,
//     and a reader that reads the entries again (an endpoint backfilling,
//     or resuming from an older checkpoint) reads them from there.
//   - Retention deletes a rollup series' labels from the state database
//     once it deleted every entry that used it
//     (ferry_downsample_rollup_series_freed_total).
//
// A series that comes back after either is interned again under a new id.
package downsample
