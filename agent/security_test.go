package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir and
// returns their paths and a pool trusting it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ferry-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// observedAgent starts an agent whose log is recorded.
func observedAgent(t *testing.T, cfg *Config) (*runningAgent, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	a := New(cfg, Options{Logger: zap.New(core), Version: "test", Load: func() (*Config, error) { return cfg, nil }})
	ra := runAgent(t, a)
	return ra, logs
}

func secretsIn(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("secret %q leaked into %q…", s, text[:min(len(text), 200)])
		}
	}
}

func TestReceiverBearerToken(t *testing.T) {
	dir := t.TempDir()
	const token = "s3cr3t-t0ken-value"
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "ferry.yml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, "listen_address: 127.0.0.1:0\ndata_dir: %s\nreceiver:\n  bearer_token_file: token\nremote_write: []\n",
		filepath.Join(dir, "data")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfigFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ra, logs := observedAgent(t, cfg)
	body := snappyBody(t, ts([]string{"__name__", "up"}, prompb.Sample{Value: 1, Timestamp: 1}))
	post := func(auth string) (int, http.Header) {
		req, _ := http.NewRequest(http.MethodPost, ra.base+"/api/v1/write", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := ra.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	for _, auth := range []string{"", "Bearer wrong", "Basic " + token, "Bearer " + token + "x"} {
		if code, hdr := post(auth); code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: %d (WWW-Authenticate %q), want 401", auth, code, hdr.Get("WWW-Authenticate"))
		}
	}
	if n := ra.metric(t, "ferry_wal_samples_appended_total"); n != 0 {
		t.Fatalf("%v samples stored from unauthenticated writes", n)
	}
	if code, _ := post("Bearer " + token); code != http.StatusNoContent {
		t.Fatalf("with the token: %d", code)
	}
	if n := ra.metric(t, "ferry_wal_samples_appended_total"); n != 1 {
		t.Fatalf("%v samples stored, want 1", n)
	}
	_, metrics := ra.do(t, http.MethodGet, "/metrics", nil)
	secretsIn(t, metrics, token)
	for _, e := range logs.All() {
		secretsIn(t, fmt.Sprint(e.Message, e.ContextMap()), token)
	}
}

func TestReceiverTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	const password = "pa55-w0rd-value"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webYML := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webYML, fmt.Appendf(nil, "tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  ferry: %s\n",
		certFile, keyFile, hash), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.WebConfigFile = webYML
	ra, logs := observedAgent(t, cfg)
	base := "https://" + ra.Addr()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	body := snappyBody(t, ts([]string{"__name__", "up"}, prompb.Sample{Value: 1, Timestamp: 1}))
	do := func(method, path string, user, pass string, body []byte) (int, string) {
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + ra.Addr() + "/-/healthy"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered 200 with TLS configured")
		}
	}
	for _, c := range []struct{ user, pass string }{{"", ""}, {"ferry", "wrong"}, {"other", password}} {
		if code, _ := do(http.MethodPost, "/api/v1/write", c.user, c.pass, body); code != http.StatusUnauthorized {
			t.Errorf("user %q: %d, want 401", c.user, code)
		}
	}
	code, metrics := do(http.MethodGet, "/metrics", "ferry", password, nil)
	if code != http.StatusOK {
		t.Fatalf("/metrics with credentials: %d", code)
	}
	if !strings.Contains(metrics, "ferry_wal_samples_appended_total 0") {
		t.Fatal("unauthenticated writes were stored")
	}
	if code, msg := do(http.MethodPost, "/api/v1/write", "ferry", password, body); code != http.StatusNoContent {
		t.Fatalf("authenticated write: %d %s", code, msg)
	}
	_, metrics = do(http.MethodGet, "/metrics", "ferry", password, nil)
	if !strings.Contains(metrics, "ferry_wal_samples_appended_total 1") {
		t.Fatal("authenticated write not stored")
	}
	secretsIn(t, metrics, password, string(hash))
	for _, e := range logs.All() {
		secretsIn(t, fmt.Sprint(e.Message, e.ContextMap()), password, string(hash))
	}
}

func TestCheckConfigValidatesWebConfigAndToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.yml"), []byte("tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty-token"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "ferry.yml")
	if err := os.WriteFile(cfgPath, []byte("web_config_file: web.yml\nreceiver:\n  bearer_token_file: empty-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfigFile(cfgPath)
	ces, ok := err.(ConfigErrors)
	if !ok || len(ces) != 2 {
		t.Fatalf("got %v, want two errors", err)
	}
	if ces[0].Line != 1 || !strings.Contains(ces[0].Msg, "web_config_file") || ces[1].Line != 3 || !strings.Contains(ces[1].Msg, "empty") {
		t.Fatalf("errors: %+v", ces)
	}
}
