package downsample

import (
	"math"
	"time"

	"github.com/ferrymetrics/ferry/wal"
)

// Status is the compactor's state for the status page and `ferry status`.
type Status struct {
	// Position is the WAL position of the last commit; LagBytes the WAL
	// bytes after it.
	Position string `json:"position"`
	LagBytes int64  `json:"lag_bytes"`
	Series   int    `json:"series"`
	// OpenWindows counts windows holding samples, over every resolution.
	OpenWindows int         `json:"open_windows"`
	Logs        []LogStatus `json:"rollup_logs"`
}

// LogStatus is one resolution's rollup log.
type LogStatus struct {
	Resolution string `json:"resolution"`
	Retention  string `json:"retention"`
	// Entries are the retained entries, each of at most 10,000 rollup
	// samples; Series the rollup series interned.
	Entries int64 `json:"entries"`
	Series  int   `json:"series"`
	// Newest is the newest rollup sample's time, zero if none.
	Newest time.Time `json:"newest,omitzero"`
}

// Status returns the compactor's state now.
func (c *Compactor) Status() Status {
	c.mu.Lock()
	st := Status{Position: c.pos.String(), LagBytes: c.log.BytesBehind(c.pos), Series: c.series.len()}
	c.series.all(func(_ wal.Ref, s *seriesState) {
		for _, w := range s.windows {
			if w.Count > 0 {
				st.OpenWindows++
			}
		}
	})
	c.mu.Unlock()
	for _, l := range c.logs {
		l.mu.RLock()
		ls := LogStatus{
			Resolution: spell(time.Duration(l.res) * time.Millisecond), Retention: spell(time.Duration(l.retention) * time.Millisecond),
			Entries: int64(l.next - l.first), Series: len(l.wire),
		}
		l.mu.RUnlock()
		if hi := l.highest.Load(); hi != math.MinInt64 {
			ls.Newest = time.UnixMilli(hi).UTC()
		}
		st.Logs = append(st.Logs, ls)
	}
	return st
}
