package agent

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ferrymetrics/ferry/agent/receive"
	"github.com/ferrymetrics/ferry/wal"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"go.uber.org/zap"
)

// BenchmarkIngest measures the receive path end to end inside the process:
// snappy decode, protobuf decode, validation and the WAL append with an
// fsync per request (wal.sync: always, so no group commit with one
// client), over 100k series in requests of 1,000 samples, in
// Remote-Write 1.0 and 2.0 (the same series and samples; 2.0 without
// metadata or start timestamps, as 1.0 cannot carry them per sample).
func BenchmarkIngest(b *testing.B) {
	for _, c := range []struct{ proto, sync string }{{"1.0", "always"}, {"1.0", "interval"}, {"2.0", "always"}, {"2.0", "interval"}} {
		sync := c.sync
		b.Run("proto="+c.proto+"/sync="+sync, func(b *testing.B) {
			cfg := DefaultConfig().WAL
			cfg.Sync = sync
			opts, _ := walOptions(cfg)
			w, err := wal.Open(b.TempDir(), opts, zap.NewNop(), nil, time.Now)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			bodies := receive.NewBodyDecoder()
			defer bodies.Close()
			h := &writeHandler{
				app:    func() Appender { return w },
				limits: func() ReceiverConfig { return DefaultConfig().Receiver },
				logger: zap.NewNop(), bodies: bodies, m: newReceiverMetrics(prometheus.NewRegistry()),
			}
			const series, batch = 100_000, 1000
			var reqs [][]byte
			for from := 0; from < series; from += batch {
				var wr prompb.WriteRequest
				for i := from; i < from+batch; i++ {
					wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
						Labels: []prompb.Label{
							{Name: "__name__", Value: fmt.Sprintf("node_metric_%d_total", i%100)},
							{Name: "cpu", Value: fmt.Sprint(i % 64)},
							{Name: "id", Value: fmt.Sprint(i)},
							{Name: "instance", Value: "edge-host-042.example.net:9100"},
							{Name: "job", Value: "node"},
							{Name: "mode", Value: "idle"},
						},
						Samples: []prompb.Sample{{Value: float64(i), Timestamp: 1_700_000_000_000}},
					})
				}
				raw, _ := wr.Marshal()
				if c.proto == "2.0" {
					raw = toV2(b, &wr)
				}
				reqs = append(reqs, snappy.Encode(nil, raw))
			}
			post := func(body []byte) {
				r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
				r.Header.Set("Content-Encoding", "snappy")
				r.Header.Set("Content-Type", "application/x-protobuf")
				if c.proto == "2.0" {
					r.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				if rec.Code != http.StatusNoContent {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			for _, body := range reqs { // create the series
				post(body)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(reqs[0])))
			b.ResetTimer()
			for i := range b.N {
				post(reqs[i%len(reqs)])
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/sample")
		})
	}
}

// toV2 marshals the series and samples of wr as a Remote-Write 2.0 request.
func toV2(b *testing.B, wr *prompb.WriteRequest) []byte {
	st := writev2.NewSymbolTable()
	var req writev2.Request
	for _, ts := range wr.Timeseries {
		var refs []uint32
		for _, l := range ts.Labels {
			refs = append(refs, st.Symbolize(l.Name), st.Symbolize(l.Value))
		}
		var samples []writev2.Sample
		for _, s := range ts.Samples {
			samples = append(samples, writev2.Sample{Value: s.Value, Timestamp: s.Timestamp})
		}
		req.Timeseries = append(req.Timeseries, writev2.TimeSeries{LabelsRefs: refs, Samples: samples})
	}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return raw
}
