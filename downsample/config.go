package downsample

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// StoragePolicy says what an endpoint receives instead of raw samples: one
// rollup sample per series (and aggregation) per Resolution, kept for
// Retention.
type StoragePolicy struct {
	Resolution model.Duration `yaml:"resolution"`
	Retention  model.Duration `yaml:"retention"`
	Downsample struct {
		// All rolls up every series with its type's default aggregation;
		// false takes only what mapping and rollup rules route to the
		// policy. Default true.
		All *bool `yaml:"all,omitempty"`
	} `yaml:"downsample,omitempty"`
}

// String is the policy's name in rules: "5m:1440h".
func (p StoragePolicy) String() string { return p.Resolution.String() + ":" + p.Retention.String() }

// Spelled returns the policy as "resolution:retention" in hours, minutes
// and seconds (1h:8760h), the way configurations usually spell it; String,
// which names checkpoints, may use days, weeks and years.
func (p StoragePolicy) Spelled() string {
	return spell(time.Duration(p.Resolution)) + ":" + spell(time.Duration(p.Retention))
}

// spell writes d in the largest of h, m, s and ms that divides it.
func spell(d time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d != 0 && d%u.d == 0 {
			return fmt.Sprint(int64(d/u.d)) + u.name
		}
	}
	return d.String()
}

// All reports whether every series is rolled up.
func (p StoragePolicy) All() bool { return p.Downsample.All == nil || *p.Downsample.All }

// MappingRule routes the series its filter selects to storage policies with
// the given aggregations, and can keep them from raw endpoints.
type MappingRule struct {
	Name            string   `yaml:"name"`
	Filter          string   `yaml:"filter"`
	Aggregations    []string `yaml:"aggregations,omitempty"`
	StoragePolicies []string `yaml:"storage_policies,omitempty"`
	// Drop keeps the selected series from endpoints without a storage
	// policy.
	Drop bool `yaml:"drop,omitempty"`

	matchers []*labels.Matcher
}

// RollupRule aggregates the series its filter selects across series: they
// are grouped by the By labels (or all labels but Without, and __name__),
// and each group becomes one series named NewName.
type RollupRule struct {
	Name            string   `yaml:"name"`
	Filter          string   `yaml:"filter"`
	By              []string `yaml:"by,omitempty"`
	Without         []string `yaml:"without,omitempty"`
	Aggregation     string   `yaml:"aggregation"`
	NewName         string   `yaml:"new_name"`
	StoragePolicies []string `yaml:"storage_policies"`

	matchers []*labels.Matcher
}

// Config is the downsampling part of Ferry's configuration.
type Config struct {
	// MaxDelay: a window closes when the clock passes its end plus
	// MaxDelay and no sample of its series arrived for MaxDelay, for
	// series that stop sending. Default 1m.
	MaxDelay model.Duration `yaml:"max_delay,omitempty"`
	// CommitInterval is how often window state, closed windows and the WAL
	// position are committed together.
	CommitInterval model.Duration `yaml:"commit_interval,omitempty"`
	MappingRules   []MappingRule  `yaml:"mapping_rules,omitempty"`
	RollupRules    []RollupRule   `yaml:"rollup_rules,omitempty"`
}

// Aggregations a rule may ask for. "counter" is the reset-adjusted running
// total, the default for counters; "last" is the default for gauges.
var aggregations = []string{"counter", "last", "min", "max", "sum", "count", "avg"}

// ValidAggregation reports whether a is a known aggregation.
func ValidAggregation(a string) bool { return slices.Contains(aggregations, a) }

// ParsePolicy parses "5m:1440h".
func ParsePolicy(s string) (res, ret time.Duration, err error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("storage policy %q: want resolution:retention, e.g. 5m:1440h", s)
	}
	r, err := model.ParseDuration(a)
	if err != nil {
		return 0, 0, fmt.Errorf("storage policy %q: resolution: %w", s, err)
	}
	t, err := model.ParseDuration(b)
	if err != nil {
		return 0, 0, fmt.Errorf("storage policy %q: retention: %w", s, err)
	}
	return time.Duration(r), time.Duration(t), nil
}

