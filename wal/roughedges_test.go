package wal

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// TestHighestTimestampMetric checks ferry_wal_highest_timestamp_seconds: 0
// while the WAL has never had a sample, as Prometheus reports "none yet",
// then the highest timestamp appended, also after a replay.
func TestHighestTimestampMetric(t *testing.T) {
	dir := t.TempDir()
	open := func() (*WAL, *prometheus.Registry) {
		t.Helper()
		reg := prometheus.NewRegistry()
		w, err := Open(dir, DefaultOptions(), zaptest.NewLogger(t), reg, nil)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		w.Start()
		return w, reg
	}
	check := func(step string, reg *prometheus.Registry, want string) {
		t.Helper()
		exp := "# HELP ferry_wal_highest_timestamp_seconds Highest sample timestamp appended; 0 if none yet.\n" +
			"# TYPE ferry_wal_highest_timestamp_seconds gauge\n" +
			"ferry_wal_highest_timestamp_seconds " + want + "\n"
		if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "ferry_wal_highest_timestamp_seconds"); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}

	w, reg := open()
	check("fresh", reg, "0")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, reg = open()
	check("reopened without samples", reg, "0")
	for _, ts := range []int64{1_700_000_000_250, 1_700_000_000_125} {
		if err := w.Append(batchOf(0, 3, ts)); err != nil {
			t.Fatal(err)
		}
	}
	check("after appends", reg, "1.70000000025e+09")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, reg = open()
	defer func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	}()
	check("replayed", reg, "1.70000000025e+09")
}
