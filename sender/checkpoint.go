package sender

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ferrymetrics/ferry/wal"
)

// Checkpoints persists each endpoint's position in the WAL.
type Checkpoints interface {
	// Load returns the stored position; ok is false if there is none.
	Load(name string) (p wal.Position, ok bool, err error)
	// Save stores p durably (fsynced) before returning.
	Save(name string, p wal.Position) error
	Delete(name string) error
	// Names lists the endpoints with a stored position.
	Names() ([]string, error)
}

// PebbleCheckpoints stores positions in a Pebble database under the key
// "sender/checkpoint/<name>". The value is a version byte (1), the segment
// and the offset as big-endian uint64s.
type PebbleCheckpoints struct{ DB *pebble.DB }

const checkpointPrefix = "sender/checkpoint/"

func checkpointKey(name string) []byte { return []byte(checkpointPrefix + name) }

// Load implements Checkpoints.
func (c PebbleCheckpoints) Load(name string) (wal.Position, bool, error) {
	v, closer, err := c.DB.Get(checkpointKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return wal.Position{}, false, nil
	}
	if err != nil {
		return wal.Position{}, false, fmt.Errorf("load checkpoint of %s: %w", name, err)
	}
	defer closer.Close()
	if len(v) != 17 || v[0] != 1 {
		return wal.Position{}, false, fmt.Errorf("load checkpoint of %s: unknown encoding (%d bytes, version %d)", name, len(v), v[0])
	}
	return wal.Position{
		Segment: int(binary.BigEndian.Uint64(v[1:])),
		Offset:  int64(binary.BigEndian.Uint64(v[9:])),
	}, true, nil
}

// Save implements Checkpoints.
func (c PebbleCheckpoints) Save(name string, p wal.Position) error {
	var v [17]byte
	v[0] = 1
	binary.BigEndian.PutUint64(v[1:], uint64(p.Segment))
	binary.BigEndian.PutUint64(v[9:], uint64(p.Offset))
	if err := c.DB.Set(checkpointKey(name), v[:], pebble.Sync); err != nil {
		return fmt.Errorf("save checkpoint of %s at %s: %w", name, p, err)
	}
	return nil
}

// Delete implements Checkpoints.
func (c PebbleCheckpoints) Delete(name string) error {
	if err := c.DB.Delete(checkpointKey(name), pebble.Sync); err != nil {
		return fmt.Errorf("delete checkpoint of %s: %w", name, err)
	}
	return nil
}

// Names implements Checkpoints.
func (c PebbleCheckpoints) Names() ([]string, error) {
	it, err := c.DB.NewIter(&pebble.IterOptions{
		LowerBound: []byte(checkpointPrefix),
		UpperBound: []byte(checkpointPrefix[:len(checkpointPrefix)-1] + "0"), // '/'+1
	})
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	var names []string
	for it.First(); it.Valid(); it.Next() {
		names = append(names, string(it.Key()[len(checkpointPrefix):]))
	}
	if err := it.Error(); err != nil {
		_ = it.Close()
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	return names, it.Close()
}
