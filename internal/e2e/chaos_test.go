package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// TestChaos runs the real binaries (three relays, two edges) against a
// PostgreSQL and a Redis of the test's own, with a steady stream of 200
// NOTIFY/s and resuming WebSocket clients, and injects each fault a relay
// or an edge meets in production. For each it asserts recovery within the
// bound, no duplicate and no reordering at any client, and records the time
// to resume publishing and the notifications lost in the gap.
//
// Every relay runs in a network namespace of its own and reaches Redis
// through a proxy of its own, so that one relay's network can be black-holed
// or its Redis cut while the others stay healthy.
//
// PGRELAY_SOAK=1 runs each fault 5 times (PGRELAY_SOAK_TRIALS to change)
// and writes the table of figures to PGRELAY_SOAK_OUT (default: a file in
// the temp dir, named in the log). docs/failover.md holds the figures and
// the command.
func TestChaos(t *testing.T) {
	trials := 1
	if os.Getenv("PGRELAY_SOAK") == "1" {
		trials = 5
		if n, err := strconv.Atoi(os.Getenv("PGRELAY_SOAK_TRIALS")); err == nil && n > 0 {
			trials = n
		}
	}
	t0 := time.Now()
	c := newChaosCluster(t)
	t.Logf("cluster up in %s", time.Since(t0).Round(time.Millisecond))

	for _, f := range chaosFaults {
		for i := range trials {
			if t.Failed() {
				break
			}
			c.settle(t)
			r := f.run(c, t)
			r.fault = f
			c.results = append(c.results, r)
			t.Logf("%s, trial %d: resume %s, lost %d of %d%s", f.name, i+1, fmtDur(r.resume), len(r.lost.lost), r.lost.committed, r.note())
		}
	}
	if !t.Failed() {
		c.settle(t)
	}
	c.finish(t)
	table := c.table(trials)
	t.Logf("chaos figures (%d trial(s) per fault, %s in all):\n%s", trials, time.Since(t0).Round(time.Second), table)
	if trials > 1 {
		out := os.Getenv("PGRELAY_SOAK_OUT")
		if out == "" {
			out = fmt.Sprintf("%s/pgrelay-chaos-soak-%s.md", os.TempDir(), time.Now().Format("20060102-150405"))
		}
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			t.Error(err)
		} else {
			t.Logf("figures written to %s", out)
		}
	}
}

// A fault: how to inject it and the bound its recovery must meet.
type chaosFault struct {
	name  string
	bound time.Duration // on resume; zero: no resume figure (edge faults)
	run   func(c *chaosCluster, t *testing.T) trialResult
}

type trialResult struct {
	fault  chaosFault
	resume time.Duration // injection (or the end of the outage) to a relay leading again
	lost   loss
	extra  []string // fault-specific figures, "name=value"
	values map[string]time.Duration
}

func (r trialResult) note() string {
	if len(r.extra) == 0 {
		return ""
	}
	return "; " + strings.Join(r.extra, ", ")
}

func (r *trialResult) record(name string, d time.Duration) {
	if r.values == nil {
		r.values = map[string]time.Duration{}
	}
	r.values[name] = d
	r.extra = append(r.extra, name+" "+fmtDur(d))
}

