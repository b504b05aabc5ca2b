package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
)

// Load shapes and series generation.
//
// A shape fixes the series' labels and the defaults of --series, --batch and
// --concurrency. In both shapes a request carries one batch of consecutive
// series (see batchLayout) with one sample each, and round r of series i has
// timestamp base+r*step and value seriesValue(i, r).
//
// Shape B, the default and the tool's only load before shapes existed: 100,000
// series, 1,000 per request, 4 pushers. Series i has 7 labels, sorted by name:
//
//	__name__  one of 100 metric names (i % 100)
//	cpu       i/100 % 8
//	env       prod, staging or dev (by host)
//	id        i, which makes the series unique and lets the receiver map a
//	          delivered series back to its index without a hash table
//	instance  host-NNNNN:9100, 800 series per host
//	job       one of 5 jobs (by host)
//	region    one of 4 regions (by host)
//
// Shape A, Prometheus scraping Kubernetes pods: 50,000 series, 500 per
// request, 8 pushers. Each pod exposes the same 250 series (familiesA), in
// scrape order: series i is series i%250 of pod i/250. Each series has 9 or
// 10 labels, sorted by name:
//
//	__name__                    one of 6 metric families
//	container, job, namespace   by deployment, one of 10 (pod % 10)
//	instance                    the pod's IP and port, unique per pod
//	pod                         <deployment>-<pod-template-hash>-<5 chars>, unique per pod
//	3 or 4 more                 code, handler, le, method, queue, result, shard, type
//
// Shape A has no id label: the verifier finds a delivered series by the hash
// of its labels other than pod (seriesIndex). Shape A1M is shape A with
// 1,000,000 series (4,000 pods).
//
// Series churn (--churn) replaces series by new ones over time. A series
// lives in a slot, 0..n-1, which fixes its batch, its pusher and its values;
// the slot's generation, gen(slot, round) (see churnSchedule), counts how
// often the slot's series was replaced. Generation g of a slot is the slot's
// labels with the generation folded into one label, genLabel, so that every
// generation is a new series, and generation 0 is the labels above:
//
//	shape B   id is slot + g*n
//	shape A   pod's 5-character suffix is that of pod + g*pods (pods =
//	          ceil(n/250)), as when a pod is replaced; the other labels,
//	          instance too, stay

// shape is a load shape.
type shape struct {
	name                       string
	series, batch, concurrency int                     // flag defaults
	labels                     func(i int) [][2]string // slot i's labels in generation 0, sorted by name
	byID                       bool                    // labels include idLabel, which names slot and generation

	// genLabel is the label that tells a slot's generations apart;
	// genValue(n, i, g) is its value for slot i of n in generation g, and
	// parseGen(n, i, v) the generation whose value for slot i is v, or -1.
	genLabel string
	genValue func(n, i int, g int64) string
	parseGen func(n, i int, v []byte) int64
}

func shapeByName(name string) (shape, bool) {
	a := shape{name: "A", series: 50000, batch: 500, concurrency: 8, labels: labelsA,
		genLabel: "pod", genValue: podValueA, parseGen: parsePodA}
	switch strings.ToUpper(name) {
	case "A":
		return a, true
	case "A1M":
		a.name, a.series = "A1M", 1000000
		return a, true
	case "B":
		return shape{name: "B", series: 100000, batch: 1000, concurrency: 4, labels: labelsB, byID: true,
			genLabel: idLabel, genValue: idValueB, parseGen: parseIDB}, true
	}
	return shape{}, false
}

// seriesLabels returns the labels of slot i of n in generation g.
func (s shape) seriesLabels(n, i int, g int64) [][2]string {
	ls := s.labels(i)
	if g == 0 {
		return ls
	}
	for k := range ls {
		if ls[k][0] == s.genLabel {
			ls[k][1] = s.genValue(n, i, g)
		}
	}
	return ls
}

const idLabel = "id"

var (
	metricSubsystems = []string{
		"node_cpu", "node_memory", "node_disk_io", "node_disk_read", "node_disk_write",
		"node_network_receive", "node_network_transmit", "node_filesystem", "node_load", "node_context_switches",
		"process_cpu", "process_resident_memory", "process_open_fds", "go_gc_duration", "go_memstats_heap",
		"http_server_requests", "http_server_request_duration", "http_client_requests", "grpc_server_handled", "grpc_client_handled",
		"container_cpu_usage", "container_memory_working_set", "container_network_receive", "kube_pod_container_status", "kubelet_runtime_operations",
	}
	metricSuffixes = []string{"total", "seconds_total", "bytes", "errors_total"}
	jobs           = []string{"node-exporter", "kubelet", "cadvisor", "api-gateway", "postgres-exporter"}
	envs           = []string{"prod", "staging", "dev"}
	regions        = []string{"eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"}
)

