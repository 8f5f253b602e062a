package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgrelay/pgrelay/internal/outbox"
	"github.com/pgrelay/pgrelay/internal/relay"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// newOutboxTable migrates an outbox table of the test's own (default limit)
// and drops it at cleanup.
func newOutboxTable(t testing.TB, conn *pgx.Conn) outbox.Schema {
	t.Helper()
	s := outbox.DefaultSchema()
	s.Table.Name, s.WakeChannel = testenv.Name("outbox"), testenv.Name("wake")
	t.Cleanup(func() {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, testenv.DatabaseURL(t))
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{s.Table.Name}.Sanitize()+", "+pgx.Identifier{s.Table.Name + "_rejected"}.Sanitize()); err != nil {
			t.Error(err)
		}
		if _, err := c.Exec(ctx, "DROP FUNCTION IF EXISTS "+pgx.Identifier{s.Table.Name + "_wake"}.Sanitize()); err != nil {
			t.Error(err)
		}
	})
	if err := outbox.Migrate(context.Background(), conn, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func insertRow(ctx context.Context, conn interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, s outbox.Schema, channel, payload string) error {
	_, err := conn.Exec(ctx, "INSERT INTO "+pgx.Identifier{s.Table.Name}.Sanitize()+" (channel, payload) VALUES ($1, $2)", channel, payload)
	return err
}

// A 1 MiB outbox payload (far over NOTIFY's 8000 bytes) reaches a WebSocket
// client byte for byte; a 1 MiB + 1 byte row is refused by the INSERT.
func TestOutboxLargePayloadArrivesIntact(t *testing.T) {
	prefix, ch := testenv.Name("big"), testenv.Name("data")
	conn := testenv.Conn(t)
	s := newOutboxTable(t, conn)
	r := startRelay(t, "relay", prefix, nil, func(c *relay.Config) {
		c.Source, c.OutboxTable, c.OutboxWakeChannel = relay.SourceOutbox, s.Table.Name, s.WakeChannel
	})
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix)
	c := dial(t, e, ch)
	c.ws.SetReadLimit(4 << 20) // the frame is the payload JSON-escaped

	unit := "🚀é\"\\\n<>&\u2028\x01" // multi-byte, JSON-escaped and control characters
	payload := strings.Repeat(unit, 1<<20/len(unit))
	payload += strings.Repeat("z", 1<<20-len(payload))
	if err := insertRow(context.Background(), conn, s, ch, payload); err != nil {
		t.Fatal(err)
	}
	f, err := c.next(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f.Channel != ch || f.Payload != payload {
		t.Fatalf("got %d bytes on %q, want the %d-byte payload intact on %q", len(f.Payload), f.Channel, len(payload), ch)
	}

	err = insertRow(context.Background(), conn, s, ch, payload+"x")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.ConstraintName != "payload_at_most_1048576_bytes" {
		t.Fatalf("INSERT of 1 MiB + 1 byte = %v, want a check violation of payload_at_most_1048576_bytes", err)
	}
	if err := insertRow(context.Background(), conn, s, ch, "after"); err != nil {
		t.Fatal(err)
	}
	expectPayloads(t, c, "after")
}

// failoverRun is one run of the failover scenario.
type failoverRun struct {
	source   string // relay.SourceOutbox or relay.SourceNotify
	messages int
	writers  int
	channels int
	clients  int
	duration time.Duration // how long the writers take
}

// The scenario, with real processes: 10,000 messages written by
// several concurrent writers (some transactions held open much longer than
// others) on a few channels, while the leading relay is SIGKILLed twice and
// one edge restarts. Every client resumes with since=CHANNEL:ID after each
// disconnect, on whichever edge is up.
//
// outbox: every client ends with all 10,000, once each, ids consecutive per
// channel, each writer's messages in its commit order, and no reset frame.
// notify: the same run reports how many messages were lost (NOTIFYs sent
// while no relay listened, or received by a relay that died before
// publishing); delivery of what was published is checked the same way.
func TestOutboxFailover(t *testing.T) {
	for _, source := range []string{relay.SourceOutbox, relay.SourceNotify} {
		t.Run(source, func(t *testing.T) {
			failoverRun{source: source, messages: 10000, writers: 8, channels: 3, clients: 6, duration: 6 * time.Second}.run(t)
		})
	}
}

func (fr failoverRun) run(t *testing.T) {
	t0 := time.Now()
	relayBin, edgeBin := binary(t, "relay"), binary(t, "edge")
	outboxMode := fr.source == relay.SourceOutbox
	prefix := testenv.Name("failover")
	channels := make([]string, fr.channels)
	for i := range channels {
		channels[i] = testenv.Name(fmt.Sprint("ch", i))
	}
	conn := testenv.Conn(t)

	env := []string{
		"RELAY_DATABASE_URL=" + testenv.DatabaseURL(t),
		"RELAY_REDIS_URL=" + testenv.RedisURL(t),
		"RELAY_PREFIX=" + prefix,
		"RELAY_SOURCE=" + fr.source,
		"RELAY_HISTORY_SIZE=20000", // a resuming client never falls out of it
		"RELAY_HISTORY_TTL=10m",
		"RELAY_LOCK_RETRY_INTERVAL=100ms",
		"RELAY_LOG_FORMAT=text",
	}
	var s outbox.Schema
	if outboxMode {
		// Created up front so writers can start at once; the relays migrate
		// again as each takes the lead (a no-op that takes no table lock,
		// so writers holding transactions open do not hold it up).
		s = newOutboxTable(t, conn)
		env = append(env, "RELAY_OUTBOX_TABLE="+s.Table.Name, "RELAY_OUTBOX_WAKE_CHANNEL="+s.WakeChannel, "RELAY_OUTBOX_MIGRATE=true")
	} else {
		env = append(env, "RELAY_CHANNELS="+strings.Join(channels, ","))
	}
	relays := make([]*osProc, 2)
	for i := range relays {
		addr := freeAddr(t)
		relays[i] = startBinary(t, fmt.Sprint("relay-", i+1), relayBin, addr, slices.Concat(env, []string{"RELAY_HTTP_ADDR=" + addr})...)
	}
	edges := make([]*osProc, 2)
	for i := range edges {
		addr := freeAddr(t)
		edges[i] = startBinary(t, fmt.Sprint("edge-", i+1), edgeBin, addr,
			"EDGE_REDIS_URL="+testenv.RedisURL(t), "EDGE_PREFIX="+prefix, "EDGE_HTTP_ADDR="+addr,
			"EDGE_DRAIN_TIMEOUT=500ms", "EDGE_QUEUE_SIZE=4096", "EDGE_LOG_FORMAT=text")
	}
	for _, e := range edges {
		waitReadyz(t, e.proc, "ready")
	}
	leader := byProc(relays, waitLeader(t, procs(relays...)...))

	send := func(ctx context.Context, q interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	}, ch, payload string) error {
		if outboxMode {
			return insertRow(ctx, q, s, ch, payload)
		}
		_, err := q.Exec(ctx, "SELECT pg_notify($1, $2)", ch, payload)
		return err
	}

	// Clients connect before anything is sent, then each gets a first
	// message per channel, so that it has a position to resume from.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	clients := make([]*resumer, fr.clients)
	var cwg sync.WaitGroup
	for i := range clients {
		clients[i] = newResumer(fmt.Sprint("client-", i+1), channels, edges, i, !outboxMode)
		cwg.Go(func() { clients[i].run(ctx) })
	}
	defer func() { cancel(); cwg.Wait() }()
	waitFor(t, "every client to connect", func() bool {
		for _, c := range clients {
			if c.stats().connects == 0 {
				return false
			}
		}
		return true
	})
	for _, ch := range channels {
		if err := send(ctx, conn, ch, "hello"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every client to get hello on every channel", func() bool {
		for _, c := range clients {
			if !c.hasAll("hello") {
				return false
			}
		}
		return true
	})

	// Writers: each its share of the messages, in transactions of 1 to 20,
	// one in six held open 100-400ms before commit, paced over duration.
	type sent struct {
		payload string
		at      time.Time // commit
	}
	sentBy := make([][]sent, fr.writers)
	var wwg sync.WaitGroup
	wstart := time.Now()
	for w := range fr.writers {
		wconn := testenv.Conn(t)
		wwg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(wstart.UnixNano())))
			n := fr.messages / fr.writers
			if w < fr.messages%fr.writers {
				n++
			}
			for seq := 0; seq < n; {
				time.Sleep(time.Until(wstart.Add(fr.duration * time.Duration(seq) / time.Duration(n))))
				tx, err := wconn.Begin(ctx)
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				var batch []string
				for k := rng.IntN(20) + 1; k > 0 && seq < n; k-- {
					p := fmt.Sprintf("w%d:%d", w, seq)
					if err := send(ctx, tx, channels[rng.IntN(len(channels))], p); err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
					batch = append(batch, p)
					seq++
				}
				if rng.IntN(6) == 0 {
					time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Errorf("writer %d: commit: %v", w, err)
					return
				}
				at := time.Now()
				for _, p := range batch {
					sentBy[w] = append(sentBy[w], sent{p, at})
				}
			}
		})
	}

	// Meanwhile: SIGKILL the leader, restart an edge, SIGKILL the leader
	// again. A killed relay comes back (as a standby), as under Kubernetes.
	var kills []failover
	killLeader := func() {
		killed := leader
		at := time.Now()
		killed.kill(t)
		var alive []*osProc
		for _, r := range relays {
			if r != killed {
				alive = append(alive, r)
			}
		}
		leader = byProc(relays, waitLeader(t, procs(alive...)...))
		kills = append(kills, failover{at, time.Since(at)})
		t.Logf("%s: SIGKILLed leader %s; %s leads after %s", time.Since(wstart).Round(time.Millisecond), killed.name, leader.name, time.Since(at).Round(time.Millisecond))
		killed.start()
	}
	at := func(frac float64) { time.Sleep(time.Until(wstart.Add(time.Duration(frac * float64(fr.duration))))) }
	at(0.25)
	killLeader()
	at(0.5)
	edgeAt := time.Now()
	edges[0].term(t)
	edges[0].start()
	waitReadyz(t, edges[0].proc, "ready")
	t.Logf("%s: restarted %s in %s", time.Since(wstart).Round(time.Millisecond), edges[0].name, time.Since(edgeAt).Round(time.Millisecond))
	at(0.75)
	killLeader()
	wwg.Wait()
	writeTime := time.Since(wstart)
	if t.Failed() {
		return
	}

	// Everything sent is committed: an end marker per channel comes after
	// all of it (outbox: it has the highest ids; notify: it is sent last).
	for _, ch := range channels {
		if err := send(ctx, conn, ch, "end"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range clients {
		for !c.hasAll("end") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	caughtUp := time.Since(wstart) - writeTime
	cancel()
	cwg.Wait()

	// Check every client.
	commitAt := make(map[string]time.Time, fr.messages)
	for _, msgs := range sentBy {
		for _, m := range msgs {
			commitAt[m.payload] = m.at
		}
	}
	if len(commitAt) != fr.messages {
		t.Fatalf("writers committed %d messages, want %d", len(commitAt), fr.messages)
	}
	for _, c := range clients {
		st := c.stats()
		if !c.hasAll("end") {
			t.Errorf("%s: no end marker on every channel within 30s (got %d messages)", c.name, st.got)
		}
		for _, p := range st.problems {
			t.Errorf("%s: %s", c.name, p)
		}
		var lost []string
		for p := range commitAt {
			if !c.saw(p) {
				lost = append(lost, p)
			}
		}
		if outboxMode {
			if len(lost) > 0 {
				sort.Strings(lost)
				t.Errorf("%s: %d of %d messages never arrived, e.g. %q", c.name, len(lost), fr.messages, lost[:min(5, len(lost))])
			}
			t.Logf("%s: %d messages, %d connections, %d resets", c.name, st.got, st.connects, st.resets)
			continue
		}
		// notify: count the loss per kill (the nearest one), split into
		// messages committed before it (queued for, or received by, the
		// leader that died) and after it (sent while no relay listened).
		before, after := make([]int, len(kills)), make([]int, len(kills))
		for _, p := range lost {
			i := nearestKill(commitAt[p], kills)
			if commitAt[p].Before(kills[i].at) {
				before[i]++
			} else {
				after[i]++
			}
		}
		var per []string
		for i := range kills {
			per = append(per, fmt.Sprintf("kill %d: %d (%d committed before it, %d during the %s takeover)",
				i+1, before[i]+after[i], before[i], after[i], kills[i].takeover.Round(time.Millisecond)))
		}
		t.Logf("%s: lost %d of %d (%.1f%%); %s; %d connections, %d resets",
			c.name, len(lost), fr.messages, 100*float64(len(lost))/float64(fr.messages), strings.Join(per, "; "), st.connects, st.resets)
	}
	t.Logf("%s: %d messages by %d writers over %s, %d clients on %d channels; caught up %s after the last commit; whole run %s",
		fr.source, fr.messages, fr.writers, writeTime.Round(time.Millisecond), fr.clients, fr.channels,
		caughtUp.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	if outboxMode {
		n := 0
		for _, r := range relays {
			n += strings.Count(r.logs.String(), "outbox rows were published already")
		}
		t.Logf("drains that found rows a killed leader had published but not deleted: %d", n)
	}
}

// failover is a leader kill: when, and how long until another relay led.
type failover struct {
	at       time.Time
	takeover time.Duration
}

// nearestKill returns the index of the kill nearest to at.
func nearestKill(at time.Time, kills []failover) int {
	best := 0
	for i, k := range kills {
		if (at.Sub(k.at)).Abs() < (at.Sub(kills[best].at)).Abs() {
			best = i
		}
	}
	return best
}

// byProc returns the osProc of ps that embeds p.
func byProc(ps []*osProc, p *proc) *osProc {
	for _, o := range ps {
		if o.proc == p {
			return o
		}
	}
	panic("no such process")
}

// resumer is a WebSocket client that never gives up: after any disconnect
// it reconnects (alternating edges, so whichever is up answers) with
// since=CHANNEL:ID for every channel. It drops nothing and dedupes nothing:
// it records a duplicate, an id that is not the last one plus one, a
// writer's messages out of order, and (unless resetsOK) a reset frame as
// problems.
type resumer struct {
	name     string
	channels []string
	edges    []*osProc
	next     int
	resetsOK bool

	mu       sync.Mutex
	last     map[string]uint64 // channel → last id
	seen     map[string]bool   // payloads received
	order    map[string]int    // writer "/" channel → last sequence number
	markers  map[string]map[string]bool
	st       resumerStats
	problems []string
}

type resumerStats struct {
	got, connects, resets int
	problems              []string
}

func newResumer(name string, channels []string, edges []*osProc, first int, resetsOK bool) *resumer {
	return &resumer{
		name: name, channels: channels, edges: edges, next: first, resetsOK: resetsOK,
		last: map[string]uint64{}, seen: map[string]bool{}, order: map[string]int{},
		markers: map[string]map[string]bool{"hello": {}, "end": {}},
	}
}

// run connects and reads until ctx ends.
func (r *resumer) run(ctx context.Context) {
	for ctx.Err() == nil {
		e := r.edges[r.next%len(r.edges)]
		r.next++
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ws, _, err := websocket.Dial(dctx, "ws://"+e.addr+"/ws?"+r.query(), nil)
		cancel()
		if err != nil {
			select { // that edge is down or not ready: try the other
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		ws.SetReadLimit(4 << 20)
		r.mu.Lock()
		r.st.connects++
		r.mu.Unlock()
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				break
			}
			r.handle(b)
		}
		ws.CloseNow()
	}
}

func (r *resumer) query() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := url.Values{"channel": r.channels}
	for _, ch := range r.channels {
		if id, ok := r.last[ch]; ok {
			q.Add("since", ch+":"+strconv.FormatUint(id, 10))
		}
	}
	return q.Encode()
}

func (r *resumer) problem(format string, args ...any) {
	if len(r.problems) < 20 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

func (r *resumer) handle(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		r.problem("bad frame %q: %v", b, err)
		return
	}
	id, err := strconv.ParseUint(f.ID, 10, 64)
	if err != nil {
		r.problem("bad id in %q", b)
		return
	}
	last, known := r.last[f.Channel]
	switch {
	case f.Type == "reset":
		r.st.resets++
		if !r.resetsOK {
			r.problem("reset frame %s after id %d", b, last)
		}
		r.last[f.Channel] = id
		return
	case f.Type != "":
		r.problem("unknown frame %q", b)
		return
	case known && id != last+1:
		r.problem("on %s: id %d after %d (payload %q)", f.Channel, id, last, f.Payload)
	}
	if !known || id > last {
		r.last[f.Channel] = id
	}
	if m, ok := r.markers[f.Payload]; ok {
		m[f.Channel] = true
		return
	}
	if r.seen[f.Payload] {
		r.problem("duplicate %q on %s (id %d)", f.Payload, f.Channel, id)
		return
	}
	r.seen[f.Payload] = true
	r.st.got++
	w, seqText, _ := strings.Cut(f.Payload, ":")
	seq, _ := strconv.Atoi(seqText)
	key := w + "/" + f.Channel
	if prev, ok := r.order[key]; ok && seq < prev {
		r.problem("on %s: %s:%d after %s:%d, against the writer's commit order", f.Channel, w, seq, w, prev)
	}
	r.order[key] = seq
}

// hasAll reports whether marker arrived on every channel.
func (r *resumer) hasAll(marker string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.markers[marker]) == len(r.channels)
}

func (r *resumer) saw(payload string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[payload]
}

func (r *resumer) stats() resumerStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.problems = append([]string(nil), r.problems...)
	return st
}

// waitFor polls cond until it holds, or fails t after 15s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
