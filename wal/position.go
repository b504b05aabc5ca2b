package wal

import "fmt"

// Position is a place in the log: a segment and the byte offset just past a
// record in it. Offset 0 is the start of the segment.
type Position struct {
	Segment int
	Offset  int64
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool {
	if p.Segment != q.Segment {
		return p.Segment < q.Segment
	}
	return p.Offset < q.Offset
}

func (p Position) String() string { return fmt.Sprintf("%08d:%d", p.Segment, p.Offset) }

func minPosition(a, b Position) Position {
	if b.Less(a) {
		return b
	}
	return a
}
