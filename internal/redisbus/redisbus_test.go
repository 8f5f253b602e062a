package redisbus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/event"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// The tests are in package redisbus so that they can check that a failed
// Acquire leaves no reference behind (Subscriber.chans); everything else goes
// through the exported API and a real Redis.

const wait = 5 * time.Second // upper bound for anything that should be prompt

// logBuf collects a Subscriber's logs; they are printed if the test fails.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger(t *testing.T) (*slog.Logger, *logBuf) {
	b := &logBuf{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- subscriber logs ---\n%s", b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// namedRedis returns a client whose connections carry name in CLIENT LIST.
func namedRedis(t *testing.T, name string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opts.ClientName = name
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// sub is a Subscriber under test and what its Handle received.
type sub struct {
	*Subscriber
	prefix string
	events chan event.Event
	logs   *logBuf
	rdb    *redis.Client // the Subscriber's own client
	done   chan error    // receives Run's result; nil until run is called
	cancel context.CancelFunc
}

// newSub returns a Subscriber on a fresh prefix, not yet running.
func newSub(t *testing.T, rdb *redis.Client) *sub {
	t.Helper()
	log, logs := newLogger(t)
	s := &sub{prefix: testenv.Name("rb"), events: make(chan event.Event, 1000), logs: logs, rdb: rdb}
	s.Subscriber = NewSubscriber(rdb, SubscriberOptions{
		Prefix: s.prefix,
		Logger: log,
		Handle: func(e event.Event) {
			select {
			case s.events <- e:
			default:
				t.Errorf("Handle: event buffer full, dropped %+v", e)
			}
		},
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	})
	return s
}

// run starts Run in a goroutine; it is stopped (and must return) at cleanup.
func (s *sub) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan error, 1)
	go func() { s.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(wait):
			t.Errorf("Run did not return within %s of cancel", wait)
		}
	})
}

// startSub returns a running Subscriber on a fresh prefix that is live.
func startSub(t *testing.T) *sub {
	t.Helper()
	s := newSub(t, testenv.Redis(t))
	s.run(t)
	waitFor(t, "subscriber live", s.Live)
	return s
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

// next returns the next event Handle received, or fails t.
func (s *sub) next(t *testing.T) event.Event {
	t.Helper()
	select {
	case e := <-s.events:
		return e
	case <-time.After(wait):
		t.Fatalf("no event handled within %s", wait)
		return event.Event{}
	}
}

// expect fails t unless the next event handled is want.
func (s *sub) expect(t *testing.T, want event.Event) {
	t.Helper()
	if got := s.next(t); got != want {
		t.Fatalf("handled %+v, want %+v", got, want)
	}
}

func (s *sub) refs(name string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.chans[name]
	if !ok {
		return 0, false
	}
	return st.refs, true
}

func (s *sub) acquired() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for name := range s.chans {
		names = append(names, name)
	}
	return names
}

// numSub is how many Redis connections are subscribed to redisChannel.
func numSub(t *testing.T, rdb *redis.Client, redisChannel string) int64 {
	t.Helper()
	m, err := rdb.PubSubNumSub(context.Background(), redisChannel).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m[redisChannel]
}

func publish(t *testing.T, p *Publisher, channel, payload string) string {
	t.Helper()
	id, err := p.Publish(context.Background(), channel, payload)
	if err != nil {
		t.Fatalf("Publish(%q): %v", channel, err)
	}
	return id
}

// fill repeats unit and pads it with 'y' to exactly n bytes.
func fill(unit string, n int) string {
	s := strings.Repeat(unit, n/len(unit))
	return s + strings.Repeat("y", n-len(s))
}

func TestPublisherIDsGrowPerChannel(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	p := NewPublisher(rdb, testenv.Name("rb"))
	for i, step := range []struct{ channel, want string }{
		{"a", "1"}, {"b", "1"}, {"a", "2"}, {"a", "3"}, {"b", "2"}, {"c", "1"}, {"a", "4"}, {"b", "3"},
	} {
		if got := publish(t, p, step.channel, "x"); got != step.want {
			t.Errorf("step %d: Publish(%q) id = %q, want %q", i, step.channel, got, step.want)
		}
	}
	// Another prefix has counters of its own.
	if got := publish(t, NewPublisher(rdb, testenv.Name("rb")), "a", "x"); got != "1" {
		t.Errorf("first Publish under a fresh prefix: id = %q, want 1", got)
	}
}

