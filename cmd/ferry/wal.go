package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/ferrymetrics/ferry/wal"
)

type walCmd struct {
	Inspect walInspectCmd `cmd:"" help:"Print the segments of a WAL directory with their records and samples, without changing anything."`
}

type walInspectCmd struct {
	Dir string `arg:"" type:"existingdir" help:"WAL directory (<data_dir>/wal)."`
}

func (c *walInspectCmd) Run() error {
	st, err := wal.Inspect(c.Dir)
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
		fmt.Printf("checkpoint.%08d: %d series\n", st.Checkpoint, st.CheckpointSeries)
	}
	return nil
}
