package sender

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// maxTenantSeries is the most tenants an endpoint counts under their own
// name in ferry_sender_tenant_samples_sent_total; the others are counted
// together under otherTenant.
const maxTenantSeries = 100

// otherTenant labels the samples of the tenants past maxTenantSeries.
const otherTenant = "_other"

// tenant is one tenant of an endpoint that splits its requests by tenant.
type tenant struct {
	name string // "" sends no tenant header
	id   uint32 // its index in the tenantTable
	sent prometheusCounter
	// catchUp is set while the tenant is set aside.
	catchUp atomic.Pointer[catchUp]
}

// tenantTable interns the tenants of an endpoint: items carry a tenant's
// index, which fits in the padding of an item. The reading goroutine adds
// tenants as it meets new series; shards look them up by index. An
// endpoint keeps the tenants it has met for its sender's life.
type tenantTable struct {
	mu       sync.Mutex
	ids      map[string]uint32
	list     []*tenant
	vec      *prometheus.CounterVec
	endpoint string
	other    prometheusCounter // created with the first tenant past maxTenantSeries
	// retrying counts the requests of any tenant that failed and are
	// being retried.
	retrying atomic.Int32
	// delivered counts the requests of any tenant the endpoint
	// acknowledged: a request that failed twice with others delivered
	// between is its tenant's own trouble.
	delivered atomic.Int64
}

func newTenantTable(vec *prometheus.CounterVec, endpoint string) *tenantTable {
	return &tenantTable{ids: map[string]uint32{}, vec: vec, endpoint: endpoint}
}

// intern returns the index of the tenant called name, adding it.
func (t *tenantTable) intern(name string) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[name]; ok {
		return id
	}
	name = strings.Clone(name) // not a view of a series' labels
	tn := &tenant{name: name, id: uint32(len(t.list))}
	if len(t.list) < maxTenantSeries {
		tn.sent = t.vec.WithLabelValues(t.endpoint, name)
	} else {
		if t.other == nil {
			t.other = t.vec.WithLabelValues(t.endpoint, otherTenant)
		}
		tn.sent = t.other
	}
	id := uint32(len(t.list))
	t.list = append(t.list, tn)
	t.ids[name] = id
	return id
}

func (t *tenantTable) get(id uint32) *tenant {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.list[id]
}

// validTenant reports whether name can be sent as a header value: no
// control characters other than tab (Go's HTTP client refuses to send
// them, which would fail the request on every retry).
func validTenant(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// tenantGroup is the part of a batch that goes to one tenant.
type tenantGroup struct {
	tenant *tenant
	items  []item
}

// splitByTenant partitions batch by tenant, keeping the order of each
// tenant's items (so of each series', whose items share a tenant), in the
// order of the tenants' first items. The groups are views of batch itself
// when it holds one tenant, else of the shard's tenant buffer; they stay
// valid until the next call.
func (sh *shard) splitByTenant(batch []item) []tenantGroup {
	tt := sh.s.tenants
	groups := sh.tenantGroups[:0]
	clear(sh.tenantGroups)
	first := batch[0].tenant
	one := true
	for i := range batch {
		if batch[i].tenant != first {
			one = false
			break
		}
	}
	if one {
		sh.tenantGroups = append(groups, tenantGroup{tenant: tt.get(first), items: batch})
		return sh.tenantGroups
	}
	// A counting sort: how many items each tenant has, then where its
	// items start, then each item in its place.
	sh.idx.reset(len(batch))
	counts := sh.tenantCounts[:0]
	for i := range batch {
		g, seen := sh.idx.put(uint64(batch[i].tenant), int32(len(counts)))
		if !seen {
			counts = append(counts, 0)
			groups = append(groups, tenantGroup{tenant: tt.get(batch[i].tenant)})
		}
		counts[g]++
	}
	out := groupSlots(counts, sh.byTenant, batch)
	for i := range batch {
		g, _ := sh.idx.put(uint64(batch[i].tenant), 0)
		out[counts[g]] = batch[i]
		counts[g]++
	}
	start := int32(0)
	for g := range groups {
		groups[g].items = out[start:counts[g]]
		start = counts[g]
	}
	sh.byTenant, sh.tenantCounts, sh.tenantGroups = out, counts, groups
	return groups
}
