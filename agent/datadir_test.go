package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	l, err := LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.Unclean {
		t.Error("a fresh data dir is reported unclean")
	}
	_, err = LockDataDir(dir)
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Fatalf("second lock: %v, want ErrDataDirInUse naming pid %d", err, os.Getpid())
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if l, err = LockDataDir(dir); err != nil || l.Unclean {
		t.Fatalf("after a clean release: %v, unclean %v", err, l != nil && l.Unclean)
	}
	l.Abandon() // as a crash leaves it
	if l, err = LockDataDir(dir); err != nil || !l.Unclean {
		t.Fatalf("after an abandoned lock: %v, unclean %v", err, l != nil && l.Unclean)
	}
	_ = l.Release()
}

// A second agent on a running agent's data dir refuses to start; an agent
// that finds the lock file of a run that did not exit cleanly says so in
// ferry_unclean_shutdown.
func TestAgentHoldsItsDataDir(t *testing.T) {
	dir := t.TempDir()
	ra := startAgent(t, testConfig(t, dir), nil)
	if got := ra.metric(t, "ferry_unclean_shutdown"); got != 0 {
		t.Errorf("ferry_unclean_shutdown %v on a fresh data dir, want 0", got)
	}
	second := New(testConfig(t, dir), Options{Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), Version: "test"})
	if err := second.Run(context.Background()); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second agent on the same data dir: %v, want ErrDataDirInUse", err)
	}
	if err := ra.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, LockFile)); !os.IsNotExist(err) {
		t.Fatalf("lock file after a clean exit: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, LockFile), []byte("12345\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	ra = startAgent(t, testConfig(t, dir), nil)
	if got := ra.metric(t, "ferry_unclean_shutdown"); got != 1 {
		t.Errorf("ferry_unclean_shutdown %v after an unclean exit, want 1", got)
	}
}