// Validate checks c against the policies endpoints use and compiles the
// filters. Each problem is one error, prefixed with where it is.
func (c *Config) Validate(policies []StoragePolicy) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.MaxDelay < 0 {
		add("downsample.max_delay must not be negative")
	}
	known := map[string]bool{}
	for _, p := range policies {
		known[p.String()] = true
	}
	checkPolicies := func(where string, ps []string) {
		for _, p := range ps {
			res, ret, err := ParsePolicy(p)
			if err != nil {
				add("%s: %v", where, err)
				continue
			}
			name := StoragePolicy{Resolution: model.Duration(res), Retention: model.Duration(ret)}.String()
			if !known[name] {
				add("%s: storage policy %s is used by no endpoint", where, p)
			}
		}
	}
	pp := parser.NewParser(parser.Options{})
	// rule checks what every rule has, a name and a filter, and returns the
	// filter's matchers.
	rule := func(where, name, filter string) []*labels.Matcher {
		if name == "" {
			add("%s: name is required", where)
		}
		ms, err := pp.ParseMetricSelector(filter)
		if err != nil {
			add("%s: filter %q: %v", where, filter, err)
		}
		return ms
	}
	for i := range c.MappingRules {
		r := &c.MappingRules[i]
		where := fmt.Sprintf("downsample.mapping_rules[%d] (%s)", i, r.Name)
		r.matchers = rule(where, r.Name, r.Filter)
		for _, a := range r.Aggregations {
			if !ValidAggregation(a) {
				add("%s: unknown aggregation %q (known: %s)", where, a, strings.Join(aggregations, ", "))
			}
		}
		if len(r.StoragePolicies) == 0 && !r.Drop {
			add("%s: storage_policies is empty and drop is false: the rule does nothing", where)
		}
		checkPolicies(where, r.StoragePolicies)
	}
	for i := range c.RollupRules {
		r := &c.RollupRules[i]
		where := fmt.Sprintf("downsample.rollup_rules[%d] (%s)", i, r.Name)
		r.matchers = rule(where, r.Name, r.Filter)
		if len(r.By) > 0 && len(r.Without) > 0 {
			add("%s: use by or without, not both", where)
		}
		switch r.Aggregation {
		case "sum", "min", "max", "avg":
		default:
			add("%s: aggregation %q: a rollup rule takes sum, min, max or avg", where, r.Aggregation)
		}
		if !model.UTF8Validation.IsValidMetricName(r.NewName) || r.NewName == "" {
			add("%s: new_name %q is not a valid metric name", where, r.NewName)
		}
		if len(r.StoragePolicies) == 0 {
			add("%s: storage_policies is required", where)
		}
		checkPolicies(where, r.StoragePolicies)
	}
	for _, p := range policies {
		if p.Resolution <= 0 || p.Retention <= 0 {
			add("storage_policy %s: resolution and retention must be positive", p.Spelled())
		}
	}
	return errs
}

// Warnings returns what is valid in c but likely unintended: a policy with
// downsample.all: false that no rule routes series to (yet) receives
// nothing. Validate runs first.
func (c *Config) Warnings(policies []StoragePolicy) []string {
	used := map[string]bool{}
	for _, ps := range c.usedPolicies() {
		for _, p := range ps {
			if res, ret, err := ParsePolicy(p); err == nil {
				used[StoragePolicy{Resolution: model.Duration(res), Retention: model.Duration(ret)}.String()] = true
			}
		}
	}
	var ws []string
	for _, p := range policies {
		if !p.All() && !used[p.String()] {
			ws = append(ws, fmt.Sprintf("storage_policy %s has downsample.all: false and no mapping or rollup rule routes series to it yet: its endpoint receives nothing until one does", p.Spelled()))
		}
	}
	return ws
}

// usedPolicies returns the storage_policies of every rule.
func (c *Config) usedPolicies() [][]string {
	var out [][]string
	for _, r := range c.MappingRules {
		out = append(out, r.StoragePolicies)
	}
	for _, r := range c.RollupRules {
		out = append(out, r.StoragePolicies)
	}
	return out
}

// DropsRaw reports whether a mapping rule with drop: true selects ls, which
// then goes to no endpoint without a storage policy. Validate compiles the
// filters first.
func (c *Config) DropsRaw(ls labels.Labels) bool {
	for _, r := range c.MappingRules {
		if r.Drop && r.matchers != nil && matches(r.matchers, ls) {
			return true
		}
	}
	return false
}

// HasDrop reports whether any mapping rule drops raw series.
func (c *Config) HasDrop() bool {
	for _, r := range c.MappingRules {
		if r.Drop {
			return true
		}
	}
	return false
}

func matches(ms []*labels.Matcher, ls labels.Labels) bool {
	for _, m := range ms {
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}

// IsCounterName reports whether a metric name follows the counter naming
// conventions (used when no metadata says otherwise).
func IsCounterName(name string) bool {
	for _, s := range []string{"_total", "_count", "_sum", "_bucket"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}
