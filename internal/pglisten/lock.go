package pglisten

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// waitForLock returns once conn holds the advisory lock. It asks CanLead
// before every attempt, and again after a wait that ended with the lock:
// Redis may have gone away while this standby waited. Returning an error
// closes the session, which frees a lock just taken.
func (l *Listener) waitForLock(ctx context.Context, conn *pgx.Conn) error {
	for {
		if err := l.canLead(ctx); err != nil {
			return err
		}
		got, err := l.tryLock(ctx, conn)
		if err != nil || got {
			return err
		}
		l.setRole(RoleStandby)
		if l.cfg.LockRetryInterval > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(l.cfg.LockRetryInterval):
			}
			continue
		}
		if err := l.blockForLock(ctx, conn); err != nil {
			return err
		}
		if err := l.canLead(ctx); err != nil {
			return err
		}
		return nil
	}
}

func (l *Listener) canLead(ctx context.Context) error {
	if l.cfg.CanLead == nil {
		return nil
	}
	if err := l.cfg.CanLead(ctx); err != nil {
		return fmt.Errorf("cannot lead: %w", err)
	}
	return nil
}

// tryLock takes the lock if it is free, within PingTimeout.
func (l *Listener) tryLock(ctx context.Context, conn *pgx.Conn) (bool, error) {
	qctx, cancel := context.WithTimeout(ctx, l.cfg.PingTimeout)
	defer cancel()
	var got bool
	if err := conn.QueryRow(qctx, "SELECT pg_try_advisory_lock($1)", l.cfg.LockKey).Scan(&got); err != nil {
		return false, fmt.Errorf("try advisory lock: %w", err)
	}
	return got, nil
}

// noWaitLimits lifts, for the waiting transaction only, the settings that
// would end a statement that waits for a lock: the relay's role or database
// may set them for other clients. transaction_timeout exists from
// PostgreSQL 17 on; pg_settings lists only the settings the server has.
const noWaitLimits = `SELECT set_config(name, '0', true) FROM pg_settings
WHERE name IN ('lock_timeout', 'statement_timeout', 'transaction_timeout')`

// blockForLock waits in pg_advisory_lock until the lock is free, which is
// the moment the leader's session ends. The wait has no deadline of its
// own: ctx ends it (closing the connection), and a connection that dies
// while waiting is noticed by TCP keepalive and the user timeout (SetTCP).
// The lock is session-level, so it outlives the transaction that took it.
func (l *Listener) blockForLock(ctx context.Context, conn *pgx.Conn) error {
	qctx, cancel := context.WithTimeout(ctx, l.cfg.PingTimeout)
	tx, err := conn.Begin(qctx)
	if err == nil {
		_, err = tx.Exec(qctx, noWaitLimits)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("prepare to wait for the advisory lock: %w", err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_lock($1)", l.cfg.LockKey); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("wait for advisory lock: %w", err)
	}
	qctx, cancel = context.WithTimeout(ctx, l.cfg.PingTimeout)
	defer cancel()
	if err := tx.Commit(qctx); err != nil {
		return fmt.Errorf("wait for advisory lock: commit: %w", err)
	}
	return nil
}
