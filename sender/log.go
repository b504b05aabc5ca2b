package sender

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"

	"github.com/ferrymetrics/ferry/wal"
)

// Cursor is a place in a Log, just past an entry (or before the first):
// where a consumer is, and what its checkpoint stores. What the 16 bytes
// mean belongs to the Log that made them: the WAL's cursor holds a
// wal.Position, a rollup log's an entry sequence number. A sender never
// reads them; it compares cursors of one Log, stores them and hands them
// back. A Log encodes its places so that their cursors sort like them
// byte for byte (big-endian integers do).
type Cursor [16]byte

// Less reports whether c comes before d, a cursor of the same Log.
func (c Cursor) Less(d Cursor) bool { return bytes.Compare(c[:], d[:]) < 0 }

// LagUnit is what a Log measures a consumer's lag in.
type LagUnit uint8

const (
	// LagBytes counts bytes of records (the WAL), exported as
	// ferry_sender_lag_bytes.
	LagBytes LagUnit = iota
	// LagEntries counts entries (a rollup log), exported as
	// ferry_sender_lag_entries.
	LagEntries
)

// String returns "bytes" or "entries".
func (u LagUnit) String() string {
	if u == LagEntries {
		return "entries"
	}
	return "bytes"
}

// ErrSourceClosed is what a Source's Next returns (or wraps) once its Log
// is closed: the sender stops reading instead of retrying.
var ErrSourceClosed = errors.New("sender: log closed")

// Log is an ordered, replayable log of samples a sender forwards: the WAL
// for raw endpoints, a rollup log for endpoints with a storage policy.
type Log interface {
	// Open registers a consumer called name that reads the entries after
	// at. A cursor before the oldest retained entry moves to it. onDrop, if not nil, is told when the log deletes entries the
	// consumer had not committed past.
	Open(name string, at Cursor, onDrop DropFunc) (Source, error)
	// Oldest is the cursor before the oldest retained entry, Head the
	// cursor past the newest.
	Oldest() Cursor
	Head() Cursor
	// Lag is how much of the log lies between c and the head, in LagUnit.
	Lag(c Cursor) int64
	LagUnit() LagUnit
	// Describe returns c as logs show it.
	Describe(c Cursor) string
	// HighestTimestamp is the newest sample's timestamp (ms), or
	// math.MinInt64 if there is none.
	HighestTimestamp() int64
	// MetadataSource gives the current metadata of the metric families
	// whose samples are sent.
	wal.MetadataSource
}

// Source is one consumer's reader of a Log. Next is called from one
// goroutine; Cursor and Commit may be called from others.
type Source interface {
	// Next returns the next entry, waiting for one. The entry is valid
	// until the next call. It returns ctx.Err() when ctx ends and
	// ErrSourceClosed (or an error wrapping it) when the log closes, and a
	// *wal.CorruptionError once when it skipped damage; the sender retries
	// any other error.
	Next(ctx context.Context) (Entry, error)
	// Cursor is just past the last entry returned.
	Cursor() Cursor
	// Commit tells the log the consumer durably stored c.
	Commit(c Cursor)
	// Close unregisters the consumer.
	Close() error
}

// Entry is one entry of a Log.
type Entry struct {
	// Data holds the entry's samples, histograms, exemplars or metadata.
	// Its Start and End are WAL positions, set by the WAL only; a sender
	// goes by End below.
	Data *wal.Entry
	// End is the cursor just past the entry.
	End Cursor
}

// DropFunc is told that the log deleted the entries before to that the
// consumer had not committed past; lost of them was not read yet (between
// from, the read cursor, and to). What the consumer read before to but has
// not stored is lost too once it crashes: it should count and discard it
// now.
type DropFunc func(lost wal.Lost, from, to Cursor)

// WALLog adapts the WAL to Log. Its cursor is a wal.Position: the segment
// and the byte offset as big-endian uint64s. Lag counts bytes.
type WALLog struct{ *wal.WAL }

var _ Log = WALLog{}

func walCursor(p wal.Position) Cursor {
	var c Cursor
	binary.BigEndian.PutUint64(c[:8], uint64(p.Segment))
	binary.BigEndian.PutUint64(c[8:], uint64(p.Offset))
	return c
}

func walPosition(c Cursor) wal.Position {
	return wal.Position{Segment: int(binary.BigEndian.Uint64(c[:8])), Offset: int64(binary.BigEndian.Uint64(c[8:]))}
}

// WALCursor is the cursor of WAL position p (what checkpoints of raw
// endpoints store).
func WALCursor(p wal.Position) Cursor { return walCursor(p) }

// WALPosition is the WAL position of a raw endpoint's cursor.
func WALPosition(c Cursor) wal.Position { return walPosition(c) }

// Open implements Log.
func (l WALLog) Open(name string, at Cursor, onDrop DropFunc) (Source, error) {
	var f wal.DropFunc
	if onDrop != nil {
		f = func(n wal.Lost, from, to wal.Position) { onDrop(n, walCursor(from), walCursor(to)) }
	}
	r, err := l.NewReader(name, walPosition(at), f)
	if err != nil {
		return nil, err
	}
	return walSource{r}, nil
}

// Oldest implements Log.
func (l WALLog) Oldest() Cursor { return walCursor(l.WAL.Oldest()) }

// Head implements Log.
func (l WALLog) Head() Cursor { return walCursor(l.WAL.Head()) }

// Lag implements Log: the bytes of records between c and the head.
func (l WALLog) Lag(c Cursor) int64 { return l.BytesBehind(walPosition(c)) }

// LagUnit implements Log.
func (WALLog) LagUnit() LagUnit { return LagBytes }

// Describe implements Log: "segment:offset".
func (WALLog) Describe(c Cursor) string { return walPosition(c).String() }

// position makes WALLog a segmented Log.
func (WALLog) position(c Cursor) wal.Position { return walPosition(c) }

// segmented is a Log whose cursors name a WAL segment and a byte offset in
// it, which the sender exports as ferry_sender_checkpoint_segment and
// ferry_sender_checkpoint_offset_bytes.
type segmented interface{ position(c Cursor) wal.Position }

// walSource adapts a wal.Reader to Source.
type walSource struct{ r *wal.Reader }

func (s walSource) Next(ctx context.Context) (Entry, error) {
	e, err := s.r.Next(ctx)
	if errors.Is(err, wal.ErrClosed) {
		return Entry{}, ErrSourceClosed
	}
	if err != nil {
		return Entry{}, err
	}
	return Entry{Data: e, End: walCursor(e.End)}, nil
}

func (s walSource) Cursor() Cursor  { return walCursor(s.r.Position()) }
func (s walSource) Commit(c Cursor) { s.r.Commit(walPosition(c)) }
func (s walSource) Close() error    { return s.r.Close() }
