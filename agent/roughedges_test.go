package agent

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestMethodNotAllowedSetsAllow checks that every 405 names the methods the
// path accepts in Allow, as RFC 9110 section 15.5.6 requires.
func TestMethodNotAllowedSetsAllow(t *testing.T) {
	ra := startAgent(t, testConfig(t, t.TempDir()), nil)
	for _, c := range []struct {
		name, method, path, allow string
	}{
		{"write_get", http.MethodGet, "/api/v1/write", "POST"},
		{"write_put", http.MethodPut, "/api/v1/write", "POST"},
		{"reload_get", http.MethodGet, "/-/reload", "POST, PUT"},
		{"healthy_post", http.MethodPost, "/-/healthy", "GET, HEAD"},
		{"ready_delete", http.MethodDelete, "/-/ready", "GET, HEAD"},
		{"targets_api_post", http.MethodPost, "/api/v1/targets", "GET, HEAD"},
		{"targets_page_put", http.MethodPut, "/targets", "GET, HEAD"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, ra.base+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := ra.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != c.allow {
				t.Errorf("%s %s: status %d, Allow %q; want 405, Allow %q",
					c.method, c.path, resp.StatusCode, resp.Header.Get("Allow"), c.allow)
			}
		})
	}
	// The health endpoints still answer what they accept.
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		for _, path := range []string{"/-/healthy", "/-/ready"} {
			if code, _ := ra.do(t, method, path, nil); code != http.StatusOK {
				t.Errorf("%s %s: %d, want 200", method, path, code)
			}
		}
	}
}

// TestStartLogsListeningOnce checks that start logs one line about
// listening, Ferry's own, naming the address and whether TLS is on, and
// that exporter-toolkit's errors still reach the log.
func TestStartLogsListeningOnce(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	plainYML, tlsYML := filepath.Join(dir, "plain.yml"), filepath.Join(dir, "tls.yml")
	if err := os.WriteFile(plainYML, []byte("http_server_config:\n  http2: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tlsYML, []byte("tls_server_config:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		webConfig string
		tls       bool
	}{
		{"no_web_config", "", false},
		{"web_config_without_tls", plainYML, false},
		{"web_config_with_tls", tlsYML, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir())
			cfg.WebConfigFile = c.webConfig
			ra, logs := observedAgent(t, cfg)
			scheme := "http"
			client := ra.client
			if c.tls {
				scheme = "https"
				client = &http.Client{Timeout: 10 * time.Second,
					Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
				defer client.CloseIdleConnections()
			}
			get := func() int {
				resp, err := client.Get(scheme + "://" + ra.Addr() + "/-/healthy")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			// An answer means web.Serve is past its own start logging.
			if code := get(); code != http.StatusOK {
				t.Fatalf("GET /-/healthy: %d", code)
			}
			var listening []observer.LoggedEntry
			for _, e := range logs.All() {
				if strings.Contains(strings.ToLower(e.Message), "listening") {
					listening = append(listening, e)
				}
				if strings.HasPrefix(e.Message, "TLS is") {
					t.Errorf("exporter-toolkit's %q logged at %s", e.Message, e.Level)
				}
			}
			if len(listening) != 1 {
				var msgs []string
				for _, e := range listening {
					msgs = append(msgs, e.LoggerName+": "+e.Message)
				}
				t.Fatalf("%d lines about listening, want 1: %q", len(listening), msgs)
			}
			fields := listening[0].ContextMap()
			if fields["address"] != ra.Addr() || fields["tls"] != c.tls {
				t.Errorf("listening line %q %v: want address %s, tls %v", listening[0].Message, fields, ra.Addr(), c.tls)
			}
			if c.webConfig != plainYML {
				return
			}
			// exporter-toolkit re-reads the web config on each request and
			// logs an error when it cannot: that still reaches the log.
			if err := os.WriteFile(plainYML, []byte("http_server_config: [\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if code := get(); code != http.StatusInternalServerError {
				t.Errorf("GET with a broken web config: %d, want 500", code)
			}
			if n := logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessage("Unable to parse configuration").Len(); n != 1 {
				t.Errorf("%d exporter-toolkit errors logged, want 1", n)
			}
		})
	}
}
