package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A section whose options are all commented out, or a key left empty,
// keeps its defaults (YAML reads both as null).
func TestEmptySectionsKeepDefaults(t *testing.T) {
	cfg, err := ParseConfig(yamlDoc(
		"wal:",
		"#  sync: always",
		"receiver:",
		"shutdown_timeout:",
		"downsample:",
		"remote_write:",
		"  - url: http://127.0.0.1:9090/api/v1/write",
	), "sections.yml")
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultConfig()
	if cfg.WAL != def.WAL || cfg.Receiver != def.Receiver || cfg.ShutdownTimeout != def.ShutdownTimeout {
		t.Errorf("defaults lost:\n got  %+v %+v %v\n want %+v %+v %v", cfg.WAL, cfg.Receiver, cfg.ShutdownTimeout, def.WAL, def.Receiver, def.ShutdownTimeout)
	}
	cfg, err = ParseConfig(yamlDoc(
		"wal:",
		"  sync:",
		"  max_size: 1GiB",
		"remote_write:",
		"  - url: http://127.0.0.1:9090/api/v1/write",
	), "keys.yml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WAL.Sync != def.WAL.Sync || cfg.WAL.MaxSize != 1<<30 || cfg.WAL.SegmentSize != def.WAL.SegmentSize {
		t.Errorf("wal %+v: want sync and segment_size defaulted, max_size 1GiB", cfg.WAL)
	}
}

// The M3 coordinator's "historical" endpoint, before any rule routes to
// its policy, loads with a warning at its line that spells the policy as
// written.
func TestM3HistoricalPolicyLoadsWithAWarning(t *testing.T) {
	cfg, err := ParseConfig(yamlDoc(
		"remote_write:",
		"  - name: raw",
		"    url: http://prometheus:9090/api/v1/write",
		"  - name: historical",
		"    url: http://mimir:8080/api/v1/push",
		"    storage_policy:",
		"      resolution: 1h",
		"      retention: 8760h",
		"      downsample:",
		"        all: false",
	), "m3.yml")
	if err != nil {
		t.Fatalf("the M3 example is refused: %v", err)
	}
	if len(cfg.Warnings) != 1 {
		t.Fatalf("warnings %v, want one", cfg.Warnings)
	}
	w := cfg.Warnings[0]
	if w.Line != 6 || !strings.Contains(w.Msg, "historical") || !strings.Contains(w.Msg, "1h:8760h") || strings.Contains(w.Msg, "1y") {
		t.Errorf("warning %v: want line 6, the endpoint and 1h:8760h", w)
	}
}

// One check reports every problem, each with its line, the endpoint it
// belongs to and a hint: a port out of range, a url without a scheme, a
// missing CA file, unknown keys after a value that does not parse.
func TestCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yml")
	write := func(lines ...string) {
		if err := os.WriteFile(path, yamlDoc(lines...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	load := func() ConfigErrors {
		t.Helper()
		_, err := LoadConfigFile(path)
		var ces ConfigErrors
		if !errors.As(err, &ces) {
			t.Fatalf("LoadConfigFile: %v, want ConfigErrors", err)
		}
		return ces
	}
	write(
		"listen_address: 127.0.0.1:99999",
		"remote_write:",
		"  - name: central",
		"    url: localhost:9090/api/v1/write",
		"    tls_config:",
		"      ca_file: missing-ca.pem",
		"  - name: far",
		"    url: http://127.0.0.1:70000/api/v1/write",
	)
	checkErrors(t, load(), path, []wantErr{
		{1, `listen_address: "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{4, `remote_write[0] (central): url "localhost:9090/api/v1/write": scheme must be http or https; did you mean "http://localhost:9090/api/v1/write"?`},
		{6, "remote_write[0] (central): tls_config.ca_file: open " + filepath.Join(dir, "missing-ca.pem") + ": no such file"},
		{8, `remote_write[1] (far): url "http://127.0.0.1:70000/api/v1/write": port "70000"`},
	})

	write(
		"wal:",
		"  synk: always",
		"remote_write:",
		"  - name: a",
		"    url: 127.0.0.1:9090/api/v1/write",
		"  - name: b",
		"    url: http://127.0.0.1:9090/api/v1/write",
		"    queue_config:",
		"      max_shard: 3",
	)
	checkErrors(t, load(), path, []wantErr{
		{2, `unknown key "synk"; did you mean "sync"?`},
		{5, `remote_write[0] (a): url: parse "127.0.0.1:9090/api/v1/write"`},
		{9, `remote_write[1] (b): unknown key "max_shard"; did you mean "max_shards"?`},
	})
	if msg := load()[1].Msg; !strings.HasSuffix(msg, `did you mean "http://127.0.0.1:9090/api/v1/write"?`) {
		t.Errorf("no hint: %s", msg)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"sync", "sync", 0}, {"synk", "sync", 1}, {"max_shard", "max_shards", 1}, {"abc", "", 3}, {"kitten", "sitting", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
