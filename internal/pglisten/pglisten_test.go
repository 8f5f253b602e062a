package pglisten_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgrelay/pgrelay/internal/pglisten"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

const wait = 5 * time.Second // upper bound for anything that should be prompt

type note struct{ channel, payload string }

// logBuf collects a Listener's logs; they are printed if the test fails.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// listener is a Listener under test, run in a goroutine.
type listener struct {
	name  string // its application_name
	logs  *logBuf
	roles chan pglisten.Role
	notes chan note

	mu      sync.Mutex
	history []pglisten.Role // every OnRole, in order

	cancel context.CancelFunc
	done   chan error // receives Run's result
}

// options tweak the Config of a test listener.
type options struct {
	channels []string
	handle   func(ctx context.Context, channel, payload string) error // runs before the notification is recorded; nil records only
	canLead  func(ctx context.Context) error
	ping     time.Duration
	drain    func(ctx context.Context, conn *pgx.Conn) error                // set: Drain instead of Handle
	interval time.Duration                                                  // DrainInterval
	poll     time.Duration                                                  // LockRetryInterval: 0 waits in pg_advisory_lock
	params   map[string]string                                              // extra connection parameters
	dropped  func(n int)                                                    // OnDropped
	batch    func(ctx context.Context, batch []pglisten.Notification) error // set: Handle itself (notes records nothing)
	maxBatch int                                                            // MaxBatch
	read     func(pglisten.Notification)                                    // the read hook (SetReadHook)
}

func lockKey() int64 { return rand.Int64() }

// start runs a Listener for lockKey until the test ends.
func start(t *testing.T, key int64, o options) *listener {
	t.Helper()
	cfg, err := pgx.ParseConfig(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{
		name:  testenv.Name("pglisten"),
		roles: make(chan pglisten.Role, 100),
		notes: make(chan note, 1000),
		done:  make(chan error, 1),
	}
	cfg.RuntimeParams["application_name"] = l.name
	for k, v := range o.params {
		cfg.RuntimeParams[k] = v
	}
	logs := &logBuf{}
	l.logs = logs
	t.Cleanup(func() {
		if t.Failed() {
			logs.mu.Lock()
			t.Logf("--- logs of %s ---\n%s", l.name, logs.buf.String())
			logs.mu.Unlock()
		}
	})
	handle := func(ctx context.Context, batch []pglisten.Notification) error {
		for _, n := range batch {
			var err error
			if o.handle != nil {
				err = o.handle(ctx, n.Channel, n.Payload)
			}
			select {
			case l.notes <- note{n.Channel, n.Payload}:
			default:
				t.Errorf("%s: notification buffer full", l.name)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	switch {
	case o.drain != nil:
		handle = nil
	case o.batch != nil:
		handle = o.batch
	}
	ln, err := pglisten.New(pglisten.Config{
		ConnConfig:    cfg,
		LockKey:       key,
		Channels:      o.channels,
		Handle:        handle,
		Drain:         o.drain,
		DrainInterval: o.interval,
		CanLead:       o.canLead,
		OnRole: func(r pglisten.Role) {
			l.mu.Lock()
			l.history = append(l.history, r)
			l.mu.Unlock()
			select {
			case l.roles <- r:
			default:
				t.Errorf("%s: role buffer full", l.name)
			}
		},
		Logger:            slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnDropped:         o.dropped,
		LockRetryInterval: o.poll,
		PingInterval:      o.ping,
		MaxBatch:          o.maxBatch,
		MinBackoff:        10 * time.Millisecond,
		MaxBackoff:        50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.read != nil {
		ln.SetReadHook(o.read)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() { l.done <- ln.Run(ctx) }()
	t.Cleanup(func() { l.stop(t) })
	return l
}

// stop cancels the listener and waits for Run to return context.Canceled.
// Calling it twice is harmless.
func (l *listener) stop(t *testing.T) {
	t.Helper()
	l.cancel()
	select {
	case err, ok := <-l.done:
		if ok {
			close(l.done)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: Run returned %v, want context.Canceled", l.name, err)
			}
		}
	case <-time.After(wait):
		t.Errorf("%s: Run did not return within %s of cancel", l.name, wait)
	}
}

// waitRole reads role changes until want, or fails t.
func (l *listener) waitRole(t *testing.T, want pglisten.Role) {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case r := <-l.roles:
			if r == want {
				return
			}
		case <-timeout:
			t.Fatalf("%s did not become %s within %s (roles so far %v)", l.name, want, wait, l.rolesSoFar())
		}
	}
}

func (l *listener) rolesSoFar() []pglisten.Role {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]pglisten.Role(nil), l.history...)
}

// expect fails t unless the next notification handled is want.
func (l *listener) expect(t *testing.T, want note) {
	t.Helper()
	select {
	case got := <-l.notes:
		if got != want {
			t.Fatalf("%s handled %+v, want %+v", l.name, got, want)
		}
	case <-time.After(wait):
		t.Fatalf("%s handled nothing within %s, want %+v", l.name, wait, want)
	}
}

// noNotes fails t if l has handled anything not yet read.
func (l *listener) noNotes(t *testing.T) {
	t.Helper()
	select {
	case n := <-l.notes:
		t.Fatalf("%s handled %+v, but it must not receive anything", l.name, n)
	default:
	}
}

func notify(t *testing.T, conn *pgx.Conn, channel, payload string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), "SELECT pg_notify($1, $2)", channel, payload); err != nil {
		t.Fatalf("pg_notify(%q): %v", channel, err)
	}
}

