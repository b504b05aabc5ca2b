package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
)

// yamlDoc joins lines with newlines, so that a case's line numbers are
// the positions of its arguments (the first is line 1).
func yamlDoc(ls ...string) []byte { return []byte(strings.Join(ls, "\n") + "\n") }

// wantErr is one expected ConfigError: its line and a part of its message.
type wantErr struct {
	line int
	msg  string
}

// parseErrors parses data as name and returns its ConfigErrors, failing the
// test if parsing succeeds or fails with another error type.
func parseErrors(t *testing.T, data []byte, name string) ConfigErrors {
	t.Helper()
	cfg, err := ParseConfig(data, name)
	if err == nil {
		t.Fatalf("ParseConfig succeeded, want errors; config: %+v", cfg)
	}
	if cfg != nil {
		t.Errorf("ParseConfig returned a config along with error %v", err)
	}
	var ces ConfigErrors
	if !errors.As(err, &ces) {
		t.Fatalf("ParseConfig error is %T (%v), want ConfigErrors", err, err)
	}
	return ces
}

func checkErrors(t *testing.T, got ConfigErrors, file string, want []wantErr) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.File != file {
			t.Errorf("error %d: File = %q, want %q", i, g.File, file)
		}
		if g.Line != w.line {
			t.Errorf("error %d: Line = %d, want %d (%v)", i, g.Line, w.line, g)
		}
		if !strings.Contains(g.Msg, w.msg) {
			t.Errorf("error %d: Msg = %q, want it to contain %q", i, g.Msg, w.msg)
		}
	}
}

func TestParseConfigDefault(t *testing.T) {
	cfg, err := ParseConfig(DefaultConfigYAML, "built-in configuration")
	if err != nil {
		t.Fatalf("DefaultConfigYAML does not parse: %v", err)
	}
	if cfg.ListenAddress != "127.0.0.1:9201" {
		t.Errorf("ListenAddress = %q, want 127.0.0.1:9201", cfg.ListenAddress)
	}
	if cfg.DataDir != "data" {
		t.Errorf("DataDir = %q, want data", cfg.DataDir)
	}
	if len(cfg.RemoteWrite) != 1 {
		t.Fatalf("got %d remote_write endpoints, want 1", len(cfg.RemoteWrite))
	}
	ep := cfg.RemoteWrite[0]
	if ep.Name != "local-prometheus" {
		t.Errorf("endpoint name = %q, want local-prometheus", ep.Name)
	}
	if got, want := ep.URL.String(), "http://127.0.0.1:9090/api/v1/write"; got != want {
		t.Errorf("endpoint url = %q, want %q", got, want)
	}
	// The rest comes from DefaultConfig.
	def := DefaultConfig()
	if cfg.WAL != def.WAL || cfg.Receiver != def.Receiver || cfg.ShutdownTimeout != def.ShutdownTimeout {
		t.Errorf("defaults not applied:\n got  %+v %+v %v\n want %+v %+v %v",
			cfg.WAL, cfg.Receiver, cfg.ShutdownTimeout, def.WAL, def.Receiver, def.ShutdownTimeout)
	}
}

// An empty file, or one of nothing but comments, is refused: it is more
// likely a mistake than an agent meant to forward nowhere.
func TestParseConfigRefusesAnEmptyFile(t *testing.T) {
	for _, data := range []string{"", "\n", "# wal:\n#   sync: always\n"} {
		_, err := ParseConfig([]byte(data), "empty.yml")
		if err == nil || !strings.Contains(err.Error(), "empty or all comments") {
			t.Errorf("%q: %v, want an error saying the file is empty", data, err)
		}
	}
}

