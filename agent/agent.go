package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ferrymetrics/ferry/agent/receive"
	"github.com/ferrymetrics/ferry/agent/scrape"
	"github.com/ferrymetrics/ferry/agent/targets"
	"github.com/ferrymetrics/ferry/downsample"
	"github.com/ferrymetrics/ferry/sender"
	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/prometheus/model/labels"
	promscrape "github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/util/compression"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
	yamlv2 "go.yaml.in/yaml/v2"
)

// Options are the agent's dependencies.
type Options struct {
	Logger   *zap.Logger
	Registry *prometheus.Registry
	Version  string
	// Load re-reads the configuration on reload (SIGHUP, POST /-/reload).
	Load func() (*Config, error)
	// Notify, if set, is told of lifecycle changes: "ready", "reloading",
	// "stopping", with a status line. It drives systemd's sd_notify.
	Notify func(state, status string)
	Now    func() time.Time
	// ScrapeRefresh is how often discovered targets are applied; 0 is
	// Prometheus' 5s.
	ScrapeRefresh time.Duration
	// StatusInterval is how often the status history (rates, ETAs, the
	// status page's charts) is sampled; default 10s, an hour is kept.
	StatusInterval time.Duration
	// FS is the filesystem of the WAL, the state database and the disk
	// reserve; nil means the operating system's (vfs.Default). Tests inject
	// faults through it.
	FS vfs.FS
}

// Agent wires the receiver, the WAL and the senders.
type Agent struct {
	o      Options
	logger *zap.Logger

	mu      sync.Mutex // guards cfg and senders
	cfg     *Config
	senders map[string]*sender.Sender

	limits    atomic.Pointer[ReceiverConfig]
	token     atomic.Pointer[string]
	serving   atomic.Bool
	wal       atomic.Pointer[wal.WAL]
	ready     atomic.Bool
	db        *pebble.DB
	sm        *sender.Metrics
	compactor *downsample.Compactor
	scraper   atomic.Pointer[scrape.Scraper]
	lock      *DataDirLock
	ballast   *ballast
	minFree   int64
	started   time.Time
	hist      history

	reloadc chan chan error
	addr    atomic.Pointer[string]
}

// New creates an agent for cfg. Run starts it.
func New(cfg *Config, o Options) *Agent {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Notify == nil {
		o.Notify = func(string, string) {}
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = 10 * time.Second
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	a := &Agent{o: o, logger: o.Logger, cfg: cfg, senders: map[string]*sender.Sender{}, reloadc: make(chan chan error),
		started: o.Now(), hist: history{span: time.Hour}}
	lim := cfg.Receiver
	a.limits.Store(&lim)
	empty := ""
	a.token.Store(&empty)
	return a
}

// loadToken reads the receiver's bearer token, if one is configured.
func loadToken(cfg *Config) (string, error) {
	if cfg.Receiver.BearerTokenFile == "" {
		return "", nil
	}
	return readToken(cfg.Receiver.BearerTokenFile)
}

// Addr returns the address the HTTP server listens on, once it does.
func (a *Agent) Addr() string {
	if p := a.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// Reload asks the running agent to re-read its configuration and returns
// the outcome.
func (a *Agent) Reload(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case a.reloadc <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run serves until ctx ends, then shuts down: stops accepting writes,
// drains the senders for up to shutdown_timeout, persists their
// checkpoints and closes the WAL.
func (a *Agent) Run(ctx context.Context) (err error) {
	tok, err := loadToken(a.cfg)
	if err != nil {
		return err
	}
	a.token.Store(&tok)
	ln, err := net.Listen("tcp", a.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.ListenAddress, err)
	}
	addr := ln.Addr().String()
	a.addr.Store(&addr)
	// ReadTimeout bounds slow clients; WriteTimeout leaves room for
	// /debug/pprof/profile?seconds=60.
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	srvErr := make(chan error, 1)
	webConfig := a.cfg.WebConfigFile
	a.serving.Store(true)
	// exporter-toolkit logs "Listening on" and "TLS is …" at info; the line
	// below says both, so it gets only warnings and errors.
	webLog := a.logger.Named("web")
	webCore := webLog.Core()
	if c, err := zapcore.NewIncreaseLevelCore(webCore, zap.WarnLevel); err == nil {
		webCore = c // else the core already drops info
	}
	webSlog := slog.New(zapslog.NewHandler(webCore, zapslog.WithName(webLog.Name())))
	go func() {
		defer a.serving.Store(false)
		srvErr <- web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &webConfig}, webSlog)
	}()
	a.logger.Info("Listening", listenFields(addr, webConfig)...)

	defer func() {
		a.ready.Store(false)
		a.o.Notify("stopping", "Shutting down")
		shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if serr := srv.Shutdown(shutCtx); serr != nil {
			a.logger.Warn("HTTP server shutdown", zap.Error(serr))
		}
		err = errors.Join(err, a.shutdown())
	}()

	if err := a.open(); err != nil {
		return err
	}
	a.ready.Store(true)
	a.o.Notify("ready", a.status())
	a.logger.Info("Ready", zap.String("status", a.status()))
	histCtx, stopHist := context.WithCancel(ctx)
	histDone := make(chan struct{})
	go func() {
		defer close(histDone)
		a.recordHistory(histCtx, a.o.StatusInterval)
	}()
	defer func() { stopHist(); <-histDone }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-srvErr:
			return fmt.Errorf("HTTP server: %w", err)
		case reply := <-a.reloadc:
			a.o.Notify("reloading", "Reloading configuration")
			err := a.reload()
			a.o.Notify("ready", a.status())
			reply <- err
		}
	}
}

