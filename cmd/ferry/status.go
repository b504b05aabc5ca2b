package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferrymetrics/ferry/agent"
	"github.com/ferrymetrics/ferry/sender"
)

// Exit codes of `ferry status`, as monitoring checks read them.
const (
	statusOK          = 0 // every endpoint healthy
	statusCatchingUp  = 1 // an endpoint drains a backlog, or retries a failed send
	statusFailing     = 2 // an endpoint's sends fail, or the disk cap drops what it has not sent
	statusUnreachable = 3 // the agent did not answer
)

type statusCmd struct {
	URL     string        `default:"http://127.0.0.1:9201" help:"The agent's address."`
	Output  string        `short:"o" default:"table" enum:"table,json" help:"Output format (${enum})."`
	Timeout time.Duration `default:"5s" help:"How long to wait for the agent."`
}

// Run prints the agent's status and exits 0 if every endpoint is healthy,
// 1 if one is catching up or retrying, 2 if one is failing, 3 if the agent
// cannot be asked.
func (c *statusCmd) Run() error {
	st, raw, err := fetchStatus(strings.TrimSuffix(c.URL, "/")+"/api/v1/status", c.Timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry: status:", err)
		os.Exit(statusUnreachable)
	}
	if c.Output == "json" {
		os.Stdout.Write(raw)
	} else {
		printStatus(os.Stdout, st)
	}
	code := statusOK
	for _, e := range st.Endpoints {
		switch e.State {
		case sender.StateFailing, sender.StateDiskCap:
			code = statusFailing
		case sender.StateCatchingUp, sender.StateRetrying:
			code = max(code, statusCatchingUp)
		}
	}
	os.Exit(code)
	return nil
}

func fetchStatus(url string, timeout time.Duration) (agent.Status, []byte, error) {
	var st agent.Status
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get(url)
	if err != nil {
		return st, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return st, nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, nil, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(raw)))
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, nil, fmt.Errorf("%s: not a Ferry status: %w", url, err)
	}
	return st, raw, nil
}

func printStatus(w io.Writer, st agent.Status) {
	fmt.Fprintf(w, "Ferry %s, up %s\n", st.Version, st.Time.Sub(st.Started).Round(time.Second))
	if ws := st.WAL; ws != nil {
		capText := "no max_size"
		if ws.MaxSizeBytes > 0 {
			capText = "of " + agent.FormatBytes(ws.MaxSizeBytes) + " max_size"
		}
		eta := "not approaching"
		if ws.SecondsToCap != nil {
			eta = fmt.Sprintf("in %s, then %s", agent.FormatSeconds(*ws.SecondsToCap), ws.WhenFull)
		}
		fmt.Fprintf(w, "WAL: %s %s, %d segments, %.0f samples/s in; disk cap %s\n", agent.FormatBytes(ws.SizeBytes), capText, ws.Segments, ws.IngestRate, eta)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tSTATE\tBACKLOG\tBEHIND\tCAUGHT UP IN\tSENT/S\tLAST ERROR")
	for _, e := range st.Endpoints {
		eta := "-"
		switch {
		case e.Lag == 0:
			eta = "caught up"
		case e.SecondsToCaughtUp != nil:
			eta = agent.FormatSeconds(*e.SecondsToCaughtUp)
		}
		backlog := fmt.Sprintf("%d %s", e.Lag, e.LagUnit)
		if e.LagUnit == "bytes" {
			backlog = agent.FormatBytes(e.Lag)
		}
		lastErr := e.LastError
		if lastErr == "" {
			lastErr = "-"
		} else if len(lastErr) > 60 {
			lastErr = lastErr[:57] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%s\n", e.Name, e.State, backlog, agent.FormatSeconds(e.LagSeconds), eta, e.SendRate, lastErr)
	}
	_ = tw.Flush()
	if c := st.Compactor; c != nil {
		fmt.Fprintf(w, "Compactor: at %s, %s behind, %d series, %d open windows\n", c.Position, agent.FormatBytes(c.LagBytes), c.Series, c.OpenWindows)
	}
	if s := st.Scrape; s.Targets > 0 {
		fmt.Fprintf(w, "Scrape targets: %d, %d up, %d down\n", s.Targets, s.Up, s.Down)
	}
}
