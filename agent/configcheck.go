package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/config"
	yamlv3 "go.yaml.in/yaml/v3"
)

// What `check config` (and so `run` and a reload) checks beyond parsing and
// validation: settings left empty keep their defaults, unknown keys get a
// "did you mean", files an endpoint reads must be readable, addresses must
// have valid ports.

// parseNode parses data into a YAML node tree; nil when data holds no
// document (empty, or nothing but comments) or does not parse.
func parseNode(data []byte) *yamlv3.Node {
	var root yamlv3.Node
	if err := yamlv3.NewDecoder(bytes.NewReader(data)).Decode(&root); err != nil {
		return nil
	}
	if root.Kind == yamlv3.DocumentNode && len(root.Content) == 1 {
		if n := root.Content[0]; n.Kind == yamlv3.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		return root.Content[0]
	}
	return nil
}

// keepDefaults puts back the default of every setting given no value: a
// section whose options are all commented out (`wal:` alone) or a key left
// empty (`sync:`). YAML reads both as null, which would zero them.
func keepDefaults(root *yamlv3.Node, cfg *Config) {
	def := DefaultConfig()
	restoreNulls(root, reflect.ValueOf(cfg).Elem(), reflect.ValueOf(&def).Elem())
}

func restoreNulls(m *yamlv3.Node, v, def reflect.Value) {
	if m == nil || m.Kind != yamlv3.MappingNode {
		return
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		f := fieldIndex(v.Type(), m.Content[i].Value)
		if f < 0 {
			continue
		}
		switch val := m.Content[i+1]; {
		case val.Kind == yamlv3.ScalarNode && val.Tag == "!!null":
			v.Field(f).Set(def.Field(f))
		case val.Kind == yamlv3.MappingNode && v.Field(f).Kind() == reflect.Struct:
			restoreNulls(val, v.Field(f), def.Field(f))
		}
	}
}

// fieldIndex returns the index of t's field whose YAML key is key, or -1.
func fieldIndex(t reflect.Type, key string) int {
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && yamlKey(f) == key {
			return i
		}
	}
	return -1
}

