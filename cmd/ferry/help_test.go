package main

import (
	"strings"
	"testing"
)

// TestHelpCommand checks that `ferry help [COMMAND…]` prints what
// `ferry [COMMAND…] --help` prints, and that an unknown command is one line
// on stderr and a non-zero exit.
func TestHelpCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string // after "help"
	}{
		{"top level", nil},
		{"run", []string{"run"}},
		{"check config", []string{"check", "config"}},
		{"wal", []string{"wal"}},
		{"wal inspect", []string{"wal", "inspect"}},
		{"version", []string{"version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := ferry(t, append(append([]string{}, tc.args...), "--help")...)
			if want.code != 0 || want.stdout == "" {
				t.Fatalf("ferry %s --help: exit code %d, stdout %q, stderr %q", strings.Join(tc.args, " "), want.code, want.stdout, want.stderr)
			}
			r := ferry(t, append([]string{"help"}, tc.args...)...)
			if r.code != 0 {
				t.Errorf("exit code %d, want 0; stderr:\n%s", r.code, r.stderr)
			}
			if r.stderr != "" {
				t.Errorf("stderr = %q, want nothing", r.stderr)
			}
			if r.stdout != want.stdout {
				t.Errorf("stdout:\n%s\nwant what `ferry %s --help` prints:\n%s", r.stdout, strings.Join(tc.args, " "), want.stdout)
			}
		})
	}

	for _, tc := range []struct {
		name    string
		args    []string // after "help"
		unknown string   // the command the error must name
	}{
		{"unknown command", []string{"nosuch"}, `"nosuch"`},
		{"unknown subcommand", []string{"wal", "nosuch"}, `"wal nosuch"`},
		{"argument of a leaf", []string{"run", "extra"}, `"run extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ferry(t, append([]string{"help"}, tc.args...)...)
			if r.code == 0 {
				t.Errorf("exit code 0, want non-zero")
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if got := lines(r.stderr); len(got) != 1 || !strings.HasPrefix(got[0], "ferry: ") || !strings.Contains(got[0], tc.unknown) {
				t.Errorf("stderr = %q, want one line \"ferry: …\" naming %s", r.stderr, tc.unknown)
			}
		})
	}
}
