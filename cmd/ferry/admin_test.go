package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ferrymetrics/ferry/agent"
	"github.com/ferrymetrics/ferry/sender"
	"github.com/ferrymetrics/ferry/wal"
)

// adminDataDir makes a stopped agent's data dir: a WAL of 3 samples, and
// endpoint a's checkpoint at its start. It returns the config file.
func adminDataDir(t *testing.T) (cfgFile, data string) {
	t.Helper()
	dir := t.TempDir()
	data = filepath.Join(dir, "data")
	writeTestWAL(t, filepath.Join(data, "wal"))
	db, err := pebble.Open(filepath.Join(data, "state"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := (sender.PebbleCheckpoints{DB: db}).Save("a", sender.WALCursor(wal.Position{})); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	cfgFile = filepath.Join(dir, "ferry.yml")
	conf := "data_dir: " + data + "\nremote_write:\n  - name: a\n    url: http://127.0.0.1:1/api/v1/write\n"
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgFile, data
}

func TestEndpointCommands(t *testing.T) {
	cfg, data := adminDataDir(t)
	row := func() []string {
		t.Helper()
		r := ferry(t, "endpoint", "list", "-c", cfg)
		ls := lines(r.stdout)
		if r.code != 0 || len(ls) != 2 || !strings.HasPrefix(ls[0], "ENDPOINT") {
			t.Fatalf("endpoint list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		return strings.Fields(ls[1])
	}
	if f := row(); f[0] != "a" || f[1] != "true" || f[3] != "3" {
		t.Fatalf("before: %q, want a with a backlog of 3 samples", f)
	}
	r := ferry(t, "endpoint", "skip", "a", "--to", "head", "-c", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "3 samples given up") || !strings.Contains(r.stderr, "backlog skipped") {
		t.Fatalf("skip: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if f := row(); f[3] != "0" {
		t.Fatalf("after skip: %q, want no backlog", f)
	}
	r = ferry(t, "endpoint", "rewind", "a", "--to", "oldest", "-c", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "3 samples to send again") {
		t.Fatalf("rewind: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if f := row(); f[3] != "3" {
		t.Fatalf("after rewind: %q, want a backlog of 3", f)
	}
	r = ferry(t, "endpoint", "rewind", "b", "--to", "oldest", "-c", cfg)
	if r.code != 1 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, `no endpoint "b"`) {
		t.Fatalf("rewind of an unknown endpoint: exit %d\n%s", r.code, r.stderr)
	}

	// While a Ferry holds the data dir, every admin command refuses.
	lock, err := agent.LockDataDir(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"endpoint", "list"}, {"endpoint", "skip", "a", "--to", "head"}, {"wal", "verify"}} {
		r := ferry(t, append(args, "-c", cfg)...)
		if r.code != 1 || !strings.Contains(r.stderr, "data dir is in use by process") {
			t.Errorf("%s on a held data dir: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	if err := lock.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestWALVerify(t *testing.T) {
	cfg, data := adminDataDir(t)
	r := ferry(t, "wal", "verify", "-c", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "every record intact") {
		t.Fatalf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Damage the first record's checksum.
	seg := filepath.Join(data, "wal", "00000000")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[3] ^= 0xff
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r = ferry(t, "wal", "verify", "-c", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "WAL damage: segment 00000000") {
		t.Fatalf("verify of a damaged WAL: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
