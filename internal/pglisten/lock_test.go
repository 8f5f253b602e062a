package pglisten_test

import (
	"context"
	"errors"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/pglisten"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// A standby waiting in pg_advisory_lock is not ended by a statement_timeout
// or lock_timeout that its role or URL sets for everyone else: it waits as
// long as the lock is held, without reconnecting, and takes it at once.
func TestBlockingStandbyOutlastsTimeouts(t *testing.T) {
	t.Parallel()
	key := lockKey()
	ch := testenv.Name("pl")
	holder := testenv.Conn(t)
	if _, err := holder.Exec(context.Background(), "SELECT pg_advisory_lock($1)", key); err != nil {
		t.Fatal(err)
	}
	l := start(t, key, options{channels: []string{ch}, params: map[string]string{
		"statement_timeout": "100", "lock_timeout": "100",
	}})
	l.waitRole(t, pglisten.RoleStandby)
	waitFor(t, "the standby to wait on the advisory lock", func() bool {
		var ev string
		err := holder.QueryRow(context.Background(),
			"SELECT coalesce(wait_event, '') FROM pg_stat_activity WHERE application_name = $1", l.name).Scan(&ev)
		return err == nil && ev == "advisory"
	})
	time.Sleep(500 * time.Millisecond) // five times the timeouts
	if got := l.rolesSoFar(); !equalRoles(got, []pglisten.Role{pglisten.RoleStandby}) {
		t.Fatalf("roles while waiting = %v, want [standby]: the wait must outlast statement_timeout and lock_timeout", got)
	}
	t0 := time.Now()
	if _, err := holder.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", key); err != nil {
		t.Fatal(err)
	}
	l.waitRole(t, pglisten.RoleLeader)
	t.Logf("took the lock %s after it was freed", time.Since(t0).Round(time.Microsecond))
	conn := testenv.Conn(t)
	notify(t, conn, ch, "leading")
	l.expect(t, note{ch, "leading"})
}

// A standby that got the lock after a wait asks CanLead again before it
// leads: Redis may have gone while it waited. Refused, it lets the lock go.
func TestBlockingStandbyAsksCanLeadAgain(t *testing.T) {
	t.Parallel()
	key := lockKey()
	ch := testenv.Name("pl")
	holder := testenv.Conn(t)
	if _, err := holder.Exec(context.Background(), "SELECT pg_advisory_lock($1)", key); err != nil {
		t.Fatal(err)
	}
	var allowed atomic.Bool
	allowed.Store(true)
	l := start(t, key, options{channels: []string{ch}, canLead: func(context.Context) error {
		if !allowed.Load() {
			return errors.New("redis unreachable")
		}
		return nil
	}})
	l.waitRole(t, pglisten.RoleStandby)
	allowed.Store(false)
	if _, err := holder.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", key); err != nil {
		t.Fatal(err)
	}
	l.waitRole(t, pglisten.RoleConnecting)
	// The lock it took is free again: another session gets it at once.
	waitFor(t, "the refused standby to let the lock go", func() bool {
		var got bool
		err := holder.QueryRow(context.Background(), "SELECT pg_try_advisory_lock($1)", key).Scan(&got)
		if got {
			holder.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", key)
		}
		return err == nil && got
	})
	for _, r := range l.rolesSoFar() {
		if r == pglisten.RoleLeader {
			t.Fatal("led although CanLead refused after the wait")
		}
	}
	allowed.Store(true)
	l.waitRole(t, pglisten.RoleLeader)
	conn := testenv.Conn(t)
	notify(t, conn, ch, "allowed")
	l.expect(t, note{ch, "allowed"})
}

// Notifications received but not passed to Handle when a Handle error ends
// the session are counted through OnDropped (and logged); those in the
// failed call are Handle's to count.
func TestDroppedNotificationsAreCounted(t *testing.T) {
	t.Parallel()
	ch := testenv.Name("pl")
	b := newBatches()
	var dropped atomic.Int64
	l := start(t, lockKey(), options{
		channels: []string{ch},
		batch:    b.handle,
		dropped:  func(n int) { dropped.Add(int64(n)) },
	})
	l.waitRole(t, pglisten.RoleLeader)
	conn := testenv.Conn(t)
	// One transaction: the three arrive together.
	if _, err := conn.Exec(context.Background(),
		"SELECT pg_notify($1, 'fail'), pg_notify($1, 'a'), pg_notify($1, 'b')", ch); err != nil {
		t.Fatal(err)
	}
	failed := b.next(t)
	if len(failed) == 0 || failed[0] != (note{ch, "fail"}) {
		t.Fatalf("first call got %v, want it to start with fail", failed)
	}
	b.reply(errors.New("redis is down"))
	l.waitRole(t, pglisten.RoleConnecting)
	if n := dropped.Load(); n+int64(len(failed)) != 3 {
		t.Fatalf("OnDropped counted %d besides the %d of the failed call, want 3 in all", n, len(failed))
	}
	l.waitRole(t, pglisten.RoleLeader)
	select {
	case got := <-b.calls:
		t.Errorf("the new session handled %v from the old one", got)
	default:
	}
}

// On a graceful stop the leader publishes what it has already received
// before it closes its session, even when the stop comes mid-publish.
func TestGracefulStopPublishesReceived(t *testing.T) {
	t.Parallel()
	ch := testenv.Name("pl")
	inSlow := make(chan struct{})
	l := start(t, lockKey(), options{
		channels: []string{ch},
		handle: func(ctx context.Context, _, payload string) error {
			if payload == "slow" {
				close(inSlow)
				time.Sleep(200 * time.Millisecond)
				if ctx.Err() != nil {
					return errors.New("Handle's context was cancelled by the stop")
				}
			}
			return nil
		},
	})
	l.waitRole(t, pglisten.RoleLeader)
	conn := testenv.Conn(t)
	if _, err := conn.Exec(context.Background(),
		"SELECT pg_notify($1, 'slow'), pg_notify($1, 'x'), pg_notify($1, 'y')", ch); err != nil {
		t.Fatal(err)
	}
	<-inSlow
	l.stop(t)
	for _, p := range []string{"slow", "x", "y"} {
		l.expect(t, note{ch, p})
	}
}

// A session that got as far as standby or leader resets the backoff: a
// leader whose session is cut again and again, each time soon after the
// last (PostgreSQL restarted twice in a row), retries after the shortest
// delay each time instead of one that doubles.
func TestBackoffResetsAfterAWorkingSession(t *testing.T) {
	t.Parallel()
	ch := testenv.Name("pl")
	l := start(t, lockKey(), options{channels: []string{ch}})
	conn := testenv.Conn(t)
	for range 4 {
		l.waitRole(t, pglisten.RoleLeader)
		if _, err := conn.Exec(context.Background(),
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", l.name); err != nil {
			t.Fatal(err)
		}
		l.waitRole(t, pglisten.RoleConnecting)
	}
	l.waitRole(t, pglisten.RoleLeader)
	l.logs.mu.Lock()
	logs := l.logs.buf.String()
	l.logs.mu.Unlock()
	delays := retryIn.FindAllStringSubmatch(logs, -1)
	if len(delays) < 4 {
		t.Fatalf("%d reconnects logged, want 4:\n%s", len(delays), logs)
	}
	for _, m := range delays {
		if d, _ := time.ParseDuration(m[1]); d > 10*time.Millisecond { // MinBackoff
			t.Errorf("retried after %s, want MinBackoff (10ms) each time: the backoff grew across working sessions", d)
		}
	}
}

var retryIn = regexp.MustCompile(`retry_in=([0-9.]+m?s)`)