// Alive checks that the ingest path works: the WAL accepts its lock and the
// HTTP server is serving. It is the basis of systemd's watchdog; a down
// endpoint does not make Ferry unhealthy.
func (a *Agent) Alive(ctx context.Context) error {
	w := a.wal.Load()
	if w == nil {
		return errors.New("WAL not open")
	}
	done := make(chan struct{})
	go func() {
		w.Ping()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("WAL did not answer: %w", ctx.Err())
	}
	if !a.serving.Load() {
		return errors.New("HTTP server stopped")
	}
	return nil
}

func (a *Agent) status() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.wal.Load()
	if w == nil {
		return "starting"
	}
	return fmt.Sprintf("Forwarding to %d endpoint(s); WAL %d MiB", len(a.senders), w.Size()>>20)
}

// open replays the WAL, opens the state database and starts the senders.
func (a *Agent) open() error {
	cfg := a.cfg
	for _, w := range cfg.Warnings {
		a.logger.Warn("Configuration warning", zap.String("warning", w.Error()))
	}
	lock, err := LockDataDir(cfg.DataDirOrDefault())
	if err != nil {
		return err
	}
	a.lock = lock
	unclean := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_unclean_shutdown",
		Help: "1 if the previous run on this data dir did not exit cleanly (a crash, kill -9 or a power loss); the WAL replay repaired what it had to."})
	a.o.Registry.MustRegister(unclean)
	if lock.Unclean {
		unclean.Set(1)
		a.logger.Warn("The previous run did not exit cleanly (a crash, kill -9 or a power loss); the WAL is replayed and repaired, and endpoints resume from their checkpoints",
			zap.String("data_dir", cfg.DataDirOrDefault()))
	}
	opts, err := walOptions(cfg.WAL)
	if err != nil {
		return err
	}
	defaultMinFree, fsSize, err := wal.DefaultMinFree(cfg.DataDirOrDefault())
	if err != nil {
		return fmt.Errorf("size the WAL's free-space floor: %w", err)
	}
	if opts.MinFree == 0 {
		opts.MinFree = defaultMinFree
	}
	free, err := wal.FreeSpace(cfg.DataDirOrDefault())
	if err != nil {
		return fmt.Errorf("check the data directory's free space: %w", err)
	}
	a.logger.Info("WAL disk limits", zap.Int64("max_size", opts.MaxSize), zap.Int64("min_free_disk", opts.MinFree),
		zap.Int64("filesystem_bytes", fsSize), zap.Int64("filesystem_free_bytes", free), zap.Stringer("when_full", opts.WhenFull))
	opts.FS, a.minFree = a.o.FS, opts.MinFree
	a.ballast = newBallast(a.o.FS, cfg.DataDirOrDefault(), fsSize, a.logger.Named("disk"), a.o.Registry)
	if err := a.ballast.ensure(free, opts.MinFree); err != nil {
		a.logger.Warn("Could not reserve disk space for the state database", zap.Error(err))
	}
	if opts.MinFree > fsSize/2 {
		a.logger.Warn("wal.min_free_disk is more than half of the data directory's filesystem: the WAL can hold little",
			zap.Int64("min_free_disk", opts.MinFree), zap.Int64("filesystem_bytes", fsSize))
	}
	start := a.o.Now()
	// A long replay keeps extending systemd's start timeout.
	replayed := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-replayed:
				return
			case <-t.C:
				a.o.Notify("extend", fmt.Sprintf("Replaying the WAL (%s so far)", a.o.Now().Sub(start).Round(time.Second)))
			}
		}
	}()
	w, err := wal.Open(cfg.WALDir(), opts, a.logger.Named("wal"), a.o.Registry, a.o.Now)
	close(replayed)
	if err != nil {
		return fmt.Errorf("open WAL: %w", err)
	}
	a.logger.Info("WAL replayed", zap.Duration("took", a.o.Now().Sub(start)), zap.Stringer("head", w.Head()))
	if err := wal.MkdirDurable(a.o.FS, cfg.StateDir()); err != nil {
		return errors.Join(fmt.Errorf("create state database directory %s: %w", cfg.StateDir(), err), w.Close())
	}
	db, err := pebble.Open(cfg.StateDir(), &pebble.Options{Logger: pebbleLogger{a.logger.Named("pebble").Sugar()},
		FS: vfs.OnDiskFull(a.o.FS, a.ballast.release)})
	if err != nil {
		return errors.Join(fmt.Errorf("open state database %s: %w", cfg.StateDir(), err), w.Close())
	}
	a.db = db
	a.sm = sender.NewMetrics(a.o.Registry)
	if pols := cfg.storagePolicies(); len(pols) > 0 {
		c, err := downsample.New(cfg.Downsample, pols, db, w, downsample.Options{
			Logger: a.logger.Named("downsample"), Registry: a.o.Registry, Now: a.o.Now,
		})
		if err != nil {
			a.db = nil // closed here, not again at shutdown
			return errors.Join(fmt.Errorf("open compactor: %w", err), w.Close(), db.Close())
		}
		a.compactor = c
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ep := range cfg.RemoteWrite {
		s, err := a.newSender(ep, w)
		if err != nil {
			a.stopSendersLocked(context.Background())
			if a.compactor != nil {
				err = errors.Join(err, a.compactor.Stop())
			}
			a.compactor, a.db = nil, nil // closed here, not again at shutdown
			return errors.Join(err, w.Close(), db.Close())
		}
		a.senders[ep.Name] = s
	}
	if err := a.forgetRemovedEndpoints(cfg); err != nil {
		a.logger.Warn("Could not clean up checkpoints of removed endpoints", zap.Error(err))
	}
	if len(cfg.RemoteWrite) == 0 {
		a.logger.Warn("No remote_write endpoints configured: samples are kept in the WAL until one is added or the disk cap drops them")
	}
	for _, s := range a.senders {
		s.Run()
	}
	if a.compactor != nil {
		a.compactor.Run()
	}
	w.Start()
	a.wal.Store(w)
	sc, err := scrape.New(scrape.Options{Log: w, Logger: a.logger.Named("scrape"), Registry: a.o.Registry,
		Refresh: a.o.ScrapeRefresh, Now: a.o.Now})
	if err != nil {
		return err
	}
	a.scraper.Store(sc)
	if err := a.applyScrapeLocked(cfg); err != nil {
		return err
	}
	return nil
}