func TestPublisherIDsUniqueUnderConcurrency(t *testing.T) {
	t.Parallel()
	p := NewPublisher(testenv.Redis(t), testenv.Name("rb"))
	const workers, each = 8, 25
	ids := make(chan string, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				id, err := p.Publish(context.Background(), "c", "x")
				if err != nil {
					t.Error(err)
					return
				}
				ids <- id
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("id %s given twice", id)
		}
		seen[id] = true
	}
	for i := 1; i <= workers*each; i++ {
		if !seen[fmt.Sprint(i)] {
			t.Errorf("id %d never given", i)
		}
	}
}

// The envelope a Publisher puts on Redis decodes, with Decode, to exactly
// the channel, id and payload it was given.
func TestPublisherEnvelopeOnRedis(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	prefix := testenv.Name("rb")
	p := NewPublisher(rdb, prefix)

	payloads := []struct{ name, payload string }{
		{"plain", "green"},
		{"empty", ""},
		{"quotes", `he said "hi" 'there'`},
		{"backslashes", `C:\dir\n \" \\ \u0041`},
		{"newlines", "a\nb\r\nc\td"},
		{"emoji", "🚀 héllo 日本語 ✓"},
		{"html", `<script>alert("x&y")</script>`},
		{"json", `{"id":"999","channel":"other","payload":"x"}`},
		{"splice bait", `","id":"666`},
		{"lua bait", `%d %s ..`},
		{"max notify payload", fill("é\"\\\n🚀x", 7999)},
		{"7999 bytes", strings.Repeat("z", 7999)},
	}
	channels := []string{"a", `with"quote`, "a b", "Orders", "é:ü", strings.Repeat("c", event.MaxChannelLen)}

	for _, channel := range channels {
		t.Run(channel, func(t *testing.T) {
			ctx := context.Background()
			ps := rdb.Subscribe(ctx, channelKey(prefix, channel))
			defer ps.Close()
			if _, err := ps.Receive(ctx); err != nil { // the subscribe confirmation
				t.Fatal(err)
			}
			for i, tc := range payloads {
				id := publish(t, p, channel, tc.payload)
				if want := fmt.Sprint(i + 1); id != want {
					t.Errorf("%s: id = %q, want %q", tc.name, id, want)
				}
				rctx, cancel := context.WithTimeout(ctx, wait)
				msg, err := ps.ReceiveMessage(rctx)
				cancel()
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				e, err := event.Decode([]byte(msg.Payload))
				if err != nil {
					t.Fatalf("%s: Decode(%s): %v", tc.name, msg.Payload, err)
				}
				want := event.Event{Channel: channel, ID: id, Payload: tc.payload}
				if e != want {
					t.Errorf("%s: decoded %+v, want %+v", tc.name, e, want)
				}
			}
		})
	}
	if len(payloads[10].payload) != 7999 || len(payloads[11].payload) != 7999 {
		t.Fatalf("test payloads are %d and %d bytes, want 7999", len(payloads[10].payload), len(payloads[11].payload))
	}
}

// Acquire returns only once Redis has confirmed the subscription: a message
// published right after it returns is handled, without any retry.
func TestAcquireReturnsWhenLive(t *testing.T) {
	t.Parallel()
	s := startSub(t)
	p := NewPublisher(testenv.Redis(t), s.prefix)
	ctx := context.Background()

	for round := range 3 { // fresh channels each round, on the same connection
		a, b := fmt.Sprint("a", round), fmt.Sprint("b", round)
		if err := s.Acquire(ctx, []string{a, b}); err != nil {
			t.Fatal(err)
		}
		publish(t, p, a, "first")
		publish(t, p, b, "second")
		s.expect(t, event.Event{Channel: a, ID: "1", Payload: "first"})
		s.expect(t, event.Event{Channel: b, ID: "1", Payload: "second"})
	}
	if n := s.Malformed(); n != 0 {
		t.Errorf("Malformed() = %d, want 0", n)
	}
}