func TestRoleString(t *testing.T) {
	t.Parallel()
	for r, want := range map[pglisten.Role]string{
		pglisten.RoleConnecting: "connecting",
		pglisten.RoleStandby:    "standby",
		pglisten.RoleLeader:     "leader",
	} {
		if got := r.String(); got != want {
			t.Errorf("Role(%d).String() = %q, want %q", int(r), got, want)
		}
	}
}

func TestNewRequiresConfig(t *testing.T) {
	t.Parallel()
	cfg, err := pgx.ParseConfig("postgres://127.0.0.1:5432/test")
	if err != nil {
		t.Fatal(err)
	}
	handle := func(context.Context, []pglisten.Notification) error { return nil }
	drain := func(context.Context, *pgx.Conn) error { return nil }
	for _, tc := range []struct {
		name string
		cfg  pglisten.Config
		ok   bool
	}{
		{"complete", pglisten.Config{ConnConfig: cfg, Channels: []string{"c"}, Handle: handle}, true},
		{"no conn config", pglisten.Config{Channels: []string{"c"}, Handle: handle}, false},
		{"nil channels", pglisten.Config{ConnConfig: cfg, Handle: handle}, false},
		{"empty channels", pglisten.Config{ConnConfig: cfg, Channels: []string{}, Handle: handle}, false},
		{"no handle", pglisten.Config{ConnConfig: cfg, Channels: []string{"c"}}, false},
		{"drain instead of handle", pglisten.Config{ConnConfig: cfg, Channels: []string{"c"}, Drain: drain}, true},
		{"handle and drain", pglisten.Config{ConnConfig: cfg, Channels: []string{"c"}, Handle: handle, Drain: drain}, false},
		{"nothing", pglisten.Config{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := pglisten.New(tc.cfg)
			if tc.ok && (err != nil || l == nil) {
				t.Errorf("New = %v, %v; want a Listener", l, err)
			}
			if !tc.ok && (err == nil || l != nil) {
				t.Errorf("New = %v, %v; want an error", l, err)
			}
		})
	}
}