// yamlKey returns the key a struct field has in YAML ("" if none or
// inline).
func yamlKey(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" || strings.Contains(tag, "inline") {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

// keysAt returns the YAML keys valid at a dotted path of Ferry's
// configuration ("" for the top level, "wal", "remote_write.0"), inline
// fields included; nil if the path names no section Ferry defines.
func keysAt(path string) []string {
	t := reflect.TypeFor[Config]()
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			continue
		}
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if _, err := strconv.Atoi(seg); err == nil {
			continue // a sequence index
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := fieldByKey(t, seg)
		if !ok {
			return nil
		}
		t = f.Type
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	return structKeys(t)
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if strings.Contains(f.Tag.Get("yaml"), "inline") {
			if g, ok := fieldByKey(f.Type, key); ok {
				return g, true
			}
		}
		if yamlKey(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func structKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if strings.Contains(f.Tag.Get("yaml"), "inline") && f.Type.Kind() == reflect.Struct {
			keys = append(keys, structKeys(f.Type)...)
		} else if k := yamlKey(f); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// didYouMean returns the valid key closest to an unknown key found at line
// (within two edits), or "".
func didYouMean(idx lineIndex, line int, key string) string {
	parent, found := "", false
	for p, l := range idx {
		if l != line || (p != key && !strings.HasSuffix(p, "."+key)) {
			continue
		}
		if q := strings.TrimSuffix(strings.TrimSuffix(p, key), "."); !found || len(q) > len(parent) {
			parent, found = q, true
		}
	}
	if !found {
		return ""
	}
	return closest(key, keysAt(parent))
}

// closest returns the key of keys within two edits of key, or "".
func closest(key string, keys []string) string {
	best, bestD := "", 3
	for _, k := range keys {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkListenAddress checks that addr is host:port with a port Ferry can
// listen on.
func checkListenAddress(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %v (want host:port, e.g. 127.0.0.1:9201)", addr, strings.TrimPrefix(err.Error(), "address "+addr+": "))
	}
	if err := checkPort(port); err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	return nil
}

func checkPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// endpointFiles returns the files an endpoint's HTTP client reads, by
// their YAML paths under the endpoint. sigv4 names none: its profile and
// role_arn are looked up in AWS' own configuration.
func endpointFiles(rw *RemoteWriteConfig) [][2]string {
	hc := rw.HTTPClientConfig
	var out [][2]string
	add := func(path, file string) {
		if file != "" {
			out = append(out, [2]string{path, file})
		}
	}
	tls := func(prefix string, c config.TLSConfig) {
		add(prefix+"ca_file", c.CAFile)
		add(prefix+"cert_file", c.CertFile)
		add(prefix+"key_file", c.KeyFile)
	}
	if b := hc.BasicAuth; b != nil {
		add("basic_auth.username_file", b.UsernameFile)
		add("basic_auth.password_file", b.PasswordFile)
	}
	if a := hc.Authorization; a != nil {
		add("authorization.credentials_file", a.CredentialsFile)
	}
	if o := hc.OAuth2; o != nil {
		add("oauth2.client_secret_file", o.ClientSecretFile)
		add("oauth2.client_certificate_key_file", o.ClientCertificateKeyFile)
		tls("oauth2.tls_config.", o.TLSConfig)
	}
	add("bearer_token_file", hc.BearerTokenFile)
	tls("tls_config.", hc.TLSConfig)
	if a := rw.AzureADConfig; a != nil {
		// managed_identity, oauth (its client_secret is inline) and sdk
		// read no file of their own.
		if w := a.WorkloadIdentity; w != nil {
			add("azuread.workload_identity.token_file_path", w.TokenFilePath)
		}
		if c := a.Certificate; c != nil {
			add("azuread.certificate.certificate_path", c.CertificatePath)
			add("azuread.certificate.certificate_key_path", c.CertificateKeyPath)
		}
	}
	if g := rw.GoogleIAMConfig; g != nil {
		add("google_iam.credentials_file", g.CredentialsFile)
	}
	return out
}

// readable checks that path is a regular file Ferry can read, as its HTTP
// client will at start or at the first request.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	if _, err = f.Read(make([]byte, 1)); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// urlHint returns a suggestion for a remote_write url without a scheme
// (host:port/path), or "".
func urlHint(raw string) string {
	if raw == "" || strings.Contains(raw, "://") {
		return ""
	}
	host, _, _ := strings.Cut(raw, "/")
	if h, _, err := net.SplitHostPort(host); err != nil || h == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", "http://"+raw)
}

// pathAtLine returns the deepest path of idx on line, or "".
func (idx lineIndex) pathAtLine(line int) string {
	best := ""
	for p, l := range idx {
		if l == line && strings.Count(p, ".") >= strings.Count(best, ".") && len(p) > len(best) {
			best = p
		}
	}
	return best
}

// scalarAt returns the scalar value at a dotted path under root.
func scalarAt(root *yamlv3.Node, path string) string {
	n := root
	for _, seg := range strings.Split(path, ".") {
		if n == nil {
			return ""
		}
		switch n.Kind {
		case yamlv3.MappingNode:
			var next *yamlv3.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg {
					next = n.Content[i+1]
				}
			}
			n = next
		case yamlv3.SequenceNode:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(n.Content) {
				return ""
			}
			n = n.Content[i]
		default:
			return ""
		}
	}
	if n == nil || n.Kind != yamlv3.ScalarNode {
		return ""
	}
	return n.Value
}

// endpointLabel names remote_write entry i as validation messages do.
func endpointLabel(root *yamlv3.Node, i int) string {
	name := scalarAt(root, fmt.Sprintf("remote_write.%d.name", i))
	if name == "" {
		name = scalarAt(root, fmt.Sprintf("remote_write.%d.url", i))
	}
	if name == "" {
		return fmt.Sprintf("remote_write[%d]", i)
	}
	return fmt.Sprintf("remote_write[%d] (%s)", i, name)
}

// explainParseError makes a parse error say where it is: an unknown key
// gets "did you mean", an error inside a remote_write entry names the
// endpoint, a url without a scheme gets a hint.
func explainParseError(e ConfigError, idx lineIndex, root *yamlv3.Node) ConfigError {
	if sm := goTypeRE.FindStringSubmatch(e.Msg); sm != nil {
		e.Msg = fmt.Sprintf("unknown key %q", sm[1])
		if k := didYouMean(idx, e.Line, sm[1]); k != "" {
			e.Msg += fmt.Sprintf("; did you mean %q?", k)
		}
	}
	path := idx.pathAtLine(e.Line)
	segs := strings.Split(path, ".")
	if len(segs) >= 2 && segs[0] == "remote_write" {
		i, err := strconv.Atoi(segs[1])
		if err == nil {
			if slices.Equal(segs[2:], []string{"url"}) {
				e.Msg = fmt.Sprintf("url: %s%s", e.Msg, urlHint(scalarAt(root, path)))
			}
			e.Msg = endpointLabel(root, i) + ": " + e.Msg
		}
	}
	return e
}

// unknownKeys finds keys Ferry's own sections do not define, everywhere in
// the file. The YAML decoder stops at the first value it cannot parse (a
// bad url), so this scan makes one run report every unknown key.
func unknownKeys(root *yamlv3.Node, name string) ConfigErrors {
	var errs ConfigErrors
	var walk func(n *yamlv3.Node, path string)
	walk = func(n *yamlv3.Node, path string) {
		switch n.Kind {
		case yamlv3.MappingNode:
			keys := keysAt(path)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				p := strings.TrimPrefix(path+"."+k, ".")
				if keys != nil && !slices.Contains(keys, k) {
					msg := fmt.Sprintf("unknown key %q", k)
					if best := closest(k, keys); best != "" {
						msg += fmt.Sprintf("; did you mean %q?", best)
					}
					if segs := strings.Split(p, "."); len(segs) > 2 && segs[0] == "remote_write" {
						if i, err := strconv.Atoi(segs[1]); err == nil {
							msg = endpointLabel(root, i) + ": " + msg
						}
					}
					errs = append(errs, ConfigError{File: name, Line: n.Content[i].Line, Msg: msg})
					continue
				}
				if keys != nil {
					walk(n.Content[i+1], p)
				}
			}
		case yamlv3.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s.%d", path, i))
			}
		}
	}
	if root != nil {
		walk(root, "")
	}
	return errs
}
