package sender

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// A series looked up in every round keeps its entry (and its encoded
// labels); one that stops being looked up is forgotten within two rounds.
func TestSeriesMemoForgetsSeriesThatStopped(t *testing.T) {
	m := newSeriesMemo()
	active := known(labels.FromStrings("__name__", "up"))
	m.put(1, active)
	m.put(2, known(labels.FromStrings("__name__", "gone")))
	for round := range 3 {
		for range minMemoRound {
			if m.get(1) != active {
				t.Fatalf("round %d: the active series' entry changed", round)
			}
			m.age()
		}
	}
	if m.get(2) != nil {
		t.Fatal("a series not looked up for three rounds is still held")
	}
	if n := m.len(); n != 1 {
		t.Fatalf("memo holds %d entries, want 1", n)
	}
}
