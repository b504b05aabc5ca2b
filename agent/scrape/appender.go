package scrape

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/ferrymetrics/ferry/wal"
	walmodel "github.com/ferrymetrics/ferry/wal/model"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/zap"
)

// Log is the write-ahead log scrapes are committed to.
type Log interface {
	Resolve(labels.Labels) (wal.Ref, error)
	Holds(wal.Ref) bool
	AppendRefs(*walmodel.Batch, []wal.Ref) error
}

// appendable gives the scrape loops appenders onto the log.
type appendable struct {
	log    Log
	logger *zap.Logger
	m      *appendMetrics
}

type appendMetrics struct {
	samples, histograms, exemplars prometheus.Counter
	rejected                       prometheus.Counter
	ok, failed                     prometheus.Counter
}

func newAppendMetrics(reg prometheus.Registerer) *appendMetrics {
	committed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_scrape_appended_total",
		Help: "Scraped samples, native histograms and exemplars committed to the WAL, by kind.",
	}, []string{"kind"})
	commits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_scrape_commits_total",
		Help: "Scrape commits to the WAL, by result.",
	}, []string{"result"})
	m := &appendMetrics{
		samples:    committed.WithLabelValues("sample"),
		histograms: committed.WithLabelValues("histogram"),
		exemplars:  committed.WithLabelValues("exemplar"),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_scrape_rejected_samples_total",
			Help: "Scraped samples and native histograms the WAL refused (full, or failing); they were never stored.",
		}),
		ok:     commits.WithLabelValues("ok"),
		failed: commits.WithLabelValues("error"),
	}
	reg.MustRegister(committed, commits, m.rejected)
	return m
}

// AppenderV2 implements storage.AppendableV2.
func (a *appendable) AppenderV2(context.Context) storage.AppenderV2 {
	return &appender{a: a}
}

// appender collects one scrape and commits it to the log as one append:
// one write of its records, one fsync under sync: always.
type appender struct {
	a     *appendable
	b     walmodel.Batch
	refs  []wal.Ref
	lsets []labels.Labels // of b.Series, to resolve again a ref truncation forgot
	// family is the metric family whose metadata was added last.
	family string
}

var _ storage.AppenderV2 = (*appender)(nil)

// Append adds a sample (v, or the histogram h or fh) of series ls at t,
// with its start timestamp st (0 unknown), exemplars and metadata. ref is
// the scrape cache's ref of ls from an earlier append, or 0; the returned
// ref is the log's.
func (app *appender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64,
	h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions,
) (storage.SeriesRef, error) {
	r := wal.Ref(ref)
	if r == 0 || !app.a.log.Holds(r) {
		var err error
		if r, err = app.a.log.Resolve(ls); err != nil {
			return 0, err
		}
	}
	b := &app.b
	n := int32(len(b.Series))
	if n == 0 || app.refs[n-1] != r {
		b.Series = append(b.Series, walmodel.Series{
			SamplesStart: int32(len(b.Samples)), SamplesEnd: int32(len(b.Samples)),
			HistogramsStart: int32(len(b.Histograms)), HistogramsEnd: int32(len(b.Histograms)),
			ExemplarsStart: int32(len(b.Exemplars)), ExemplarsEnd: int32(len(b.Exemplars)),
		})
		app.refs = append(app.refs, r)
		app.lsets = append(app.lsets, ls)
		n++
	}
	s := &b.Series[n-1]
	switch {
	case fh != nil || h != nil:
		var wh writev2.Histogram
		if fh != nil {
			wh = writev2.FromFloatHistogram(st, t, fh)
		} else {
			wh = writev2.FromIntHistogram(st, t, h)
		}
		raw, err := wh.Marshal()
		if err != nil {
			return 0, fmt.Errorf("encode histogram of %s: %w", ls, err)
		}
		b.Histograms = append(b.Histograms, raw)
		s.HistogramsEnd++
	default:
		b.Samples = append(b.Samples, walmodel.Sample{Value: v, Timestamp: t, Start: st})
		s.SamplesEnd++
	}
	for i := range opts.Exemplars {
		app.addExemplar(s, &opts.Exemplars[i])
	}

	// The scrape loop names the family of its report series (up,
	// scrape_*) with a trailing 0xff separator.
	family, _, _ := strings.Cut(opts.MetricFamilyName, "\xff")
	if family != "" && family != app.family && !opts.Metadata.IsEmpty() {
		app.family = strings.Clone(family) // the option's bytes live only for this call
		b.Metadata = append(b.Metadata, walmodel.Metadata{
			Family: bytesOf(app.family),
			Type:   metricType(opts.Metadata.Type),
			Help:   bytesOf(opts.Metadata.Help),
			Unit:   bytesOf(opts.Metadata.Unit),
		})
	}
	return storage.SeriesRef(r), nil
}

