package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/prometheus/prometheus/prompb"
	yamlv2 "go.yaml.in/yaml/v2"
)

// hermeticCloudEnv keeps the cloud SDKs to what a test configures: no AWS
// shared files or instance metadata, no Azure managed identity but the
// test's, no Google default credentials.
func hermeticCloudEnv(t *testing.T) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":                none,
		"AWS_SHARED_CREDENTIALS_FILE":    none,
		"AWS_EC2_METADATA_DISABLED":      "true",
		"AWS_ACCESS_KEY_ID":              "",
		"AWS_SECRET_ACCESS_KEY":          "",
		"AWS_SESSION_TOKEN":              "",
		"AWS_PROFILE":                    "",
		"AWS_REGION":                     "",
		"AWS_DEFAULT_REGION":             "",
		"IDENTITY_ENDPOINT":              "",
		"IDENTITY_HEADER":                "",
		"IDENTITY_SERVER_THUMBPRINT":     "",
		"IMDS_ENDPOINT":                  "",
		"MSI_ENDPOINT":                   "",
		"MSI_SECRET":                     "",
		"GOOGLE_APPLICATION_CREDENTIALS": none,
		"GCE_METADATA_HOST":              "127.0.0.1:1",
	} {
		t.Setenv(k, v)
	}
}

// loadEndpoint writes a configuration with one remote_write entry (its
// lines indented as under "  - ") to a file in dir, loads it as `ferry
// run` and `ferry check config` do, and returns the entry and the sender
// configuration (and so the HTTP client) Ferry builds for it.
func loadEndpoint(t *testing.T, dir string, entry ...string) (RemoteWriteConfig, *http.Client) {
	t.Helper()
	path := filepath.Join(dir, "ferry.yml")
	y := "remote_write:\n  - " + strings.Join(entry, "\n    ") + "\n"
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfigFile(path)
	if err != nil {
		t.Fatalf("load:\n%s\n%v", y, err)
	}
	sc, err := cfg.RemoteWrite[0].senderConfig("ferry/test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sc.Client.CloseIdleConnections)
	return cfg.RemoteWrite[0], sc.Client
}

// send posts a Remote-Write body through client and returns the status.
func send(t *testing.T, client *http.Client, url string) int {
	t.Helper()
	body := snappyBody(t, ts([]string{"__name__", "ferry_test", "step", "auth"}, prompb.Sample{Value: 1, Timestamp: time.Now().UnixMilli()}))
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// bearerReceiver answers 204 and records the Authorization header of each
// request.
type bearerReceiver struct {
	srv *httptest.Server

	mu   sync.Mutex
	auth []string
}

func newBearerReceiver(t *testing.T) *bearerReceiver {
	b := &bearerReceiver{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.auth = append(b.auth, r.Header.Get("Authorization"))
		b.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *bearerReceiver) authorizations() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.auth)
}

// SigV4 test credentials and scope.
const (
	sigv4AccessKey = "AKIDFERRYTEST"
	sigv4SecretKey = "ferry-test-secret"
	sigv4Region    = "eu-west-1"
	sigv4Service   = "aps"
)

// verifySigV4 checks r's AWS Signature Version 4 as AWS does: it signs,
// with AWS' own signer, a request made of what r says was signed (the
// SignedHeaders of its Authorization header, its X-Amz-Date), the body
// received and the test's credentials, region and service, and compares
// the Authorization headers.
func verifySigV4(r *http.Request, body []byte) error {
	got := r.Header.Get("Authorization")
	params, ok := strings.CutPrefix(got, "AWS4-HMAC-SHA256 ")
	if !ok {
		return fmt.Errorf("authorization %q: not AWS4-HMAC-SHA256", got)
	}
	var signed []string
	for _, p := range strings.Split(params, ", ") {
		if v, ok := strings.CutPrefix(p, "SignedHeaders="); ok {
			signed = strings.Split(v, ";")
		}
	}
	for _, h := range []string{"host", "content-type", "content-encoding", "x-amz-date"} {
		if !slices.Contains(signed, h) {
			return fmt.Errorf("signed headers %v lack %s", signed, h)
		}
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("x-amz-date: %w", err)
	}
	if d := time.Since(when); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("signed at %s, too far from now", when)
	}
	req, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(body))
	for _, h := range signed {
		if h != "host" && h != "content-length" {
			req.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: sigv4AccessKey, SecretAccessKey: sigv4SecretKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), sigv4Service, sigv4Region, when); err != nil {
		return err
	}
	if want := req.Header.Get("Authorization"); got != want {
		return fmt.Errorf("signature mismatch:\n got  %s\n want %s", got, want)
	}
	return nil
}

