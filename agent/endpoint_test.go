package agent

import (
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
