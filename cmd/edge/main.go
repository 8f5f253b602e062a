// Command edge serves pgrelay's WebSocket clients and demo page. It subscribes
// to Redis once and fans messages out to its clients; it never talks to
// PostgreSQL. Scale it freely. Configuration comes from EDGE_* variables; -h
// lists them.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
	"github.com/pgrelay/pgrelay/internal/edge"
	"github.com/pgrelay/pgrelay/internal/logconf"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	var cfg edge.Config
	if len(args) > 0 {
		if args[0] == "check" {
			return check(args[1:], stdout, stderr)
		}
		if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
			fmt.Fprintf(stdout, "edge: pgrelay's WebSocket fan-out from Redis to browsers.\n\n")
			tw := tabwriter.NewWriter(stdout, 1, 0, 4, ' ', 0)
			_ = envconfig.Usagef("EDGE", &cfg, tw, envconfig.DefaultTableFormat)
			_ = tw.Flush()
			fmt.Fprintln(stdout)
			return 0
		}
		fmt.Fprintf(stderr, "edge: unexpected argument %q (configuration is in EDGE_* variables; -h lists them)\n", args[0])
		return 2
	}
	if err := envconfig.CheckDisallowed("EDGE", &cfg); err != nil {
		fmt.Fprintf(stderr, "edge: %v (-h lists the variables)\n", err)
		return 2
	}
	if err := envconfig.Process("EDGE", &cfg); err != nil {
		fmt.Fprintf(stderr, "edge: %v\n", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "edge: %v\n", err)
		return 2
	}
	log, err := logconf.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "edge: %v\n", err)
		return 2
	}
	cfg.Logger = log
	slog.SetDefault(log) // libraries that log through slog.Default, too

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := edge.Run(ctx, cfg); err != nil {
		log.Error("edge failed", "err", err)
		return 1
	}
	return 0
}