// The leader receives pg_notify payloads byte for byte, on channels whose
// names need quoting.
func TestLeaderDeliversNotifications(t *testing.T) {
	t.Parallel()
	base := testenv.Name("pl")
	channels := []string{base, base + "_Orders", base + "_my-channel", base + "_a b", base + `_with"quote`, base + "_é"}
	l := start(t, lockKey(), options{channels: channels})
	l.waitRole(t, pglisten.RoleLeader)

	conn := testenv.Conn(t)
	payloads := []string{
		"green",
		"",
		`he said "hi" 'there'`,
		`C:\dir\n \" \\`,
		"a\nb\r\nc\td",
		"🚀 héllo 日本語 ✓",
		`<script>alert("x&y")</script>`,
		`{"id":"1","payload":"x"}`,
		strings.Repeat("é\"\\\n🚀x", 700), // 7000 bytes
		strings.Repeat("z", 7999),        // NOTIFY's longest payload
	}
	for _, ch := range channels {
		for _, p := range payloads {
			notify(t, conn, ch, p)
			l.expect(t, note{ch, p})
		}
	}
	// Case matters: a channel differing only in case is another channel.
	notify(t, conn, strings.ToLower(base+"_Orders"), "wrong case")
	notify(t, conn, base, "sentinel")
	l.expect(t, note{base, "sentinel"})
}

// An idle leader pings its connection and keeps delivering. PingInterval is
// also the ping's timeout, so it is not made tiny: a ping slower than that
// (a loaded machine under -race) would rightly end the session.
func TestIdleLeaderPingsAndDelivers(t *testing.T) {
	t.Parallel()
	ch := testenv.Name("pl")
	l := start(t, lockKey(), options{channels: []string{ch}, ping: 100 * time.Millisecond})
	l.waitRole(t, pglisten.RoleLeader)
	conn := testenv.Conn(t)
	notify(t, conn, ch, "before")
	l.expect(t, note{ch, "before"})
	waitFor(t, "the leader to ping", func() bool {
		var q string
		err := conn.QueryRow(context.Background(),
			"SELECT query FROM pg_stat_activity WHERE application_name = $1", l.name).Scan(&q)
		return err == nil && q == "-- ping"
	})
	notify(t, conn, ch, "after ping")
	l.expect(t, note{ch, "after ping"})
	if got := l.rolesSoFar(); len(got) != 1 {
		t.Errorf("roles = %v, want only [leader]: pinging must not reconnect", got)
	}
}

// waitFor polls cond until it holds, or fails t after wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", wait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitModes are the two ways a standby waits for the lock.
var waitModes = []struct {
	name     string
	poll     time.Duration
	takeover time.Duration // bound on a takeover once the lock is free
}{
	{"blocking", 0, 500 * time.Millisecond},
	{"polling", 20 * time.Millisecond, 2 * time.Second},
}

// Two listeners with one lock key: one leads, the other stands by and sees
// nothing; when the leader stops, the standby takes over promptly.
func TestOneLeaderAndFailover(t *testing.T) {
	t.Parallel()
	for _, mode := range waitModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			oneLeaderAndFailover(t, mode.poll, mode.takeover)
		})
	}
}

