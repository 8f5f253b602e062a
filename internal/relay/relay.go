// Package relay runs a relay process: the PostgreSQL LISTEN connection (with
// leadership), publishing to Redis, and the probes.
//
// Start with Run; the LISTEN side is pglisten, the Redis side redisbus. With
// the notify source each notification is published; with the outbox source
// notifications only wake the leader, which drains the outbox table
// (package outbox) on its LISTEN connection.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgrelay/pgrelay/internal/debug"
	"github.com/pgrelay/pgrelay/internal/metrics"
	"github.com/pgrelay/pgrelay/internal/outbox"
	"github.com/pgrelay/pgrelay/internal/pglisten"
	"github.com/pgrelay/pgrelay/internal/probe"
	"github.com/pgrelay/pgrelay/internal/redisbus"
)

// Run relays until ctx ends and returns nil then. It returns an error only
// for bad configuration or a port it cannot listen on: PostgreSQL and Redis
// outages are retried with backoff.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	pgcfg, _ := pgx.ParseConfig(cfg.DatabaseURL) // checked by Validate
	pglisten.SetTCP(pgcfg, pglisten.TCP{
		KeepaliveIdle:     cfg.TCPKeepaliveIdle,
		KeepaliveInterval: cfg.TCPKeepaliveInterval,
		KeepaliveCount:    cfg.TCPKeepaliveCount,
		UserTimeout:       cfg.TCPUserTimeout,
	})
	rdb, _ := redisbus.NewClient(cfg.RedisURL)
	defer rdb.Close()
	pub := redisbus.NewPublisher(rdb, redisbus.PublisherOptions{
		Prefix:      cfg.Prefix,
		HistorySize: cfg.HistorySize,
		HistoryTTL:  cfg.HistoryTTL,
	})

	reg := metrics.NewRegistry()
	var drainer *outbox.Drainer
	var outboxCounts func() metrics.OutboxCounts
	if cfg.Source == SourceOutbox {
		outboxCounts = func() metrics.OutboxCounts {
			st := drainer.Stats()
			return metrics.OutboxCounts{Published: st.Published, Duplicates: st.Duplicates, Rejected: st.Rejected}
		}
	}
	m := metrics.NewRelay(reg, outboxCounts)

	var role atomic.Int32
	lcfg := pglisten.Config{
		ConnConfig:        pgcfg,
		LockKey:           cfg.lockKey(),
		Channels:          cfg.Channels,
		LockRetryInterval: cfg.LockRetryInterval,
		PingInterval:      cfg.PingInterval,
		PingTimeout:       cfg.PingTimeout,
		Logger:            log,
		OnDropped: func(n int) {
			for range n {
				m.PublishFailed()
			}
		},
		OnRole: func(r pglisten.Role) {
			m.Role(pglisten.Role(role.Swap(int32(r))).String(), r.String())
		},
		CanLead: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, cfg.PublishTimeout)
			defer cancel()
			if err := rdb.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			return nil
		},
		Handle: notifyPublisher{pub: pub, m: m, log: log, timeout: cfg.PublishTimeout}.publish,
	}
	if cfg.Source == SourceOutbox {
		var err error
		if drainer, err = useOutbox(&lcfg, cfg, pub, log); err != nil {
			return err
		}
	}
	l, err := pglisten.New(lcfg)
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	probe.Register(mux, func() (string, bool) {
		r := pglisten.Role(role.Load())
		return r.String(), r != pglisten.RoleConnecting
	})
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("RELAY_HTTP_ADDR: %w", err)
		}
	}
	if err := debug.Serve(ctx, cfg.PprofAddr, log); err != nil {
		return fmt.Errorf("RELAY_PPROF_ADDR: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if cfg.Source == SourceOutbox {
		log.Info("relay started", "addr", ln.Addr().String(), "source", cfg.Source, "table", cfg.OutboxTable,
			"wake_channel", cfg.OutboxWakeChannel, "migrate", cfg.OutboxMigrate, "prefix", cfg.Prefix)
	} else {
		log.Info("relay started", "addr", ln.Addr().String(), "source", cfg.Source, "channels", cfg.Channels, "prefix", cfg.Prefix)
	}

	listenCtx, stopListen := context.WithCancel(ctx)
	listenDone := make(chan struct{})
	go func() {
		defer close(listenDone)
		_ = l.Run(listenCtx)
	}()

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	// Closing the LISTEN connection releases the lock at once, so a
	// standby takes over without waiting for PostgreSQL to notice.
	stopListen()
	<-listenDone
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", serr)
	}
	log.Info("relay stopped")
	return err
}