const seriesPerHost = 800

// metricName returns one of the 100 metric names.
func metricName(k int) string {
	k %= len(metricSubsystems) * len(metricSuffixes)
	return metricSubsystems[k/len(metricSuffixes)] + "_" + metricSuffixes[k%len(metricSuffixes)]
}

// labelsB returns series i's labels in shape B as name, value pairs sorted
// by name.
func labelsB(i int) [][2]string {
	host := i / seriesPerHost
	return [][2]string{
		{"__name__", metricName(i)},
		{"cpu", strconv.Itoa(i / 100 % 8)},
		{"env", envs[host%len(envs)]},
		{idLabel, strconv.Itoa(i)},
		{"instance", fmt.Sprintf("host-%05d:9100", host)},
		{"job", jobs[host%len(jobs)]},
		{"region", regions[host%len(regions)]},
	}
}

// idValueB is the id of slot i of n in generation g of shape B.
func idValueB(n, i int, g int64) string { return strconv.FormatInt(int64(i)+g*int64(n), 10) }

// parseIDB is the generation of slot i of n whose id is v, or -1.
func parseIDB(n, i int, v []byte) int64 {
	q := parseID(v)
	if q < 0 || q%int64(n) != int64(i) {
		return -1
	}
	return q / int64(n)
}

// deploymentA is a Kubernetes deployment whose pods shape A scrapes.
type deploymentA struct {
	name, namespace, port string
	templateHash          string // the ReplicaSet's pod-template-hash
}

// labelDim is one label of a metric family and the values it takes.
type labelDim struct {
	name   string
	values []string
}

// familyA is a metric family of shape A: every combination of its dims'
// values is one series per pod.
type familyA struct {
	name string
	dims []labelDim // sorted by name
}

func (f familyA) size() int {
	n := 1
	for _, d := range f.dims {
		n *= len(d.values)
	}
	return n
}

var (
	deploymentsA = []deploymentA{
		{"api-gateway", "edge", "8080", "7d9f8b6c5"},
		{"checkout", "shop", "8080", "5c8b9f7d4"},
		{"orders", "shop", "8080", "6f4d8c9b7"},
		{"payments", "payments", "9090", "84b7c6d5f9"},
		{"users", "accounts", "8080", "59d6f7c8b"},
		{"search", "shop", "9090", "7b5c9d8f6"},
		{"cart", "shop", "8080", "6d9f5b7c48"},
		{"inventory", "warehouse", "8080", "c7f8d96b5"},
		{"notifications", "messaging", "9102", "5f6b8d7c9"},
		{"ledger", "payments", "9090", "846c9d5bf7"},
	}
	httpHandlers = []string{"/api/v1/orders", "/api/v1/users", "/api/v1/cart", "/healthz"}
	httpMethods  = []string{"GET", "POST"}
	httpCodes    = []string{"200", "404", "500"}
	queues       = []string{"orders", "emails", "webhooks"}
	shards       = []string{"0", "1", "2", "3"}
	familiesA    = []familyA{ // 24 + 96 + 48 + 48 + 16 + 18 = 250 series per pod
		{"http_requests_total", []labelDim{{"code", httpCodes}, {"handler", httpHandlers}, {"method", httpMethods}}},
		{"http_request_duration_seconds_bucket", []labelDim{{"code", []string{"200", "500"}}, {"handler", httpHandlers[:2]},
			{"le", []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}}, {"method", httpMethods}}},
		{"queue_jobs_processed_total", []labelDim{{"queue", queues}, {"result", []string{"success", "failure"}},
			{"shard", shards}, {"type", []string{"sync", "async"}}}},
		{"queue_job_duration_seconds_bucket", []labelDim{{"le", []string{"0.01", "0.05", "0.1", "0.5", "1", "5", "10", "+Inf"}},
			{"queue", queues}, {"type", []string{"sync", "async"}}}},
		{"cache_requests_total", []labelDim{{"result", []string{"hit", "miss"}}, {"shard", shards}, {"type", []string{"get", "set"}}}},
		{"rpc_client_requests_total", []labelDim{{"code", httpCodes}, {"method", []string{"GetUser", "ListOrders", "PlaceOrder"}},
			{"type", []string{"unary", "stream"}}}},
	}
)

