package scrape

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"
)

func TestParseConfigAsPrometheus(t *testing.T) {
	doc := `listen_address: 127.0.0.1:9201
remote_write:
  - name: x
    url: http://127.0.0.1:9090/api/v1/write
global:
  scrape_interval: 30s
  external_labels: {site: edge1}
scrape_configs:
  - job_name: node
    static_configs: [{targets: ['127.0.0.1:9100']}]
  - job_name: files
    scrape_interval: 5s
    file_sd_configs: [{files: [targets/*.json]}]
    metric_relabel_configs:
      - {source_labels: [__name__], regex: go_.*, action: drop}
data_dir: /tmp
`
	cfg, errs := ParseConfig([]byte(doc), promslog.NewNopLogger())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := cfg.GlobalConfig.ExternalLabels.String(); got != `{site="edge1"}` {
		t.Errorf("external labels %s", got)
	}
	scfgs, err := cfg.GetScrapeConfigs()
	if err != nil || len(scfgs) != 2 {
		t.Fatalf("scrape configs: %v, %v", scfgs, err)
	}
	// Prometheus' defaults from global.
	if time.Duration(scfgs[0].ScrapeInterval) != 30*time.Second || time.Duration(scfgs[0].ScrapeTimeout) != 10*time.Second {
		t.Errorf("node: interval %v timeout %v", scfgs[0].ScrapeInterval, scfgs[0].ScrapeTimeout)
	}
	if time.Duration(scfgs[1].ScrapeTimeout) != 5*time.Second || len(scfgs[1].MetricRelabelConfigs) != 1 {
		t.Errorf("files: timeout %v, %d metric relabel configs", scfgs[1].ScrapeTimeout, len(scfgs[1].MetricRelabelConfigs))
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		line      int
		want      string
	}{{
		name: "unsupported discovery",
		doc: `listen_address: x
scrape_configs:
  - job_name: k8s
    kubernetes_sd_configs: [{role: pod}]
`,
		line: 4,
		want: `scrape_configs "k8s": kubernetes_sd_configs is not supported; Ferry discovers targets with static_configs, file_sd_configs, http_sd_configs, dns_sd_configs`,
	}, {
		name: "unknown key, line of the document",
		doc: `listen_address: x
receiver: {}
scrape_configs:
  - job_name: a
    scrape_intervall: 5s
`,
		line: 5,
		want: "field scrape_intervall not found",
	}, {
		name: "validation without a line",
		doc: `scrape_configs:
  - job_name: a
    scrape_interval: 5s
    scrape_timeout: 10s
`,
		want: `scrape timeout greater than scrape interval for scrape config with job name "a"`,
	}, {
		name: "duplicate job",
		doc: `scrape_configs:
  - job_name: a
  - job_name: a
`,
		want: `found multiple scrape configs with job name "a"`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := ParseConfig([]byte(tc.doc), promslog.NewNopLogger())
			if len(errs) != 1 {
				t.Fatalf("errors %v, want one", errs)
			}
			if errs[0].Line != tc.line || !strings.Contains(errs[0].Msg, tc.want) {
				t.Fatalf("error %q at line %d, want %q at line %d", errs[0].Msg, errs[0].Line, tc.want, tc.line)
			}
		})
	}
}

func TestParseConfigFlowStyle(t *testing.T) {
	doc := `{listen_address: x, scrape_configs: [{job_name: a, static_configs: [{targets: ['h:1']}]}]}`
	cfg, errs := ParseConfig([]byte(doc), promslog.NewNopLogger())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(cfg.ScrapeConfigs) != 1 || cfg.ScrapeConfigs[0].JobName != "a" {
		t.Fatalf("scrape configs %v", cfg.ScrapeConfigs)
	}
}

func TestParseConfigEmpty(t *testing.T) {
	for _, doc := range []string{"", "listen_address: x\n", "# nothing\n"} {
		cfg, errs := ParseConfig([]byte(doc), promslog.NewNopLogger())
		if len(errs) > 0 {
			t.Fatalf("%q: %v", doc, errs)
		}
		if scfgs, err := cfg.GetScrapeConfigs(); err != nil || len(scfgs) != 0 {
			t.Fatalf("%q: scrape configs %v, %v", doc, scfgs, err)
		}
	}
}
