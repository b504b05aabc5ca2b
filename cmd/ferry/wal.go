package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/ferrymetrics/ferry/wal"
)

type walCmd struct {
	Inspect walInspectCmd `cmd:"" help:"Print the segments of a WAL directory with their records and samples, without changing anything."`
	Verify  walVerifyCmd  `cmd:"" help:"Check every record of a stopped agent's WAL, without changing it; exits non-zero on damage."`
}

type walInspectCmd struct {
	Dir string `arg:"" type:"existingdir" help:"WAL directory (<data_dir>/wal), or the data directory that holds it."`
}

func (c *walInspectCmd) Run() error {
	dir, err := walDir(c.Dir)
	if err != nil {
		return err
	}
	if dir != c.Dir {
		fmt.Fprintln(os.Stderr, "inspecting", dir)
	}
	st, err := wal.Inspect(dir)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "segment\tbytes\trecords\tseries\tsamples\thistograms\texemplars\tmetadata\tdamage\t")
	for _, s := range st.Segments {
		damage := "-"
		if s.Damage != "" {
			damage = fmt.Sprintf("at %d: %s", s.IntactBytes, s.Damage)
		}
		fmt.Fprintf(tw, "%08d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", s.Index, s.Bytes, s.Records, s.Series, s.Samples, s.Histograms, s.Exemplars, s.Metadata, damage)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.Checkpoint >= 0 {
		fmt.Printf("checkpoint.%08d: %d series in a chain of %d checkpoints\n", st.Checkpoint, st.CheckpointSeries, len(st.CheckpointChain))
	}
	return nil
}

// walDir returns the WAL directory to inspect for the argument dir: dir
// itself if it holds segments or a checkpoint, else dir/wal if dir is a data
// directory whose wal/ does.
func walDir(dir string) (string, error) {
	ok, err := holdsWAL(dir)
	if err != nil || ok {
		return dir, err
	}
	sub := filepath.Join(dir, "wal")
	if fi, err := os.Stat(sub); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%s holds no WAL segments (expected <data_dir>/wal or <data_dir>)", dir)
	}
	ok, err = holdsWAL(sub)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%s holds no WAL segments (expected <data_dir>/wal or <data_dir>)", sub)
	}
	return sub, nil
}

// holdsWAL reports whether dir holds a WAL segment (a regular file named
// by 8 decimal digits, as tsdb/wlog names them) or a checkpoint directory.
func holdsWAL(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("read directory %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.Type().IsRegular() && isSegmentName(name) {
			return true, nil
		}
		if k, ok := strings.CutPrefix(name, "checkpoint."); ok && e.IsDir() && isSegmentName(k) {
			return true, nil
		}
	}
	return false, nil
}

func isSegmentName(name string) bool {
	if len(name) != 8 {
		return false
	}
	_, err := strconv.ParseUint(name, 10, 64)
	return err == nil
}