// An Acquire made before Run has connected waits for it, and the first
// connection subscribes to what was acquired.
func TestAcquireBeforeRun(t *testing.T) {
	t.Parallel()
	s := newSub(t, testenv.Redis(t))
	p := NewPublisher(testenv.Redis(t), s.prefix)
	acquired := make(chan error, 1)
	go func() { acquired <- s.Acquire(context.Background(), []string{"a"}) }()
	waitFor(t, "Acquire to register its channel", func() bool { _, ok := s.refs("a"); return ok })
	select {
	case err := <-acquired:
		t.Fatalf("Acquire returned (%v) before Run had connected", err)
	default:
	}
	s.run(t)
	select {
	case err := <-acquired:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Acquire did not return once Run connected")
	}
	publish(t, p, "a", "hello")
	s.expect(t, event.Event{Channel: "a", ID: "1", Payload: "hello"})
}

func TestReleaseCountsReferences(t *testing.T) {
	t.Parallel()
	s := startSub(t)
	rdb := testenv.Redis(t)
	p := NewPublisher(rdb, s.prefix)
	ctx := context.Background()

	// "s" is a sentinel that stays acquired: Redis delivers in publish
	// order on the one connection, so once the sentinel's message is
	// handled, an earlier message would have been too.
	for _, chans := range [][]string{{"s"}, {"a"}, {"a"}} {
		if err := s.Acquire(ctx, chans); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := s.refs("a"); n != 2 {
		t.Fatalf("refs(a) = %d after two Acquires, want 2", n)
	}

	s.Release([]string{"a"})
	publish(t, p, "a", "still here")
	s.expect(t, event.Event{Channel: "a", ID: "1", Payload: "still here"})

	s.Release([]string{"a"})
	if _, ok := s.refs("a"); ok {
		t.Error("channel a still acquired after its last Release")
	}
	// Release only writes UNSUBSCRIBE; wait until Redis has processed it.
	waitFor(t, "Redis to drop the subscription to a", func() bool { return numSub(t, rdb, channelKey(s.prefix, "a")) == 0 })
	if n := numSub(t, rdb, channelKey(s.prefix, "s")); n != 1 {
		t.Fatalf("sentinel has %d subscribers on Redis, want 1", n)
	}
	publish(t, p, "a", "gone")
	publish(t, p, "s", "sentinel")
	if got := s.next(t); got.Channel != "s" {
		t.Fatalf("handled %+v after the last Release of a, want only the sentinel", got)
	}

	// Releasing what was never acquired (or once too often) is harmless.
	s.Release([]string{"a", "never"})
	publish(t, p, "s", "sentinel 2")
	s.expect(t, event.Event{Channel: "s", ID: "2", Payload: "sentinel 2"})
}

// Messages a foreign writer put on a channel that are not valid envelopes
// for it are skipped, counted and logged; the next valid one is delivered.
func TestMalformedMessagesSkipped(t *testing.T) {
	t.Parallel()
	s := startSub(t)
	rdb := testenv.Redis(t)
	p := NewPublisher(rdb, s.prefix)
	ctx := context.Background()
	if err := s.Acquire(ctx, []string{"x"}); err != nil {
		t.Fatal(err)
	}

	bad := []struct{ name, raw string }{
		{"not JSON", "hello there"},
		{"truncated", `{"channel":"x","id":"1"`},
		{"other channel", `{"channel":"y","id":"1","payload":"p"}`},
		{"missing id", `{"channel":"x","payload":"p"}`},
		{"bad id", `{"channel":"x","id":"-3","payload":"p"}`},
		{"empty channel", `{"channel":"","id":"1","payload":"p"}`},
		{"empty message", ``},
	}
	for _, b := range bad {
		if err := rdb.Publish(ctx, channelKey(s.prefix, "x"), b.raw).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Junk on the control channel is not an event and not counted.
	if err := rdb.Publish(ctx, controlChannel(s.prefix), "junk").Err(); err != nil {
		t.Fatal(err)
	}
	publish(t, p, "x", "valid")
	s.expect(t, event.Event{Channel: "x", ID: "1", Payload: "valid"})
	if got := s.Malformed(); got != uint64(len(bad)) {
		t.Errorf("Malformed() = %d, want %d", got, len(bad))
	}
	if got := strings.Count(s.logs.String(), "skipped malformed message"); got != len(bad) {
		t.Errorf("logged %d skipped messages, want %d:\n%s", got, len(bad), s.logs.String())
	}
	// A foreign writer's valid envelope is delivered like the relay's.
	if err := rdb.Publish(ctx, channelKey(s.prefix, "x"), `{"channel":"x","id":"77","payload":"foreign"}`).Err(); err != nil {
		t.Fatal(err)
	}
	s.expect(t, event.Event{Channel: "x", ID: "77", Payload: "foreign"})
}

// unreachableRedis returns a client for an address where nothing listens.
func unreachableRedis(t *testing.T) *redis.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func TestRunReturnsPromptlyOnCancel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		rdb  func(*testing.T) *redis.Client
		live bool
	}{
		{"live", func(t *testing.T) *redis.Client { return testenv.Redis(t) }, true},
		{"redis unreachable", unreachableRedis, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSub(t, tc.rdb(t))
			s.run(t)
			if tc.live {
				waitFor(t, "subscriber live", s.Live)
				if err := s.Acquire(context.Background(), []string{"a"}); err != nil {
					t.Fatal(err)
				}
			} else {
				waitFor(t, "a failed connection attempt to be logged", func() bool {
					return strings.Contains(s.logs.String(), "redis subscription lost")
				})
				if s.Live() {
					t.Error("Live() with Redis unreachable")
				}
			}
			start := time.Now()
			s.cancel()
			select {
			case err := <-s.done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Run returned %v, want context.Canceled", err)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("Run returned %s after cancel, want < 2s", d)
				}
				s.done <- err // for the cleanup
			case <-time.After(2 * time.Second):
				t.Fatal("Run did not return within 2s of cancel")
			}
			if s.Live() {
				t.Error("Live() after Run returned")
			}
		})
	}
}

