// Package edge runs an edge process: one Redis subscription, a hub fanning
// out to local WebSocket clients, the demo page, and the probes.
//
// Start with Run. The wiring is redisbus.Subscriber → hub.Hub → wsconn.Handler;
// broker.go joins the first two so that a client's subscription is live in
// Redis before its socket opens.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgrelay/pgrelay/internal/debug"
	"github.com/pgrelay/pgrelay/internal/event"
	"github.com/pgrelay/pgrelay/internal/hub"
	"github.com/pgrelay/pgrelay/internal/metrics"
	"github.com/pgrelay/pgrelay/internal/probe"
	"github.com/pgrelay/pgrelay/internal/redisbus"
	"github.com/pgrelay/pgrelay/internal/wsconn"
	"github.com/pgrelay/pgrelay/web"
)

// Run serves until ctx ends, then drains clients and returns nil. It returns
// an error only for bad configuration or a port it cannot listen on; Redis
// outages are waited out.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	rdb, _ := redisbus.NewClient(cfg.RedisURL) // checked by Validate
	defer rdb.Close()

	var observer *metrics.Edge // set below, before anything is published
	h := hub.New(hub.Options{
		QueueSize:  cfg.QueueSize,
		QueueBytes: cfg.QueueBytes,
		Written:    func(n int) { observer.Written(n) },
	})
	busCtx, stopBus := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBus()
	fan := newFanout(h)
	bus := redisbus.NewSubscriber(rdb, redisbus.SubscriberOptions{
		Prefix: cfg.Prefix,
		Logger: log,
		Handle: func(e event.Event) { fan.publish(busCtx, message(e)) },
		Reset:  func(channel string, at uint64) { fan.publish(busCtx, resetMessage(channel, at)) },
	})
	authorize, watchKeys, err := newAuthorizer(cfg, log)
	if err != nil {
		return err
	}

	incomplete := &connWatch{log: log}
	var ws *wsconn.Handler
	reg := metrics.NewRegistry()
	observer = metrics.NewEdge(reg, metrics.EdgeSources{
		Clients:            func() int { return ws.Len() },
		SubscriptionLive:   bus.Live,
		RedisChannels:      bus.Channels,
		Received:           bus.Received,
		Malformed:          bus.Malformed,
		Duplicates:         bus.Duplicates,
		Resets:             bus.Resets,
		RedisReconnects:    bus.Reconnects,
		Kicks:              h.Kicks,
		Incomplete:         incomplete.count.Load,
		ChannelSubscribers: h.Subscribers,
	}, cfg.MetricsChannels)
	fan.done = observer.FannedOut
	ws = wsconn.New(wsconn.Options{
		Authorize:      authorize,
		MaxConnections: cfg.MaxConnections,
		Observer:       observer,
		Broker:         &broker{hub: h, bus: bus, hist: redisbus.NewHistory(rdb, cfg.Prefix)},
		OriginPatterns: cfg.AllowedOrigins,
		MaxChannels:    cfg.MaxChannels,
		WriteTimeout:   cfg.WriteTimeout,
		QueueSize:      cfg.QueueSize,
		QueueBytes:     cfg.QueueBytes,
		PingInterval:   cfg.PingInterval,
		Logger:         log,
	})

	var draining atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("GET /ws", ws)
	mux.Handle("GET /events", ws.SSE())
	mux.Handle("GET /metrics", metrics.Handler(reg))
	mux.Handle("GET /", http.FileServerFS(web.FS))
	probe.Register(mux, func() (string, bool) {
		switch {
		case draining.Load():
			return "draining", false
		case !bus.Live():
			return "redis subscription down", false
		}
		return fmt.Sprintf("ready, %d clients", ws.Len()), true
	})

	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("EDGE_HTTP_ADDR: %w", err)
		}
	}
	srv := &http.Server{
		ConnState:         incomplete.track,
		ConnContext:       sendBuffer(cfg.SendBuffer),
		Handler:           mux,
		ReadHeaderTimeout: cfg.HeaderTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	if err := debug.Serve(busCtx, cfg.PprofAddr, log); err != nil {
		return fmt.Errorf("EDGE_PPROF_ADDR: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = bus.Run(busCtx) })
	wg.Go(func() { fan.run(busCtx) })
	wg.Go(func() { watchKeys(busCtx) })
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("edge started", "addr", ln.Addr().String(), "prefix", cfg.Prefix)

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}

	// Readiness off first so no new client is routed here, then close the
	// sockets (http.Server.Shutdown ignores hijacked connections).
	draining.Store(true)
	log.Info("edge draining", "clients", ws.Len(), "window", cfg.DrainTimeout)
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout+2*time.Second)
	defer cancel()
	if derr := ws.Shutdown(drainCtx, cfg.DrainTimeout*8/10); derr != nil {
		log.Warn("drain timed out", "clients_left", ws.Len())
	}
	if serr := srv.Shutdown(drainCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", serr)
	}
	stopBus()
	wg.Wait()
	log.Info("edge stopped")
	return err
}

// sendBuffer caps every accepted connection's kernel send buffer
// (EDGE_SEND_BUFFER), WebSocket and SSE alike. What it cannot hold waits in
// the client's queue, where EDGE_QUEUE_SIZE and EDGE_QUEUE_BYTES see it;
// with the kernel's autotuning (0) a client that stops reading could hold
// megabytes before the queue noticed.
func sendBuffer(size int) func(context.Context, net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		if tc, ok := c.(*net.TCPConn); ok && size > 0 {
			_ = tc.SetWriteBuffer(size) // best effort: the queue bounds still hold
		}
		return ctx
	}
}