var chaosFaults = []chaosFault{
	{"relay SIGTERM (leader)", time.Second, func(c *chaosCluster, t *testing.T) trialResult {
		return c.leaderFault(t, time.Second, func(l *chaosRelay) func() {
			go l.signal(syscall.SIGTERM) // waitExited below sees it exit
			return func() { waitExited(t, l.osProc); l.start() }
		})
	}},
	{"relay SIGKILL (leader)", 500 * time.Millisecond, func(c *chaosCluster, t *testing.T) trialResult {
		return c.leaderFault(t, 500*time.Millisecond, func(l *chaosRelay) func() {
			l.kill(t)
			return l.start
		})
	}},
	{"pg_terminate_backend (leader's session)", time.Second, func(c *chaosCluster, t *testing.T) trialResult {
		pid := c.leaderBackend(t)
		return c.leaderFault(t, time.Second, func(*chaosRelay) func() {
			conn := c.pg.Conn(t)
			defer conn.Close(context.Background())
			if _, err := conn.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid); err != nil {
				t.Fatal(err)
			}
			return func() {}
		})
	}},
	{"PostgreSQL restart (fast)", 5 * time.Second, func(c *chaosCluster, t *testing.T) trialResult {
		return c.leaderFault(t, 5*time.Second, func(*chaosRelay) func() {
			c.pg.Restart("fast")
			return func() {}
		})
	}},
	{"PostgreSQL restart (immediate)", 5 * time.Second, func(c *chaosCluster, t *testing.T) trialResult {
		return c.leaderFault(t, 5*time.Second, func(*chaosRelay) func() {
			c.pg.Restart("immediate")
			return func() {}
		})
	}},
	{"Redis unreachable from the leader", 6 * time.Second, func(c *chaosCluster, t *testing.T) trialResult {
		var old *chaosRelay
		var before float64
		r := c.leaderFault(t, 6*time.Second, func(l *chaosRelay) func() {
			old, before = l, metric(t, l.proc, "pgrelay_relay_publish_failures_total")
			l.redis.cut()
			return func() { l.redis.restore(t) }
		})
		// Every notification it dropped is counted and logged.
		counted := metric(t, old.proc, "pgrelay_relay_publish_failures_total") - before
		if counted < 1 || !strings.Contains(old.logs.String(), "notification dropped") {
			t.Errorf("%s lost its Redis with a stream flowing but counted %v publish failures; logs:\n%s", old.name, counted, old.logs.String())
		}
		r.extra = append(r.extra, fmt.Sprintf("dropped and counted by the old leader %v", counted))
		return r
	}},
	{"Redis black-holed from the leader", 8 * time.Second, func(c *chaosCluster, t *testing.T) trialResult {
		var old *chaosRelay
		var before float64
		r := c.leaderFault(t, 8*time.Second, func(l *chaosRelay) func() {
			old, before = l, metric(t, l.proc, "pgrelay_relay_publish_failures_total")
			l.redis.freeze()
			return l.redis.thaw
		})
		counted := metric(t, old.proc, "pgrelay_relay_publish_failures_total") - before
		if counted < 1 {
			t.Errorf("%s lost its Redis with a stream flowing but counted no publish failure", old.name)
		}
		r.extra = append(r.extra, fmt.Sprintf("dropped and counted by the old leader %v", counted))
		return r
	}},
	{"Redis restart (every relay and edge)", 11 * time.Second, (*chaosCluster).redisRestart},
	{"edge SIGTERM", 0, (*chaosCluster).edgeTerm},
	{"Redis black-holed from an edge", 0, (*chaosCluster).edgeRedisBlackHole},
	{"network black hole (leader)", 15 * time.Second, (*chaosCluster).blackHole},
}

// chaosRelay is a relay binary in its own network namespace, reaching
// Redis through its own proxy.
type chaosRelay struct {
	*osProc
	ns    *netns
	redis *tcpProxy
}

type chaosCluster struct {
	pg     *testenv.PostgresServer
	rs     *testenv.RedisServer
	ch     string
	relays []*chaosRelay
	edges  []*osProc
	// edgeRedis are the edges' proxies to Redis, by edge.
	edgeRedis []*tcpProxy
	stream    *notifyStream
	clients   []*resumer
	stop      func()
	results   []trialResult
	// settled is the last SEQ that settle saw every client receive: a
	// trial's window is (settled before it, settled after it].
	settled int
}

const (
	chaosRate  = 200             // NOTIFY per second
	chaosDrain = 2 * time.Second // EDGE_DRAIN_TIMEOUT in the suite
)