func TestAcquireFailureLeavesNoReference(t *testing.T) {
	t.Parallel()

	t.Run("context already cancelled", func(t *testing.T) {
		t.Parallel()
		rdb := testenv.Redis(t)
		s := newSub(t, rdb)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := s.Acquire(ctx, []string{"a", "b"})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Acquire with a cancelled context = %v, want context.Canceled", err)
		}
		if names := s.acquired(); len(names) != 0 {
			t.Errorf("channels %q still acquired after the failed Acquire", names)
		}
		// Once connected, the Subscriber listens to its control channel only.
		s.run(t)
		waitFor(t, "subscriber live", s.Live)
		chans, err := rdb.PubSubChannels(context.Background(), s.prefix+":*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{controlChannel(s.prefix)}; !slices.Equal(chans, want) {
			t.Errorf("subscribed on Redis to %q, want %q", chans, want)
		}
	})

	t.Run("timeout with redis unreachable", func(t *testing.T) {
		t.Parallel()
		s := newSub(t, unreachableRedis(t))
		s.run(t)
		// A reference held by someone else must survive the failure.
		held, cancelHeld := context.WithCancel(context.Background())
		heldErr := make(chan error, 1)
		go func() { heldErr <- s.Acquire(held, []string{"shared"}) }()
		waitFor(t, "the first Acquire to register", func() bool { _, ok := s.refs("shared"); return ok })

		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := s.Acquire(ctx, []string{"a", "shared"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Acquire = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Acquire returned after %s, its context ended after 200ms", d)
		}
		if _, ok := s.refs("a"); ok {
			t.Error("channel a still acquired after the failed Acquire")
		}
		if n, _ := s.refs("shared"); n != 1 {
			t.Errorf("refs(shared) = %d after the failed Acquire, want the other holder's 1", n)
		}
		cancelHeld()
		if err := <-heldErr; !errors.Is(err, context.Canceled) {
			t.Errorf("the other Acquire = %v, want context.Canceled", err)
		}
		if names := s.acquired(); len(names) != 0 {
			t.Errorf("channels %q still acquired after both Acquires failed", names)
		}
	})
}