// capturedRequest is a request as a receiver got it.
type capturedRequest struct {
	header http.Header
	body   []byte
}

// Ferry signs what it sends to a sigv4 endpoint: a receiver that checks
// signatures with AWS' signer accepts Ferry's requests and the samples
// they carry, and refuses the same request with its body or a signed
// header changed, signed with another key, or unsigned.
func TestSigV4SignsWhatFerrySends(t *testing.T) {
	hermeticCloudEnv(t)
	e := &fakeEndpoint{t: t, steps: map[string]int{}}
	var (
		mu       sync.Mutex
		accepted []capturedRequest
	)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := verifySigV4(r, body); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		mu.Lock()
		accepted = append(accepted, capturedRequest{r.Header.Clone(), body})
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		e.serve(w, r)
	}))
	t.Cleanup(e.srv.Close)

	cfg := testConfig(t, t.TempDir(), endpointYAML("amp", e, StartOldest)+fmt.Sprintf(`    sigv4:
      region: %s
      access_key: %s
      secret_key: %s
`, sigv4Region, sigv4AccessKey, sigv4SecretKey))
	ra := startAgent(t, cfg, nil)
	ra.push(t, "signed")
	waitFor(t, "the signed samples to be accepted", func() bool { return e.received("signed") })

	mu.Lock()
	sent := accepted[0]
	mu.Unlock()
	if got := sent.header.Get("Authorization"); !strings.Contains(got, "Credential="+sigv4AccessKey+"/") || !strings.Contains(got, "/"+sigv4Region+"/"+sigv4Service+"/aws4_request") {
		t.Errorf("authorization %q: want the access key, region and service", got)
	}

	// Ferry's request replayed as it was, then altered.
	otherKey := func(t *testing.T, h http.Header, body []byte) {
		req, err := http.NewRequest(http.MethodPost, e.url(), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		sum := sha256.Sum256(body)
		creds := aws.Credentials{AccessKeyID: sigv4AccessKey, SecretAccessKey: "another-secret"}
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), sigv4Service, sigv4Region, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, h http.Header, body []byte)
		want   int
	}{
		{"as_sent", func(*testing.T, http.Header, []byte) {}, http.StatusNoContent},
		{"body_changed", func(_ *testing.T, _ http.Header, body []byte) { body[len(body)-1] ^= 0xff }, http.StatusForbidden},
		{"signed_header_changed", func(_ *testing.T, h http.Header, _ []byte) { h.Set("X-Prometheus-Remote-Write-Version", "9.9.9") }, http.StatusForbidden},
		{"other_key", otherKey, http.StatusForbidden},
		{"unsigned", func(_ *testing.T, h http.Header, _ []byte) { h.Del("Authorization") }, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, body := sent.header.Clone(), bytes.Clone(sent.body)
			tc.change(t, h, body)
			req, err := http.NewRequest(http.MethodPost, e.url(), bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header = h
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, bytes.TrimSpace(msg), tc.want)
			}
		})
	}
}

// azuread's managed identity gets its token from the endpoint the
// platform names in IDENTITY_ENDPOINT (Azure App Service and Functions),
// here a local one, and the endpoint receives it as a bearer token.
// azuread's oauth, sdk, workload_identity and certificate methods ask
// Microsoft Entra ID at login.microsoftonline.com (or the sovereign
// clouds' hosts), which the configuration cannot point elsewhere: for
// them the tests cover parsing, validation and building the client.
func TestAzureADManagedIdentityToken(t *testing.T) {
	hermeticCloudEnv(t)
	clientID := randomUUID(t)
	const token = "azure-test-token"
	var (
		mu            sync.Mutex
		tokenRequests []string
	)
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		mu.Lock()
		tokenRequests = append(tokenRequests, r.URL.RequestURI())
		mu.Unlock()
		if r.Header.Get("X-IDENTITY-HEADER") != "identity-secret" || q.Get("client_id") != clientID ||
			!strings.HasPrefix(q.Get("resource"), "https://monitor.azure.com") {
			http.Error(w, "unexpected token request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"expires_on":"%d","resource":%q,"token_type":"Bearer","client_id":%q}`,
			token, time.Now().Add(time.Hour).Unix(), q.Get("resource"), clientID)
	}))
	t.Cleanup(tokens.Close)
	t.Setenv("IDENTITY_ENDPOINT", tokens.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "identity-secret")

	recv := newBearerReceiver(t)
	_, client := loadEndpoint(t, t.TempDir(),
		"name: azure",
		"url: "+recv.srv.URL+"/api/v1/write",
		"azuread:",
		"  managed_identity:",
		"    client_id: "+clientID,
	)
	for range 2 {
		if code := send(t, client, recv.srv.URL+"/api/v1/write"); code != http.StatusNoContent {
			t.Fatalf("status %d", code)
		}
	}
	if got, want := recv.authorizations(), []string{"Bearer " + token, "Bearer " + token}; !slices.Equal(got, want) {
		t.Errorf("receiver got Authorization %q, want %q", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tokenRequests) != 1 {
		t.Errorf("token requests %q, want one (the token is reused)", tokenRequests)
	}
}