// applyScrapeLocked starts, changes or stops scrape jobs per cfg; a.mu is
// held.
func (a *Agent) applyScrapeLocked(cfg *Config) error {
	if err := a.scraper.Load().ApplyConfig(cfg.Scrape); err != nil {
		return fmt.Errorf("apply scrape_configs: %w", err)
	}
	if sc := cfg.Scrape; sc != nil && (len(sc.ScrapeConfigs) > 0 || len(sc.ScrapeConfigFiles) > 0) {
		a.logger.Info("Scraping", zap.Int("jobs", len(sc.ScrapeConfigs)), zap.Strings("scrape_config_files", sc.ScrapeConfigFiles))
	}
	return nil
}

func (a *Agent) newSender(ep RemoteWriteConfig, w *wal.WAL) (*sender.Sender, error) {
	o := sender.Options{
		Logger: a.logger.Named("sender"), Metrics: a.sm, Checkpoints: sender.PebbleCheckpoints{DB: a.db},
		UserAgent: "ferry/" + a.o.Version, Now: a.o.Now,
	}
	var log sender.Log = sender.WALLog{WAL: w}
	if ep.StoragePolicy != nil {
		var l *downsample.RollupLog
		if a.compactor != nil {
			l = a.compactor.Log(time.Duration(ep.StoragePolicy.Resolution))
		}
		if l == nil {
			return nil, fmt.Errorf("endpoint %q: storage policy %s is not active (storage policies change at restart)", ep.Name, ep.StoragePolicy)
		}
		log = l
	} else if dc := a.cfg.Downsample; dc.HasDrop() {
		o.Drop = dc.DropsRaw
	}
	cfg, err := ep.senderConfig(o.UserAgent)
	if err != nil {
		return nil, err
	}
	cfg.ExternalLabels = a.cfg.ExternalLabels()
	return sender.New(cfg, log, o)
}