// podAlphabet is the alphabet of Kubernetes' generated name suffixes.
const podAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// labelsA returns series i's labels in shape A as name, value pairs sorted
// by name (__name__ first).
func labelsA(i int) [][2]string {
	perPod := seriesPerPodA()
	pod, j := i/perPod, i%perPod
	f := familiesA[0]
	for _, f = range familiesA {
		if j < f.size() {
			break
		}
		j -= f.size()
	}
	d := deploymentsA[pod%len(deploymentsA)]
	ls := make([][2]string, 0, 6+len(f.dims))
	ls = append(ls,
		[2]string{"__name__", f.name},
		[2]string{"container", d.name},
		[2]string{"instance", podIP(pod) + ":" + d.port},
		[2]string{"job", d.name},
		[2]string{"namespace", d.namespace},
		[2]string{"pod", podName(d, pod)},
	)
	for k := len(f.dims) - 1; k >= 0; k-- { // the last dim varies fastest
		dim := f.dims[k]
		ls = append(ls, [2]string{dim.name, dim.values[j%len(dim.values)]})
		j /= len(dim.values)
	}
	slices.SortFunc(ls, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return ls
}

// podIP is the IP of pod number pod, counting from 10.244.0.2; distinct pods
// get distinct IPs.
func podIP(pod int) string {
	v := uint32(10<<24|244<<16) + 2 + uint32(pod)
	b := make([]byte, 0, 15)
	for k := 24; k >= 0; k -= 8 {
		b = strconv.AppendUint(b, uint64(v>>k&0xff), 10)
		if k > 0 {
			b = append(b, '.')
		}
	}
	return string(b)
}

// seriesPerPodA is the number of series each pod of shape A exposes (250).
func seriesPerPodA() int {
	n := 0
	for _, f := range familiesA {
		n += f.size()
	}
	return n
}

// podName is the name of the pod numbered q (pod + g*pods for generation
// g) of deployment d.
func podName(d deploymentA, q int) string { return d.name + "-" + d.templateHash + "-" + podSuffix(q) }

// podValueA is the pod label of slot i of n in generation g of shape A.
func podValueA(n, i int, g int64) string {
	perPod := seriesPerPodA()
	pod, pods := i/perPod, (n+perPod-1)/perPod
	return podName(deploymentsA[pod%len(deploymentsA)], pod+int(g)*pods)
}

// parsePodA is the generation of slot i of n whose pod label is v, or -1.
func parsePodA(n, i int, v []byte) int64 {
	perPod := seriesPerPodA()
	pod, pods := i/perPod, (n+perPod-1)/perPod
	d := deploymentsA[pod%len(deploymentsA)]
	k := len(d.name) + 1 + len(d.templateHash) + 1
	if len(v) < k || string(v[:len(d.name)]) != d.name || v[len(d.name)] != '-' ||
		string(v[len(d.name)+1:k-1]) != d.templateHash || v[k-1] != '-' {
		return -1
	}
	q, ok := parsePodSuffix(v[k:])
	if !ok || q < pod || (q-pod)%pods != 0 {
		return -1
	}
	return int64((q - pod) / pods)
}

const (
	podSuffixSpace   = 27 * 27 * 27 * 27 * 27
	podSuffixMul     = 2654435 // prime to 27
	podSuffixMulInv  = 3257906 // podSuffixMul * podSuffixMulInv = 1 mod podSuffixSpace
	podSuffixAddend  = 1234567
	maxPodSuffixRest = 8 // characters after the first five: pod numbers up to 27^13
)

// podSuffix is the random-looking suffix of pod number q: 5 characters that
// map 0..27^5-1 one to one (the multiplier is prime to 27^5), followed, for
// pods from 27^5 on (only generations of churned pods get there), by
// q/27^5 in base 27, least significant digit first. Distinct pods get
// distinct suffixes.
func podSuffix(q int) string {
	x := (int64(q%podSuffixSpace)*podSuffixMul + podSuffixAddend) % podSuffixSpace
	b := make([]byte, 5, 5+maxPodSuffixRest)
	for k := range 5 {
		b[k] = podAlphabet[x%27]
		x /= 27
	}
	for rest := q / podSuffixSpace; rest > 0; rest /= 27 {
		b = append(b, podAlphabet[rest%27])
	}
	return string(b)
}

// parsePodSuffix inverts podSuffix.
func parsePodSuffix(b []byte) (int, bool) {
	if len(b) < 5 || len(b) > 5+maxPodSuffixRest || (len(b) > 5 && b[len(b)-1] == podAlphabet[0]) {
		return 0, false
	}
	digit := func(c byte) int64 { return int64(strings.IndexByte(podAlphabet, c)) }
	var x, rest int64
	for k := len(b) - 1; k >= 0; k-- {
		d := digit(b[k])
		if d < 0 {
			return 0, false
		}
		if k >= 5 {
			rest = rest*27 + d
		} else {
			x = x*27 + d
		}
	}
	lo := (x - podSuffixAddend + podSuffixSpace) % podSuffixSpace * podSuffixMulInv % podSuffixSpace
	return int(rest*podSuffixSpace + lo), true
}

// seriesValue is the value of series i in round r; the verifier recomputes it.
func seriesValue(i int, r int64) float64 {
	return float64(r) + float64(i%1000)/8
}

// seriesSet holds every series' labels in generation 0 pre-encoded as the
// repeated TimeSeries.labels field (field 1) of prompb.TimeSeries, in
// chunks of setChunkSeries series. Chunks are encoded in parallel and each
// is sized to fit, so that a million series take about their encoded size
// (214 MiB for shape A1M) and no more at any time.
type seriesSet struct {
	chunks []setChunk
}

type setChunk struct {
	enc []byte
	off []uint32 // series k of the chunk is enc[off[k]:off[k+1]]
}

const setChunkBits = 14
const setChunkSeries = 1 << setChunkBits

func newSeriesSet(n int, labels func(i int) [][2]string) *seriesSet {
	s := &seriesSet{chunks: make([]setChunk, (n+setChunkSeries-1)/setChunkSeries)}
	inParallel(len(s.chunks), func(c int) {
		lo, hi := c*setChunkSeries, min((c+1)*setChunkSeries, n)
		ch := setChunk{off: make([]uint32, 1, hi-lo+1)}
		for i := lo; i < hi; i++ {
			ch.enc = appendLabels(ch.enc, labels(i))
			ch.off = append(ch.off, uint32(len(ch.enc)))
		}
		ch.enc = bytes.Clone(ch.enc) // drop the slack of growing
		s.chunks[c] = ch
	})
	return s
}

func (s *seriesSet) labels(i int) []byte {
	c := &s.chunks[i>>setChunkBits]
	k := i & (setChunkSeries - 1)
	return c.enc[c.off[k]:c.off[k+1]]
}

// inParallel calls f(0), ..., f(n-1) from GOMAXPROCS goroutines and returns
// when all have returned.
func inParallel(n int, f func(k int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := int(next.Add(1) - 1); k < n; k = int(next.Add(1) - 1) {
				f(k)
			}
		}()
	}
	wg.Wait()
}

