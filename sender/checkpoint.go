package sender

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Checkpoints persists each endpoint's cursor in its log, under the
// endpoint's checkpoint key.
type Checkpoints interface {
	// Load returns the stored cursor; ok is false if there is none.
	Load(key string) (c Cursor, ok bool, err error)
	// Save stores c durably (fsynced) before returning.
	Save(key string, c Cursor) error
	Delete(key string) error
	// Names lists the keys with a stored cursor.
	Names() ([]string, error)
}

// PebbleCheckpoints stores cursors in a Pebble database under the key
// "sender/checkpoint/<key>". The value is a version byte (1) and the
// cursor's 16 bytes: for the WAL the segment and the offset, for a rollup
// log zero and the sequence number of the next entry, each a big-endian
// uint64. These bytes are part of the on-disk format.
type PebbleCheckpoints struct{ DB *pebble.DB }

const checkpointPrefix = "sender/checkpoint/"

func checkpointKey(key string) []byte { return []byte(checkpointPrefix + key) }

// checkpointVersion is the value's first byte.
const checkpointVersion = 1

// Load implements Checkpoints.
func (c PebbleCheckpoints) Load(key string) (Cursor, bool, error) {
	v, closer, err := c.DB.Get(checkpointKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return Cursor{}, false, nil
	}
	if err != nil {
		return Cursor{}, false, fmt.Errorf("load checkpoint of %s: %w", key, err)
	}
	defer closer.Close()
	var cur Cursor
	if len(v) != 1+len(cur) || v[0] != checkpointVersion {
		version := -1
		if len(v) > 0 {
			version = int(v[0])
		}
		return Cursor{}, false, fmt.Errorf("load checkpoint of %s: unknown encoding (%d bytes, version %d)", key, len(v), version)
	}
	copy(cur[:], v[1:])
	return cur, true, nil
}

// Save implements Checkpoints.
func (c PebbleCheckpoints) Save(key string, cur Cursor) error {
	v := append([]byte{checkpointVersion}, cur[:]...)
	if err := c.DB.Set(checkpointKey(key), v, pebble.Sync); err != nil {
		return fmt.Errorf("save checkpoint of %s at %x: %w", key, cur, err)
	}
	return nil
}

// Delete implements Checkpoints.
func (c PebbleCheckpoints) Delete(key string) error {
	if err := c.DB.Delete(checkpointKey(key), pebble.Sync); err != nil {
		return fmt.Errorf("delete checkpoint of %s: %w", key, err)
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
