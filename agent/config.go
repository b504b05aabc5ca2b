package agent

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrymetrics/ferry/agent/scrape"
	"github.com/ferrymetrics/ferry/downsample"
	"github.com/ferrymetrics/ferry/wal"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	yamlv2 "go.yaml.in/yaml/v2"
	yamlv3 "go.yaml.in/yaml/v3"
)

// DefaultConfigYAML is the configuration `ferry run` uses without --config:
// listen on 127.0.0.1, keep data under ./data, forward to a Prometheus on
// 127.0.0.1:9090.
//
//go:embed default.yml
var DefaultConfigYAML []byte

// Config is Ferry's configuration file.
type Config struct {
	ListenAddress string `yaml:"listen_address"`
	// WebConfigFile is a Prometheus web configuration file
	// (tls_server_config, basic_auth_users with bcrypt hashes) for the
	// whole HTTP server, as Prometheus' --web.config.file. It is re-read
	// on every connection and request, so certificates and users change
	// without a restart.
	WebConfigFile string `yaml:"web_config_file"`
	// DataDir holds the WAL and the state database. Relative paths are
	// relative to the working directory. Empty means $STATE_DIRECTORY
	// (set by systemd) or ./data.
	DataDir         string              `yaml:"data_dir"`
	Receiver        ReceiverConfig      `yaml:"receiver"`
	WAL             WALConfig           `yaml:"wal"`
	ShutdownTimeout model.Duration      `yaml:"shutdown_timeout"`
	RemoteWrite     []RemoteWriteConfig `yaml:"remote_write"`
	// Downsample configures the compactor that rolls the WAL up for
	// endpoints with a storage_policy.
	Downsample downsample.Config `yaml:"downsample"`

	// Global, ScrapeConfigs and ScrapeConfigFiles are prometheus.yml's
	// sections of the same names, read by Prometheus' own loader into
	// Scrape.
	Global            any `yaml:"global"`
	ScrapeConfigs     any `yaml:"scrape_configs"`
	ScrapeConfigFiles any `yaml:"scrape_config_files"`
	// Scrape is the scraping configuration; global.external_labels apply
	// to everything Ferry forwards.
	Scrape *promconfig.Config `yaml:"-"`
	// Warnings are what is valid but likely unintended; `check config`
	// prints them and `run` logs them.
	Warnings ConfigErrors `yaml:"-"`
}

// ExternalLabels are the labels added to every series sent.
func (c *Config) ExternalLabels() labels.Labels {
	if c.Scrape == nil {
		return labels.EmptyLabels()
	}
	return c.Scrape.GlobalConfig.ExternalLabels
}

// ReceiverConfig limits what the remote-write receiver accepts.
type ReceiverConfig struct {
	// MaxRequestBytes caps the compressed request body (413 above).
	MaxRequestBytes Bytes `yaml:"max_request_bytes"`
	// MaxDecodedBytes caps the decompressed body (413 above), checked
	// before decoding.
	MaxDecodedBytes Bytes `yaml:"max_decoded_bytes"`
	// NameValidation is "legacy" (the Remote-Write 1.0 character set) or
	// "utf8".
	NameValidation string `yaml:"name_validation"`
	// BearerTokenFile, if set, makes /api/v1/write require
	// "Authorization: Bearer <token>" with the file's content (trimmed).
	// It is read at start and on reload. Use it or basic_auth_users in
	// web_config_file, not both: a request carries one Authorization header.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// MaxConcurrentRequests bounds the write requests decoded and appended
	// at once, and with max_decoded_bytes the memory decoding takes. A
	// request whose body has arrived waits up to 10s for a slot, then gets
	// 503. Bodies being received are not limited by it: a slow client holds
	// only the bytes it sent, and the server's read timeout (1 minute).
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
}