// appendLabels encodes labels as repeated prompb.Label (TimeSeries field 1).
func appendLabels(dst []byte, labels [][2]string) []byte {
	for _, l := range labels {
		n, v := l[0], l[1]
		size := 1 + uvarintLen(uint64(len(n))) + len(n) + 1 + uvarintLen(uint64(len(v))) + len(v)
		dst = append(dst, 0x0a) // TimeSeries.labels, wire type 2
		dst = binary.AppendUvarint(dst, uint64(size))
		dst = append(dst, 0x0a) // Label.name
		dst = binary.AppendUvarint(dst, uint64(len(n)))
		dst = append(dst, n...)
		dst = append(dst, 0x12) // Label.value
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// appendRequest appends an encoded prompb.WriteRequest holding one sample
// (round r, timestamp ts) for each series in [lo, hi).
func (s *seriesSet) appendRequest(dst []byte, lo, hi int, r, ts int64) []byte {
	return s.appendRequestOver(dst, lo, hi, r, ts, nil)
}

// appendRequestOver is appendRequest with the generation label of slot i
// replaced as over[i-lo] says where its rec is not nil.
func (s *seriesSet) appendRequestOver(dst []byte, lo, hi int, r, ts int64, over []genRecord) []byte {
	sampleLen := 1 + 8 + 1 + uvarintLen(uint64(ts))
	for i := lo; i < hi; i++ {
		lab := s.labels(i)
		var o *genRecord
		labLen := len(lab)
		if over != nil && over[i-lo].rec != nil {
			o = &over[i-lo]
			labLen += len(o.rec) - int(o.end-o.start)
		}
		tsLen := labLen + 1 + uvarintLen(uint64(sampleLen)) + sampleLen
		dst = append(dst, 0x0a) // WriteRequest.timeseries
		dst = binary.AppendUvarint(dst, uint64(tsLen))
		if o != nil {
			dst = append(dst, lab[:o.start]...)
			dst = append(dst, o.rec...)
			dst = append(dst, lab[o.end:]...)
		} else {
			dst = append(dst, lab...)
		}
		dst = appendSample(dst, sampleLen, seriesValue(i, r), ts)
	}
	return dst
}

// genRecord is how a slot's labels past generation 0 differ from those in
// the seriesSet: the record of the generation label, lab[start:end] there,
// is rec.
type genRecord struct {
	rec        []byte
	start, end int32
}

// findLabel returns the bounds of the record of label name in encoded
// labels lab, or len(lab), len(lab) if there is none.
func findLabel(lab []byte, name string) (start, end int) {
	for i := 0; i < len(lab); {
		lo, hi, err := lenField(lab, i+1)
		if err != nil || lab[i] != 1<<3|2 {
			break
		}
		if n, _, err := decodeLabel(lab[lo:hi]); err == nil && string(n) == name {
			return i, hi
		}
		i = hi
	}
	return len(lab), len(lab)
}

// appendSample appends TimeSeries.samples (field 2 in 1.0 and 2.0) holding
// one Sample of encoded length sampleLen.
func appendSample(dst []byte, sampleLen int, v float64, ts int64) []byte {
	dst = append(dst, 0x12) // TimeSeries.samples
	dst = binary.AppendUvarint(dst, uint64(sampleLen))
	dst = append(dst, 0x09) // Sample.value, fixed64
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
	dst = append(dst, 0x10) // Sample.timestamp, varint
	return binary.AppendUvarint(dst, uint64(ts))
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// churnSchedule says which series are active in which round. Synthetic time
// runs at step per round from round 0; every time it reaches a multiple of
// every (a multiple of step), a churn event replaces the series of the next
// per slots, cyclically in slot order: the k-th event (k = 1, 2, ...) replaces
// slots [(k-1)*per mod n, (k-1)*per+per) mod n. Slot i's generation in round
// r is how often it was replaced up to r, gen(i, r). per 0 is no churn.
type churnSchedule struct {
	n, per int64
	rounds int64 // rounds per event: every/step
}

func newChurnSchedule(n int, fraction float64, every, step time.Duration) churnSchedule {
	c := churnSchedule{n: int64(n), per: int64(math.Round(fraction * float64(n)))}
	if c.per == 0 || every <= 0 {
		return churnSchedule{n: int64(n)}
	}
	c.rounds = int64(every / step)
	return c
}

func (c churnSchedule) on() bool { return c.per > 0 }

// events is the number of churn events up to and including round r.
func (c churnSchedule) events(r int64) int64 {
	if c.per == 0 || r < 0 {
		return 0
	}
	return r / c.rounds
}

// gen is slot i's generation in round r. After k events slots were
// replaced k*per times in all, slot i once for each of the k*per
// replacements, counted from slot 0, that fell on it: those numbered i,
// i+n, i+2n, ... below k*per.
func (c churnSchedule) gen(i int, r int64) int64 {
	return (c.events(r)*c.per + c.n - 1 - int64(i)) / c.n
}

// created is the number of distinct series slot i had in rounds 0..rounds-1.
func (c churnSchedule) created(i int, rounds int64) int64 {
	if rounds <= 0 {
		return 0
	}
	return c.gen(i, rounds-1) + 1
}

// batchGens is a batch's series under churn: each slot's generation as of
// the last churn event the batch has seen and, for slots past generation 0,
// the record of the generation label that replaces that of generation 0.
// Only slots whose generation changes get a new record, and memory stays
// one record per active series besides the seriesSet.
type batchGens struct {
	events int64
	gen    []int64
	over   []genRecord
}

// batchLayout splits the series into fixed batches: batch k is series
// [k*size, min((k+1)*size, n)). Each batch is one request per round.
type batchLayout struct{ n, size int }

func newBatchLayout(n, size int) batchLayout { return batchLayout{n, size} }

func (b batchLayout) numBatches() int { return (b.n + b.size - 1) / b.size }
func (b batchLayout) bounds(k int) (lo, hi int) {
	return k * b.size, min((k+1)*b.size, b.n)
}
func (b batchLayout) batchOf(series int) int { return series / b.size }

// skipMarker is told about rounds of a batch that were not acknowledged
// (rejected or abandoned) and so need not be delivered.
type skipMarker interface {
	skip(lo, hi int, round int64)
}

type outcome int

const (
	outcomeAcked outcome = iota
	outcomeRejected
	outcomeAbandoned
)

// pushRun pushes rounds of samples with cfg.concurrency workers. Worker p
// owns batches p, p+C, p+2C, ... and pushes them round after round, so every
// series is pushed by one worker, in timestamp order, like a Prometheus shard.
type pushRun struct {
	cfg    config
	target string
	client *http.Client
	set    *seriesSet
	layout batchLayout
	base   int64
	step   int64
	marker skipMarker

	next  []int64   // per batch: rounds finished; written only by the owner
	v2    []v2Batch // per batch with --proto 2.0: its symbols and label refs
	churn churnSchedule
	gens  []batchGens // per batch with churn; written only by the owner

	acked, rejected, abandoned       atomic.Int64
	requests, retries, transportErrs atomic.Int64
	ackedBytes, reserved, paced      atomic.Int64
	start                            time.Time
	status                           [600]atomic.Int64

	rejectMu     sync.Mutex
	rejectReason string
}

func newPushRun(cfg config, target string, set *seriesSet, layout batchLayout, base, step int64, marker skipMarker) *pushRun {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * cfg.concurrency,
		MaxIdleConnsPerHost: 2 * cfg.concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	p := &pushRun{
		cfg:    cfg,
		target: target,
		client: &http.Client{Transport: tr},
		set:    set,
		layout: layout,
		base:   base,
		step:   step,
		marker: marker,
		next:   make([]int64, layout.numBatches()),
		churn:  newChurnSchedule(cfg.series, cfg.churn, cfg.churnEvery, cfg.tsStep),
	}
	if p.churn.on() {
		p.gens = make([]batchGens, layout.numBatches())
	}
	if cfg.proto == "2.0" {
		for k := range layout.numBatches() {
			lo, hi := layout.bounds(k)
			p.v2 = append(p.v2, newV2Batch(lo, hi, cfg.shape.labels))
		}
	}
	return p
}

// v2Batch is a batch's part of every Remote-Write 2.0 request for it: the
// symbols table (Request field 4) and each series' labels_refs (TimeSeries
// field 1, packed), which are the same every round.
type v2Batch struct {
	symbols []byte
	refs    [][]byte
}

func newV2Batch(lo, hi int, labels func(i int) [][2]string) v2Batch {
	var b v2Batch
	ids := map[string]uint32{}
	sym := func(s string) uint32 {
		id, ok := ids[s]
		if !ok {
			id = uint32(len(ids))
			ids[s] = id
			b.symbols = append(b.symbols, 0x22) // Request.symbols
			b.symbols = binary.AppendUvarint(b.symbols, uint64(len(s)))
			b.symbols = append(b.symbols, s...)
		}
		return id
	}
	sym("")
	for i := lo; i < hi; i++ {
		var packed []byte
		for _, l := range labels(i) {
			packed = binary.AppendUvarint(packed, uint64(sym(l[0])))
			packed = binary.AppendUvarint(packed, uint64(sym(l[1])))
		}
		f := append([]byte{0x0a}, binary.AppendUvarint(nil, uint64(len(packed)))...) // TimeSeries.labels_refs
		b.refs = append(b.refs, append(f, packed...))
	}
	return b
}

// appendRequestV2 appends an encoded io.prometheus.write.v2.Request with
// the same samples as seriesSet.appendRequest.
func (b *v2Batch) appendRequestV2(dst []byte, lo int, r, ts int64) []byte {
	dst = append(dst, b.symbols...)
	sampleLen := 1 + 8 + 1 + uvarintLen(uint64(ts))
	for k, refs := range b.refs {
		tsLen := len(refs) + 1 + uvarintLen(uint64(sampleLen)) + sampleLen
		dst = append(dst, 0x2a) // Request.timeseries
		dst = binary.AppendUvarint(dst, uint64(tsLen))
		dst = append(dst, refs...)
		dst = appendSample(dst, sampleLen, seriesValue(lo+k, r), ts)
	}
	return dst
}

// encode appends the request of batch k for round r (timestamp ts).
func (p *pushRun) encode(dst []byte, k int, r, ts int64) []byte {
	lo, hi := p.layout.bounds(k)
	var over []genRecord
	if p.churn.on() {
		p.advance(k, r)
		over = p.gens[k].over
	}
	if p.v2 != nil {
		return p.v2[k].appendRequestV2(dst, lo, r, ts)
	}
	return p.set.appendRequestOver(dst, lo, hi, r, ts, over)
}

// advance brings batch k's series to round r: at a churn event, slots
// whose generation changed get their new generation label, and with --proto
// 2.0 the batch gets a new symbols table, which holds only active series'
// symbols.
func (p *pushRun) advance(k int, r int64) {
	g := &p.gens[k]
	ev := p.churn.events(r)
	if ev == g.events {
		return
	}
	g.events = ev
	lo, hi := p.layout.bounds(k)
	if g.gen == nil {
		g.gen = make([]int64, hi-lo)
		g.over = make([]genRecord, hi-lo)
	}
	sh, n := p.cfg.shape, p.cfg.series
	changed := false
	for i := lo; i < hi; i++ {
		gen := p.churn.gen(i, r)
		if gen == g.gen[i-lo] {
			continue
		}
		changed = true
		g.gen[i-lo] = gen
		o := &g.over[i-lo]
		if o.rec == nil {
			start, end := findLabel(p.set.labels(i), sh.genLabel)
			o.start, o.end = int32(start), int32(end)
		}
		o.rec = appendLabels(o.rec[:0], [][2]string{{sh.genLabel, sh.genValue(n, i, gen)}})
	}
	if changed && p.v2 != nil {
		p.v2[k] = newV2Batch(lo, hi, func(i int) [][2]string { return sh.seriesLabels(n, i, g.gen[i-lo]) })
	}
}

// seriesCreated is the number of distinct series pushed: every slot's
// generations in the rounds pushed. Valid after run returns.
func (p *pushRun) seriesCreated() int64 {
	var n int64
	for k := range p.layout.numBatches() {
		lo, hi := p.layout.bounds(k)
		for i := lo; i < hi; i++ {
			n += p.churn.created(i, p.next[k])
		}
	}
	return n
}

// expectedRounds is how many rounds of series i were pushed (acknowledged,
// rejected or abandoned). Valid after run returns.
func (p *pushRun) expectedRounds(i int) int64 { return p.next[p.layout.batchOf(i)] }

// run pushes until the duration, sample or round limit is reached or ctx
// ends, and returns when every worker has finished.
func (p *pushRun) run(ctx context.Context) {
	var deadline time.Time
	if p.cfg.duration > 0 {
		deadline = time.Now().Add(p.cfg.duration)
	}
	p.start = time.Now()
	var wg sync.WaitGroup
	for w := 0; w < p.cfg.concurrency; w++ {
		var owned []int
		for k := w; k < p.layout.numBatches(); k += p.cfg.concurrency {
			owned = append(owned, k)
		}
		if len(owned) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.worker(ctx, deadline, owned)
		}()
	}
	wg.Wait()
	p.client.CloseIdleConnections()
}

func (p *pushRun) stopped(ctx context.Context, deadline time.Time) bool {
	return ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline))
}

