// Package pglisten holds the relay's one PostgreSQL connection: leadership
// through a session advisory lock, LISTEN, and reconnects.
//
// Leadership and the notification stream live on the same connection. A
// Listener takes pg_try_advisory_lock(LockKey); while it fails, the Listener is
// a standby: it waits in pg_advisory_lock (or, with LockRetryInterval, polls
// pg_try_advisory_lock) and has not run LISTEN, so it can never receive (or
// publish) anything. Once it holds the lock it LISTENs on every channel and
// passes the notifications to Handle. If the connection dies, PostgreSQL
// frees the lock and a waiting standby takes over at once; this one has
// nothing left to publish. Any error (connection, Handle, Drain) closes the
// connection, which gives up the lock, and Run reconnects with backoff.
//
// With Handle, the leader reads notifications into a queue of MaxBatch while
// a second goroutine passes what is queued to Handle: all that arrived
// during one call go to the next one together (group commit), and one that
// arrives while Handle is idle goes at once, alone. A full queue stops the
// reading; PostgreSQL buffers the rest.
//
// Dead connections are noticed on both ends: the leader pings after
// PingInterval of silence and gives up after PingTimeout, and SetTCP makes
// the client's and the server's TCP keepalive and user timeout bound how
// long either side holds a connection whose peer vanished (PostgreSQL frees
// the lock only when it drops the connection).
//
// With Drain set (the outbox source), notifications only wake the leader:
// it calls Drain on its own connection after LISTEN, after each notification
// (one call for every notification already received), and after each idle
// DrainInterval, so that a missed wake costs at most one interval. Drain
// reads the rows to publish itself; Handle is not used.
//
// Run is not safe to call twice at once; OnRole, OnDropped, CanLead and
// Drain are called from Run's goroutine, Handle from a goroutine of the
// session's, never two calls at once.
package pglisten

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgrelay/pgrelay/internal/backoff"
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

// Notification is one notification the leader received.
type Notification struct {
	Channel, Payload string
	Received         time.Time // when it was read off the connection
}

// Config configures a Listener. ConnConfig, Channels and one of Handle or
// Drain are required.
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
	// Handle publishes notifications, in the order they were received:
	// each call gets all those that arrived during the previous call (up to
	// MaxBatch), or a lone one as soon as it arrives. The slice is reused
	// once Handle returns. An error gives up leadership and reconnects; the
	// notifications of a failed call are Handle's to log and count (OnDropped
	// is not told of them). While it runs, at most MaxBatch more are read:
	// keep it bounded with a timeout. Its ctx is not cancelled when Run's is,
	// so that a graceful stop lets the publish in flight (and those of the
	// notifications already received) finish before the session, and the
	// lock, are let go.
	Handle func(ctx context.Context, batch []Notification) error
	// MaxBatch is the most notifications one Handle call gets, and the most
	// read ahead while it runs. Zero means 256.
	MaxBatch int
	// Drain, instead of Handle, makes notifications a wake-up only: the
	// leader calls Drain on its connection once LISTEN is done, after each
	// notification, and after every DrainInterval without one. Notifications
	// that arrived before a call are all served by it (they are dropped, not
	// passed on). An error gives up leadership and reconnects, as a Handle
	// error does. Like Handle it delays the next notification: bound each
	// statement with ctx. It must leave conn idle (no open transaction).
	Drain func(ctx context.Context, conn *pgx.Conn) error
	// DrainInterval is how long the leader waits for a notification before
	// it calls Drain anyway; the call also checks the connection, in place
	// of the idle ping. Used only with Drain. Zero means PingInterval.
	DrainInterval time.Duration
	// CanLead, if set, is asked before every attempt to take the lock; an
	// error ends the connection and is retried with backoff. The relay uses
	// it so that a relay that cannot reach Redis never becomes the leader.
	CanLead func(ctx context.Context) error
	// OnRole is told every role change. Optional; must not block.
	OnRole func(Role)
	// OnDropped is told how many notifications the leader had received but
	// not passed to Handle when its session ended by an error (they are
	// lost, and logged). Optional; must not block. Notifications still in
	// the socket's buffers at that moment cannot be counted.
	OnDropped func(n int)
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// LockRetryInterval chooses how a standby waits for the lock. Positive
	// (the relay's default is 250ms) polls pg_try_advisory_lock at that
	// interval, which bounds a takeover by the interval. Zero waits in
	// pg_advisory_lock: the standby takes over as soon as PostgreSQL frees
	// the lock, in milliseconds, but a statement waiting that long holds a
	// snapshot, and with it VACUUM's horizon for the whole database, for as
	// long as the leader lives. Either way CanLead is asked again before
	// leading.
	LockRetryInterval time.Duration
	// PingInterval is how long the leader's connection may stay silent
	// before it is pinged, to notice a dead connection while idle. Zero means 5s.
	PingInterval time.Duration
	// PingTimeout bounds the ping and every other short statement (the
	// lock attempt, LISTEN): a connection that does not answer within it is
	// dropped. The leader notices a dead connection within PingInterval +
	// PingTimeout. Zero means PingInterval.
	PingTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential, jittered delay between
	// reconnects. Zero means 200ms and 10s.
	MinBackoff, MaxBackoff time.Duration
}

