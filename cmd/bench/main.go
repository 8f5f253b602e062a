// Command bench loads a pgrelay deployment and measures it: N WebSocket
// clients on the edges, M notifications sent with pg_notify at a rate, and
// what arrived, how fast, at what cost to the edges. -h explains the flags;
// docs/benchmarks.md has the method and the figures measured with it.
//
// The clients read frames with a minimal WebSocket reader on the raw
// connection (wsconn.go), since the tool usually shares the machine with
// the edge it measures. It is a tool, not part of a deployment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	soft, _, err := raiseNoFile()
	if err != nil {
		fmt.Fprintf(stderr, "bench: raise the open-files limit: %v\n", err)
	}
	if need := uint64(cfg.Clients + cfg.Senders + 64); soft > 0 && need > soft {
		fmt.Fprintf(stderr, "bench: -clients: %d connections need about %d open files, the limit is %d: run several bench processes\n", cfg.Clients, need, soft)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	e := env{
		dialNotifier: func(ctx context.Context) (notifier, error) { return dialPG(ctx, cfg.DatabaseURL) },
	}
	if !cfg.Quiet {
		e.progress = stderr
	}
	res, err := Run(ctx, cfg, e)
	if res != nil {
		if werr := writeTable(stdout, res); werr != nil {
			fmt.Fprintf(stderr, "bench: %v\n", werr)
		}
		if cfg.JSONFile != "" {
			if werr := saveJSON(cfg.JSONFile, stdout, res); werr != nil {
				fmt.Fprintf(stderr, "bench: -json: %v\n", werr)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

func saveJSON(path string, stdout io.Writer, r *Result) error {
	if path == "-" {
		return writeJSON(stdout, r)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeJSON(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