func oneLeaderAndFailover(t *testing.T, poll, bound time.Duration) {
	key := lockKey()
	ch := testenv.Name("pl")
	a := start(t, key, options{channels: []string{ch}, poll: poll})
	b := start(t, key, options{channels: []string{ch}, poll: poll})

	// Whichever gets the lock first leads; the other must then stand by.
	var leader, standby *listener
	waitFor(t, "one leader and one standby", func() bool {
		ra, rb := a.rolesSoFar(), b.rolesSoFar()
		switch {
		case equalRoles(ra, []pglisten.Role{pglisten.RoleLeader}) && equalRoles(rb, []pglisten.Role{pglisten.RoleStandby}):
			leader, standby = a, b
		case equalRoles(rb, []pglisten.Role{pglisten.RoleLeader}) && equalRoles(ra, []pglisten.Role{pglisten.RoleStandby}):
			leader, standby = b, a
		}
		return leader != nil
	})
	leader.waitRole(t, pglisten.RoleLeader) // consume the roles already seen
	standby.waitRole(t, pglisten.RoleStandby)

	conn := testenv.Conn(t)
	for i := range 20 {
		notify(t, conn, ch, fmt.Sprint("n", i))
	}
	for i := range 20 {
		leader.expect(t, note{ch, fmt.Sprint("n", i)})
	}
	standby.noNotes(t)
	if got := standby.rolesSoFar(); len(got) != 1 || got[0] != pglisten.RoleStandby {
		t.Errorf("standby's roles = %v, want [standby]", got)
	}

	t0 := time.Now()
	leader.stop(t)
	if got := leader.rolesSoFar(); got[len(got)-1] != pglisten.RoleConnecting {
		t.Errorf("stopped leader's last role = %v, want connecting", got[len(got)-1])
	}
	standby.waitRole(t, pglisten.RoleLeader)
	if d := time.Since(t0); d > bound {
		t.Errorf("takeover took %s, want under %s", d, bound)
	} else {
		t.Logf("takeover took %s", d)
	}
	notify(t, conn, ch, "after failover")
	standby.expect(t, note{ch, "after failover"})
	leader.noNotes(t)
}

// A Handle error gives up leadership; alone, the listener reconnects and
// leads again.
func TestHandleErrorGivesUpLeadership(t *testing.T) {
	t.Parallel()
	ch := testenv.Name("pl")
	var calls atomic.Int32
	l := start(t, lockKey(), options{
		channels: []string{ch},
		handle: func(_ context.Context, _, payload string) error {
			calls.Add(1)
			if payload == "fail" {
				return errors.New("redis is down")
			}
			return nil
		},
	})
	l.waitRole(t, pglisten.RoleLeader)
	conn := testenv.Conn(t)
	notify(t, conn, ch, "fail")
	l.expect(t, note{ch, "fail"})
	l.waitRole(t, pglisten.RoleConnecting)
	l.waitRole(t, pglisten.RoleLeader)
	notify(t, conn, ch, "ok")
	l.expect(t, note{ch, "ok"})

	// The old session may not have released the lock yet when the new one
	// first tries it, so a brief standby in between is allowed.
	got := l.rolesSoFar()
	want := []pglisten.Role{pglisten.RoleLeader, pglisten.RoleConnecting, pglisten.RoleLeader}
	wantStandby := []pglisten.Role{pglisten.RoleLeader, pglisten.RoleConnecting, pglisten.RoleStandby, pglisten.RoleLeader}
	if !equalRoles(got, want) && !equalRoles(got, wantStandby) {
		t.Errorf("roles = %v, want %v (or with a standby before the second leader)", got, want)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("Handle called %d times, want 2", n)
	}
}

func equalRoles(a, b []pglisten.Role) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A session outside pgrelay holding the lock keeps the listener a standby
// until it unlocks.
func TestStandbyWhileLockHeldElsewhere(t *testing.T) {
	t.Parallel()
	for _, mode := range waitModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			standbyWhileLockHeldElsewhere(t, mode.poll, mode.takeover)
		})
	}
}

func standbyWhileLockHeldElsewhere(t *testing.T, poll, bound time.Duration) {
	key := lockKey()
	ch := testenv.Name("pl")
	holder := testenv.Conn(t)
	if _, err := holder.Exec(context.Background(), "SELECT pg_advisory_lock($1)", key); err != nil {
		t.Fatal(err)
	}
	l := start(t, key, options{channels: []string{ch}, poll: poll})
	l.waitRole(t, pglisten.RoleStandby)

	conn := testenv.Conn(t)
	notify(t, conn, ch, "while standby")
	if got := l.rolesSoFar(); len(got) != 1 || got[0] != pglisten.RoleStandby {
		t.Errorf("roles while the lock is held elsewhere = %v, want [standby]", got)
	}

	var unlocked bool
	if err := holder.QueryRow(context.Background(), "SELECT pg_advisory_unlock($1)", key).Scan(&unlocked); err != nil || !unlocked {
		t.Fatalf("pg_advisory_unlock = %v, %v", unlocked, err)
	}
	t0 := time.Now()
	l.waitRole(t, pglisten.RoleLeader)
	if d := time.Since(t0); d > bound {
		t.Errorf("took the lock %s after it was freed, want under %s", d, bound)
	}
	notify(t, conn, ch, "as leader")
	// Nothing sent while it was a standby arrives: it was not listening.
	l.expect(t, note{ch, "as leader"})
}