// google_iam with a service account key file gets its token from the key's
// token_uri (here a local one, which checks the key's signature on the
// assertion and the monitoring.write scope), and the endpoint receives it
// as a bearer token. A relative credentials_file is relative to the
// configuration file.
func TestGoogleIAMServiceAccountToken(t *testing.T) {
	hermeticCloudEnv(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const email = "ferry@ferry-test.iam.gserviceaccount.com"
	const token = "google-test-token"
	var (
		mu        sync.Mutex
		tokenErrs []error
	)
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := checkServiceAccountAssertion(r, &key.PublicKey, email); err != nil {
			mu.Lock()
			tokenErrs = append(tokenErrs, err)
			mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"expires_in":3600,"token_type":"Bearer"}`, token)
	}))
	t.Cleanup(tokens.Close)

	dir := t.TempDir()
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "ferry-test",
		"private_key_id": "ferry-test-key",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})),
		"client_email":   email,
		"client_id":      "1234567890",
		"token_uri":      tokens.URL + "/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.json"), sa, 0o600); err != nil {
		t.Fatal(err)
	}

	recv := newBearerReceiver(t)
	rw, client := loadEndpoint(t, dir,
		"name: google",
		"url: "+recv.srv.URL+"/api/v1/write",
		"google_iam:",
		"  credentials_file: sa.json",
	)
	if want := filepath.Join(dir, "sa.json"); rw.GoogleIAMConfig.CredentialsFile != want {
		t.Errorf("credentials_file %q, want %q", rw.GoogleIAMConfig.CredentialsFile, want)
	}
	if code := send(t, client, recv.srv.URL+"/api/v1/write"); code != http.StatusNoContent {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("status %d (token endpoint: %v)", code, tokenErrs)
	}
	if got := recv.authorizations(); len(got) != 1 || got[0] != "Bearer "+token {
		t.Errorf("receiver got Authorization %q, want %q", got, "Bearer "+token)
	}
}

// checkServiceAccountAssertion checks an OAuth 2.0 JWT bearer grant as
// Google's token endpoint does: signed (RS256) by the service account's
// key, issued by it, for the monitoring.write scope.
func checkServiceAccountAssertion(r *http.Request, pub *rsa.PublicKey, email string) error {
	if g := r.PostForm.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		return fmt.Errorf("grant_type %q", g)
	}
	parts := strings.Split(r.PostForm.Get("assertion"), ".")
	if len(parts) != 3 {
		return errors.New("assertion is not a JWT")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return fmt.Errorf("assertion signature: %w", err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return err
	}
	var claims struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return err
	}
	if claims.Iss != email || !slices.Contains(strings.Fields(claims.Scope), "https://www.googleapis.com/auth/monitoring.write") {
		return fmt.Errorf("claims %s", payload)
	}
	return nil
}

func randomUUID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// An endpoint speaks HTTP/1.1 unless enable_http2 is true, as in
// Prometheus 3's remote_write, even to a server that offers HTTP/2.
func TestRemoteWriteHTTP2OnlyWhenEnabled(t *testing.T) {
	var (
		mu    sync.Mutex
		proto string
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		proto = r.Proto
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"default", nil, "HTTP/1.1"},
		{"enable_http2_false", []string{"enable_http2: false"}, "HTTP/1.1"},
		{"enable_http2_true", []string{"enable_http2: true"}, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rw, client := loadEndpoint(t, dir, append([]string{
				"name: tls",
				"url: " + srv.URL + "/api/v1/write",
				"tls_config:",
				"  ca_file: ca.pem",
			}, tc.extra...)...)
			if !rw.HTTPClientConfig.FollowRedirects {
				t.Error("follow_redirects is false, want Prometheus' default true")
			}
			if code := send(t, client, srv.URL+"/api/v1/write"); code != http.StatusNoContent {
				t.Fatalf("status %d", code)
			}
			mu.Lock()
			defer mu.Unlock()
			if proto != tc.want {
				t.Errorf("request arrived as %s, want %s", proto, tc.want)
			}
		})
	}
}

// With round_robin_dns, requests to an endpoint named by host name are
// still delivered.
func TestRoundRobinDNSDelivers(t *testing.T) {
	recv := newBearerReceiver(t)
	port := listenAll(t, "localhost", recv.srv.Config.Handler)
	url := "http://" + net.JoinHostPort("localhost", port) + "/api/v1/write"
	rw, client := loadEndpoint(t, t.TempDir(),
		"name: rr",
		"url: "+url,
		"round_robin_dns: true",
	)
	if !rw.RoundRobinDNS {
		t.Fatal("round_robin_dns not parsed")
	}
	for range 3 {
		if code := send(t, client, url); code != http.StatusNoContent {
			t.Fatalf("status %d", code)
		}
		client.CloseIdleConnections() // the next request dials again
	}
	if n := len(recv.authorizations()); n != 3 {
		t.Errorf("receiver got %d requests, want 3", n)
	}
}

// listenAll serves h on one port at every address host resolves to (one
// of which round_robin_dns may pick) and returns the port.
func listenAll(t *testing.T, host string, h http.Handler) string {
	t.Helper()
	addrs, err := net.DefaultResolver.LookupHost(context.Background(), host)
	if err != nil || len(addrs) == 0 {
		t.Fatalf("resolve %s: %v", host, err)
	}
	port := "0"
	for _, a := range addrs {
		l, err := net.Listen("tcp", net.JoinHostPort(a, port))
		if err != nil {
			t.Fatalf("listen on %s (every address of %s, one port): %v", a, host, err)
		}
		_, port, _ = net.SplitHostPort(l.Addr().String())
		srv := &http.Server{Handler: h}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	}
	return port
}

// fakeResolver resolves every name to addrs.
type fakeResolver struct {
	addrs []string
	err   error
}

func (f fakeResolver) LookupHost(context.Context, string) ([]string, error) { return f.addrs, f.err }

// round_robin_dns spreads connections over every address of the host,
// keeping the port, and dials an address it cannot resolve as it is.
func TestRoundRobinDial(t *testing.T) {
	var dialled []string
	dial := func(_ context.Context, _, addr string) (net.Conn, error) {
		dialled = append(dialled, addr)
		return nil, errors.New("not dialled in this test")
	}
	addrs := []string{"192.0.2.1", "192.0.2.2", "2001:db8::3"}
	rr := roundRobinDial(fakeResolver{addrs: addrs}, dial)
	counts := map[string]int{}
	for range 300 {
		dialled = nil
		_, _ = rr(context.Background(), "tcp", "receiver.example:9090")
		if len(dialled) != 1 {
			t.Fatalf("dialled %q, want one address", dialled)
		}
		counts[dialled[0]]++
	}
	for _, a := range addrs {
		if n := counts[net.JoinHostPort(a, "9090")]; n < 50 {
			t.Errorf("%s picked %d times of 300, want about 100 (%v)", a, n, counts)
		}
	}

	for _, tc := range []struct {
		name string
		r    fakeResolver
		addr string
	}{
		{"lookup_fails", fakeResolver{err: errors.New("no such host")}, "receiver.example:9090"},
		{"no_addresses", fakeResolver{}, "receiver.example:9090"},
		{"no_port", fakeResolver{addrs: addrs}, "receiver.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dialled = nil
			_, _ = roundRobinDial(tc.r, dial)(context.Background(), "tcp", tc.addr)
			if !slices.Equal(dialled, []string{tc.addr}) {
				t.Errorf("dialled %q, want %q as it is", dialled, tc.addr)
			}
		})
	}
}

// Every key of sigv4, azuread and google_iam parses as in prometheus.yml.
func TestAuthKeysParse(t *testing.T) {
	cfg, err := ParseConfig(yamlDoc(
		"remote_write:",
		"  - name: amp",
		"    url: https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write",
		"    round_robin_dns: true",
		"    sigv4:",
		"      region: eu-west-1",
		"      access_key: AKIDFERRY",
		"      secret_key: secret",
		"      profile: ferry",
		"      role_arn: arn:aws:iam::123456789012:role/ferry",
		"      external_id: ext",
		"      session_name: ferry-session",
		"      tags: {team: metrics}",
		"      use_fips_sts_endpoint: true",
		"      service_name: aps",
		"  - name: azure-mi",
		"    url: https://ingest.monitor.azure.com/api/v1/write",
		"    azuread:",
		"      cloud: AzureGovernment",
		"      managed_identity: {client_id: 00000000-0000-4000-8000-000000000001}",
		"  - name: azure-oauth",
		"    url: https://ingest.monitor.azure.com/api/v1/write",
		"    azuread:",
		"      oauth: {client_id: 00000000-0000-4000-8000-000000000002, client_secret: s3cret, tenant_id: tenant.example}",
		"      scope: https://monitor.azure.com/.default",
		"  - name: azure-sdk",
		"    url: https://ingest.monitor.azure.com/api/v1/write",
		"    azuread: {sdk: {tenant_id: tenant.example}}",
		"  - name: azure-workload",
		"    url: https://ingest.monitor.azure.com/api/v1/write",
		"    azuread:",
		"      workload_identity:",
		"        client_id: 00000000-0000-4000-8000-000000000003",
		"        tenant_id: 00000000-0000-4000-8000-000000000004",
		"        token_file_path: /var/run/secrets/azure/token",
		"  - name: azure-cert",
		"    url: https://ingest.monitor.azure.com/api/v1/write",
		"    azuread:",
		"      certificate:",
		"        client_id: 00000000-0000-4000-8000-000000000005",
		"        tenant_id: tenant.example",
		"        certificate_path: /etc/ferry/azure.pem",
		"        certificate_key_path: /etc/ferry/azure.key",
		"        certificate_password: pw",
		"        send_certificate_chain: true",
		"  - name: gcp",
		"    url: https://monitoring.googleapis.com/v1/projects/p/location/global/prometheus/api/v1/write",
		"    google_iam: {credentials_file: /etc/ferry/gcp.json}",
	), "auth.yml")
	if err != nil {
		t.Fatal(err)
	}
	rw := cfg.RemoteWrite
	s := rw[0].SigV4Config
	if !rw[0].RoundRobinDNS || s == nil || s.Region != "eu-west-1" || s.AccessKey != "AKIDFERRY" || s.SecretKey != "secret" ||
		s.Profile != "ferry" || s.RoleARN != "arn:aws:iam::123456789012:role/ferry" || s.ExternalID != "ext" ||
		s.SessionName != "ferry-session" || s.Tags["team"] != "metrics" || !s.UseFIPSSTSEndpoint || s.ServiceName != "aps" {
		t.Errorf("sigv4 %+v", s)
	}
	if a := rw[1].AzureADConfig; a.Cloud != "AzureGovernment" || a.ManagedIdentity.ClientID != "00000000-0000-4000-8000-000000000001" {
		t.Errorf("azuread managed_identity %+v", a)
	}
	if a := rw[2].AzureADConfig; a.Cloud != "AzurePublic" || a.OAuth.ClientSecret != "s3cret" || a.OAuth.TenantID != "tenant.example" ||
		a.Scope != "https://monitor.azure.com/.default" {
		t.Errorf("azuread oauth %+v (cloud defaults to AzurePublic)", a)
	}
	if a := rw[3].AzureADConfig; a.SDK.TenantID != "tenant.example" {
		t.Errorf("azuread sdk %+v", a)
	}
	if a := rw[4].AzureADConfig; a.WorkloadIdentity.TokenFilePath != "/var/run/secrets/azure/token" {
		t.Errorf("azuread workload_identity %+v", a)
	}
	if a := rw[5].AzureADConfig; a.Certificate.CertificateKeyPath != "/etc/ferry/azure.key" || !a.Certificate.SendCertificateChain {
		t.Errorf("azuread certificate %+v", a.Certificate)
	}
	if g := rw[6].GoogleIAMConfig; g.CredentialsFile != "/etc/ferry/gcp.json" {
		t.Errorf("google_iam %+v", g)
	}
	for _, ep := range rw {
		if hc := ep.HTTPClientConfig; hc.EnableHTTP2 || !hc.FollowRedirects {
			t.Errorf("%s: enable_http2 %v, follow_redirects %v; want Prometheus 3's false, true", ep.Name, hc.EnableHTTP2, hc.FollowRedirects)
		}
	}
	// The secrets stay secret when the configuration is shown.
	for _, ep := range rw[:3] {
		if out := mustYAML(t, ep); strings.Contains(out, "secret: secret") || strings.Contains(out, "s3cret") {
			t.Errorf("%s: a secret shows in its YAML:\n%s", ep.Name, out)
		}
	}
}

// check config refuses a second authentication method on an endpoint in
// one line naming it, reports each invalid auth section at its line with
// the endpoint, and the other problems of the file, the auth files that
// cannot be read among them, in the same run.
func TestCheckConfigAuth(t *testing.T) {
	hermeticCloudEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.yml")
	if err := os.WriteFile(path, yamlDoc(
		"remote_write:", // 1
		"  - name: amp",
		"    url: https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write",
		"    basic_auth: {username: u, password: p}",
		"    sigv4:", // 5
		"      region: eu-west-1",
		"  - name: keyless",
		"    url: http://127.0.0.1:9090/api/v1/write",
		"    sigv4:", // 9
		"      access_key: AKIDFERRY",
		"  - name: azure",
		"    url: http://127.0.0.1:9090/api/v1/write",
		"    azuread:", // 13
		"      managed_identity: {client_id: not-a-uuid}",
		"  - name: gcp",
		"    url: http://127.0.0.1:9090/api/v1/write",
		"    google_iam:",
		"      credentials_file: gcp.json", // 18
		"  - name: typo",
		"    url: http://127.0.0.1:9090/api/v1/write",
		"    sigv4:",
		"      regoin: eu-west-1", // 22
		"    start_from: later",   // 23
	), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfigFile(path)
	var ces ConfigErrors
	if !errors.As(err, &ces) {
		t.Fatalf("LoadConfigFile: %v, want ConfigErrors", err)
	}
	checkErrors(t, ces, path, []wantErr{
		{22, `remote_write[4] (typo): unknown key "regoin"; did you mean "region"?`},
	})

	// With the typo fixed, the rest is checked.
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, bytes.Replace(data, []byte("regoin"), []byte("region"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadConfigFile(path)
	if !errors.As(err, &ces) {
		t.Fatalf("LoadConfigFile: %v, want ConfigErrors", err)
	}
	checkErrors(t, ces, path, []wantErr{
		{5, "remote_write[0] (amp): sigv4 cannot be used with basic_auth: an endpoint authenticates with at most one of basic_auth, authorization, oauth2, sigv4, azuread or google_iam"},
		{9, "remote_write[1] (keyless): sigv4 section: must provide a AWS SigV4 Access key and Secret Key"},
		{13, "remote_write[2] (azure): azuread section: the provided Azure Managed Identity client_id is invalid"},
		{18, "remote_write[3] (gcp): google_iam.credentials_file: open " + filepath.Join(dir, "gcp.json") + ": no such file"},
		{23, `remote_write[4] (typo): start_from "later"`},
	})

	// The files azuread reads are checked too.
	if err := os.WriteFile(path, yamlDoc(
		"remote_write:",
		"  - name: azure-cert",
		"    url: http://127.0.0.1:9090/api/v1/write",
		"    azuread:",
		"      certificate:",
		"        client_id: 00000000-0000-4000-8000-000000000005",
		"        tenant_id: tenant.example",
		"        certificate_path: azure.pem",
		"  - name: azure",
		"    url: http://127.0.0.1:9090/api/v1/write",
		"    azuread:",
		"      workload_identity:",
		"        client_id: 00000000-0000-4000-8000-000000000003",
		"        tenant_id: 00000000-0000-4000-8000-000000000004",
		"        token_file_path: azure.token",
	), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadConfigFile(path)
	if !errors.As(err, &ces) {
		t.Fatalf("LoadConfigFile: %v, want ConfigErrors", err)
	}
	checkErrors(t, ces, path, []wantErr{
		{8, "remote_write[0] (azure-cert): azuread.certificate.certificate_path: open " + filepath.Join(dir, "azure.pem") + ": no such file"},
		{15, "remote_write[1] (azure): azuread.workload_identity.token_file_path: open " + filepath.Join(dir, "azure.token") + ": no such file"},
	})
}

func mustYAML(t *testing.T, v any) string {
	t.Helper()
	out, err := yamlv2.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