var fullConfig = yamlDoc(
	"# Every field Ferry knows.",
	"listen_address: 0.0.0.0:9301",
	"data_dir: /var/lib/ferry",
	"receiver:",
	"  max_request_bytes: 16MiB",
	"  max_decoded_bytes: 64MB",
	"  name_validation: utf8",
	"wal:",
	"  sync: interval",
	"  sync_interval: 250ms",
	"  segment_size: 32MiB",
	"  max_size: 10GiB",
	"  when_full: backpressure",
	"  compression: zstd",
	"  series_retention: 10m",
	"shutdown_timeout: 1m",
	"remote_write:",
	"  - name: mimir",
	"    url: https://mimir.example.com/api/v1/push",
	"    remote_timeout: 10s",
	"    headers:",
	"      X-Scope-OrgID: tenant-1",
	"    basic_auth:",
	"      username: ferry",
	"      password_file: /etc/ferry/password",
	"    tls_config:",
	"      ca_file: /etc/ferry/ca.pem",
	"      server_name: mimir.internal",
	"      insecure_skip_verify: true",
	"    queue_config:",
	"      capacity: 5000",
	"      min_shards: 2",
	"      max_shards: 20",
	"      max_samples_per_send: 1000",
	"      batch_send_deadline: 2s",
	"      min_backoff: 50ms",
	"      max_backoff: 10s",
	"      retry_on_http_429: false",
	"    write_relabel_configs:",
	"      - source_labels: [__name__]",
	"        regex: go_.*",
	"        action: drop",
	"    start_from: now",
	"  - name: backup",
	"    url: http://backup.example.com:9090/api/v1/write",
)