// notifyPublisher is the notify source's Handle.
type notifyPublisher struct {
	pub     *redisbus.Publisher
	m       *metrics.Relay
	log     *slog.Logger
	timeout time.Duration // RELAY_PUBLISH_TIMEOUT, for the whole batch
}

// publish publishes the notifications pglisten received during the previous
// publish in one round trip to Redis, and records each: its latency runs
// from its own arrival, so time spent queued behind a publish counts.
func (p notifyPublisher) publish(ctx context.Context, batch []pglisten.Notification) error {
	m, log := p.m, p.log
	msgs := make([]redisbus.Message, len(batch))
	for i, n := range batch {
		m.Received()
		msgs[i] = redisbus.Message{Channel: n.Channel, Payload: n.Payload}
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ids, err := p.pub.PublishBatch(ctx, msgs)
	now := time.Now()
	debug := log.Enabled(ctx, slog.LevelDebug)
	failed := 0
	for i, n := range batch {
		if ids[i] == "" {
			m.PublishFailed()
			failed++
			continue
		}
		m.Published(now.Sub(n.Received))
		if debug {
			log.Debug("published", "channel", n.Channel, "id", ids[i], "bytes", len(n.Payload))
		}
	}
	if err != nil {
		// One line for the batch (when Redis is down, all of it fails),
		// worded as the line once per notification was, for log searches.
		log.Error("notification dropped: publish failed", "count", failed, "batch", len(batch), "err", err)
	}
	return err
}

// useOutbox turns lcfg into the outbox source: LISTEN only on the wake
// channel, and drain the table instead of handling notifications. With
// OutboxMigrate, each new leading session first applies the migration (a
// no-op without table locks once it is in place).
func useOutbox(lcfg *pglisten.Config, cfg Config, pub outbox.Publisher, log *slog.Logger) (*outbox.Drainer, error) {
	schema := cfg.outboxSchema()
	d, err := outbox.NewDrainer(outbox.Options{
		Table:      schema.Table,
		Publisher:  pub,
		MaxPayload: cfg.MaxPayload,
		Timeout:    cfg.PublishTimeout,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	var migrated *pgx.Conn // the session that last migrated; Run's goroutine only
	lcfg.Channels = []string{cfg.OutboxWakeChannel}
	lcfg.Handle = nil
	lcfg.DrainInterval = cfg.OutboxPollInterval
	lcfg.Drain = func(ctx context.Context, conn *pgx.Conn) error {
		if cfg.OutboxMigrate && conn != migrated {
			if err := outbox.Migrate(ctx, conn, schema); err != nil {
				return err
			}
			migrated = conn
			log.Info("outbox migrated", "table", cfg.OutboxTable, "max_payload", cfg.MaxPayload)
		}
		before := d.Stats()
		err := d.Drain(ctx, conn)
		after := d.Stats()
		if dups := after.Duplicates - before.Duplicates; dups > 0 {
			// Expected after a leader change; repeated, it is worth a look.
			log.Info("outbox rows were published already (a previous leader did not delete them); deleted now", "rows", dups)
		}
		if after != before {
			log.Debug("outbox drained", "published", after.Published-before.Published,
				"duplicates", after.Duplicates-before.Duplicates, "rejected", after.Rejected-before.Rejected)
		}
		return err
	}
	return d, nil
}

var _ outbox.Publisher = (*redisbus.Publisher)(nil)
