package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/storage/remote/azuread"
	"github.com/prometheus/prometheus/storage/remote/googleiam"
	"github.com/prometheus/sigv4"
)

// An endpoint's HTTP client is Prometheus' remote-write client: the
// inlined HTTP client settings build it, and, as storage/remote's
// NewWriteClient does, its transport is wrapped to sign every request with
// AWS Signature Version 4 (sigv4) or to add a bearer token from Azure AD
// (azuread) or Google Cloud (google_iam). round_robin_dns makes it dial
// through roundRobinDial.

// SigV4Config is Prometheus' sigv4 section (github.com/prometheus/sigv4),
// with its YAML. It is decoded without the checks of sigv4's own
// UnmarshalYAML, whose error stops the decoder and names neither the line
// nor the endpoint: validate runs the same checks.
type SigV4Config sigv4.SigV4Config

// AzureADConfig is Prometheus' azuread section, with its YAML, decoded
// without its checks for the same reason; validate runs them (and they set
// the defaults: cloud AzurePublic, the workload identity's token file).
type AzureADConfig azuread.AzureADConfig

// authMethods names the authentication methods c configures, in the order
// of Prometheus' message.
func (c *RemoteWriteConfig) authMethods() []string {
	hc := c.HTTPClientConfig
	var m []string
	for _, a := range []struct {
		key string
		set bool
	}{
		{"basic_auth", hc.BasicAuth != nil},
		{"authorization", hc.Authorization != nil},
		{"bearer_token", hc.BearerToken != ""},
		{"bearer_token_file", hc.BearerTokenFile != ""},
		{"oauth2", hc.OAuth2 != nil},
		{"sigv4", c.SigV4Config != nil},
		{"azuread", c.AzureADConfig != nil},
		{"google_iam", c.GoogleIAMConfig != nil},
	} {
		if a.set {
			m = append(m, a.key)
		}
	}
	return m
}

// validateAuth checks the cloud authentication sections and that an
// endpoint uses at most one authentication method. Each error starts with
// the key it concerns and a space, which locates its line. Run it before
// HTTPClientConfig.Validate, which turns bearer_token into authorization.
func (c *RemoteWriteConfig) validateAuth() []error {
	var errs []error
	if m := c.authMethods(); len(m) > 1 && (c.SigV4Config != nil || c.AzureADConfig != nil || c.GoogleIAMConfig != nil) {
		// basic_auth, authorization and oauth2 among themselves are
		// HTTPClientConfig.Validate's to refuse.
		last := m[len(m)-1]
		errs = append(errs, fmt.Errorf("%s cannot be used with %s: an endpoint authenticates with at most one of basic_auth, authorization, oauth2, sigv4, azuread or google_iam",
			last, strings.Join(m[:len(m)-1], ", ")))
	}
	if c.SigV4Config != nil {
		if err := (*sigv4.SigV4Config)(c.SigV4Config).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("sigv4 section: %w", err))
		}
	}
	if c.AzureADConfig != nil {
		if err := (*azuread.AzureADConfig)(c.AzureADConfig).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("azuread section: %w", err))
		}
	}
	return errs
}

// SetDirectory makes the relative file paths of c relative to dir: the
// HTTP client's, as Prometheus does, and those of azuread and google_iam,
// which Prometheus leaves relative to its working directory.
func (c *RemoteWriteConfig) SetDirectory(dir string) {
	c.HTTPClientConfig.SetDirectory(dir)
	join := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if a := c.AzureADConfig; a != nil {
		if w := a.WorkloadIdentity; w != nil {
			join(&w.TokenFilePath)
		}
		if cc := a.Certificate; cc != nil {
			join(&cc.CertificatePath)
			join(&cc.CertificateKeyPath)
		}
	}
	if g := c.GoogleIAMConfig; g != nil {
		join(&g.CredentialsFile)
	}
}

// httpClient builds the endpoint's client. Building it reads the
// credential files; sigv4 also retrieves its credentials (from the AWS
// default chain when the section has no access_key), so that missing
// credentials fail the configuration, as in Prometheus.
func (c *RemoteWriteConfig) httpClient(userAgent string) (*http.Client, error) {
	opts := []config.HTTPClientOption{config.WithUserAgent(userAgent)}
	if c.RoundRobinDNS {
		dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		opts = append(opts, config.WithDialContextFunc(roundRobinDial(net.DefaultResolver, dialer.DialContext)))
	}
	client, err := config.NewClientFromConfig(c.HTTPClientConfig, "remote_write_"+c.Name, opts...)
	if err != nil {
		return nil, err
	}
	t := client.Transport
	if c.SigV4Config != nil {
		if t, err = sigv4.NewSigV4RoundTripper((*sigv4.SigV4Config)(c.SigV4Config), t); err != nil {
			return nil, fmt.Errorf("sigv4: %w", err)
		}
	}
	if c.AzureADConfig != nil {
		// A copy, defaulted by Validate as validate does.
		az := azuread.AzureADConfig(*c.AzureADConfig)
		if err := az.Validate(); err != nil {
			return nil, fmt.Errorf("azuread: %w", err)
		}
		if t, err = azuread.NewAzureADRoundTripper(&az, t); err != nil {
			return nil, fmt.Errorf("azuread: %w", err)
		}
	}
	if c.GoogleIAMConfig != nil {
		if t, err = googleiam.NewRoundTripper(c.GoogleIAMConfig, t); err != nil {
			return nil, fmt.Errorf("google_iam: %w", err)
		}
	}
	client.Transport = t
	return client, nil
}

// hostResolver is what roundRobinDial needs of a *net.Resolver.
type hostResolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// roundRobinDial returns a dial function that resolves the host of each
// new connection itself and connects to one of its addresses at random, so
// that connections spread over every address of a name (the nodes behind
// a DNS-balanced receiver) instead of following the system resolver's
// order. It is Prometheus' round_robin_dns: an address that does not
// answer fails that connection, and the sender's retry dials again. An
// address that does not split or resolve is dialled as it is.
func roundRobinDial(r hostResolver, dial config.DialContextFunc) config.DialContextFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return dial(ctx, network, addr)
		}
		addrs, err := r.LookupHost(ctx, host)
		if err != nil || len(addrs) == 0 {
			return dial(ctx, network, addr)
		}
		return dial(ctx, network, net.JoinHostPort(addrs[rand.IntN(len(addrs))], port))
	}
}