func (p *pushRun) worker(ctx context.Context, deadline time.Time, owned []int) {
	var raw, comp []byte
	for r := int64(0); p.cfg.rounds == 0 || r < int64(p.cfg.rounds); r++ {
		ts := p.base + r*p.step
		for _, k := range owned {
			if p.stopped(ctx, deadline) {
				return
			}
			lo, hi := p.layout.bounds(k)
			n := int64(hi - lo)
			if p.cfg.samples > 0 && p.reserved.Add(n) > p.cfg.samples {
				p.reserved.Add(-n)
				return
			}
			if !p.pace(ctx, deadline, n) {
				return
			}
			raw = p.encode(raw[:0], k, r, ts)
			comp = snappy.Encode(comp[:cap(comp)], raw)
			switch p.send(ctx, deadline, comp) {
			case outcomeAcked:
				p.acked.Add(n)
				p.ackedBytes.Add(int64(len(comp)))
			case outcomeRejected:
				p.rejected.Add(n)
				p.skip(lo, hi, r)
			case outcomeAbandoned:
				p.abandoned.Add(n)
				p.skip(lo, hi, r)
			}
			p.next[k] = r + 1
		}
	}
}

// pace waits, with --rate, until n more samples are due. It returns false
// if the run ends first.
func (p *pushRun) pace(ctx context.Context, deadline time.Time, n int64) bool {
	if p.cfg.rate <= 0 {
		return true
	}
	sent := p.paced.Add(n) - n
	due := p.start.Add(time.Duration(float64(sent) / p.cfg.rate * float64(time.Second)))
	if !deadline.IsZero() && !due.Before(deadline) {
		return false
	}
	wait := time.Until(due)
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *pushRun) skip(lo, hi int, r int64) {
	if p.marker != nil {
		p.marker.skip(lo, hi, r)
	}
}

