package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMakeVersionIsPackageVersion checks that `make build` links the
// version packaging/version.sh prints, the one packaging/build.sh links into
// the packaged binary, so both binaries report the same `ferry version`.
// It reads the commands `make -n` would run and builds nothing.
func TestMakeVersionIsPackageVersion(t *testing.T) {
	for _, tool := range []string{"make", "git", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s on PATH", tool)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ldVersion := regexp.MustCompile(`-X main\.version=(\S+?)'?(\s|$)`)
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"this tree", nil},
		// version.sh's test hooks stand in for git: a dirty tree four
		// commits after a tag, and an untagged dirty tree.
		{"after a tag, dirty", []string{"FERRY_GIT_DESCRIBE=v1.2.3-4-gabc1234-dirty", "FERRY_GIT_TIME="}},
		{"untagged", []string{"FERRY_GIT_DESCRIBE=abc1234-dirty", "FERRY_GIT_TIME=20261122053000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := func(name string, args ...string) string {
				t.Helper()
				cmd := exec.Command(name, args...)
				cmd.Dir = root
				for _, kv := range os.Environ() {
					switch k, _, _ := strings.Cut(kv, "="); k {
					case "VERSION", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "FERRY_GIT_DESCRIBE", "FERRY_GIT_TIME":
					default:
						cmd.Env = append(cmd.Env, kv)
					}
				}
				cmd.Env = append(cmd.Env, tc.env...)
				out, err := cmd.Output()
				if err != nil {
					var stderr []byte
					if ee, ok := err.(*exec.ExitError); ok {
						stderr = ee.Stderr
					}
					t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr)
				}
				return string(out)
			}
			want := strings.TrimSpace(run("sh", "packaging/version.sh"))
			if want == "" {
				t.Fatal("packaging/version.sh printed nothing")
			}

			dry := run("make", "-n", "build")
			m := ldVersion.FindStringSubmatch(dry)
			if m == nil {
				t.Fatalf("`make -n build` links no main.version:\n%s", dry)
			}
			if m[1] != want {
				t.Errorf("`make build` links main.version=%s, packaging/version.sh prints %s", m[1], want)
			}
			if got := strings.TrimSpace(run("make", "-s", "print-version")); got != want {
				t.Errorf("`make print-version` prints %q, packaging/version.sh %q", got, want)
			}
		})
	}
}
