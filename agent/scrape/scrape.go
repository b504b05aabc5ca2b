package scrape

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/util/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// Options are a Scraper's dependencies.
type Options struct {
	Log      Log
	Logger   *zap.Logger
	Registry prometheus.Registerer
	// Refresh is how often new target sets from discovery are applied
	// (Prometheus': 5s); 0 means that.
	Refresh time.Duration
	// Now is the clock of removed jobs' retirement; nil is time.Now.
	Now func() time.Time
}

// Scraper runs Prometheus' service discovery and scrape loops and commits
// every scrape to the log.
type Scraper struct {
	logger    *zap.Logger
	discovery *discovery.Manager
	manager   *scrape.Manager
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	refresh   time.Duration
	slog      *slog.Logger
	now       func() time.Time

	mu        sync.Mutex // guards the fields below
	stopped   bool
	want      *promconfig.Config
	wantScfgs []*promconfig.ScrapeConfig
	applied   []*promconfig.ScrapeConfig // what the scrape manager runs
	retiring  map[string]retiring
	timer     *time.Timer
}

// New creates a scraper; it scrapes nothing until ApplyConfig gives it
// scrape configs.
func New(o Options) (*Scraper, error) {
	refresh := o.Refresh
	if refresh <= 0 {
		refresh = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	sl := slog.New(zapslog.NewHandler(o.Logger.Core()))
	ctx, cancel := context.WithCancel(context.Background())
	sdMetrics, err := discovery.CreateAndRegisterSDMetrics(o.Registry)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("register service discovery metrics: %w", err)
	}
	dm := discovery.NewManager(ctx, sl.With("component", "discovery"), o.Registry, sdMetrics,
		discovery.Name("scrape"), discovery.Updatert(refresh))
	if dm == nil {
		cancel()
		return nil, errors.New("create the service discovery manager (see its log)")
	}
	app := &appendable{log: o.Log, logger: o.Logger, m: newAppendMetrics(o.Registry)}
	sm, err := scrape.NewManager(&scrape.Options{
		AppendMetadata:          true,
		DiscoveryReloadInterval: model.Duration(refresh),
	}, sl.With("component", "scrape"), logging.NewJSONFileLogger, nil, app, o.Registry)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("create the scrape manager: %w", err)
	}
	s := &Scraper{logger: o.Logger, discovery: dm, manager: sm, cancel: cancel, refresh: refresh, slog: sl, now: o.Now,
		retiring: map[string]retiring{}}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := dm.Run(); err != nil && ctx.Err() == nil {
			s.logger.Error("Service discovery stopped", zap.Error(err))
		}
	}()
	go func() {
		defer s.wg.Done()
		if err := sm.Run(dm.SyncCh()); err != nil {
			s.logger.Error("Scrape manager stopped", zap.Error(err))
		}
	}()
	return s, nil
}

// ApplyConfig applies cfg's scrape configs: new jobs start, changed ones
// restart, and the targets of removed jobs are dropped through discovery
// first, so that their series get staleness markers, before the jobs
// themselves go. cfg comes from ParseConfig; nil means no jobs.
func (s *Scraper) ApplyConfig(cfg *promconfig.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("scraper stopped")
	}
	if cfg == nil {
		var errs []ConfigError
		if cfg, errs = ParseConfig(nil, s.slog); len(errs) > 0 {
			return fmt.Errorf("load an empty scrape configuration: %v", errs[0])
		}
	}
	scfgs, err := cfg.GetScrapeConfigs()
	if err != nil {
		return fmt.Errorf("read scrape configs: %w", err)
	}
	want := map[string]bool{}
	for _, sc := range scfgs {
		want[sc.JobName] = true
		delete(s.retiring, sc.JobName)
	}
	for _, sc := range s.applied {
		if _, ok := s.retiring[sc.JobName]; !ok && !want[sc.JobName] {
			s.retiring[sc.JobName] = retiring{cfg: sc, until: s.now().Add(s.retireAfter(sc))}
		}
	}
	s.want = cfg
	s.wantScfgs = scfgs
	return s.applyLocked()
}

// retiring is a removed job whose loops are stopping: it stays in the
// scrape manager, without targets, until they wrote staleness markers.
type retiring struct {
	cfg   *promconfig.ScrapeConfig
	until time.Time
}

// retireAfter is how long a job's loops need, once discovery dropped its
// targets, to write staleness markers: discovery's and the scrape
// manager's refresh, then two scrape intervals (the loop waits for its
// next scrape time and one more interval).
func (s *Scraper) retireAfter(sc *promconfig.ScrapeConfig) time.Duration {
	return 2*s.refresh + 2*time.Duration(sc.ScrapeInterval) + time.Duration(sc.ScrapeInterval)/10 + time.Second
}

// applyLocked gives the scrape manager the wanted jobs plus the retiring
// ones, and discovery the wanted jobs' sources and none for the retiring.
func (s *Scraper) applyLocked() error {
	eff := *s.want // a copy keeps the loaded state GetScrapeConfigs checks
	eff.ScrapeConfigFiles = nil
	eff.ScrapeConfigs = append([]*promconfig.ScrapeConfig(nil), s.wantScfgs...)
	sd := discoveryConfigs(s.wantScfgs)
	next := time.Time{}
	for job, r := range s.retiring {
		eff.ScrapeConfigs = append(eff.ScrapeConfigs, r.cfg)
		sd[job] = nil
		if next.IsZero() || r.until.Before(next) {
			next = r.until
		}
	}
	// The scrape manager first, so that it knows the jobs discovery
	// reports targets for.
	if err := s.manager.ApplyConfig(&eff); err != nil {
		return fmt.Errorf("apply scrape configs: %w", err)
	}
	if err := s.discovery.ApplyConfig(sd); err != nil {
		return fmt.Errorf("apply service discovery configs: %w", err)
	}
	s.applied = eff.ScrapeConfigs
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if !next.IsZero() {
		s.timer = time.AfterFunc(next.Sub(s.now()), s.retire)
	}
	return nil
}

// retire removes the jobs whose staleness markers are written.
func (s *Scraper) retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	now := s.now()
	for job, r := range s.retiring {
		if !r.until.After(now) {
			s.logger.Info("Removed scrape job stopped", zap.String("job", job))
			delete(s.retiring, job)
		}
	}
	if err := s.applyLocked(); err != nil {
		s.logger.Error("Could not remove stopped scrape jobs", zap.Error(err))
	}
}

// Targets gives the targets' state to the targets page and API.
func (s *Scraper) Targets() *scrape.Manager { return s.manager }

// Stop stops discovery and the scrape loops; a scrape in progress
// finishes its commit first. Stopping writes no staleness markers: the
// series go on after a restart.
func (s *Scraper) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.manager.Stop()
	s.cancel()
	s.wg.Wait()
}