// send posts body until it is acknowledged (2xx) or rejected (4xx other than
// 429, or any other non-retryable status). 429, 5xx and transport errors are
// retried with exponential backoff (or Retry-After), at most 1s apart, until
// the push deadline passes or ctx ends; then the request is abandoned.
func (p *pushRun) send(ctx context.Context, deadline time.Time, body []byte) outcome {
	backoff := p.cfg.minBackoff
	for {
		p.requests.Add(1)
		code, retryAfter, reason, err := p.post(ctx, body)
		if err == nil {
			if code >= 0 && code < len(p.status) {
				p.status[code].Add(1)
			}
			switch {
			case code/100 == 2:
				return outcomeAcked
			case code != http.StatusTooManyRequests && code/100 != 5:
				p.noteReject(code, reason)
				return outcomeRejected
			}
		} else {
			p.transportErrs.Add(1)
		}
		if p.stopped(ctx, deadline) {
			return outcomeAbandoned
		}
		wait := backoff
		if retryAfter > 0 {
			wait = min(retryAfter, time.Second)
		}
		backoff = min(2*backoff, time.Second)
		p.retries.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return outcomeAbandoned
		}
	}
}

func (p *pushRun) noteReject(code int, reason string) {
	p.rejectMu.Lock()
	defer p.rejectMu.Unlock()
	if p.rejectReason == "" {
		p.rejectReason = fmt.Sprintf("HTTP %d: %s", code, reason)
	}
}

