package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The alerting rules the packages ship pass promtool's checks and their
// unit tests (Debian's prometheus package brings promtool).
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is missing (Debian's prometheus package); .ci/run installs it")
		}
		t.Skip("promtool is not installed")
	}
	dir := filepath.Join("..", "packaging", "monitoring")
	for _, args := range [][]string{{"check", "rules", "ferry-alerts.yml"}, {"test", "rules", "ferry-alerts.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