// forgetRemovedEndpoints deletes checkpoints of endpoints no longer
// configured, so that they stop holding back WAL truncation.
func (a *Agent) forgetRemovedEndpoints(cfg *Config) error {
	cps := sender.PebbleCheckpoints{DB: a.db}
	names, err := cps.Names()
	if err != nil {
		return err
	}
	active := map[string]bool{}
	for _, ep := range cfg.RemoteWrite {
		active[ep.checkpointKey()] = true
	}
	var errs []error
	for _, n := range names {
		if active[n] {
			continue
		}
		a.logger.Info("Deleting the checkpoint of an endpoint that is no longer configured", zap.String("endpoint", n))
		errs = append(errs, cps.Delete(n))
	}
	return errors.Join(errs...)
}

// reload applies a new configuration: receiver limits at once; endpoints
// added, removed or changed without touching ingest. WAL and listener
// changes need a restart. An invalid configuration changes nothing.
func (a *Agent) reload() error {
	cfg, err := a.o.Load()
	if err != nil {
		a.logger.Error("Reload: configuration rejected; keeping the running one", zap.Error(err))
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cfg
	if !sameYAML(cfg.Downsample, old.Downsample) || !sameYAML(cfg.storagePolicies(), old.storagePolicies()) {
		err := errors.New("downsample rules and the set of storage policies change at restart; configuration not applied")
		a.logger.Error("Reload: configuration rejected; keeping the running one", zap.Error(err))
		return err
	}
	if cfg.ListenAddress != old.ListenAddress || cfg.DataDirOrDefault() != old.DataDirOrDefault() || cfg.WAL != old.WAL ||
		cfg.WebConfigFile != old.WebConfigFile ||
		cfg.Receiver.MaxConcurrentRequests != old.Receiver.MaxConcurrentRequests {
		a.logger.Warn("Reload: listen_address, data_dir, wal, web_config_file (the path; its content is re-read live) and receiver.max_concurrent_requests take effect at the next restart")
	}
	tok, err := loadToken(cfg)
	if err != nil {
		a.logger.Error("Reload: configuration rejected; keeping the running one", zap.Error(err))
		return err
	}
	a.token.Store(&tok)
	lim := cfg.Receiver
	a.limits.Store(&lim)
	w := a.wal.Load()
	want := map[string]RemoteWriteConfig{}
	for _, ep := range cfg.RemoteWrite {
		want[ep.Name] = ep
	}
	// Every running sender runs its entry of the configuration in force.
	running := map[string]RemoteWriteConfig{}
	for _, ep := range old.RemoteWrite {
		running[ep.Name] = ep
	}
	drain, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	var errs []error
	sameExternal := labels.Equal(cfg.ExternalLabels(), old.ExternalLabels())
	a.cfg = cfg // newSender reads the external labels from it
	for name, s := range a.senders {
		ep, keep := want[name]
		if keep && sameExternal && reflect.DeepEqual(ep, running[name]) {
			continue
		}
		if !keep {
			a.logger.Info("Reload: removing endpoint", zap.String("endpoint", name))
			errs = append(errs, s.Remove())
		} else {
			a.logger.Info("Reload: endpoint changed; restarting its sender from its checkpoint", zap.String("endpoint", name))
			errs = append(errs, s.Stop(drain))
		}
		delete(a.senders, name)
	}
	for _, ep := range cfg.RemoteWrite {
		if _, ok := a.senders[ep.Name]; ok {
			continue
		}
		s, err := a.newSender(ep, w)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a.senders[ep.Name] = s
		s.Run()
		a.logger.Info("Reload: endpoint running", zap.String("endpoint", ep.Name))
	}
	if err := a.applyScrapeLocked(cfg); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		a.logger.Error("Reload applied with errors", zap.Error(err))
		return err
	}
	a.logger.Info("Configuration reloaded", zap.Int("endpoints", len(a.senders)))
	return nil
}