// Listener runs the connection described by a Config.
type Listener struct {
	cfg     Config
	log     *slog.Logger
	role    Role
	reached bool // the current session became a standby or the leader

	readHook func(Notification) // tests: told of each notification read, before it is queued
}

// New checks cfg and returns a Listener.
func New(cfg Config) (*Listener, error) {
	switch {
	case cfg.ConnConfig == nil:
		return nil, errors.New("pglisten: no connection config")
	case len(cfg.Channels) == 0:
		return nil, errors.New("pglisten: no channels")
	case cfg.Handle == nil && cfg.Drain == nil:
		return nil, errors.New("pglisten: no handler")
	case cfg.Handle != nil && cfg.Drain != nil:
		return nil, errors.New("pglisten: both Handle and Drain set")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LockRetryInterval < 0 {
		cfg.LockRetryInterval = 0
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 5 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = cfg.PingInterval
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.DrainInterval <= 0 {
		cfg.DrainInterval = cfg.PingInterval
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
		l.reached = false
		err := l.runOnce(ctx)
		l.setRole(RoleConnecting)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if l.reached || time.Since(start) > 2*l.cfg.MaxBackoff {
			// It had been working (a standby or the leader): start over, so
			// that a server restart costs the shortest delay however
			// recently the last one was. A session that never got that far
			// (PostgreSQL down, CanLead refusing) keeps backing off.
			delay = l.cfg.MinBackoff
		}
		l.log.Warn("postgres session ended; reconnecting", "err", err, "retry_in", delay.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff.Jitter(delay)):
		}
		delay = backoff.Next(delay, l.cfg.MaxBackoff)
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
		qctx, cancel := context.WithTimeout(ctx, l.cfg.PingTimeout)
		_, err := conn.Exec(qctx, "LISTEN "+pgx.Identifier{ch}.Sanitize())
		cancel()
		if err != nil {
			return fmt.Errorf("listen %q: %w", ch, err)
		}
	}
	l.setRole(RoleLeader)
	if l.cfg.Drain == nil {
		return l.serve(ctx, conn)
	}
	// LISTEN first, then catch up: a row committed after this drain began
	// sends a wake that this session receives.
	if err := l.drain(ctx, conn); err != nil {
		return err
	}
	return l.listen(ctx, conn, func(*pgconn.Notification) error {
		discardReceived(conn)
		return l.drain(ctx, conn)
	})
}

// takeReceived returns the notifications conn has received and not yet
// returned: those pgx has parsed, then those already read off the socket
// or arriving within a millisecond. It stops at the first wait that yields
// nothing, so on a broken connection it returns at once, and after 100ms in
// all, so that a steady flow of notifications cannot hold it (and a
// graceful stop) forever.
func takeReceived(conn *pgx.Conn) []*pgconn.Notification {
	var notes []*pgconn.Notification
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		n, _ := conn.WaitForNotification(ctx)
		cancel()
		if n == nil {
			return notes
		}
		notes = append(notes, n)
	}
	return notes
}

// listen passes each notification to received until either fails or ctx
// ends. While the connection is idle it pings (or drains), so a dead one is
// noticed within about two intervals even when no notification arrives.
func (l *Listener) listen(ctx context.Context, conn *pgx.Conn, received func(*pgconn.Notification) error) error {
	idle := l.cfg.PingInterval
	if l.cfg.Drain != nil {
		idle = l.cfg.DrainInterval
	}
	for {
		waitCtx, cancel := context.WithTimeout(ctx, idle)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("wait for notification: %w", err)
			}
			if l.cfg.Drain != nil {
				if err := l.drain(ctx, conn); err != nil {
					return err
				}
				continue
			}
			pingCtx, cancel := context.WithTimeout(ctx, l.cfg.PingTimeout)
			err = conn.Ping(pingCtx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("ping (no answer within %s): %w", l.cfg.PingTimeout, err)
			}
			continue
		}
		if err := received(n); err != nil {
			return err
		}
	}
}

func (l *Listener) drain(ctx context.Context, conn *pgx.Conn) error {
	if err := l.cfg.Drain(ctx, conn); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

// discardReceived drops the notifications conn has already received (pgx
// keeps those that arrive during a query) and says how many: with Drain, the
// drain about to start serves them all. WaitForNotification returns a
// received one at once, and with a done context it returns without reading
// the socket.
func discardReceived(conn *pgx.Conn) int {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for n := 0; ; n++ {
		if note, _ := conn.WaitForNotification(done); note == nil {
			return n
		}
	}
}

func (l *Listener) setRole(r Role) {
	if r != RoleConnecting {
		l.reached = true
	}
	if r == l.role {
		return
	}
	l.role = r
	l.log.Info("role changed", "role", r.String())
	if l.cfg.OnRole != nil {
		l.cfg.OnRole(r)
	}
}
