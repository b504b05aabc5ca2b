// Package wal is Ferry's write-ahead log: every sample Ferry acknowledges is
// appended here first, and every consumer (one sender per endpoint, the
// compactor) reads it back from its own persisted position.
//
// # On-disk format
//
// The log is a directory of numbered segment files (00000000, 00000001, …)
// in the format of Prometheus' tsdb/wlog: 32 KiB pages holding records cut
// into fragments, each fragment with a 7-byte header (type, length,
// CRC32-Castagnoli). A record never spans two segments. Record payloads are
// tsdb/record encodings where one fits, and Ferry's own otherwise; format.go
// is the one place that names, encodes and decodes them:
//
//	Series    (type 1)   ref → labels, written once per series, before any
//	                     record that uses the ref
//	Samples   (type 2)   (ref, timestamp, value), delta-encoded
//	SamplesV2 (type 11)  the same with per-sample start timestamps; written
//	                     instead of Samples when a sample has one
//	Exemplars (type 4)   (ref, timestamp, value, exemplar labels)
//	RawHistograms (200)  per native histogram: ref (uvarint), length (uvarint)
//	                     and the protobuf Histogram message as received
//	                     (Remote-Write 1.0 and 2.0 share its fields 1-16;
//	                     2.0's start_timestamp is field 17)
//	Metadata  (202)      per metric family: type (one byte), then name, help
//	                     and unit, each a uvarint length and bytes; written
//	                     only when a family's metadata changes
//	Types     (201)      metric types only, written by earlier releases; read
//	                     as Metadata without help and unit
//
// Other record types are skipped by readers, so a log can be read by the
// release before the one that wrote it, minus what that release did not
// know. The log keeps the current metadata of every family in memory (it
// grows with distinct metric names, not with series), and readers may ask
// for it with Metadata.
//
// In memory the log holds each series once, shared by the writer and every
// reader: its labels in wire form (model.AppendWireLabel, the Remote-Write
// 1.0 encoding), packed into large slabs with no per-series object, which
// readers hand out with every entry (Entry.Wire) so that senders copy a
// series' labels into requests without marshalling them. A new series'
// labels are copied once, from the request into a slab, and its Series
// record is encoded from them.
//
// A checkpoint directory checkpoint.NNNNNNNN holds, in the same segment
// format, Series records and the Metadata of every family. Checkpoints form
// a chain (checkpoint.go): a full one holds every series still referenced by
// segments after NNNNNNNN whose Series record was in a deleted segment; a
// delta holds only the series created since the chain's previous member and
// lists the members it extends in its file "chain". Replay reads the
// members oldest first. Truncation writes a delta, so its cost follows the
// series that came and went, not the active ones, and writes a full
// checkpoint instead when more than half the chain's records are of
// forgotten series (or the chain has 64 members). Segments up to and
// including NNNNNNNN, and checkpoints that left the chain, are deleted once
// the checkpoint is durable (written to checkpoint.NNNNNNNN.tmp, fsynced
// with its chain file, renamed, directory fsynced). A release before
// checkpoint chains reads only the newest member: downgrading over a delta
// checkpoint loses the labels of the series in the older members.
//
// A Position is (segment, byte offset just past a record). Consumers persist
// positions themselves; the log only needs to be told, through
// Reader.Commit, which position a consumer has durably stored.
//
// # Durability
//
// Append writes the records to the segment file with write(2) before it
// returns, so an acknowledged append survives the process being killed.
// With SyncAlways, Append also returns only after fdatasync of the segment:
// the data survives power loss. Concurrent appends share one fsync (group
// commit). With SyncInterval the segment is fsynced on a timer: a power loss
// can lose up to one interval of acknowledged data; a process crash loses
// nothing. Segment rotation fsyncs the sealed segment and the directory.
//
// A writer that keeps series refs across appends (the scraper) uses Resolve
// and AppendRefs instead: Resolve writes a new series' Series record at
// once, without fsync; the first AppendRefs that uses the ref follows it in
// the log, so its fsync covers both. AppendRefs is one write (one fsync
// under SyncAlways) for the whole batch, and refuses the batch, writing
// nothing, when truncation forgot one of its refs in between.
//
// AppendChecked serves writers that validate what they append (the
// Remote-Write receiver): it calls the check only for the series the log
// does not hold yet, before writing anything, since a series the log holds
// has the labels of one that passed the check when it was created.
// Series are found by fingerprint in an open-addressing table probed once
// per series, in one loop per batch, outside the writer's lock.
//
// # Crash recovery
//
// Open reads the newest checkpoint's chain and every segment to rebuild the
// series table; a chain member that is missing or damaged stops Open, as
// the series it holds are needed. A record that fails its checksum or ends early (a torn write) ends
// its segment: the file is truncated just after the last intact record, and
// the cut bytes are logged and counted. Later segments are kept. Open always
// starts a new segment for writing, so a repaired segment is never appended
// to.
//
// # Truncation and the disk cap
//
// Segments every registered consumer has committed past are deleted, after a
// checkpoint carries the live series forward. A series is forgotten when no
// segment on disk has a record of it and the segment with its last one was
// sealed over Options.SeriesGrace (5 minutes) ago, so that series sampled
// less often than segments are consumed (high cardinality, slow scrapes)
// keep their refs instead of being written anew each time. The log has two limits: its
// own size (MaxSize) and the free space it leaves on its filesystem
// (MinFree), which keeps room for the series checkpoint that truncation
// writes and for the state database beside the log, so that delivering and
// truncating still work when the log has filled the disk. An append that
// would start below MinFree is refused with ErrFull under either policy
// (free space is taken from statfs(2) at most every 100 ms, less what the
// log wrote since). When a limit is reached, WhenFull decides:
// DropOldest deletes the oldest sealed segments, even if consumers have not
// read them, until the log is within MaxSize and MinFree plus one segment is
// free; it moves those consumers forward and tells every consumer that had
// not committed past them how many samples it had not read (what it read but
// has not stored is its own to count). Backpressure makes Append return ErrFull until
// consumers catch up, so nothing is acknowledged that was not written. The
// limits are enforced at segment granularity; the head segment is never
// dropped.
//
// If a write fails (disk full, I/O error), the current segment is sealed and
// a new one begun before the next append is accepted, so a half-written
// record can only ever be the torn tail of a sealed segment.
//
// # Filesystem and fsync points
//
// Every file operation goes through Options.FS (a pebble vfs.FS; the
// operating system's by default), so tests inject write, fsync, create and
// rename failures and cut power (vfs.NewCrashableMem) at any point. The log
// writes the wlog page format itself (segment.go) rather than through
// wlog.WL, so that no fsync error is dropped. It fsyncs:
//
//   - the head segment: before Append returns (SyncAlways) or on the timer
//     (SyncInterval);
//   - a segment being sealed, then the directory holding the next one;
//   - the log directory's parent when Open creates it;
//   - each checkpoint segment, its chain file, the checkpoint directory,
//     and the log directory after the rename that publishes it;
//   - a repaired segment (written whole to NNNNNNNN.repair, fsynced, renamed
//     over the damaged one) and its directory.
//
// An fsync that fails is returned to every append waiting on it and to no
// later one; the writes it covered are treated as lost (the next append
// starts a new segment). If sealing a segment fails its fsync, the appends
// not yet fsynced in it get the error too. Close returns the final fsync's
// error.
package wal