// pubsubConns returns the ids of the connections named name that are
// subscribed to something, from CLIENT LIST.
func pubsubConns(t *testing.T, rdb *redis.Client, name string) (ids []string) {
	t.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(list, "\n") {
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["name"] == name && f["sub"] != "" && f["sub"] != "0" {
			ids = append(ids, f["id"]+"/sub="+f["sub"])
		}
	}
	return ids
}

// An Acquire whose context has already passed its deadline fails on its own:
// it must not tear down the connection every other channel depends on.
func TestExpiredAcquireDoesNotDropConnection(t *testing.T) {
	t.Parallel()
	name := testenv.Name("rbconn")
	admin := testenv.Redis(t)
	s := newSub(t, namedRedis(t, name))
	s.run(t)
	waitFor(t, "subscriber live", s.Live)
	if err := s.Acquire(context.Background(), []string{"s"}); err != nil {
		t.Fatal(err)
	}
	var before []string
	waitFor(t, "one pub/sub connection with ctl and s", func() bool {
		before = pubsubConns(t, admin, name)
		return len(before) == 1 && strings.HasSuffix(before[0], "/sub=2")
	})

	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if err := s.Acquire(ctx, []string{"a"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with an expired context = %v, want context.DeadlineExceeded", err)
	}

	// A later Acquire succeeds either way; then the connection must be the
	// same one, holding ctl, s and b.
	if err := s.Acquire(context.Background(), []string{"b"}); err != nil {
		t.Fatal(err)
	}
	var after []string
	waitFor(t, "the subscription to b to show in CLIENT LIST", func() bool {
		after = pubsubConns(t, admin, name)
		return len(after) == 1 && strings.HasSuffix(after[0], "/sub=3")
	})
	idBefore, _, _ := strings.Cut(before[0], "/")
	idAfter, _, _ := strings.Cut(after[0], "/")
	if idBefore != idAfter {
		t.Errorf("the pub/sub connection was replaced (client id %s → %s) by an Acquire whose context had expired", idBefore, idAfter)
	}
	if strings.Contains(s.logs.String(), "redis subscription lost") {
		t.Errorf("the subscription was lost because of an expired Acquire")
	}
}

// When its connection is killed, Run reconnects and subscribes again to
// every acquired channel.
func TestResubscribesAfterConnectionKilled(t *testing.T) {
	t.Parallel()
	name := testenv.Name("rbconn")
	admin := testenv.Redis(t)
	s := newSub(t, namedRedis(t, name))
	p := NewPublisher(admin, s.prefix)
	s.run(t)
	waitFor(t, "subscriber live", s.Live)
	if err := s.Acquire(context.Background(), []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	var conns []string
	waitFor(t, "the pub/sub connection with ctl, a and b", func() bool {
		conns = pubsubConns(t, admin, name)
		return len(conns) == 1 && strings.HasSuffix(conns[0], "/sub=3")
	})
	oldID, _, _ := strings.Cut(conns[0], "/")
	if err := admin.Do(context.Background(), "CLIENT", "KILL", "ID", oldID).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new pub/sub connection with ctl, a and b", func() bool {
		conns = pubsubConns(t, admin, name)
		return len(conns) == 1 && !strings.HasPrefix(conns[0], oldID+"/") && strings.HasSuffix(conns[0], "/sub=3")
	})
	publish(t, p, "a", "after")
	publish(t, p, "b", "reconnect")
	s.expect(t, event.Event{Channel: "a", ID: "1", Payload: "after"})
	s.expect(t, event.Event{Channel: "b", ID: "1", Payload: "reconnect"})
	waitFor(t, "subscriber live again", s.Live)
}