func TestParseConfigFull(t *testing.T) {
	cfg, err := ParseConfig(fullConfig, "full.yml")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	check := func(field string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", field, got, want)
		}
	}
	check("listen_address", cfg.ListenAddress, "0.0.0.0:9301")
	check("data_dir", cfg.DataDir, "/var/lib/ferry")
	check("WALDir()", cfg.WALDir(), "/var/lib/ferry/wal")
	check("StateDir()", cfg.StateDir(), "/var/lib/ferry/state")
	check("receiver", cfg.Receiver, ReceiverConfig{MaxRequestBytes: 16 << 20, MaxDecodedBytes: 64e6, NameValidation: "utf8", MaxConcurrentRequests: 16})
	check("wal", cfg.WAL, WALConfig{
		Sync: "interval", SyncInterval: model.Duration(250 * time.Millisecond),
		SegmentSize: 32 << 20, MaxSize: 10 << 30, WhenFull: "backpressure", Compression: "zstd",
		SeriesRetention: model.Duration(10 * time.Minute),
	})
	check("shutdown_timeout", cfg.ShutdownTimeout, model.Duration(time.Minute))

	if len(cfg.RemoteWrite) != 2 {
		t.Fatalf("got %d endpoints, want 2", len(cfg.RemoteWrite))
	}
	m := cfg.RemoteWrite[0]
	check("name", m.Name, "mimir")
	check("url", m.URL.String(), "https://mimir.example.com/api/v1/push")
	check("remote_timeout", m.RemoteTimeout, model.Duration(10*time.Second))
	check("headers", len(m.Headers), 1)
	check("headers[X-Scope-OrgID]", m.Headers["X-Scope-OrgID"], "tenant-1")
	if m.HTTPClientConfig.BasicAuth == nil {
		t.Fatal("basic_auth not parsed")
	}
	check("basic_auth.username", m.HTTPClientConfig.BasicAuth.Username, "ferry")
	check("basic_auth.password_file", m.HTTPClientConfig.BasicAuth.PasswordFile, "/etc/ferry/password")
	tls := m.HTTPClientConfig.TLSConfig
	check("tls_config.ca_file", tls.CAFile, "/etc/ferry/ca.pem")
	check("tls_config.server_name", tls.ServerName, "mimir.internal")
	check("tls_config.insecure_skip_verify", tls.InsecureSkipVerify, true)
	q := m.QueueConfig
	check("capacity", q.Capacity, 5000)
	check("min_shards", q.MinShards, 2)
	check("max_shards", q.MaxShards, 20)
	check("max_samples_per_send", q.MaxSamplesPerSend, 1000)
	check("batch_send_deadline", q.BatchSendDeadline, model.Duration(2*time.Second))
	check("min_backoff", q.MinBackoff, model.Duration(50*time.Millisecond))
	check("max_backoff", q.MaxBackoff, model.Duration(10*time.Second))
	if q.RetryOnRateLimit == nil || *q.RetryOnRateLimit {
		t.Errorf("retry_on_http_429 = %v, want false", q.RetryOnRateLimit)
	}
	if len(m.WriteRelabelConfigs) != 1 {
		t.Fatalf("got %d write_relabel_configs, want 1", len(m.WriteRelabelConfigs))
	}
	rc := m.WriteRelabelConfigs[0]
	check("relabel action", rc.Action, relabel.Drop)
	check("relabel source_labels", rc.SourceLabels.String(), "__name__")
	check("relabel regex matches go_goroutines", rc.Regex.MatchString("go_goroutines"), true)
	check("relabel regex matches up", rc.Regex.MatchString("up"), false)
	check("start_from", m.StartFrom, StartNow)

	// The second endpoint gets every default.
	b := cfg.RemoteWrite[1]
	check("backup name", b.Name, "backup")
	check("backup url", b.URL.String(), "http://backup.example.com:9090/api/v1/write")
	check("backup start_from", b.StartFrom, StartOldest)
	check("backup remote_timeout", b.RemoteTimeout, model.Duration(30*time.Second))
	wantQ := DefaultQueueConfig
	check("backup queue_config.capacity", b.QueueConfig.Capacity, wantQ.Capacity)
	check("backup queue_config.max_shards", b.QueueConfig.MaxShards, wantQ.MaxShards)
	check("backup queue_config.min_backoff", b.QueueConfig.MinBackoff, wantQ.MinBackoff)
	if b.QueueConfig.RetryOnRateLimit == nil || !*b.QueueConfig.RetryOnRateLimit {
		t.Errorf("backup retry_on_http_429 = %v, want true by default", b.QueueConfig.RetryOnRateLimit)
	}
	check("backup follow_redirects", b.HTTPClientConfig.FollowRedirects, true)
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml []byte
		want []wantErr
	}{
		{
			name: "unknown top-level key",
			yaml: yamlDoc(
				"listen_address: 127.0.0.1:9201",
				"listen_adress: 127.0.0.1:9202",
			),
			want: []wantErr{{2, "listen_adress"}},
		},
		{
			name: "unknown key in a remote_write entry",
			yaml: yamlDoc(
				"remote_write:",
				"  - name: a",
				"    url: http://a.example/api/v1/write",
				"    queue_size: 10",
			),
			want: []wantErr{{4, "queue_size"}},
		},
		{
			name: "unknown key in queue_config",
			yaml: yamlDoc(
				"remote_write:",
				"  - name: a",
				"    url: http://a.example/api/v1/write",
				"    queue_config:",
				"      max_shard: 10",
			),
			want: []wantErr{{5, "max_shard"}},
		},
		{
			name: "unknown key in wal",
			yaml: yamlDoc(
				"wal:",
				"  sync: always",
				"  fsync: true",
			),
			want: []wantErr{{3, "fsync"}},
		},
		{
			name: "duplicate key",
			yaml: yamlDoc(
				"listen_address: 127.0.0.1:9201",
				"listen_address: 127.0.0.1:9202",
			),
			want: []wantErr{{2, "listen_address already set"}},
		},
		{
			name: "wrong type: sequence for a string",
			yaml: yamlDoc(
				"data_dir: /tmp",
				"listen_address: [127.0.0.1:9201]",
			),
			want: []wantErr{{2, "cannot unmarshal !!seq into string"}},
		},
		{
			name: "wrong type: mapping for remote_write",
			yaml: yamlDoc(
				"remote_write:",
				"  name: a",
			),
			want: []wantErr{{2, "cannot unmarshal !!map"}},
		},
		{
			name: "wrong type: string for an integer",
			yaml: yamlDoc(
				"remote_write:",
				"  - name: a",
				"    url: http://a.example/api/v1/write",
				"    queue_config:",
				"      capacity: lots",
			),
			want: []wantErr{{5, "cannot unmarshal !!str `lots` into int"}},
		},
		{
			name: "bad duration",
			yaml: yamlDoc(
				"listen_address: 127.0.0.1:9201",
				"shutdown_timeout: soon",
			),
			want: []wantErr{{2, `not a valid duration string: "soon"`}},
		},
		{
			name: "YAML syntax error",
			yaml: yamlDoc(
				"wal:",
				"  sync: always",
				"  when_full: drop_oldest: now",
			),
			want: []wantErr{{3, "mapping values are not allowed in this context"}},
		},
		{
			name: "missing url",
			yaml: yamlDoc(
				"remote_write:",
				"  - name: a",
				"    remote_timeout: 5s",
			),
			want: []wantErr{{2, "remote_write[0] (a): url is required"}},
		},
		{
			name: "bad url scheme",
			yaml: yamlDoc(
				"remote_write:",
				"  - name: a",
				"    url: ftp://a.example/api/v1/write",
			),
			want: []wantErr{{3, `url "ftp://a.example/api/v1/write": scheme must be http or https`}},
		},
		{
			name: "url without host",
			yaml: yamlDoc(
				"remote_write:",
				"  - name: a",
				"    url: http:///api/v1/write",
			),
			want: []wantErr{{3, "host is missing"}},
		},
		{
			name: "duplicate endpoint names",
			yaml: yamlDoc(
				"remote_write:",
				"  - name: a",
				"    url: http://a.example/api/v1/write",
				"  - name: a",
				"    url: http://b.example/api/v1/write",
			),
			want: []wantErr{{4, `remote_write[1] (a): name "a" is already used by remote_write[0]`}},
		},
		{
			name: "unnamed endpoints with the same url",
			yaml: yamlDoc(
				"remote_write:",
				"  - url: http://a.example/api/v1/write",
				"  - url: http://a.example/api/v1/write",
			),
			want: []wantErr{{3, `remote_write[1] (a.example/api/v1/write): name "a.example/api/v1/write" is already used by remote_write[0]`}},
		},
		{
			name: "bad wal.sync",
			yaml: yamlDoc(
				"wal:",
				"  segment_size: 64MiB",
				"  sync: sometimes",
			),
			want: []wantErr{{3, `wal.sync: "sometimes": must be always or interval`}},
		},
		{
			name: "bad wal.when_full",
			yaml: yamlDoc(
				"wal:",
				"  when_full: explode",
			),
			want: []wantErr{{2, `wal.when_full: "explode": must be drop_oldest or backpressure`}},
		},
		{
			name: "bad wal.compression",
			yaml: yamlDoc(
				"wal:",
				"  compression: lz4",
			),
			want: []wantErr{{2, `wal.compression: "lz4"`}},
		},
		{
			name: "wal.max_size smaller than two segments",
			yaml: yamlDoc(
				"wal:",
				"  segment_size: 64MiB",
				"  max_size: 100MiB",
			),
			want: []wantErr{{3, "wal.max_size: 104857600 bytes: must be 0 (no cap) or at least two segments"}},
		},
		{
			name: "wal.segment_size below 1MiB",
			yaml: yamlDoc(
				"wal:",
				"  segment_size: 512KiB",
			),
			want: []wantErr{{2, "wal.segment_size: 524288 bytes: must be at least 1MiB"}},
		},
		{
			name: "bad size string",
			yaml: yamlDoc(
				"wal:",
				"  sync: always",
				"  max_size: 10XB",
			),
			want: []wantErr{{3, `invalid size "10XB"`}},
		},
		{
			name: "bad start_from",
			yaml: yamlDoc(
				"remote_write:",
				"  - name: a",
				"    url: http://a.example/api/v1/write",
				"    start_from: yesterday",
			),
			want: []wantErr{{4, `start_from "yesterday": must be "oldest" or "now"`}},
		},
		{
			name: "max_shards below min_shards",
			yaml: yamlDoc(
				"remote_write:",
				"  - name: a",
				"    url: http://a.example/api/v1/write",
				"    queue_config:",
				"      min_shards: 5",
				"      max_shards: 2",
			),
			want: []wantErr{{6, "queue_config.max_shards (2) must be at least min_shards (5)"}},
		},
		{
			name: "bad relabel action",
			yaml: yamlDoc(
				"remote_write:",
				"  - name: a",
				"    url: http://a.example/api/v1/write",
				"    write_relabel_configs:",
				"      - action: nope",
			),
			want: []wantErr{{5, `unknown relabel action "nope"`}},
		},
		{
			name: "bad name_validation",
			yaml: yamlDoc(
				"receiver:",
				"  name_validation: ascii",
			),
			want: []wantErr{{2, `receiver.name_validation: "ascii": must be legacy or utf8`}},
		},
		{
			name: "several validation problems",
			yaml: yamlDoc(
				"listen_address: 127.0.0.1:9201", // 1
				"wal:",                           // 2
				"  sync: sometimes",              // 3
				"  when_full: explode",           // 4
				"remote_write:",                  // 5
				"  - name: a",                    // 6
				"    url: ftp://a.example/",      // 7
				"  - name: b",                    // 8
				"    url: http://b.example/",     // 9
				"    start_from: later",          // 10
				"  - name: a",                    // 11
				"    url: http://c.example/",     // 12
			),
			want: []wantErr{
				{3, "wal.sync"},
				{4, "wal.when_full"},
				{7, "remote_write[0] (a): url"},
				{10, "remote_write[1] (b): start_from"},
				{11, `remote_write[2] (a): name "a" is already used`},
			},
		},
		{
			name: "several decoding problems",
			yaml: yamlDoc(
				"listen_address: [a]", // 1
				"foo: 1",              // 2
				"wal:",                // 3
				"  max_size: 10XB",    // 4
				"  segment_size: 1ZB", // 5
				"  bar: 2",            // 6
			),
			want: []wantErr{
				{1, "cannot unmarshal !!seq into string"},
				{2, `unknown key "foo"`},
				{4, `invalid size "10XB"`},
				{5, `invalid size "1ZB"`},
				{6, `unknown key "bar"`},
			},
		},
		{
			name: "bad tenant",
			yaml: yamlDoc(
				"remote_write:",                            // 1
				"  - name: a",                              // 2
				"    url: http://a.example/api/v1/push",    // 3
				"    headers: {x-scope-orgid: fixed}",      // 4
				"    tenant:",                              // 5
				"      label: __tenant",                    // 6
				"      default: \"a\\nb\"",                 // 7
				"  - name: b",                              // 8
				"    url: http://b.example/api/v1/push",    // 9
				"    tenant: {label: team, header: X Org}", // 10
				"  - name: c",                              // 11
				"    url: http://c.example/api/v1/push",    // 12
				"    tenant: {header: X-Org}",              // 13
			),
			want: []wantErr{
				{6, `remote_write[0] (a): tenant.label "__tenant": must be a label name, not starting with __`},
				{7, `remote_write[0] (a): tenant.default "a\nb": a header value cannot hold control characters`},
				{4, "remote_write[0] (a): headers set x-scope-orgid, the tenant header"},
				{10, `remote_write[1] (b): tenant.header "X Org": not a valid HTTP header name`},
				{13, `remote_write[2] (c): tenant.label "": must be a label name`},
			},
		},
		{
			name: "the same bad size twice",
			yaml: yamlDoc(
				"receiver:",
				"  max_request_bytes: 1XB",
				"wal:",
				"  max_size: 1XB",
			),
			want: []wantErr{{2, `invalid size "1XB"`}, {4, `invalid size "1XB"`}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErrors(t, parseErrors(t, tc.yaml, "ferry.yml"), "ferry.yml", tc.want)
		})
	}
}

