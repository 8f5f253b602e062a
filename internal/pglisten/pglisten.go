// Package pglisten holds the relay's one PostgreSQL connection: leadership
// through a session advisory lock, LISTEN, and reconnects.
//
// Leadership and the notification stream live on the same connection. A
// Listener takes pg_try_advisory_lock(LockKey); while it fails, the Listener is
// a standby that retries on an interval and has not run LISTEN, so it can
// never receive (or publish) anything. Once it holds the lock it LISTENs on
// every channel and passes each notification to Handle. If the connection
// dies, PostgreSQL frees the lock and another relay takes over; this one has
// nothing left to publish. Any error (connection, Handle) closes the
// connection, which gives up the lock, and Run reconnects with backoff.
//
// Run is not safe to call twice at once; OnRole and Handle are called from
// Run's goroutine.
package pglisten

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// Role is what a Listener is doing.
type Role int

// Roles, in the order a Listener passes through them.
const (
	RoleConnecting Role = iota // no usable connection
	RoleStandby                // connected, another session holds the lock
	RoleLeader                 // holds the lock and listens
)

func (r Role) String() string {
	switch r {
	case RoleStandby:
		return "standby"
	case RoleLeader:
		return "leader"
	default:
		return "connecting"
	}
}

// Config configures a Listener. ConnConfig, Channels and Handle are required.
type Config struct {
	// ConnConfig is the connection to open. It must reach PostgreSQL directly
	// (or through a session-mode pooler): transaction pooling breaks both
	// LISTEN and session advisory locks.
	ConnConfig *pgx.ConnConfig
	// LockKey is the advisory lock key that elects the leader. Relays of one
	// installation must share it; installations on one database must not.
	LockKey int64
	// Channels to LISTEN on. Names are quoted, so any name PostgreSQL accepts
	// as a quoted identifier works.
	Channels []string
	// Handle publishes one notification. An error gives up leadership and
	// reconnects. It runs on Run's goroutine, so it delays the next
	// notification: keep it bounded (use ctx and a timeout).
	Handle func(ctx context.Context, channel, payload string) error
	// CanLead, if set, is asked before every attempt to take the lock; an
	// error ends the connection and is retried with backoff. The relay uses
	// it so that a relay that cannot reach Redis never becomes the leader.
	CanLead func(ctx context.Context) error
	// OnRole is told every role change. Optional; must not block.
	OnRole func(Role)
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// LockRetryInterval is how often a standby retries the lock. Zero means
	// 250ms. It bounds how long a takeover waits after the leader is gone.
	LockRetryInterval time.Duration
	// PingInterval is how long the leader's connection may stay silent
	// before it is pinged, to notice a dead connection while idle. Zero means 5s.
	PingInterval time.Duration
	// MinBackoff and MaxBackoff bound the exponential, jittered delay between
	// reconnects. Zero means 200ms and 10s.
	MinBackoff, MaxBackoff time.Duration
}

// Listener runs the connection described by a Config.
type Listener struct {
	cfg  Config
	log  *slog.Logger
	role Role
}

// New checks cfg and returns a Listener.
func New(cfg Config) (*Listener, error) {
	switch {
	case cfg.ConnConfig == nil:
		return nil, errors.New("pglisten: no connection config")
	case len(cfg.Channels) == 0:
		return nil, errors.New("pglisten: no channels")
	case cfg.Handle == nil:
		return nil, errors.New("pglisten: no handler")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LockRetryInterval <= 0 {
		cfg.LockRetryInterval = 250 * time.Millisecond
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 5 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	return &Listener{cfg: cfg, log: cfg.Logger}, nil
}

// Run connects, competes for leadership and listens until ctx ends. It
// returns ctx.Err(); every other error is logged and retried.
func (l *Listener) Run(ctx context.Context) error {
	defer l.setRole(RoleConnecting)
	delay := l.cfg.MinBackoff
	for {
		start := time.Now()
		err := l.runOnce(ctx)
		l.setRole(RoleConnecting)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > 2*l.cfg.MaxBackoff {
			delay = l.cfg.MinBackoff // it had been working: start over
		}
		l.log.Warn("postgres session ended; reconnecting", "err", err, "retry_in", delay.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(jitter(delay)):
		}
		delay = min(2*delay, l.cfg.MaxBackoff)
	}
}

// runOnce runs one connection until it fails or ctx ends.
func (l *Listener) runOnce(ctx context.Context) error {
	connectCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, l.cfg.ConnConfig)
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		// Closing the session frees the lock and the LISTENs at once, even
		// when ctx is already cancelled (graceful shutdown).
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()

	if err := l.waitForLock(ctx, conn); err != nil {
		return err
	}
	for _, ch := range l.cfg.Channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("listen %q: %w", ch, err)
		}
	}
	l.setRole(RoleLeader)
	return l.listen(ctx, conn)
}

// waitForLock returns once conn holds the advisory lock.
func (l *Listener) waitForLock(ctx context.Context, conn *pgx.Conn) error {
	for {
		if l.cfg.CanLead != nil {
			if err := l.cfg.CanLead(ctx); err != nil {
				return fmt.Errorf("cannot lead: %w", err)
			}
		}
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", l.cfg.LockKey).Scan(&got); err != nil {
			return fmt.Errorf("try advisory lock: %w", err)
		}
		if got {
			return nil
		}
		l.setRole(RoleStandby)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(l.cfg.LockRetryInterval):
		}
	}
}

// listen hands notifications to Handle until an error or ctx ends. While the
// connection is idle it pings, so a dead one is noticed within about two
// PingIntervals even when no notification arrives.
func (l *Listener) listen(ctx context.Context, conn *pgx.Conn) error {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, l.cfg.PingInterval)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("wait for notification: %w", err)
			}
			pingCtx, cancel := context.WithTimeout(ctx, l.cfg.PingInterval)
			err = conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			continue
		}
		if err := l.cfg.Handle(ctx, n.Channel, n.Payload); err != nil {
			return fmt.Errorf("handle notification on %q: %w", n.Channel, err)
		}
	}
}

func (l *Listener) setRole(r Role) {
	if r == l.role {
		return
	}
	l.role = r
	l.log.Info("role changed", "role", r.String())
	if l.cfg.OnRole != nil {
		l.cfg.OnRole(r)
	}
}

// jitter spreads d over [d/2, d) so that relays do not retry in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}