func newChaosCluster(t *testing.T) *chaosCluster {
	relayBin, edgeBin := binary(t, "relay"), binary(t, "edge")
	tag := strings.TrimPrefix(testenv.Name(""), "_")[:6]
	x, y := netnsSubnet()
	var nss []*netns
	for i := range 3 {
		nss = append(nss, newNetns(t, tag, x, y, i))
	}
	opts := testenv.PostgresOptions{Settings: map[string]string{"max_connections": "100"}}
	for _, n := range nss {
		opts.ListenAddresses = append(opts.ListenAddresses, n.hostIP)
		opts.HBA = append(opts.HBA, "host all all "+n.nsIP+"/32 trust")
	}
	c := &chaosCluster{pg: testenv.StartPostgres(t, opts), rs: testenv.StartRedis(t), ch: testenv.Name("chaos")}
	prefix := testenv.Name("chaos")

	for i, n := range nss {
		proxy := startProxy(t, n.hostIP+":0", fmt.Sprintf("127.0.0.1:%d", c.rs.Port))
		addr := n.nsIP + ":8081"
		bin, args := n.exec(relayBin)
		p := startBinaryArgs(t, fmt.Sprint("relay-", i+1), bin, args, addr,
			"RELAY_DATABASE_URL="+c.pg.URLOn(n.hostIP),
			"RELAY_REDIS_URL=redis://"+proxy.addr+"/0",
			"RELAY_HTTP_ADDR="+addr,
			"RELAY_PREFIX="+prefix,
			"RELAY_CHANNELS="+c.ch,
			"RELAY_HISTORY_SIZE=200000", // a resuming client never falls out of it
			"RELAY_HISTORY_TTL=1h",
			"RELAY_LOG_FORMAT=text")
		c.relays = append(c.relays, &chaosRelay{osProc: p, ns: n, redis: proxy})
	}
	for i := range 2 {
		addr := freeAddr(t)
		proxy := startProxy(t, "127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", c.rs.Port))
		c.edgeRedis = append(c.edgeRedis, proxy)
		c.edges = append(c.edges, startBinary(t, fmt.Sprint("edge-", i+1), edgeBin, addr,
			"EDGE_REDIS_URL=redis://"+proxy.addr+"/0", "EDGE_PREFIX="+prefix, "EDGE_HTTP_ADDR="+addr,
			"EDGE_DRAIN_TIMEOUT="+chaosDrain.String(), "EDGE_QUEUE_SIZE=4096", "EDGE_LOG_FORMAT=text"))
	}
	for _, e := range c.edges {
		waitReadyz(t, e.proc, "ready")
	}
	c.waitOneLeader(t, 30*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 4 {
		r := newResumer(fmt.Sprint("client-", i+1), []string{c.ch}, c.edges, i, false)
		c.clients = append(c.clients, r)
		wg.Go(func() { r.run(ctx) })
	}
	waitFor(t, "every client to connect", func() bool {
		for _, r := range c.clients {
			if r.stats().connects == 0 {
				return false
			}
		}
		return true
	})
	c.stream = newNotifyStream(c.pg.URL(), c.ch, chaosRate)
	wg.Go(func() { c.stream.run(ctx) })
	c.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(c.stop)
	return c
}

// leaderBackend is the pid of the session holding the leader lock.
func (c *chaosCluster) leaderBackend(t *testing.T) int32 {
	t.Helper()
	conn := c.pg.Conn(t)
	defer conn.Close(context.Background())
	var pid int32
	if err := conn.QueryRow(context.Background(),
		"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted").Scan(&pid); err != nil {
		t.Fatalf("finding the leader's session: %v", err)
	}
	return pid
}

// roles returns each relay's /readyz body ("" when it does not answer).
func (c *chaosCluster) roles() []string {
	out := make([]string, len(c.relays))
	for i, r := range c.relays {
		client := http.Client{Timeout: 500 * time.Millisecond}
		resp, err := client.Get(r.url("/readyz"))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out[i] = strings.TrimSpace(string(b))
	}
	return out
}

