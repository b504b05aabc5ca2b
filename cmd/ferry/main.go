// Command ferry is a durable forwarding agent for Prometheus remote write.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/ferrymetrics/ferry/agent"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

type cli struct {
	Run      runCmd      `cmd:"" help:"Receive remote write, keep it in the WAL and forward it."`
	Check    checkCmd    `cmd:"" help:"Check configuration."`
	WAL      walCmd      `cmd:"" name:"wal" help:"Inspect the write-ahead log."`
	Status   statusCmd   `cmd:"" help:"Print a running agent's status; the exit code says whether every endpoint is healthy (0), one catches up or retries (1) or fails (2), or the agent did not answer (3)."`
	Endpoint endpointCmd `cmd:"" help:"List endpoints and move their checkpoints, on a stopped agent's data dir."`
	Version  versionCmd  `cmd:"" help:"Print the version."`
	Help     helpCmd     `cmd:"" help:"Print the help of a command, as \"ferry <command> --help\" does."`
}

type logFlags struct {
	Level  string `name:"log.level" default:"info" enum:"debug,info,warn,error" help:"Log level (${enum})."`
	Format string `name:"log.format" default:"" enum:",json,console" help:"Log format: json or console; default json under systemd (JOURNAL_STREAM set), console otherwise."`
}

type runCmd struct {
	Config string `short:"c" type:"existingfile" help:"Configuration file (YAML). Without it, a built-in configuration is used: listen on 127.0.0.1:9201, data in ./data, forward to http://127.0.0.1:9090/api/v1/write."`
	logFlags
}

type checkCmd struct {
	Config checkConfigCmd `cmd:"" help:"Validate a configuration file; prints one line per problem and exits non-zero if there is any."`
}

type checkConfigCmd struct {
	File string `arg:"" help:"Configuration file."`
}

type versionCmd struct{}

type helpCmd struct {
	Command []string `arg:"" optional:"" help:"Command, e.g. \"run\" or \"wal inspect\"; none for the list of commands."`
}

func main() {
	var c cli
	ctx := kong.Parse(&c,
		kong.Name("ferry"),
		kong.Description("Ferry: a durable forwarding agent for Prometheus remote write."),
		kong.UsageOnError(),
		kong.Vars{"version": buildVersion()},
	)
	if err := ctx.Run(); err != nil {
		var ces agent.ConfigErrors
		if errors.As(err, &ces) {
			for _, e := range ces {
				fmt.Fprintln(os.Stderr, "ferry:", e.Error())
			}
		} else {
			fmt.Fprintln(os.Stderr, "ferry:", err)
		}
		os.Exit(1)
	}
}

func (versionCmd) Run() error {
	fmt.Println("ferry", buildVersion())
	return nil
}

// Run prints the help `ferry <command> --help` prints, from kong's model of
// the command line, so that both stay the same.
func (c *helpCmd) Run(k *kong.Kong) error {
	node := k.Model.Node
	for i, name := range c.Command {
		node = subcommand(node, name)
		if node == nil {
			return fmt.Errorf("help: unknown command %q; \"ferry help\" lists the commands", strings.Join(c.Command[:i+1], " "))
		}
	}
	ctx, err := kong.Trace(k, c.Command)
	if err != nil {
		return fmt.Errorf("help: %w", err)
	}
	if ctx.Error != nil {
		return fmt.Errorf("help: %w", ctx.Error)
	}
	return ctx.PrintUsage(false)
}

// subcommand returns the subcommand of node called name, or nil.
func subcommand(node *kong.Node, name string) *kong.Node {
	for _, child := range node.Children {
		if child.Type == kong.CommandNode && (child.Name == name || slices.Contains(child.Aliases, name)) {
			return child
		}
	}
	return nil
}

func (c *checkConfigCmd) Run() error {
	cfg, err := agent.LoadConfigFile(c.File)
	if err != nil {
		var ces agent.ConfigErrors
		if errors.As(err, &ces) {
			for _, e := range ces {
				fmt.Fprintln(os.Stderr, e.Error())
			}
			os.Exit(1)
		}
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(os.Stderr, "%s (warning)\n", w.Error())
	}
	if len(cfg.Warnings) > 0 {
		fmt.Printf("%s: valid, with %d warning(s)\n", c.File, len(cfg.Warnings))
		return nil
	}
	fmt.Printf("%s: valid\n", c.File)
	return nil
}

func newLogger(f logFlags, out io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(f.Level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", f.Level, err)
	}
	format := f.Format
	journald := os.Getenv("JOURNAL_STREAM") != ""
	if format == "" {
		format = "console"
		if journald {
			format = "json"
		}
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	if journald {
		ec.TimeKey = "" // journald stamps every line
	}
	var enc zapcore.Encoder
	if format == "json" {
		enc = zapcore.NewJSONEncoder(ec)
	} else {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), lvl)), nil
}

func (c *runCmd) Run() error {
	logger, err := newLogger(c.logFlags, os.Stderr)
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()
	load := func() (*agent.Config, error) {
		if c.Config == "" {
			return agent.ParseConfig(agent.DefaultConfigYAML, "built-in configuration")
		}
		return agent.LoadConfigFile(c.Config)
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_build_info", Help: "Ferry's version.", ConstLabels: prometheus.Labels{"version": buildVersion()},
		}, func() float64 { return 1 }))
	source := c.Config
	if source == "" {
		source = "built-in"
	}
	logger.Info("Starting Ferry", zap.String("version", buildVersion()), zap.String("config", source),
		zap.String("data_dir", cfg.DataDirOrDefault()))
	notify := newNotifier(logger)
	a := agent.New(cfg, agent.Options{
		Logger: logger, Registry: reg, Version: buildVersion(), Load: load, Notify: notify.notify,
	})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				if err := a.Reload(rctx); err != nil {
					logger.Error("Reload on SIGHUP failed", zap.Error(err))
				}
				cancel()
			}
		}
	}()
	if iv := watchdogInterval(); iv > 0 {
		go func() {
			// Pings start once the agent is ready; before that systemd's
			// start timeout (extended during a long replay) applies.
			for a.Alive(ctx) != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			notify.watchdog(ctx, iv, a.Alive)
		}()
	}
	if err := a.Run(ctx); err != nil {
		logger.Error("Ferry stopped with an error", zap.Error(err))
		return err
	}
	return nil
}