// post sends one request and returns the status, Retry-After and, for
// errors, the start of the response body.
func (p *pushRun) post(ctx context.Context, body []byte) (code int, retryAfter time.Duration, reason string, err error) {
	rctx, cancel := context.WithTimeout(ctx, p.cfg.requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, p.target, bytes.NewReader(body))
	if err != nil {
		return 0, 0, "", err
	}
	req.Header.Set("Content-Encoding", "snappy")
	if p.v2 != nil {
		req.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	} else {
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	}
	req.Header.Set("User-Agent", "ferry-load")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		reason = strings.TrimSpace(string(msg))
		retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, retryAfter, reason, nil
}

// parseRetryAfter parses a Retry-After header (seconds or an HTTP date).
// It returns 0 when the header is absent or invalid.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(h, 64); err == nil {
		if s <= 0 || math.IsNaN(s) {
			return 0
		}
		return time.Duration(min(s, 3600) * float64(time.Second))
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// fill copies the push counters into res.
func (p *pushRun) fill(res *result, elapsed time.Duration) {
	res.DurationSeconds = round3(elapsed.Seconds())
	if len(p.next) > 0 {
		res.Rounds = p.next[0]
		for _, n := range p.next {
			res.Rounds = min(res.Rounds, n)
		}
	}
	res.Requests = p.requests.Load()
	res.Retries = p.retries.Load()
	res.TransportErrors = p.transportErrs.Load()
	res.HTTPStatus = map[string]int64{}
	for code := range p.status {
		if n := p.status[code].Load(); n > 0 {
			res.HTTPStatus[strconv.Itoa(code)] = n
		}
	}
	res.AckedSamples = p.acked.Load()
	if s := elapsed.Seconds(); s > 0 {
		res.AckedPerSecond = round1(float64(res.AckedSamples) / s)
	}
	res.RejectedSamples = p.rejected.Load()
	res.AbandonedSamples = p.abandoned.Load()
	res.AckedBytes = p.ackedBytes.Load()
	p.rejectMu.Lock()
	res.FirstRejectReason = p.rejectReason
	p.rejectMu.Unlock()
}