// Killing the leader's backend makes it reconnect and lead again.
func TestLeaderReconnectsAfterBackendTerminated(t *testing.T) {
	t.Parallel()
	ch := testenv.Name("pl")
	l := start(t, lockKey(), options{channels: []string{ch}})
	l.waitRole(t, pglisten.RoleLeader)
	conn := testenv.Conn(t)
	notify(t, conn, ch, "before")
	l.expect(t, note{ch, "before"})

	var pid int32
	if err := conn.QueryRow(context.Background(),
		"SELECT pid FROM pg_stat_activity WHERE application_name = $1", l.name).Scan(&pid); err != nil {
		t.Fatalf("finding the leader's backend: %v", err)
	}
	var ok bool
	if err := conn.QueryRow(context.Background(), "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
	l.waitRole(t, pglisten.RoleConnecting)
	l.waitRole(t, pglisten.RoleLeader)

	var newPid int32
	if err := conn.QueryRow(context.Background(),
		"SELECT pid FROM pg_stat_activity WHERE application_name = $1", l.name).Scan(&newPid); err != nil {
		t.Fatalf("finding the new backend: %v", err)
	}
	if newPid == pid {
		t.Errorf("still on backend %d after terminating it", pid)
	}
	notify(t, conn, ch, "after")
	l.expect(t, note{ch, "after"})
}

// CanLead is asked before each attempt at the lock; while it fails the
// listener never leads.
func TestCanLeadGatesLeadership(t *testing.T) {
	t.Parallel()
	ch := testenv.Name("pl")
	var allowed atomic.Bool
	var asked atomic.Int32
	l := start(t, lockKey(), options{
		channels: []string{ch},
		canLead: func(context.Context) error {
			asked.Add(1)
			if !allowed.Load() {
				return errors.New("redis unreachable")
			}
			return nil
		},
	})
	// Each refusal ends the connection and is retried after a backoff.
	waitFor(t, "CanLead to be asked three times", func() bool { return asked.Load() >= 3 })
	for _, r := range l.rolesSoFar() {
		if r == pglisten.RoleLeader {
			t.Fatal("became leader while CanLead refused")
		}
	}
	allowed.Store(true)
	l.waitRole(t, pglisten.RoleLeader)
	conn := testenv.Conn(t)
	notify(t, conn, ch, "allowed")
	l.expect(t, note{ch, "allowed"})
}

// drainCalls records each Drain call; a test reads them in order.
type drainCalls struct {
	calls chan string // application_name of the session each call got
	n     atomic.Int32
}

func newDrainCalls() *drainCalls { return &drainCalls{calls: make(chan string, 1000)} }

// drain runs a query on conn, as a real drain does, and records the call.
func (d *drainCalls) drain(ctx context.Context, conn *pgx.Conn) error {
	var app string
	if err := conn.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil {
		return err
	}
	d.n.Add(1)
	d.calls <- app
	return nil
}

// next fails t unless a Drain call on the session named app comes within wait.
func (d *drainCalls) next(t *testing.T, app string) {
	t.Helper()
	select {
	case got := <-d.calls:
		if got != app {
			t.Fatalf("Drain ran on session %q, want the leader's %q", got, app)
		}
	case <-time.After(wait):
		t.Fatalf("no Drain call within %s", wait)
	}
}

// none fails t if Drain is called within d.
func (d *drainCalls) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-d.calls:
		t.Fatalf("Drain called; want no call within %s", within)
	case <-time.After(within):
	}
}