// waitOneLeader waits until one relay leads and the others stand by, and
// returns the leader.
func (c *chaosCluster) waitOneLeader(t *testing.T, within time.Duration) *chaosRelay {
	t.Helper()
	deadline := time.Now().Add(within)
	var roles []string
	for time.Now().Before(deadline) {
		roles = c.roles()
		var leader *chaosRelay
		standbys := 0
		for i, r := range roles {
			switch r {
			case "leader":
				leader = c.relays[i]
			case "standby":
				standbys++
			}
		}
		if leader != nil && standbys == len(c.relays)-1 {
			return leader
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no single leader with %d standbys within %s: roles %q", len(c.relays)-1, within, roles)
	return nil
}

// settle waits for one leader and two standbys, and for the stream to
// reach every client.
func (c *chaosCluster) settle(t *testing.T) {
	t.Helper()
	c.waitOneLeader(t, 40*time.Second)
	for _, e := range c.edges {
		waitReadyz(t, e.proc, "ready")
	}
	time.Sleep(200 * time.Millisecond)
	seq := c.stream.lastCommitted()
	c.settled = seq
	deadline := time.Now().Add(15 * time.Second)
	for _, r := range c.clients {
		for maxSeq(r, c.ch) < seq {
			if time.Now().After(deadline) {
				t.Fatalf("%s has not received SEQ %d 15s after the cluster settled (it has %d)", r.name, seq, maxSeq(r, c.ch))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, r := range c.clients {
		for _, p := range r.stats().problems {
			t.Errorf("%s: %s", r.name, p)
		}
	}
}

// logMark is where each relay's log stood at a moment.
type logMark []int

func (c *chaosCluster) mark() logMark {
	m := make(logMark, len(c.relays))
	for i, r := range c.relays {
		m[i] = len(r.logs.String())
	}
	return m
}

// firstLog returns the time of the first line after m (in any relay but
// skip) whose message starts with msg (and whose role is role, if set), and
// the relay that logged it.
func (c *chaosCluster) firstLog(m logMark, skip *chaosRelay, msg, role string) (time.Time, *chaosRelay) {
	var best time.Time
	var who *chaosRelay
	for i, r := range c.relays {
		if r == skip {
			continue
		}
		if at, w := c.firstLogIn(m, i, msg, role); w != nil && (best.IsZero() || at.Before(best)) {
			best, who = at, w
		}
	}
	return best, who
}

// firstLogIn is firstLog for relay i alone.
func (c *chaosCluster) firstLogIn(m logMark, i int, msg, role string) (time.Time, *chaosRelay) {
	logs := c.relays[i].logs.String()
	for _, line := range strings.Split(logs[m[i]:], "\n") {
		if !strings.Contains(line, `msg="`+msg) || (role != "" && !strings.Contains(line, " role="+role)) {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time=")); err == nil {
			return at, c.relays[i]
		}
	}
	return time.Time{}, nil
}

// waitLog waits until firstLog finds a line, or fails t after within.
func (c *chaosCluster) waitLog(t *testing.T, m logMark, skip *chaosRelay, msg, role string, within time.Duration) (time.Time, *chaosRelay) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if at, who := c.firstLog(m, skip, msg, role); !at.IsZero() {
			return at, who
		}
		if time.Now().After(deadline) {
			t.Fatalf("no relay logged %q (role %q) within %s", msg, role, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leaderFault injects a fault on (or around) the leader, waits for a relay
// to lead again, heals, and accounts for the stream.
func (c *chaosCluster) leaderFault(t *testing.T, bound time.Duration, inject func(*chaosRelay) (heal func())) trialResult {
	t.Helper()
	leader := c.waitOneLeader(t, 10*time.Second)
	from := c.settled
	m := c.mark()
	t0 := time.Now()
	heal := inject(leader)
	at, who := c.waitLog(t, m, nil, "role changed", "leader", bound+10*time.Second)
	r := trialResult{resume: at.Sub(t0.Truncate(time.Millisecond))}
	if r.resume > bound {
		t.Errorf("%s led %s after the fault; the bound is %s", who.name, r.resume, bound)
	}
	heal()
	c.settle(t)
	r.lost = c.stream.account(c.clients, from, c.settled)
	for _, d := range r.lost.differ {
		t.Error(d)
	}
	return r
}

func waitExited(t *testing.T, p *osProc) {
	t.Helper()
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit", p.name)
	}
}

// blackHole drops every packet of the leader's network (PostgreSQL and
// Redis alike) without FIN or RST. The leader's ping notices within
// RELAY_PING_INTERVAL + RELAY_PING_TIMEOUT; PostgreSQL drops its session,
// and so frees the lock, after RELAY_TCP_USER_TIMEOUT (the NOTIFYs it sends
// the dead leader go unacknowledged) or the keepalives; a standby takes over.
func (c *chaosCluster) blackHole(t *testing.T) trialResult {
	var old *chaosRelay
	var t0 time.Time
	var m logMark
	var released time.Duration
	done := make(chan struct{})
	r := c.leaderFault(t, 15*time.Second, func(l *chaosRelay) func() {
		pid := c.leaderBackend(t)
		conn := c.pg.Conn(t)
		old, m, t0 = l, c.mark(), time.Now()
		l.ns.blackhole(t)
		go func() { // when does PostgreSQL drop the dead leader's session?
			defer close(done)
			defer conn.Close(context.Background())
			for time.Since(t0) < 30*time.Second {
				var n int
				if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err == nil && n == 0 {
					released = time.Since(t0)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		// Heal once a standby leads and the old leader has noticed.
		return func() {
			<-done
			c.waitLogOf(t, old, m, "postgres session ended", 15*time.Second)
			old.ns.heal(t)
		}
	})
	r.record("PostgreSQL dropped the session", released)
	if released == 0 || released > 15*time.Second {
		t.Errorf("PostgreSQL kept the black-holed leader's session %s (want under 15s)", released)
	}
	noticed := c.waitLogOf(t, old, m, "postgres session ended", 0).Sub(t0.Truncate(time.Millisecond))
	r.record("old leader noticed", noticed)
	if noticed > 9*time.Second { // RELAY_PING_INTERVAL + RELAY_PING_TIMEOUT + 1s
		t.Errorf("the black-holed leader noticed after %s; want under 9s (ping interval 5s + timeout 3s)", noticed)
	}
	return r
}

// waitLogOf waits for r to log a line starting with msg after m, and
// returns its time (within 0: look once, fail if absent).
func (c *chaosCluster) waitLogOf(t *testing.T, r *chaosRelay, m logMark, msg string, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for i, o := range c.relays {
			if o != r {
				continue
			}
			one := make(logMark, len(c.relays))
			copy(one, m)
			if at, who := c.firstLogIn(one, i, msg, ""); who != nil {
				return at
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s", r.name, msg, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// redisRestart stops Redis (saving its data, as a persistent Redis would
// keep it) for a second and starts it again. Edges report not ready while
// they cannot receive, keep their clients, resubscribe and heal from the
// history; the leader loses its publishes and steps down, and a relay leads
// again once Redis answers.
func (c *chaosCluster) redisRestart(t *testing.T) trialResult {
	from := c.settled
	connects := 0
	for _, r := range c.clients {
		connects += r.stats().connects
	}
	t0 := time.Now()
	c.rs.Stop(true)
	notReady := make([]time.Duration, len(c.edges))
	deadline := time.Now().Add(5 * time.Second)
	for i, e := range c.edges {
		for notReady[i] == 0 && time.Now().Before(deadline) {
			if code, _, _ := readyz(e.proc); code == http.StatusServiceUnavailable {
				notReady[i] = time.Since(t0)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if notReady[i] == 0 {
			t.Errorf("%s still ready 5s after Redis stopped", e.name)
		}
	}
	time.Sleep(time.Until(t0.Add(time.Second)))
	m := c.mark()
	t1 := time.Now()
	c.rs.Start()
	at, _ := c.waitLog(t, m, nil, "role changed", "leader", 20*time.Second)
	r := trialResult{resume: at.Sub(t1.Truncate(time.Millisecond))}
	if r.resume > 11*time.Second {
		t.Errorf("a relay led %s after Redis came back; the bound is 11s", r.resume)
	}
	c.settle(t)
	r.lost = c.stream.account(c.clients, from, c.settled)
	for _, d := range r.lost.differ {
		t.Error(d)
	}
	after := 0
	for _, cl := range c.clients {
		after += cl.stats().connects
	}
	r.record("Redis down", t1.Sub(t0))
	for i, d := range notReady {
		r.record(c.edges[i].name+" not ready", d)
	}
	r.extra = append(r.extra, fmt.Sprintf("client reconnects %d", after-connects))
	if after != connects {
		t.Errorf("clients reconnected %d times across a Redis restart: edges must keep their clients", after-connects)
	}
	return r
}

// edgeTerm sends SIGTERM to an edge with clients: readiness goes off
// first, every client is closed with 1001 at moments spread over the drain
// window, and the process exits before the window ends. Resuming clients
// carry on from the other edge without a gap or a duplicate.
func (c *chaosCluster) edgeTerm(t *testing.T) trialResult {
	from := c.settled
	e := c.edges[0]
	type closed struct {
		at   time.Duration
		code int
	}
	const n = 20
	closes := make(chan closed, n)
	var t0 time.Time
	var started sync.WaitGroup
	var mu sync.Mutex
	for range n {
		cl := dial(t, e.proc, c.ch)
		started.Add(1)
		go func() {
			started.Done()
			for {
				_, _, err := cl.ws.Read(context.Background())
				if err != nil {
					mu.Lock()
					at := time.Since(t0)
					mu.Unlock()
					closes <- closed{at, int(websocket.CloseStatus(err))}
					return
				}
			}
		}()
	}
	started.Wait()
	mu.Lock()
	t0 = time.Now()
	mu.Unlock()
	go e.signal(syscall.SIGTERM)
	var notReady time.Duration
	for time.Since(t0) < chaosDrain {
		if code, _, err := readyz(e.proc); err != nil || code != http.StatusOK {
			notReady = time.Since(t0)
			break
		}
		time.Sleep(time.Millisecond)
	}
	waitExited(t, e)
	exit := time.Since(t0)
	var first, last time.Duration
	for i := range n {
		select {
		case cl := <-closes:
			if cl.code != 1001 {
				t.Errorf("a client of %s was closed with %d, want 1001 (going away)", e.name, cl.code)
			}
			if i == 0 || cl.at < first {
				first = cl.at
			}
			last = max(last, cl.at)
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d clients of %s were closed", i, n, e.name)
		}
	}
	r := trialResult{}
	r.record("readiness off", notReady)
	r.record("first close", first)
	r.record("last close", last)
	r.record("exit", exit)
	if notReady == 0 || notReady > first {
		t.Errorf("%s: readiness off after %s, first client closed after %s: readiness must go first", e.name, notReady, first)
	}
	if exit >= chaosDrain {
		t.Errorf("%s exited %s after SIGTERM, not within its %s drain window", e.name, exit, chaosDrain)
	}
	if last-first < chaosDrain/4 {
		t.Errorf("%s closed its %d clients within %s: not spread over the %s window", e.name, n, last-first, chaosDrain)
	}
	e.start()
	c.settle(t)
	r.lost = c.stream.account(c.clients, from, c.settled)
	for _, d := range r.lost.differ {
		t.Error(d)
	}
	if len(r.lost.lost) > 0 {
		t.Errorf("%d notifications lost across an edge restart", len(r.lost.lost))
	}
	return r
}

// edgeRedisBlackHole silences an edge's Redis connection without closing
// it. The edge notices the silence (three ping intervals of its Redis
// subscription), reports not ready, keeps its clients, resubscribes once
// Redis answers again, and fills the gap from the history: its clients
// miss nothing.
func (c *chaosCluster) edgeRedisBlackHole(t *testing.T) trialResult {
	from := c.settled
	connects := 0
	for _, r := range c.clients {
		connects += r.stats().connects
	}
	e, proxy := c.edges[0], c.edgeRedis[0]
	t0 := time.Now()
	proxy.freeze()
	var notReady time.Duration
	for time.Since(t0) < 30*time.Second {
		if code, _, _ := readyz(e.proc); code == http.StatusServiceUnavailable {
			notReady = time.Since(t0)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t1 := time.Now()
	proxy.thaw()
	waitReadyz(t, e.proc, "ready")
	ready := time.Since(t1)
	c.settle(t)
	r := trialResult{lost: c.stream.account(c.clients, from, c.settled)}
	r.record("edge not ready", notReady)
	r.record("ready again after Redis answered", ready)
	after := 0
	for _, cl := range c.clients {
		after += cl.stats().connects
	}
	r.extra = append(r.extra, fmt.Sprintf("client reconnects %d", after-connects))
	if notReady == 0 || notReady > 16*time.Second {
		t.Errorf("%s: still ready %s after its Redis went silent (want not ready within 16s: three 5s pings)", e.name, time.Since(t0))
	}
	for _, d := range r.lost.differ {
		t.Error(d)
	}
	if len(r.lost.lost) > 0 {
		t.Errorf("%d notifications lost across an edge's Redis black hole: the edge must fill the gap from the history", len(r.lost.lost))
	}
	return r
}

// metric reads a counter or gauge from p's /metrics (-1 if absent).
func metric(t *testing.T, p *proc, name string) float64 {
	t.Helper()
	resp, err := http.Get(p.url("/metrics"))
	if err != nil {
		t.Fatalf("%s /metrics: %v", p.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return -1
}

// finish stops the stream and the clients, sends an end marker and checks
// every client once more.
func (c *chaosCluster) finish(t *testing.T) {
	t.Helper()
	conn := c.pg.Conn(t)
	defer conn.Close(context.Background())
	notify(t, conn, c.ch, "end")
	deadline := time.Now().Add(15 * time.Second)
	for _, r := range c.clients {
		for !r.hasAll("end") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !r.hasAll("end") {
			t.Errorf("%s: no end marker within 15s", r.name)
		}
	}
	c.stop()
	for _, r := range c.clients {
		st := r.stats()
		for _, p := range st.problems {
			t.Errorf("%s: %s", r.name, p)
		}
		t.Logf("%s: %d messages, %d connections, no duplicate and no reordering unless listed above", r.name, st.got, st.connects)
	}
	c.stream.mu.Lock()
	t.Logf("stream: %d NOTIFYs attempted at %d/s, %d not confirmed (PostgreSQL down)", len(c.stream.committed), chaosRate, c.stream.failed)
	c.stream.mu.Unlock()
}

// table renders the figures as Markdown.
func (c *chaosCluster) table(trials int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| fault | trials | resume publishing, median / max | lost at %d/s, median / max | bound | other figures (median / max) |\n|---|---|---|---|---|---|\n", chaosRate)
	for _, f := range chaosFaults {
		var resumes []time.Duration
		var lost []int
		extras := map[string][]time.Duration{}
		var names []string
		n := 0
		for _, r := range c.results {
			if r.fault.name != f.name {
				continue
			}
			n++
			resumes = append(resumes, r.resume)
			lost = append(lost, len(r.lost.lost))
			for k, v := range r.values {
				if _, ok := extras[k]; !ok {
					names = append(names, k)
				}
				extras[k] = append(extras[k], v)
			}
		}
		if n == 0 {
			continue
		}
		resume, bound := "—", "—"
		if f.bound > 0 {
			med, mx := medianMax(resumes)
			resume, bound = fmtDur(med)+" / "+fmtDur(mx), "< "+fmtDur(f.bound)
		}
		lmed, lmax := medianMax(lost)
		var other []string
		for _, k := range names {
			med, mx := medianMax(extras[k])
			other = append(other, fmt.Sprintf("%s %s / %s", k, fmtDur(med), fmtDur(mx)))
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %d / %d | %s | %s |\n", f.name, n, resume, lmed, lmax, bound, strings.Join(other, "; "))
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}