// sameYAML compares two configuration values by their YAML form (compiled
// matchers and other derived state are not part of it).
func sameYAML(a, b any) bool {
	ya, err1 := yamlv2.Marshal(a)
	yb, err2 := yamlv2.Marshal(b)
	return err1 == nil && err2 == nil && string(ya) == string(yb)
}

func (a *Agent) shutdown() error {
	if sc := a.scraper.Load(); sc != nil {
		sc.Stop() // its last commits land before the WAL closes
	}
	drain, cancel := context.WithTimeout(context.Background(), time.Duration(a.cfg.ShutdownTimeout))
	defer cancel()
	a.mu.Lock()
	err := a.stopSendersLocked(drain)
	a.mu.Unlock()
	if a.compactor != nil {
		err = errors.Join(err, a.compactor.Stop())
	}
	if w := a.wal.Load(); w != nil {
		err = errors.Join(err, w.Close())
	}
	if a.db != nil {
		err = errors.Join(err, a.db.Close())
	}
	if a.lock != nil {
		if err != nil {
			a.lock.Abandon() // the next start reports an unclean exit
		} else {
			err = a.lock.Release()
		}
	}
	if err != nil {
		a.logger.Error("Shutdown finished with errors", zap.Error(err))
	} else {
		a.logger.Info("Shutdown complete")
	}
	return err
}

// stopSendersLocked drains all senders in parallel; a.mu is held.
func (a *Agent) stopSendersLocked(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(a.senders))
	for _, s := range a.senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Stop(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	clear(a.senders)
	return errors.Join(all...)
}

func walOptions(c WALConfig) (wal.Options, error) {
	o := wal.DefaultOptions()
	o.Sync = wal.SyncAlways
	if c.Sync == "interval" {
		o.Sync = wal.SyncInterval
	}
	o.SyncInterval = time.Duration(c.SyncInterval)
	o.SegmentSize = int64(c.SegmentSize)
	o.MaxSize = int64(c.MaxSize)
	o.MinFree = int64(c.MinFreeDisk)
	o.SeriesGrace = time.Duration(c.SeriesRetention)
	o.WhenFull = wal.DropOldest
	if c.WhenFull == "backpressure" {
		o.WhenFull = wal.Backpressure
	}
	switch c.Compression {
	case "snappy":
		o.Compression = compression.Snappy
	case "zstd":
		o.Compression = compression.Zstd
	default:
		o.Compression = compression.None
	}
	return o, nil
}

