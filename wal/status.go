package wal

// Status is the WAL's state for the status page and `ferry status`.
type Status struct {
	Dir       string `json:"dir"`
	SizeBytes int64  `json:"size_bytes"`
	// MaxSizeBytes is wal.max_size (0: no cap); MinFreeBytes the free
	// space the WAL leaves on its filesystem, which has FreeBytes free.
	MaxSizeBytes int64  `json:"max_size_bytes"`
	MinFreeBytes int64  `json:"min_free_disk_bytes"`
	FreeBytes    int64  `json:"filesystem_free_bytes"`
	WhenFull     string `json:"when_full"`
	Segments     int    `json:"segments"`
	Head         string `json:"head"`
	Series       int    `json:"series"`
	// AppendedSamples counts samples and histograms appended since start.
	AppendedSamples int64 `json:"appended_samples"`
}

// Status returns the WAL's state now.
func (w *WAL) Status() Status {
	first, head := w.segmentRange()
	st := Status{
		Dir: w.dir, SizeBytes: w.Size(), MaxSizeBytes: w.opts.MaxSize, MinFreeBytes: w.opts.MinFree,
		WhenFull: "drop_oldest", Segments: head - first + 1, Head: w.Head().String(),
		Series: w.series.len(), AppendedSamples: w.appendedTotal.Load(), FreeBytes: -1,
	}
	if w.opts.WhenFull == Backpressure {
		st.WhenFull = "backpressure"
	}
	if free, err := w.opts.FreeSpace(w.dir); err == nil {
		st.FreeBytes = int64(free)
	}
	return st
}
