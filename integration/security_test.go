package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// pki is a test CA with a server certificate for 127.0.0.1 and a client
// certificate, all written as PEM files.
type pki struct {
	dir                           string
	caFile, serverCert, serverKey string
	clientCert, clientKey         string
	pool                          *x509.CertPool
	client                        tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ferry test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(caCert)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kb)
	}
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	if p.client, err = tls.LoadX509KeyPair(p.clientCert, p.clientKey); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A real Prometheus that requires TLS client certificates and basic auth
// receives from Ferry, whose endpoint uses tls_config (CA, client cert) and
// basic_auth.password_file. The password appears neither in Ferry's log nor
// in its /metrics.
func TestEndpointTLSClientCertAndBasicAuthAgainstPrometheus(t *testing.T) {
	requireIntegration(t)
	p := newPKI(t)
	const password = "s3cret-endpoint-pa55"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webYML := filepath.Join(p.dir, "web.yml")
	if err := os.WriteFile(webYML, fmt.Appendf(nil, `tls_server_config:
  cert_file: %s
  key_file: %s
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: %s
basic_auth_users:
  ferry: %s
`, p.serverCert, p.serverKey, p.caFile, hash), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(p.dir, "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	prom := &proc{t: t, name: "prometheus tls", bin: lookBinary(t, "prometheus", "prometheus"), keep: 256 << 10}
	cfg := filepath.Join(p.dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global: {scrape_interval: 15s}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prom.args = []string{"--config.file=" + cfg, "--web.listen-address=" + addr, "--web.config.file=" + webYML,
		"--web.enable-remote-write-receiver", "--storage.tsdb.path=" + filepath.Join(p.dir, "data")}
	prom.start()
	t.Cleanup(func() { prom.stop(30 * time.Second) })
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}}}}
	query := func(q string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/api/v1/query?"+url.Values{"query": {q}}.Encode(), nil)
		req.SetBasicAuth("ferry", password)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var r struct {
			Data struct{ Result []json.RawMessage }
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return 0, err
		}
		return len(r.Data.Result), nil
	}
	waitUntil(t, 60*time.Second, func() bool { _, err := query("up"); return err == nil })
	// Without a client certificate Prometheus refuses the connection.
	if resp, err := http.Post("https://"+addr+"/api/v1/write", "application/x-protobuf", strings.NewReader("x")); err == nil {
		resp.Body.Close()
		t.Fatal("Prometheus accepted a write without a client certificate")
	}

	f := newFerry(t, "", fmt.Sprintf(`secure=https://%s/api/v1/write|tls_config: {ca_file: %s, cert_file: %s, key_file: %s}
basic_auth: {username: ferry, password_file: %s}`, addr, p.caFile, p.clientCert, p.clientKey, pwFile))
	f.start()
	push := newPusher(f.addr, 20)
	push.pushRounds(t, time.Now().Add(-time.Minute).UnixMilli(), time.Now().Add(-time.Minute).UnixMilli()+2, 20)
	waitUntil(t, 60*time.Second, func() bool {
		n, err := query(`count_over_time(e2e_metric[10m])`)
		return err == nil && n == 20
	})
	if failed := f.metric("ferry_sender_samples_failed_total"); failed != 0 {
		t.Fatalf("%v samples refused by the TLS endpoint", failed)
	}
	resp, err := http.Get("http://" + f.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for what, text := range map[string]string{"log": f.logText(), "/metrics": string(metrics)} {
		if strings.Contains(text, password) {
			t.Fatalf("the endpoint password appears in Ferry's %s", what)
		}
	}
	f.stop()
}
