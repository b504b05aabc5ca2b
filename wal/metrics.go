package wal

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	appendedSamples   prometheus.Counter
	appendedRequests  prometheus.Counter
	seriesCreated     prometheus.Counter
	seriesRemoved     prometheus.Counter
	activeSeries      prometheus.GaugeFunc
	fsyncs            prometheus.Counter
	fsyncDuration     prometheus.Histogram
	fsyncErrors       prometheus.Counter
	writeErrors       prometheus.Counter
	fullRejections    *prometheus.CounterVec
	freeBytes         prometheus.GaugeFunc
	sizeBytes         prometheus.GaugeFunc
	segments          prometheus.GaugeFunc
	segmentCurrent    prometheus.GaugeFunc
	truncations       prometheus.Counter
	truncationErrors  prometheus.Counter
	droppedSegments   prometheus.Counter
	droppedBytes      prometheus.Counter
	repairedBytes     prometheus.Counter
	corruptions       prometheus.Counter
	replayDuration    prometheus.Gauge
	replayedSamples   prometheus.Counter
	highestTimestamp  prometheus.GaugeFunc
	checkpointSeconds prometheus.Histogram
	checkpointSeries  prometheus.Counter
	limits            *prometheus.GaugeVec
}

func newMetrics(w *WAL, reg prometheus.Registerer) *metrics {
	m := &metrics{
		appendedSamples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_samples_appended_total", Help: "Samples appended to the WAL.",
		}),
		appendedRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_appends_total", Help: "Append calls that wrote to the WAL.",
		}),
		seriesCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_series_created_total", Help: "Series records written.",
		}),
		seriesRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_series_removed_total", Help: "Series forgotten by truncation because no retained segment references them.",
		}),
		activeSeries: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_wal_series", Help: "Series held in memory.",
		}, func() float64 { return float64(w.series.len()) }),
		fsyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_fsyncs_total", Help: "fsync calls on WAL segments.",
		}),
		fsyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ferry_wal_fsync_duration_seconds", Help: "Duration of WAL segment fsyncs.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}),
		fsyncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_fsync_errors_total", Help: "Failed fsyncs; the appends waiting on them were refused.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_write_errors_total", Help: "Failed WAL writes; the appends were refused.",
		}),
		fullRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_wal_full_rejections_total",
			Help: "Appends refused for lack of space, by limit: max_size (under backpressure) or min_free_disk.",
		}, []string{"limit"}),
		freeBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_wal_filesystem_free_bytes", Help: "Bytes available on the WAL's filesystem.",
		}, func() float64 {
			free, err := w.opts.FreeSpace(w.dir)
			if err != nil {
				return math.NaN()
			}
			return float64(free)
		}),
		sizeBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_wal_size_bytes", Help: "Bytes the WAL uses on disk (segments and checkpoint).",
		}, func() float64 { return float64(w.Size()) }),
		segments: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_wal_segments", Help: "Segments on disk.",
		}, func() float64 { first, head := w.segmentRange(); return float64(head - first + 1) }),
		segmentCurrent: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_wal_segment_current", Help: "Index of the segment being written.",
		}, func() float64 { _, head := w.segmentRange(); return float64(head) }),
		truncations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_truncations_total", Help: "Truncations that deleted segments.",
		}),
		truncationErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_truncation_errors_total", Help: "Truncations that failed.",
		}),
		droppedSegments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_cap_dropped_segments_total", Help: "Segments deleted by the disk cap before every consumer read them.",
		}),
		droppedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_cap_dropped_bytes_total", Help: "Bytes of segments deleted by the disk cap.",
		}),
		repairedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_repair_cut_bytes_total", Help: "Bytes cut from damaged segment tails at start.",
		}),
		corruptions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_corruptions_total", Help: "Damaged records found (at start or by readers).",
		}),
		replayDuration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ferry_wal_replay_duration_seconds", Help: "How long the WAL replay at start took.",
		}),
		replayedSamples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_replayed_samples_total", Help: "Samples read by the WAL replay at start.",
		}),
		highestTimestamp: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_wal_highest_timestamp_seconds", Help: "Highest sample timestamp appended; 0 if none yet.",
		}, func() float64 {
			// 0 until the WAL has had a sample, as Prometheus reports "none
			// yet", not math.MinInt64 ms.
			ts := w.highestTs.Load()
			if ts == math.MinInt64 {
				return 0
			}
			return float64(ts) / 1000
		}),
		checkpointSeries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_wal_checkpoint_series_written_total",
			Help: "Series records written to checkpoints; a checkpoint holds only the series created since the previous one, except when the chain is rewritten whole.",
		}),
		limits: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_wal_limit_bytes",
			Help: "The WAL's disk limits: limit=\"max_size\" (0: no cap) and limit=\"min_free_disk\" (free space it leaves on its filesystem); with ferry_wal_size_bytes and ferry_wal_filesystem_free_bytes they tell how near the cap is.",
		}, []string{"limit"}),
		checkpointSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ferry_wal_checkpoint_duration_seconds", Help: "Duration of series checkpoints.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.appendedSamples, m.appendedRequests, m.seriesCreated, m.seriesRemoved,
			m.activeSeries, m.fsyncs, m.fsyncDuration, m.fsyncErrors, m.writeErrors, m.fullRejections, m.freeBytes,
			m.sizeBytes, m.segments, m.segmentCurrent, m.truncations, m.truncationErrors,
			m.droppedSegments, m.droppedBytes, m.repairedBytes, m.corruptions, m.replayDuration,
			m.replayedSamples, m.highestTimestamp, m.checkpointSeconds, m.checkpointSeries, m.limits)
	}
	m.limits.WithLabelValues(reasonMaxSize).Set(float64(w.opts.MaxSize))
	m.limits.WithLabelValues(reasonMinFree).Set(float64(w.opts.MinFree))
	for _, l := range []string{reasonMaxSize, reasonMinFree} {
		m.fullRejections.WithLabelValues(l)
	}
	return m
}
