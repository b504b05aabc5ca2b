package scrape

import (
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	yamlv3 "go.yaml.in/yaml/v3"

	// The service discoveries Ferry offers: static_configs is built in.
	_ "github.com/prometheus/prometheus/discovery/dns"
	_ "github.com/prometheus/prometheus/discovery/file"
	_ "github.com/prometheus/prometheus/discovery/http"
)

// Keys is the top-level keys of prometheus.yml that ParseConfig reads.
var Keys = []string{"global", "scrape_configs", "scrape_config_files"}

// supportedSD lists the target sources a scrape config may use.
var supportedSD = []string{"static_configs", "file_sd_configs", "http_sd_configs", "dns_sd_configs"}

// ConfigError is a problem in the scraping configuration; Line is 0 when
// it is not known.
type ConfigError struct {
	Line int
	Msg  string
}

func (e ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

var yamlLineRE = regexp.MustCompile(`line (\d+): `)

// ParseConfig loads the global, scrape_configs and scrape_config_files
// sections of a Ferry configuration document exactly as Prometheus loads
// them from prometheus.yml (defaults, validation, error messages). The
// document's other keys are not read. Line numbers in errors are the
// document's own. A scrape config using a service discovery other than
// static, file, http or dns is an error naming the supported ones.
func ParseConfig(data []byte, logger *slog.Logger) (*promconfig.Config, []ConfigError) {
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(data, &root); err != nil {
		return nil, []ConfigError{{Msg: err.Error()}}
	}
	doc := &root
	if doc.Kind == yamlv3.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yamlv3.MappingNode { // empty; other shapes are the caller's to report
		cfg, err := promconfig.Load("", logger)
		if err != nil {
			return nil, []ConfigError{{Msg: err.Error()}}
		}
		return cfg, nil
	}
	errs := checkDiscovery(doc)
	if len(errs) > 0 {
		return nil, errs
	}
	text, ok := keepKeys(data, doc)
	if !ok {
		// A flow-style document: lines cannot be kept, re-encode the sections.
		sub := &yamlv3.Node{Kind: yamlv3.MappingNode}
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if isKey(doc.Content[i].Value) {
				sub.Content = append(sub.Content, doc.Content[i], doc.Content[i+1])
			}
		}
		b, err := yamlv3.Marshal(sub)
		if err != nil {
			return nil, []ConfigError{{Msg: fmt.Sprintf("re-encode the scraping sections: %v", err)}}
		}
		text = string(b)
	}
	cfg, err := promconfig.Load(text, logger)
	if err != nil {
		return nil, loadErrors(err)
	}
	return cfg, nil
}

func isKey(k string) bool {
	for _, s := range Keys {
		if k == s {
			return true
		}
	}
	return false
}

// keepKeys returns data with every line outside the scraping sections
// blanked, so that line numbers stay those of data. It fails for flow-style
// documents, whose sections share lines.
func keepKeys(data []byte, doc *yamlv3.Node) (string, bool) {
	if doc.Style&yamlv3.FlowStyle != 0 {
		return "", false
	}
	lines := strings.SplitAfter(string(data), "\n")
	keep := make([]bool, len(lines)+1) // by line number, from 1
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if !isKey(doc.Content[i].Value) {
			continue
		}
		from := doc.Content[i].Line
		to := len(lines)
		if i+2 < len(doc.Content) {
			to = doc.Content[i+2].Line - 1
		}
		for l := from; l <= to && l < len(keep); l++ {
			keep[l] = true
		}
	}
	var b strings.Builder
	for i, l := range lines {
		if keep[i+1] {
			b.WriteString(l)
		} else if strings.HasSuffix(l, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String(), true
}

// checkDiscovery rejects service discoveries Ferry does not build in.
func checkDiscovery(doc *yamlv3.Node) []ConfigError {
	var errs []ConfigError
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value != "scrape_configs" || doc.Content[i+1].Kind != yamlv3.SequenceNode {
			continue
		}
		for n, sc := range doc.Content[i+1].Content {
			if sc.Kind != yamlv3.MappingNode {
				continue
			}
			job := strconv.Itoa(n)
			for k := 0; k+1 < len(sc.Content); k += 2 {
				if sc.Content[k].Value == "job_name" {
					job = strconv.Quote(sc.Content[k+1].Value)
				}
			}
			for k := 0; k+1 < len(sc.Content); k += 2 {
				key := sc.Content[k]
				if !strings.HasSuffix(key.Value, "_sd_configs") || supported(key.Value) {
					continue
				}
				errs = append(errs, ConfigError{Line: key.Line, Msg: fmt.Sprintf(
					"scrape_configs %s: %s is not supported; Ferry discovers targets with %s",
					job, key.Value, strings.Join(supportedSD, ", "))})
			}
		}
	}
	return errs
}

func supported(key string) bool {
	for _, s := range supportedSD {
		if s == key {
			return true
		}
	}
	return false
}

// loadErrors splits a Prometheus config error into one error per line it
// reports.
func loadErrors(err error) []ConfigError {
	var errs []ConfigError
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(l, "yaml: unmarshal errors:"))
		if l == "" {
			continue
		}
		e := ConfigError{Msg: l}
		if sm := yamlLineRE.FindStringSubmatchIndex(l); sm != nil {
			e.Line, _ = strconv.Atoi(l[sm[2]:sm[3]])
			e.Msg = strings.TrimPrefix(l[:sm[0]]+l[sm[1]:], "yaml: ")
		}
		errs = append(errs, e)
	}
	return errs
}

// discoveryConfigs maps each job to its target sources.
func discoveryConfigs(scfgs []*promconfig.ScrapeConfig) map[string]discovery.Configs {
	c := make(map[string]discovery.Configs, len(scfgs))
	for _, sc := range scfgs {
		c[sc.JobName] = sc.ServiceDiscoveryConfigs
	}
	return c
}
