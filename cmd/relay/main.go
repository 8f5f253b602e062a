// Command relay holds the only PostgreSQL LISTEN connection of a pgrelay
// installation and republishes notifications to Redis. Run several: one leads,
// the others stand by. Configuration comes from RELAY_* variables; -h lists them.
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
	"github.com/pgrelay/pgrelay/internal/logconf"
	"github.com/pgrelay/pgrelay/internal/relay"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	var cfg relay.Config
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
			fmt.Fprintf(stdout, "relay: PostgreSQL (LISTEN/NOTIFY or an outbox table) to Redis, for pgrelay edges.\n\n")
			tw := tabwriter.NewWriter(stdout, 1, 0, 4, ' ', 0)
			_ = envconfig.Usagef("RELAY", &cfg, tw, envconfig.DefaultTableFormat)
			_ = tw.Flush()
			fmt.Fprintln(stdout)
			return 0
		}
		fmt.Fprintf(stderr, "relay: unexpected argument %q (configuration is in RELAY_* variables; -h lists them)\n", args[0])
		return 2
	}
	if err := envconfig.CheckDisallowed("RELAY", &cfg); err != nil {
		fmt.Fprintf(stderr, "relay: %v (-h lists the variables)\n", err)
		return 2
	}
	if err := envconfig.Process("RELAY", &cfg); err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	}
	log, err := logconf.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	}
	cfg.Logger = log
	slog.SetDefault(log) // libraries that log through slog.Default, too

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := relay.Run(ctx, cfg); err != nil {
		log.Error("relay failed", "err", err)
		return 1
	}
	return 0
}
