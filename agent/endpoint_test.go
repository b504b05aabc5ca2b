package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrymetrics/ferry/sender"
	yamlv2 "go.yaml.in/yaml/v2"
)

func TestRemoteWritePrometheusKeys(t *testing.T) {
	var c RemoteWriteConfig
	err := yamlv2.UnmarshalStrict([]byte(`
name: a
url: http://127.0.0.1:9090/api/v1/write
protobuf_message: io.prometheus.write.v2.Request
send_exemplars: false
metadata_config:
  send: false
  send_interval: 30s
  max_samples_per_send: 500
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	c.applyDefaults()
	if errs := c.validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if c.ProtobufMessage != sender.MessageV2 || *c.SendExemplars || !*c.SendNativeHistograms || *c.MetadataConfig.Send ||
		c.MetadataConfig.MaxSamplesPerSend != 500 {
		t.Fatalf("got %+v", c)
	}

	var d RemoteWriteConfig
	if err := yamlv2.UnmarshalStrict([]byte("name: a\nurl: http://127.0.0.1:9090/api/v1/write\n"), &d); err != nil {
		t.Fatal(err)
	}
	d.applyDefaults()
	if d.ProtobufMessage != sender.MessageV1 || !*d.SendExemplars || !*d.SendNativeHistograms || !*d.MetadataConfig.Send {
		t.Fatalf("defaults: %+v", d)
	}

	d.ProtobufMessage = "prometheus.WriteRequestV3"
	errs := d.validate()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "protobuf_message") {
		t.Fatalf("bad protobuf_message: %v", errs)
	}
}

// A loaded entry gives its sender everything, defaults included, and a
// checkpoint key that keeps WAL and rollup cursors apart.
func TestRemoteWriteSenderConfig(t *testing.T) {
	cfg, err := ParseConfig(yamlDoc(
		"remote_write:",
		"  - name: raw",
		"    url: http://127.0.0.1:9090/api/v1/write",
		"    protobuf_message: io.prometheus.write.v2.Request",
		"    start_from: now",
		"    send_native_histograms: false",
		"    queue_config: {retry_on_http_429: false}",
		"  - name: rolled",
		"    url: http://127.0.0.1:9091/api/v1/write",
		"    storage_policy: {resolution: 5m, retention: 60d}",
	), "test.yml")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cfg.RemoteWrite[0].senderConfig("ferry/test")
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultQueueConfig
	if raw.Name != "raw" || raw.CheckpointKey != "raw" || raw.URL.String() != "http://127.0.0.1:9090/api/v1/write" ||
		raw.Client == nil || raw.Timeout != 30*time.Second || raw.Protocol != sender.RemoteWrite2 || !raw.StartAtHead ||
		!raw.SendExemplars || raw.SendHistograms || !raw.SendMetadata || raw.MaxMetadataPerSend != 2000 ||
		raw.Queue != (sender.Queue{
			Capacity: d.Capacity, MinShards: d.MinShards, MaxShards: d.MaxShards, MaxSamplesPerSend: d.MaxSamplesPerSend,
			BatchSendDeadline: time.Duration(d.BatchSendDeadline), MinBackoff: time.Duration(d.MinBackoff),
			MaxBackoff: time.Duration(d.MaxBackoff), RetryOnRateLimit: false,
		}) {
		t.Fatalf("raw: %+v", raw)
	}
	rolled, err := cfg.RemoteWrite[1].senderConfig("ferry/test")
	if err != nil {
		t.Fatal(err)
	}
	if rolled.CheckpointKey != "rolled@rollup:5m:60d" || rolled.Protocol != sender.RemoteWrite1 || rolled.StartAtHead ||
		!rolled.Queue.RetryOnRateLimit {
		t.Fatalf("rolled: %+v", rolled)
	}
}

// sample_age_limit and tenant reach the sender; the tenant header
// defaults to X-Scope-OrgID, and `ferry check config` (LoadConfigFile)
// accepts both.
func TestRemoteWriteSampleAgeLimitAndTenant(t *testing.T) {
	data := yamlDoc(
		"remote_write:",
		"  - name: mimir",
		"    url: http://127.0.0.1:9009/api/v1/push",
		"    queue_config: {sample_age_limit: 2h}",
		"    tenant:",
		"      label: tenant",
		"      default: anonymous",
		"      drop_label: true",
		"  - name: thanos",
		"    url: http://127.0.0.1:19291/api/v1/receive",
		"    tenant: {label: team, header: THANOS-TENANT}",
		"  - name: plain",
		"    url: http://127.0.0.1:9090/api/v1/write",
	)
	path := filepath.Join(t.TempDir(), "ferry.yml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		age    time.Duration
		tenant *sender.Tenant
	}{
		{2 * time.Hour, &sender.Tenant{Label: "tenant", Header: "X-Scope-OrgID", Default: "anonymous", DropLabel: true}},
		{0, &sender.Tenant{Label: "team", Header: "THANOS-TENANT"}},
		{0, nil},
	} {
		sc, err := cfg.RemoteWrite[i].senderConfig("ferry/test")
		if err != nil {
			t.Fatal(err)
		}
		if sc.Queue.SampleAgeLimit != want.age {
			t.Errorf("%s: sample age limit %s, want %s", sc.Name, sc.Queue.SampleAgeLimit, want.age)
		}
		if (sc.Tenant == nil) != (want.tenant == nil) || sc.Tenant != nil && *sc.Tenant != *want.tenant {
			t.Errorf("%s: tenant %+v, want %+v", sc.Name, sc.Tenant, want.tenant)
		}
	}
	// A negative limit cannot be written in YAML (durations have no
	// sign), but is refused all the same.
	rw := cfg.RemoteWrite[2]
	rw.QueueConfig.SampleAgeLimit = -1
	if errs := rw.validate(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "sample_age_limit") {
		t.Errorf("negative sample_age_limit: %v", errs)
	}
}