func (app *appender) addExemplar(s *walmodel.Series, e *exemplar.Exemplar) {
	b := &app.b
	start := int32(len(b.Labels))
	e.Labels.Range(func(l labels.Label) {
		b.Labels = append(b.Labels, walmodel.Label{Name: bytesOf(l.Name), Value: bytesOf(l.Value)})
	})
	b.Exemplars = append(b.Exemplars, walmodel.Exemplar{
		LabelsStart: start, LabelsEnd: int32(len(b.Labels)), Value: e.Value, Timestamp: e.Ts,
	})
	s.ExemplarsEnd++
}

// Commit writes the scrape to the log. Series that truncation forgot
// since their refs were resolved are resolved again.
func (app *appender) Commit() error {
	b := &app.b
	if len(b.Series) == 0 && len(b.Metadata) == 0 {
		return nil
	}
	m := app.a.m
	err := app.a.log.AppendRefs(b, app.refs)
	for tries := 0; tries < 3; tries++ {
		var unknown *wal.UnknownRefError
		if !errors.As(err, &unknown) {
			break
		}
		for i := range app.refs {
			if !app.a.log.Holds(app.refs[i]) {
				if app.refs[i], err = app.a.log.Resolve(app.lsets[i]); err != nil {
					break
				}
			}
		}
		if err == nil {
			err = app.a.log.AppendRefs(b, app.refs)
		}
	}
	if err != nil {
		m.failed.Inc()
		m.rejected.Add(float64(b.NumSamples()))
		app.a.logger.Warn("WAL refused a scrape; its samples are not stored",
			zap.Int("samples", b.NumSamples()), zap.Error(err))
		return fmt.Errorf("commit scrape of %d samples to the WAL: %w", b.NumSamples(), err)
	}
	m.ok.Inc()
	m.samples.Add(float64(len(b.Samples)))
	m.histograms.Add(float64(len(b.Histograms)))
	m.exemplars.Add(float64(len(b.Exemplars)))
	return nil
}

// Rollback discards the scrape. Series it resolved stay in the log.
func (app *appender) Rollback() error {
	app.b.Reset()
	app.refs, app.lsets = app.refs[:0], app.lsets[:0]
	return nil
}

func metricType(t model.MetricType) walmodel.MetricType {
	switch t {
	case model.MetricTypeCounter:
		return walmodel.TypeCounter
	case model.MetricTypeGauge:
		return walmodel.TypeGauge
	case model.MetricTypeHistogram:
		return walmodel.TypeHistogram
	case model.MetricTypeGaugeHistogram:
		return walmodel.TypeGaugeHistogram
	case model.MetricTypeSummary:
		return walmodel.TypeSummary
	case model.MetricTypeInfo:
		return walmodel.TypeInfo
	case model.MetricTypeStateset:
		return walmodel.TypeStateset
	}
	return walmodel.TypeUnknown
}

// bytesOf views s as bytes without copying; the bytes are only read.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
