package agent

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// TestRunFailsCleanlyWhenAnEndpointCannotStart checks that an endpoint that
// cannot be built (here its CA file is missing; `check config` reports that
// too, but a file may vanish between check and start) makes Run return an
// error that names it, without a panic from closing the state database
// twice.
func TestRunFailsCleanlyWhenAnEndpointCannotStart(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), `
  - name: secure
    url: https://127.0.0.1:9/api/v1/write
    tls_config:
      ca_file: /nonexistent/ca.pem
`)
	a := New(cfg, Options{Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), Version: "test"})
	err := a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `endpoint "secure"`) || !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
		t.Fatalf("Run: %v, want an error naming the endpoint and its CA file", err)
	}
}
