package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/prometheus/prometheus/util/compression"
)

// The page format of Prometheus' tsdb/wlog, which wlog.Reader and
// wlog.LiveReader read: a segment is a sequence of 32 KiB pages; a record is
// cut into fragments that do not cross a page, each behind a 7-byte header
// (type with compression flags, big-endian uint16 length, big-endian CRC32
// Castagnoli of the fragment). A page whose tail cannot hold a header is
// padded with zeros. Writing it here, through a vfs.FS, rather than with
// wlog.WL lets every write and fsync of the log go through the filesystem
// seam, and reports every fsync error (wlog.WL.Close logs and drops its own).
const (
	recordHeaderSize = 7
	recFull          = 1
	recFirst         = 2
	recMiddle        = 3
	recLast          = 4
	snappyFlag       = 1 << 3
	zstdFlag         = 1 << 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentWriter appends records to one segment file. Every log call ends
// with write(2) of what it added, so a record is in the file (and survives
// the process) when log returns; sync makes it survive power loss.
type segmentWriter struct {
	f        vfs.File
	name     string
	compress compression.Type
	enc      compression.EncodeBuffer
	page     *[pageSize]byte
	alloc    int   // bytes of the page filled
	flushed  int   // bytes of the page written to the file
	size     int64 // bytes written to the file
}

// createSegment creates segment index in dir. The directory is not fsynced:
// the caller does that once the file is made.
func createSegment(fs vfs.FS, dir string, index int, c compression.Type) (*segmentWriter, error) {
	name := wlog.SegmentName(dir, index)
	if _, err := fs.Stat(name); err == nil {
		return nil, fmt.Errorf("create segment %s: %w", name, os.ErrExist)
	}
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("create segment %s: %w", name, err)
	}
	return &segmentWriter{f: f, name: name, compress: c, enc: compression.NewSyncEncodeBuffer(), page: new([pageSize]byte)}, nil
}

// log writes the records; on error the segment must not be written again
// (seal it with close and start another).
func (s *segmentWriter) log(recs ...[]byte) error {
	for _, rec := range recs {
		if err := s.add(rec); err != nil {
			return err
		}
	}
	return s.flush(false)
}

// add puts one record into the page, writing out every page it fills.
func (s *segmentWriter) add(rec []byte) error {
	flags := byte(0)
	if s.compress != compression.None && len(rec) > 0 {
		enc, err := compression.Encode(s.compress, rec, s.enc)
		if err != nil {
			return fmt.Errorf("compress record: %w", err)
		}
		// A record that does not shrink is stored as it is.
		if len(enc) < len(rec) {
			rec = enc
			flags = snappyFlag
			if s.compress == compression.Zstd {
				flags = zstdFlag
			}
		}
	}
	for i := 0; i == 0 || len(rec) > 0; i++ {
		if pageSize-s.alloc < recordHeaderSize {
			if err := s.flush(true); err != nil {
				return err
			}
		}
		n := min(len(rec), pageSize-s.alloc-recordHeaderSize)
		part := rec[:n]
		typ := byte(recMiddle)
		switch {
		case i == 0 && n == len(rec):
			typ = recFull
		case n == len(rec):
			typ = recLast
		case i == 0:
			typ = recFirst
		}
		h := s.page[s.alloc:]
		h[0] = typ | flags
		binary.BigEndian.PutUint16(h[1:], uint16(n))
		binary.BigEndian.PutUint32(h[3:], crc32.Checksum(part, castagnoli))
		copy(h[recordHeaderSize:], part)
		s.alloc += recordHeaderSize + n
		rec = rec[n:]
	}
	return nil
}

// flush writes the unwritten part of the page; with pad, or when no header
// fits any more, the rest of the page is written as zeros and a new page
// begins.
func (s *segmentWriter) flush(pad bool) error {
	full := pad || pageSize-s.alloc < recordHeaderSize
	end := s.alloc
	if full {
		end = pageSize
	}
	if end > s.flushed {
		want := end - s.flushed
		n, err := s.f.Write(s.page[s.flushed:end])
		s.flushed += n
		s.size += int64(n)
		if err == nil && n < want {
			err = fmt.Errorf("short write: %d of %d bytes", n, want)
		}
		if err != nil {
			return fmt.Errorf("write segment %s: %w", s.name, err)
		}
	}
	if full {
		clear(s.page[:s.alloc])
		s.alloc, s.flushed = 0, 0
	}
	return nil
}

// sync makes what was written durable (fdatasync).
func (s *segmentWriter) sync() error {
	if err := s.f.SyncData(); err != nil {
		return fmt.Errorf("fsync segment %s: %w", s.name, err)
	}
	return nil
}

// seal pads the last page (as wlog does), fsyncs and closes the segment.
// A segment whose write failed is fsynced and closed without the padding.
func (s *segmentWriter) seal(broken bool) error {
	var err error
	if !broken && s.alloc > 0 {
		err = s.flush(true)
	}
	if err == nil {
		err = s.sync()
	}
	return errors.Join(err, s.f.Close())
}
