package agent

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every Ferry metric the shipped alerting rules use is one Ferry exports,
// with an endpoint that has sent something.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	rules, err := os.ReadFile("../packaging/monitoring/ferry-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	e := newFakeEndpoint(t)
	ra := startAgent(t, testConfig(t, t.TempDir(), endpointYAML("a", e, "oldest")), nil)
	ra.push(t, "s")
	waitFor(t, "a to receive the push", func() bool { return e.received("s") })
	waitFor(t, "the lag to be exported", func() bool { return ra.metric(t, `ferry_sender_lag_seconds{endpoint="a"}`) >= 0 })
	_, text := ra.do(t, http.MethodGet, "/metrics", nil)
	names := regexp.MustCompile(`\bferry_[a-z_]+\b`).FindAllString(string(rules), -1)
	if len(names) < 10 {
		t.Fatalf("only %d metric names found in the rules", len(names))
	}
	for _, n := range names {
		if n == "ferry_build_info" { // registered by the command, not the agent
			continue
		}
		if !strings.Contains(text, "\n# TYPE "+n+" ") {
			t.Errorf("the rules use %s, which /metrics does not export", n)
		}
	}
}