// With Drain, a notification is only a wake-up: the leader drains on its own
// session once it leads and after each notification; Handle is not called.
func TestDrainOnLeadAndOnWake(t *testing.T) {
	t.Parallel()
	ch := testenv.Name("pl")
	d := newDrainCalls()
	l := start(t, lockKey(), options{channels: []string{ch}, drain: d.drain, interval: time.Hour})
	l.waitRole(t, pglisten.RoleLeader)
	d.next(t, l.name) // on taking the lead
	d.none(t, 200*time.Millisecond)

	conn := testenv.Conn(t)
	notify(t, conn, ch, "")
	d.next(t, l.name)
	notify(t, conn, ch, "payload is ignored")
	d.next(t, l.name)
	d.none(t, 200*time.Millisecond)
	l.noNotes(t)
}

// Without any notification the leader drains every DrainInterval: a missed
// wake costs at most one interval.
func TestDrainEveryIdleInterval(t *testing.T) {
	t.Parallel()
	ch := testenv.Name("pl")
	d := newDrainCalls()
	l := start(t, lockKey(), options{channels: []string{ch}, drain: d.drain, interval: 50 * time.Millisecond})
	l.waitRole(t, pglisten.RoleLeader)
	for range 5 {
		d.next(t, l.name)
	}
	if got := l.rolesSoFar(); len(got) != 1 {
		t.Errorf("roles = %v, want only [leader]: idle drains must not reconnect", got)
	}
}

// Notifications that arrive while a drain runs its queries are served by one
// more drain, not one drain each.
func TestDrainCoalescesWakes(t *testing.T) {
	t.Parallel()
	ch := testenv.Name("pl")
	d := newDrainCalls()
	slow := make(chan struct{}, 1)
	l := start(t, lockKey(), options{
		channels: []string{ch},
		interval: time.Hour,
		drain: func(ctx context.Context, conn *pgx.Conn) error {
			select {
			case <-slow:
				// Notifications sent meanwhile arrive during this query.
				if _, err := conn.Exec(ctx, "SELECT pg_sleep(0.5)"); err != nil {
					return err
				}
			default:
			}
			return d.drain(ctx, conn)
		},
	})
	l.waitRole(t, pglisten.RoleLeader)
	d.next(t, l.name)

	conn := testenv.Conn(t)
	slow <- struct{}{}
	notify(t, conn, ch, "start the slow drain")
	waitFor(t, "the slow drain to start", func() bool {
		var n int
		err := conn.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_sleep%'", l.name).Scan(&n)
		return err == nil && n == 1
	})
	for i := range 50 {
		notify(t, conn, ch, fmt.Sprint(i))
	}
	d.next(t, l.name) // the slow drain
	d.next(t, l.name) // one drain for the 50 wakes received during it
	d.none(t, 300*time.Millisecond)
}

// A Drain error gives up leadership; alone, the listener reconnects, leads
// again and drains again.
func TestDrainErrorGivesUpLeadership(t *testing.T) {
	t.Parallel()
	ch := testenv.Name("pl")
	d := newDrainCalls()
	var fail atomic.Bool
	l := start(t, lockKey(), options{
		channels: []string{ch},
		interval: time.Hour,
		drain: func(ctx context.Context, conn *pgx.Conn) error {
			if fail.CompareAndSwap(true, false) {
				return errors.New("redis is down")
			}
			return d.drain(ctx, conn)
		},
	})
	l.waitRole(t, pglisten.RoleLeader)
	d.next(t, l.name)
	fail.Store(true)
	notify(t, testenv.Conn(t), ch, "")
	l.waitRole(t, pglisten.RoleConnecting)
	l.waitRole(t, pglisten.RoleLeader)
	d.next(t, l.name) // the new session drains as it takes the lead
}
