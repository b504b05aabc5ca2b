package agent

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ferrymetrics/ferry/sender"
	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Admin works on a stopped agent's data dir: it holds the data dir's lock,
// so it refuses to open while Ferry runs, and Ferry refuses to start while
// it is open. Opening replays the WAL as a start would.
type Admin struct {
	cfg    *Config
	logger *zap.Logger
	lock   *DataDirLock
	w      *wal.WAL
	db     *pebble.DB
	cps    sender.PebbleCheckpoints
}

// OpenAdmin opens cfg's data dir for the admin commands.
func OpenAdmin(cfg *Config, logger *zap.Logger) (*Admin, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	lock, err := LockDataDir(cfg.DataDirOrDefault())
	if err != nil {
		return nil, err
	}
	ad := &Admin{cfg: cfg, logger: logger, lock: lock}
	opts, err := walOptions(cfg.WAL)
	if err == nil {
		ad.w, err = wal.Open(cfg.WALDir(), opts, logger.Named("wal"), prometheus.NewRegistry(), time.Now)
	}
	if err != nil {
		lock.Abandon()
		return nil, fmt.Errorf("open WAL %s: %w", cfg.WALDir(), err)
	}
	ad.db, err = pebble.Open(cfg.StateDir(), &pebble.Options{Logger: pebbleLogger{logger.Named("pebble").Sugar()}})
	if err != nil {
		lock.Abandon()
		return nil, errors.Join(fmt.Errorf("open state database %s: %w", cfg.StateDir(), err), ad.w.Close())
	}
	ad.cps = sender.PebbleCheckpoints{DB: ad.db}
	return ad, nil
}

// Close closes the data dir and releases its lock.
func (ad *Admin) Close() error {
	err := errors.Join(ad.w.Close(), ad.db.Close())
	if err != nil {
		ad.lock.Abandon()
		return err
	}
	return ad.lock.Release()
}

// EndpointInfo is what `ferry endpoint list` shows of one endpoint.
type EndpointInfo struct {
	Name       string `json:"name"`
	Configured bool   `json:"configured"` // in the configuration (else only a stored checkpoint)
	Stored     bool   `json:"stored"`     // has a stored checkpoint
	Rollup     string `json:"rollup,omitempty"`
	Checkpoint string `json:"checkpoint,omitempty"` // WAL segment:offset
	LagBytes   int64  `json:"lag_bytes"`            // bytes of the WAL after the checkpoint (segment padding included)
	// Backlog counts the samples and histograms after the checkpoint.
	Backlog int64 `json:"backlog_samples"`
}