// WALConfig configures the write-ahead log.
type WALConfig struct {
	Sync         string         `yaml:"sync"` // always | interval
	SyncInterval model.Duration `yaml:"sync_interval"`
	SegmentSize  Bytes          `yaml:"segment_size"`
	MaxSize      Bytes          `yaml:"max_size"` // 0: no cap
	// MinFreeDisk is the free space the WAL leaves on its filesystem; 0
	// (the default) means 5% of the filesystem, at most 256MiB.
	MinFreeDisk Bytes  `yaml:"min_free_disk"`
	WhenFull    string `yaml:"when_full"` // drop_oldest | backpressure
	Compression string `yaml:"compression"`
	// SeriesRetention is how long a series stays in memory after its last
	// sample's segment was sealed: longer than the slowest scrape interval,
	// so that a series keeps its ref between samples.
	SeriesRetention model.Duration `yaml:"series_retention"`
}

// Bytes is a size in bytes; YAML accepts plain integers and units
// (B, KB, MB, GB, TB decimal; KiB, MiB, GiB, TiB binary).
type Bytes int64

var bytesRE = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*$`)

// ParseBytes parses a size such as "10GiB" or "512MB".
func ParseBytes(s string) (Bytes, error) {
	m := bytesRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit B, KB, MB, GB, TB, KiB, MiB, GiB or TiB", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	mult := map[string]float64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	if f*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Bytes(f * mult), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *Bytes) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return err
	}
	v, err := ParseBytes(s)
	if err != nil {
		// A TypeError lets the decoder go on and report the file's other
		// problems too; ParseConfig finds the line from the quoted value.
		return &yamlv2.TypeError{Errors: []string{err.Error()}}
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b Bytes) MarshalYAML() (any, error) { return int64(b), nil }

// DefaultConfig returns the defaults every loaded file starts from.
func DefaultConfig() Config {
	return Config{
		ListenAddress: "127.0.0.1:9201",
		Receiver: ReceiverConfig{
			MaxRequestBytes:       16 << 20,
			MaxDecodedBytes:       64 << 20,
			NameValidation:        "legacy",
			MaxConcurrentRequests: 16,
		},
		WAL: WALConfig{
			Sync:         "always",
			SyncInterval: model.Duration(time.Second),
			SegmentSize:  64 << 20,
			MaxSize:      10 << 30,
			WhenFull:     "drop_oldest",
			Compression:  "none",

			SeriesRetention: model.Duration(wal.DefaultOptions().SeriesGrace),
		},
		ShutdownTimeout: model.Duration(30 * time.Second),
	}
}

// ConfigError is one problem in a configuration file.
type ConfigError struct {
	File string
	Line int // 0 if unknown
	Msg  string
}

func (e ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// ConfigErrors lists every problem found in a file.
type ConfigErrors []ConfigError

func (es ConfigErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// LoadConfigFile reads and validates a configuration file.
func LoadConfigFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, ConfigErrors{{File: path, Msg: fmt.Sprintf("read: %v", errors.Unwrap(err))}}
	}
	// Files are checked even when settings are wrong, so that one run
	// reports every problem.
	cfg, errs := parseConfig(data, path)
	if cfg == nil {
		return nil, errs
	}
	dir := filepath.Dir(path)
	// Lines are looked up only for errors, once.
	lines := sync.OnceValue(func() lineIndex { return yamlLines(data) })
	if cfg.WebConfigFile != "" {
		cfg.WebConfigFile = resolve(dir, cfg.WebConfigFile)
		if err := web.Validate(cfg.WebConfigFile); err != nil {
			errs = append(errs, ConfigError{File: path, Line: lines().find("web_config_file"),
				Msg: fmt.Sprintf("web_config_file %s: %v", cfg.WebConfigFile, err)})
		}
	}
	if cfg.Receiver.BearerTokenFile != "" {
		cfg.Receiver.BearerTokenFile = resolve(dir, cfg.Receiver.BearerTokenFile)
		if _, err := readToken(cfg.Receiver.BearerTokenFile); err != nil {
			errs = append(errs, ConfigError{File: path, Line: lines().find("receiver.bearer_token_file"),
				Msg: fmt.Sprintf("receiver.bearer_token_file: %v", err)})
		}
	}
	// Relative credential and certificate files are relative to the
	// configuration file, as in Prometheus, and so are those of azuread
	// and google_iam, which Prometheus takes as they are.
	for i := range cfg.RemoteWrite {
		rw := &cfg.RemoteWrite[i]
		rw.SetDirectory(dir)
		// The files the endpoint's client reads, and the client itself,
		// exactly as run builds it.
		label := fmt.Sprintf("remote_write[%d] (%s)", i, rw.Name)
		for _, f := range endpointFiles(rw) {
			if err := readable(f[1]); err != nil {
				errs = append(errs, ConfigError{File: path, Line: lines().find(fmt.Sprintf("remote_write.%d.%s", i, f[0])),
					Msg: fmt.Sprintf("%s: %s: %v", label, f[0], err)})
			}
		}
		if len(errs) == 0 {
			if _, err := rw.senderConfig("ferry"); err != nil {
				errs = append(errs, ConfigError{File: path, Line: lines().find(fmt.Sprintf("remote_write.%d", i)), Msg: err.Error()})
			}
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b ConfigError) int { return a.Line - b.Line })
		return nil, errs
	}
	cfg.Scrape.SetDirectory(dir)
	// scrape_config_files are read now too, so that a check (and a reload)
	// finds their problems; they are read again when applied.
	if _, err := cfg.Scrape.GetScrapeConfigs(); err != nil {
		return nil, ConfigErrors{{File: path, Line: lines().find("scrape_config_files"),
			Msg: "scrape_config_files: " + oneLine(err.Error())}}
	}
	return cfg, nil
}

// oneLine joins a multi-line error message into one line.
func oneLine(msg string) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

func resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// readToken reads a bearer token file; an empty token is an error.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return tok, nil
}

// goTypeRE matches the Go type names yaml puts in "field x not found in
// type agent.plain"; users know keys, not types.
var goTypeRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// ParseConfig parses YAML strictly (unknown keys are errors), applies
// defaults (the only place they are applied) and validates. name is used
// in error messages. Every problem is reported, each with its line where
// it can be found.
func ParseConfig(data []byte, name string) (*Config, error) {
	cfg, errs := parseConfig(data, name)
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// parseConfig is ParseConfig, which also returns the configuration when it
// decoded but has errors (nil if it did not decode).
func parseConfig(data []byte, name string) (*Config, ConfigErrors) {
	cfg := DefaultConfig()
	root := parseNode(data)
	if err := yamlv2.UnmarshalStrict(data, &cfg); err != nil {
		var errs ConfigErrors
		values := valueLines(data)
		idx := yamlLines(data)
		msgs := []string{err.Error()}
		if te, ok := err.(*yamlv2.TypeError); ok {
			msgs = te.Errors
		}
		for _, m := range msgs {
			m = strings.TrimPrefix(m, "yaml: unmarshal errors:\n")
			for _, l := range strings.Split(m, "\n") {
				l = strings.TrimSpace(l)
				if l == "" {
					continue
				}
				e := ConfigError{File: name, Msg: l}
				if sm := yamlLineRE.FindStringSubmatch(l); sm != nil {
					e.Line, _ = strconv.Atoi(sm[1])
					e.Msg = sm[2]
				} else {
					e.Line = values.take(l)
				}
				errs = append(errs, explainParseError(e, idx, root))
			}
		}
		// The decoder stops at the first value it cannot parse: find the
		// unknown keys it did not get to.
		for _, u := range unknownKeys(root, name) {
			if !slices.ContainsFunc(errs, func(e ConfigError) bool { return e.Line == u.Line }) {
				errs = append(errs, u)
			}
		}
		slices.SortStableFunc(errs, func(a, b ConfigError) int { return a.Line - b.Line })
		return nil, errs
	}
	if root == nil {
		return nil, ConfigErrors{{File: name, Msg: "no settings: the file is empty or all comments; Ferry needs at least one remote_write endpoint (the packaged /etc/ferry/ferry.yml shows every option)"}}
	}
	keepDefaults(root, &cfg)
	for i := range cfg.RemoteWrite {
		cfg.RemoteWrite[i].applyDefaults()
	}
	lines := yamlLines(data)
	var errs ConfigErrors
	sc, scErrs := scrape.ParseConfig(data, promslog.NewNopLogger())
	for _, e := range scErrs {
		line := e.Line
		if line == 0 {
			line = lines.find("scrape_configs")
		}
		errs = append(errs, ConfigError{File: name, Line: line, Msg: e.Msg})
	}
	cfg.Scrape = sc
	for _, pe := range cfg.validate() {
		errs = append(errs, ConfigError{File: name, Line: lines.find(pe.path), Msg: pe.Error()})
	}
	if len(errs) > 0 {
		return &cfg, errs
	}
	for i, rw := range cfg.RemoteWrite {
		if rw.StoragePolicy == nil {
			continue
		}
		for _, w := range cfg.Downsample.Warnings([]downsample.StoragePolicy{*rw.StoragePolicy}) {
			cfg.Warnings = append(cfg.Warnings, ConfigError{File: name, Line: lines.find(fmt.Sprintf("remote_write.%d.storage_policy", i)),
				Msg: endpointLabel(root, i) + ": " + w})
		}
	}
	return &cfg, nil
}

// pathError is a validation error at a YAML path such as
// "remote_write.1.url", which locates its line.
type pathError struct {
	path string
	msg  string
}

func (e pathError) Error() string { return e.msg }

func (c *Config) validate() []pathError {
	var errs []pathError
	add := func(path string, format string, args ...any) {
		errs = append(errs, pathError{path: path, msg: path + ": " + fmt.Sprintf(format, args...)})
	}
	if c.ListenAddress == "" {
		add("listen_address", "must not be empty")
	} else if err := checkListenAddress(c.ListenAddress); err != nil {
		add("listen_address", "%v", err)
	}
	if c.Receiver.MaxRequestBytes <= 0 || c.Receiver.MaxDecodedBytes <= 0 {
		add("receiver", "max_request_bytes and max_decoded_bytes must be positive")
	}
	if c.Receiver.MaxConcurrentRequests < 1 {
		add("receiver.max_concurrent_requests", "must be positive")
	}
	if v := c.Receiver.NameValidation; v != "legacy" && v != "utf8" {
		add("receiver.name_validation", "%q: must be legacy or utf8", v)
	}
	w := c.WAL
	if w.Sync != "always" && w.Sync != "interval" {
		add("wal.sync", "%q: must be always or interval", w.Sync)
	}
	if w.Sync == "interval" && w.SyncInterval <= 0 {
		add("wal.sync_interval", "must be positive")
	}
	if w.SegmentSize < 1<<20 {
		add("wal.segment_size", "%d bytes: must be at least 1MiB", w.SegmentSize)
	}
	if w.MaxSize < 0 || (w.MaxSize > 0 && w.MaxSize < 2*w.SegmentSize) {
		add("wal.max_size", "%d bytes: must be 0 (no cap) or at least two segments (2 × %d bytes)", w.MaxSize, w.SegmentSize)
	}
	if w.MinFreeDisk < 0 {
		add("wal.min_free_disk", "%d bytes: must not be negative", w.MinFreeDisk)
	}
	if w.WhenFull != "drop_oldest" && w.WhenFull != "backpressure" {
		add("wal.when_full", "%q: must be drop_oldest or backpressure", w.WhenFull)
	}
	if w.Compression != "none" && w.Compression != "snappy" && w.Compression != "zstd" {
		add("wal.compression", "%q: must be none, snappy or zstd", w.Compression)
	}
	if w.SeriesRetention < 0 {
		add("wal.series_retention", "%s: must not be negative", w.SeriesRetention)
	}
	if c.ShutdownTimeout <= 0 {
		add("shutdown_timeout", "must be positive")
	}
	for _, err := range c.Downsample.Validate(c.storagePolicies()) {
		errs = append(errs, pathError{path: "downsample", msg: err.Error()})
	}
	seen := map[string]int{}
	for i := range c.RemoteWrite {
		rw := &c.RemoteWrite[i]
		path := fmt.Sprintf("remote_write.%d", i)
		label := fmt.Sprintf("remote_write[%d]", i)
		if rw.Name != "" {
			label = fmt.Sprintf("remote_write[%d] (%s)", i, rw.Name)
			if j, dup := seen[rw.Name]; dup {
				errs = append(errs, pathError{path: path + ".name", msg: fmt.Sprintf(
					"%s: name %q is already used by remote_write[%d]; names key checkpoints and must be unique (an endpoint without a name is named after its url)", label, rw.Name, j)})
			}
			seen[rw.Name] = i
		}
		for _, err := range rw.validate() {
			field := ""
			if f, _, ok := strings.Cut(err.Error(), " "); ok && !strings.ContainsAny(f, "%:\"") {
				field = "." + strings.TrimSuffix(f, ":")
			}
			errs = append(errs, pathError{path: path + field, msg: fmt.Sprintf("%s: %v", label, err)})
		}
	}
	return errs
}

// storagePolicies returns the distinct storage policies endpoints use, in
// order of appearance.
func (c *Config) storagePolicies() []downsample.StoragePolicy {
	var out []downsample.StoragePolicy
	seen := map[string]bool{}
	for _, ep := range c.RemoteWrite {
		if p := ep.StoragePolicy; p != nil && !seen[p.String()] {
			seen[p.String()] = true
			out = append(out, *p)
		}
	}
	return out
}

// DataDirOrDefault resolves the data directory.
func (c *Config) DataDirOrDefault() string {
	if c.DataDir != "" {
		return c.DataDir
	}
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return strings.Split(d, ":")[0]
	}
	return "data"
}

// WALDir and StateDir are the WAL and the state database under the data dir.
func (c *Config) WALDir() string   { return filepath.Join(c.DataDirOrDefault(), "wal") }
func (c *Config) StateDir() string { return filepath.Join(c.DataDirOrDefault(), "state") }

// lineIndex maps dotted YAML paths to line numbers.
type lineIndex map[string]int

func yamlLines(data []byte) lineIndex {
	idx := lineIndex{}
	var root yamlv3.Node
	if err := yamlv3.NewDecoder(bytes.NewReader(data)).Decode(&root); err != nil {
		return idx
	}
	var walk func(n *yamlv3.Node, path string)
	walk = func(n *yamlv3.Node, path string) {
		switch n.Kind {
		case yamlv3.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yamlv3.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := strings.TrimPrefix(path+"."+n.Content[i].Value, ".")
				idx[p] = n.Content[i].Line
				walk(n.Content[i+1], p)
			}
		case yamlv3.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s.%d", path, i)
				idx[p] = c.Line
				walk(c, p)
			}
		}
	}
	walk(&root, "")
	return idx
}

// scalarLines maps scalar values to the lines they appear on, in document
// order. Errors of custom unmarshalers (sizes, durations) have no line but
// quote the offending value, which locates it.
type scalarLines map[string][]int

var quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

func valueLines(data []byte) scalarLines {
	vals := scalarLines{}
	var root yamlv3.Node
	if err := yamlv3.NewDecoder(bytes.NewReader(data)).Decode(&root); err != nil {
		return vals
	}
	var walk func(n *yamlv3.Node)
	walk = func(n *yamlv3.Node) {
		if n.Kind == yamlv3.ScalarNode {
			vals[n.Value] = append(vals[n.Value], n.Line)
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	return vals
}

// take returns the line of the first value quoted in msg, consuming it so
// that a second error about the same value gets the next occurrence; 0 if
// none is found.
func (vals scalarLines) take(msg string) int {
	q := quotedRE.FindString(msg)
	if q == "" {
		return 0
	}
	v, err := strconv.Unquote(q)
	if err != nil || len(vals[v]) == 0 {
		return 0
	}
	l := vals[v][0]
	vals[v] = vals[v][1:]
	return l
}

// find returns the line of path or of its closest ancestor present.
func (idx lineIndex) find(path string) int {
	for path != "" {
		if l, ok := idx[path]; ok {
			return l
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}