func TestConfigErrorsFormat(t *testing.T) {
	errs := ConfigErrors{
		{File: "a.yml", Line: 3, Msg: "first"},
		{File: "a.yml", Msg: "no line"},
	}
	if got, want := errs.Error(), "a.yml:3: first\na.yml: no line"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	t.Run("valid file", func(t *testing.T) {
		// The files the endpoints read must exist and be usable.
		certFile, _, _ := selfSigned(t, dir)
		password := filepath.Join(dir, "password")
		if err := os.WriteFile(password, []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		conf := strings.NewReplacer("/etc/ferry/password", password, "/etc/ferry/ca.pem", certFile).Replace(string(fullConfig))
		path := filepath.Join(dir, "ok.yml")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfigFile(path)
		if err != nil {
			t.Fatalf("LoadConfigFile: %v", err)
		}
		if len(cfg.RemoteWrite) != 2 {
			t.Errorf("got %d endpoints, want 2", len(cfg.RemoteWrite))
		}
	})
	t.Run("errors name the path", func(t *testing.T) {
		path := filepath.Join(dir, "bad.yml")
		if err := os.WriteFile(path, yamlDoc("wal:", "  sync: never"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfigFile(path)
		var ces ConfigErrors
		if !errors.As(err, &ces) {
			t.Fatalf("error %v is %T, want ConfigErrors", err, err)
		}
		checkErrors(t, ces, path, []wantErr{{2, "wal.sync"}})
	})
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(dir, "missing.yml")
		_, err := LoadConfigFile(path)
		var ces ConfigErrors
		if !errors.As(err, &ces) {
			t.Fatalf("error %v is %T, want ConfigErrors", err, err)
		}
		if got, want := err.Error(), path+": read: no such file or directory"; got != want {
			t.Errorf("error = %q, want %q", got, want)
		}
		checkErrors(t, ces, path, []wantErr{{0, "no such file"}})
	})
}

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Bytes
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "512", want: 512},
		{in: "512B", want: 512},
		{in: "1KB", want: 1000},
		{in: "1KiB", want: 1024},
		{in: "64MiB", want: 64 << 20},
		{in: "512MB", want: 512e6},
		{in: "1.5GiB", want: 3 << 29},
		{in: "10GiB", want: 10 << 30},
		{in: "2TB", want: 2e12},
		{in: "1TiB", want: 1 << 40},
		{in: " 10 GiB ", want: 10 << 30},
		{in: "10XB", wantErr: true},
		{in: "", wantErr: true},
		{in: "GiB", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "1e3", wantErr: true},
		{in: "1.2.3MB", wantErr: true},
		{in: "ten", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBytes(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseBytes(%q) = %d, want an error", tc.in, got)
				}
				if !strings.Contains(err.Error(), "invalid size") {
					t.Errorf("error %q does not say what is wrong", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBytes(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseBytes(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestLoadConfigFileChecksScrapeConfigFiles(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "ferry.yml")
	if err := os.WriteFile(main, []byte("listen_address: 127.0.0.1:9201\nscrape_config_files: [scrape.d/*.yml]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "scrape.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(dir, "scrape.d", "a.yml")
	write := func(s string) {
		if err := os.WriteFile(part, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("scrape_configs:\n  - job_name: x\n    static_configs: [{targets: ['a:1']}]\n")
	cfg, err := LoadConfigFile(main)
	if err != nil {
		t.Fatal(err)
	}
	if scfgs, err := cfg.Scrape.GetScrapeConfigs(); err != nil || len(scfgs) != 1 || scfgs[0].JobName != "x" {
		t.Fatalf("scrape configs from the file: %v, %v", scfgs, err)
	}
	write("scrape_configs:\n  - job_name: x\n    scrape_intervall: 5s\n")
	_, err = LoadConfigFile(main)
	if err == nil || !strings.Contains(err.Error(), ":2: scrape_config_files: ") || !strings.Contains(err.Error(), "scrape_intervall") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a bad scrape config file: %v; want one line naming it at line 2", err)
	}
}