// scrapeTargets gives the targets pages the scraper's targets, none before
// it starts.
type scrapeTargets struct{ a *Agent }

func (t scrapeTargets) TargetsActive() map[string][]*promscrape.Target {
	if sc := t.a.scraper.Load(); sc != nil {
		return sc.Targets().TargetsActive()
	}
	return nil
}

func (t scrapeTargets) TargetsDropped() map[string][]*promscrape.Target {
	if sc := t.a.scraper.Load(); sc != nil {
		return sc.Targets().TargetsDropped()
	}
	return nil
}

func (t scrapeTargets) TargetsDroppedCounts() map[string]int {
	if sc := t.a.scraper.Load(); sc != nil {
		return sc.Targets().TargetsDroppedCounts()
	}
	return nil
}

// routes builds the HTTP API.
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	wh := &writeHandler{
		app: func() Appender {
			if w := a.wal.Load(); w != nil && a.ready.Load() {
				return w
			}
			return nil
		},
		limits: func() ReceiverConfig { return *a.limits.Load() },
		token:  func() string { return *a.token.Load() },
		logger: a.logger.Named("receiver"),
		bodies: receive.NewBodyDecoder(),
		m:      newReceiverMetrics(a.o.Registry),
		slots:  make(chan struct{}, a.cfg.Receiver.MaxConcurrentRequests),
	}
	mux.Handle("/api/v1/write", wh)
	targets.New(scrapeTargets{a}, a.o.Now, targets.Options{
		ListenAddress: a.cfg.ListenAddress,
		Logger:        slog.New(zapslog.NewHandler(a.logger.Named("targets").Core())),
	}).Register(mux)
	mux.HandleFunc("/api/v1/status", a.serveStatus)
	mux.HandleFunc("/{$}", a.serveStatusPage)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", promhttp.HandlerFor(a.o.Registry, promhttp.HandlerOpts{Registry: a.o.Registry}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, r *http.Request) {
		if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		fmt.Fprintln(w, "Ferry is healthy.")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, r *http.Request) {
		if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		if !a.ready.Load() {
			http.Error(w, "Ferry is not ready: WAL replay in progress.", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Ferry is ready.")
	})
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if !allowMethods(w, r, http.MethodPost, http.MethodPut) {
			return
		}
		if !a.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if err := a.Reload(r.Context()); err != nil {
			http.Error(w, "reload failed: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "Configuration reloaded.")
	})
	return mux
}

// listenFields describes where the server listens and whether the web
// config file turns TLS on, as exporter-toolkit decides it. If the file
// cannot be read, it names the file instead; web.Serve then fails on it.
func listenFields(addr, webConfigFile string) []zap.Field {
	fields := []zap.Field{zap.String("address", addr)}
	if webConfigFile == "" {
		return append(fields, zap.Bool("tls", false))
	}
	fields = append(fields, zap.String("web_config_file", webConfigFile))
	var c web.Config
	data, err := os.ReadFile(webConfigFile)
	if err == nil {
		err = yamlv2.Unmarshal(data, &c)
	}
	if err != nil {
		return fields
	}
	return append(fields, zap.Bool("tls", c.TLSConfig.IsEnabled()))
}

// allowMethods answers 405 with an Allow header naming methods, as RFC 9110
// asks, unless r uses one of them, and reports whether the request may go on.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	allow := strings.Join(methods, ", ")
	w.Header().Set("Allow", allow)
	http.Error(w, "method "+r.Method+" not allowed: use "+allow, http.StatusMethodNotAllowed)
	return false
}

type pebbleLogger struct{ s *zap.SugaredLogger }

func (l pebbleLogger) Infof(format string, args ...any)  { l.s.Debugf(format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.s.Errorf(format, args...) }
func (l pebbleLogger) Fatalf(format string, args ...any) { l.s.Fatalf(format, args...) }