// Endpoints lists configured endpoints and stored checkpoints.
func (ad *Admin) Endpoints() ([]EndpointInfo, error) {
	names, err := ad.cps.Names()
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	var out []EndpointInfo
	seen := map[string]bool{}
	info := func(key string, configured bool) error {
		e := EndpointInfo{Name: key, Configured: configured}
		if name, policy, ok := strings.Cut(key, "@rollup:"); ok {
			e.Name, e.Rollup = name, policy
		}
		c, ok, err := ad.cps.Load(key)
		if err != nil {
			return fmt.Errorf("load the checkpoint of %s: %w", key, err)
		}
		e.Stored = ok
		if ok && e.Rollup == "" {
			lg := sender.WALLog{WAL: ad.w}
			e.Checkpoint, e.LagBytes = lg.Describe(c), lg.Lag(c)
			if e.Backlog, err = ad.countSamples(sender.WALPosition(c), ad.w.Head()); err != nil {
				return err
			}
		}
		out = append(out, e)
		seen[key] = true
		return nil
	}
	for _, ep := range ad.cfg.RemoteWrite {
		if err := info(ep.checkpointKey(), true); err != nil {
			return nil, err
		}
	}
	for _, n := range names {
		if !seen[n] {
			if err := info(n, false); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// Move is what Rewind or Skip did to an endpoint's checkpoint.
type Move struct {
	Endpoint string
	From, To string // WAL positions
	// Samples are the samples and histograms between From and To: what a
	// rewind sends again, or what a skip gives up.
	Samples int64
}

// Rewind moves a raw endpoint's checkpoint back, to the oldest record
// ("oldest") or to the first record with a sample at or after a time
// (RFC 3339), so that it is sent that history again at its next start.
func (ad *Admin) Rewind(name, to string) (Move, error) {
	return ad.move(name, to, "oldest", true)
}

// Skip moves a raw endpoint's checkpoint forward, to the head ("head") or
// to the first record with a sample at or after a time (RFC 3339): the
// backlog before it is given up, counted in Move.Samples and logged.
func (ad *Admin) Skip(name, to string) (Move, error) {
	m, err := ad.move(name, to, "head", false)
	if err == nil {
		ad.logger.Warn("Endpoint backlog skipped by an operator: these samples will not be sent",
			zap.String("endpoint", name), zap.String("from", m.From), zap.String("to", m.To), zap.Int64("samples", m.Samples))
	}
	return m, err
}

func (ad *Admin) move(name, to, end string, back bool) (Move, error) {
	ep := slices.IndexFunc(ad.cfg.RemoteWrite, func(e RemoteWriteConfig) bool { return e.Name == name })
	if ep < 0 {
		return Move{}, fmt.Errorf("no endpoint %q in the configuration", name)
	}
	if ad.cfg.RemoteWrite[ep].StoragePolicy != nil {
		return Move{}, fmt.Errorf("endpoint %q has a storage policy: its rollups are kept for their retention and sent from the oldest one a new endpoint asks for; rewinding or skipping them is not supported", name)
	}
	key := ad.cfg.RemoteWrite[ep].checkpointKey()
	lg := sender.WALLog{WAL: ad.w}
	cur, ok, err := ad.cps.Load(key)
	if err != nil {
		return Move{}, fmt.Errorf("load the checkpoint of %q: %w", name, err)
	}
	if !ok {
		return Move{}, fmt.Errorf("endpoint %q has no checkpoint yet: it starts from its start_from setting", name)
	}
	var target wal.Position
	switch {
	case to == end && back:
		target = ad.w.Oldest()
	case to == end:
		target = ad.w.Head()
	default:
		t, err := time.Parse(time.RFC3339, to)
		if err != nil {
			return Move{}, fmt.Errorf("--to %q: want %s or a time like 2026-12-03T10:00:00Z", to, end)
		}
		if target, err = ad.firstAtOrAfter(t); err != nil {
			return Move{}, err
		}
	}
	from := lg.Describe(cur)
	at := sender.WALPosition(cur)
	if back != target.Less(at) && target != at {
		dir := "back"
		if !back {
			dir = "forward"
		}
		return Move{}, fmt.Errorf("endpoint %q is at %s; %s is not %s from there", name, from, target, dir)
	}
	lo, hi := target, at
	if !back {
		lo, hi = at, target
	}
	n, err := ad.countSamples(lo, hi)
	if err != nil {
		return Move{}, err
	}
	if err := ad.cps.Save(key, sender.WALCursor(target)); err != nil {
		return Move{}, fmt.Errorf("save the checkpoint of %q: %w", name, err)
	}
	return Move{Endpoint: name, From: from, To: target.String(), Samples: n}, nil
}

// scan reads the WAL from a position to the head, calling fn with
// each entry until it returns false.
func (ad *Admin) scan(from wal.Position, fn func(*wal.Entry) bool) error {
	r, err := ad.w.NewReader("ferry-admin", from, nil)
	if err != nil {
		return fmt.Errorf("read the WAL: %w", err)
	}
	defer r.Close()
	for {
		e, err := r.TryNext()
		if errors.As(err, new(*wal.CorruptionError)) {
			continue // reported by ferry wal verify
		}
		if err != nil {
			return fmt.Errorf("read the WAL at %s: %w", r.Position(), err)
		}
		if e == nil || !fn(e) {
			return nil
		}
	}
}

// firstAtOrAfter returns the start of the first record with a float sample
// at or after t, or the head.
func (ad *Admin) firstAtOrAfter(t time.Time) (wal.Position, error) {
	ms := t.UnixMilli()
	pos := ad.w.Head()
	err := ad.scan(ad.w.Oldest(), func(e *wal.Entry) bool {
		hi := int64(math.MinInt64)
		for _, s := range e.Samples {
			hi = max(hi, s.T)
		}
		if hi >= ms {
			pos = e.Start
			return false
		}
		return true
	})
	return pos, err
}

// countSamples counts the samples and histograms of records between lo and
// hi.
func (ad *Admin) countSamples(lo, hi wal.Position) (int64, error) {
	var n int64
	err := ad.scan(lo, func(e *wal.Entry) bool {
		if !e.Start.Less(hi) {
			return false
		}
		n += int64(e.NumSamples())
		return true
	})
	return n, err
}

// VerifyWAL checks every record of the WAL, in its segments and its
// checkpoint, without changing it; it returns the damage found.
func VerifyWAL(dir string) ([]string, error) {
	st, err := wal.Inspect(dir)
	if err != nil {
		return nil, err
	}
	var damage []string
	if st.CheckpointDamage != "" {
		damage = append(damage, st.CheckpointDamage)
	}
	for _, s := range st.Segments {
		if s.Damage != "" {
			damage = append(damage, fmt.Sprintf("segment %08d at byte %d of %d: %s", s.Index, s.IntactBytes, s.Bytes, s.Damage))
		}
	}
	return damage, nil
}
