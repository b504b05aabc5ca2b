package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"text/tabwriter"

	"github.com/ferrymetrics/ferry/agent"
	"go.uber.org/zap"
)

// packagedConfig is the configuration the packages install and the service
// runs with; packagedDataDir is where systemd keeps its data.
const (
	packagedConfig  = "/etc/ferry/ferry.yml"
	packagedDataDir = "/var/lib/ferry"
)

// dataDirFlags pick the data dir the admin commands work on.
type dataDirFlags struct {
	Config  string `short:"c" help:"Configuration file; default /etc/ferry/ferry.yml if it exists, else the built-in configuration."`
	DataDir string `name:"data-dir" help:"Data directory; default the configuration's data_dir, else /var/lib/ferry with the packaged configuration, else ./data."`
}

// resolve loads the configuration and points it at the data dir. It
// refuses a data dir owned by another user when run as root: files root
// creates there would lock the service out.
func (f dataDirFlags) resolve() (*agent.Config, error) {
	path := f.Config
	if path == "" {
		if _, err := os.Stat(packagedConfig); err == nil {
			path = packagedConfig
		}
	}
	var cfg *agent.Config
	var err error
	if path == "" {
		cfg, err = agent.ParseConfig(agent.DefaultConfigYAML, "built-in configuration")
	} else {
		cfg, err = agent.LoadConfigFile(path)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case f.DataDir != "":
		cfg.DataDir = f.DataDir
	case cfg.DataDir == "" && path == packagedConfig && os.Getenv("STATE_DIRECTORY") == "":
		cfg.DataDir = packagedDataDir
	}
	dir := cfg.DataDirOrDefault()
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && sys.Uid != 0 {
		return nil, fmt.Errorf("data dir %s belongs to uid %d: run this as that user (e.g. sudo -u ferry ferry …), so that the files it writes stay the service's", dir, sys.Uid)
	}
	return cfg, nil
}

// open opens the data dir for the admin commands.
func (f dataDirFlags) open(logger *zap.Logger) (*agent.Admin, error) {
	cfg, err := f.resolve()
	if err != nil {
		return nil, err
	}
	return agent.OpenAdmin(cfg, logger)
}

type endpointCmd struct {
	List   endpointListCmd   `cmd:"" help:"List the configured endpoints and stored checkpoints, with each one's backlog."`
	Rewind endpointRewindCmd `cmd:"" help:"Move an endpoint's checkpoint back, to resend history to a backend that lost data."`
	Skip   endpointSkipCmd   `cmd:"" help:"Move an endpoint's checkpoint forward, giving up its backlog deliberately (counted and logged)."`
}

type endpointListCmd struct {
	dataDirFlags
	Output string `short:"o" default:"table" enum:"table,json" help:"Output format (${enum})."`
}

func (c *endpointListCmd) Run() error {
	ad, err := c.open(zap.NewNop())
	if err != nil {
		return err
	}
	eps, err := ad.Endpoints()
	if cerr := ad.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if c.Output == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(eps)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tCONFIGURED\tCHECKPOINT\tBACKLOG SAMPLES\tLAG BYTES")
	for _, e := range eps {
		name, cp, backlog, lag := e.Name, e.Checkpoint, fmt.Sprint(e.Backlog), fmt.Sprint(e.LagBytes)
		if e.Rollup != "" {
			name += " (rollup " + e.Rollup + ")"
			cp, backlog, lag = "-", "-", "-"
		} else if !e.Stored {
			cp, backlog, lag = "none yet", "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\n", name, e.Configured, cp, backlog, lag)
	}
	return tw.Flush()
}

type endpointRewindCmd struct {
	dataDirFlags
	Name string `arg:"" help:"Endpoint name."`
	To   string `required:"" help:"\"oldest\", or a time (RFC 3339, e.g. 2026-12-03T10:00:00Z): the first record with a sample at or after it."`
}

func (c *endpointRewindCmd) Run() error {
	return moveEndpoint(c.dataDirFlags, func(ad *agent.Admin) (agent.Move, error) { return ad.Rewind(c.Name, c.To) }, "to send again")
}

type endpointSkipCmd struct {
	dataDirFlags
	Name string `arg:"" help:"Endpoint name."`
	To   string `required:"" help:"\"head\", or a time (RFC 3339): the first record with a sample at or after it."`
}

func (c *endpointSkipCmd) Run() error {
	return moveEndpoint(c.dataDirFlags, func(ad *agent.Admin) (agent.Move, error) { return ad.Skip(c.Name, c.To) }, "given up")
}

func moveEndpoint(f dataDirFlags, move func(*agent.Admin) (agent.Move, error), what string) error {
	logger, err := newLogger(logFlags{Level: "info"}, os.Stderr)
	if err != nil {
		return err
	}
	ad, err := f.open(logger)
	if err != nil {
		return err
	}
	m, err := move(ad)
	if cerr := ad.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Printf("%s: checkpoint moved from %s to %s; %d samples %s at the next start\n", m.Endpoint, m.From, m.To, m.Samples, what)
	return nil
}

type walVerifyCmd struct {
	dataDirFlags
}

// Run checks every record of a stopped agent's WAL without changing it.
func (c *walVerifyCmd) Run() error {
	cfg, err := c.resolve()
	if err != nil {
		return err
	}
	lock, err := agent.LockDataDir(cfg.DataDirOrDefault())
	if err != nil {
		return err
	}
	damage, err := agent.VerifyWAL(cfg.WALDir())
	if rerr := lock.Release(); err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	for _, d := range damage {
		fmt.Fprintln(os.Stderr, "ferry: WAL damage:", d)
	}
	if len(damage) > 0 {
		return errors.New("the WAL is damaged; `ferry run` repairs it at start, dropping what follows the damage in each damaged segment")
	}
	fmt.Printf("%s: every record intact\n", cfg.WALDir())
	return nil
}
