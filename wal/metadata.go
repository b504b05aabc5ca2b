package wal

import (
	"sort"
	"strings"
	"sync"

	"github.com/ferrymetrics/ferry/wal/model"
)

// metadataTable holds the current metadata of every metric family the log
// was told about. It is rebuilt at replay from the checkpoint and the
// segments' metadata records, and carried into every checkpoint. Truncation
// forgets families no live series belongs to, so it is bounded by the
// active series' metric names.
type metadataTable struct {
	mu sync.RWMutex
	m  map[string]Metadata
}

func newMetadataTable() *metadataTable { return &metadataTable{m: map[string]Metadata{}} }

// changed returns the indices of the entries of ms that differ from the
// table (or repeat an earlier entry of ms with different contents).
func (t *metadataTable) changed(ms []model.Metadata) []int {
	var out []int
	t.mu.RLock()
	defer t.mu.RUnlock()
	for i := range ms {
		m := &ms[i]
		if len(m.Family) == 0 {
			continue
		}
		cur, ok := t.m[yoloString(m.Family)]
		if ok && cur.Type == m.Type && cur.Help == yoloString(m.Help) && cur.Unit == yoloString(m.Unit) {
			continue
		}
		if len(out) > 0 {
			// The same family twice in one batch: the last entry wins.
			if j := out[len(out)-1]; string(ms[j].Family) == string(m.Family) {
				out[len(out)-1] = i
				continue
			}
		}
		out = append(out, i)
	}
	return out
}

// set stores m, copying its bytes.
func (t *metadataTable) set(m *model.Metadata) {
	t.put(Metadata{Family: string(m.Family), Type: m.Type, Help: string(m.Help), Unit: string(m.Unit)})
}

func (t *metadataTable) put(m Metadata) {
	t.mu.Lock()
	t.m[m.Family] = m
	t.mu.Unlock()
}

func (t *metadataTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

func (t *metadataTable) get(family string) (Metadata, bool) {
	t.mu.RLock()
	m, ok := t.m[family]
	t.mu.RUnlock()
	return m, ok
}

// familySuffixes are the suffixes a series name may add to its family's
// name (histograms, summaries, counters, info metrics).
var familySuffixes = []string{"_bucket", "_count", "_sum", "_total", "_created", "_info"}

// prune forgets the families of which no series is left: names holds the
// metric names of the live series. A family is kept while a live series is
// named after it, with or without one of familySuffixes. Metadata of a
// family that comes back is written again when it is next sent.
func (t *metadataTable) prune(names map[string]struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for fam := range t.m {
		if _, ok := names[fam]; ok {
			continue
		}
		kept := false
		for _, suf := range familySuffixes {
			if _, ok := names[fam+suf]; ok {
				kept = true
				break
			}
		}
		if !kept {
			delete(t.m, fam)
		}
	}
}

// all returns every family's metadata, sorted by family name.
func (t *metadataTable) all() []Metadata {
	t.mu.RLock()
	out := make([]Metadata, 0, len(t.m))
	for _, m := range t.m {
		out = append(out, m)
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Family < out[j].Family })
	return out
}

// Metadata returns the current metadata of the family a series called name
// belongs to (see FamilyOf); Metadata.Family names the family found.
func (w *WAL) Metadata(name string) (Metadata, bool) { return FamilyOf(name, w.meta.get) }

// FamilyOf finds, with get, the metadata of the family a series called
// name belongs to: the family of that name, or else of the name less one of
// familySuffixes (foo_bucket, foo_count and foo_sum belong to foo; the
// counter foo_total to foo_total, or to foo in OpenMetrics' naming).
func FamilyOf(name string, get func(family string) (Metadata, bool)) (Metadata, bool) {
	if name == "" {
		return Metadata{}, false
	}
	if m, ok := get(name); ok {
		return m, true
	}
	for _, suf := range familySuffixes {
		if base, ok := strings.CutSuffix(name, suf); ok && base != "" {
			if m, ok := get(base); ok {
				return m, true
			}
		}
	}
	return Metadata{}, false
}
