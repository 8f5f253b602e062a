package redisbus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
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

// sub is a Subscriber under test and what its Handle and Reset received.
type sub struct {
	*Subscriber
	prefix string
	events chan event.Event
	resets chan resetCall
	trace  *trace
	logs   *logBuf
	rdb    *redis.Client // the Subscriber's own client
	done   chan error    // receives Run's result; nil until run is called
	cancel context.CancelFunc
}

// newSub returns a Subscriber on a fresh prefix, not yet running.
func newSub(t *testing.T, rdb *redis.Client) *sub {
	t.Helper()
	log, logs := newLogger(t)
	s := &sub{prefix: testenv.Name("rb"), events: make(chan event.Event, 1000), resets: make(chan resetCall, 100), trace: &trace{}, logs: logs, rdb: rdb}
	s.Subscriber = NewSubscriber(rdb, SubscriberOptions{
		Prefix: s.prefix,
		Logger: log,
		Handle: func(e event.Event) {
			s.trace.add("event " + e.Channel + " " + e.ID)
			select {
			case s.events <- e:
			default:
				t.Errorf("Handle: event buffer full, dropped %+v", e)
			}
		},
		Reset: func(channel string, at uint64) {
			s.trace.add(fmt.Sprint("reset ", channel, " ", at))
			select {
			case s.resets <- resetCall{channel, at}:
			default:
				t.Errorf("Reset: buffer full, dropped (%q, %d)", channel, at)
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

// resetCall is one call of SubscriberOptions.Reset.
type resetCall struct {
	channel string
	at      uint64
}

// trace records the calls of Handle ("event CHANNEL ID") and Reset ("reset
// CHANNEL AT") in the order they were made.
type trace struct {
	mu    sync.Mutex
	calls []string
}

func (tr *trace) add(call string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.calls = append(tr.calls, call)
}

func (tr *trace) get() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.calls)
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
	if got := s.next(t); core(got) != want {
		t.Fatalf("handled %+v, want %+v", got, want)
	}
}

// core is what of e reaches clients: its channel, id and payload (an
// envelope may carry metadata besides).
func core(e event.Event) event.Event {
	return event.Event{Channel: e.Channel, ID: e.ID, Payload: e.Payload}
}

// parseID is id as a number, or fails t.
func parseID(t *testing.T, id string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	return n
}

// plus is the id k after id.
func plus(t *testing.T, id string, k int) string {
	t.Helper()
	return strconv.FormatUint(parseID(t, id)+uint64(k), 10)
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
	p := NewPublisher(rdb, PublisherOptions{Prefix: testenv.Name("rb")})
	// Each channel's ids are consecutive, from a first id seeded from the
	// clock (so that ids keep growing if Redis loses its data).
	first := map[string]uint64{}
	for i, step := range []struct {
		channel string
		offset  uint64
	}{
		{"a", 0}, {"b", 0}, {"a", 1}, {"a", 2}, {"b", 1}, {"c", 0}, {"a", 3}, {"b", 2},
	} {
		got, err := strconv.ParseUint(publish(t, p, step.channel, "x"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if step.offset == 0 {
			if now := uint64(time.Now().UnixMicro()); got < now-60_000_000 || got > now+60_000_000 {
				t.Errorf("first id of %q is %d, want about the clock in µs (%d)", step.channel, got, now)
			}
			first[step.channel] = got
			continue
		}
		if want := first[step.channel] + step.offset; got != want {
			t.Errorf("step %d: Publish(%q) id = %d, want %d", i, step.channel, got, want)
		}
	}
	// Another prefix has counters of its own: publishing under it does not
	// move this prefix's counter.
	other := NewPublisher(rdb, PublisherOptions{Prefix: testenv.Name("rb")})
	for range 3 {
		publish(t, other, "a", "x")
	}
	if got, want := parseID(t, publish(t, p, "a", "x")), first["a"]+4; got != want {
		t.Errorf("Publish(a) after publishes under another prefix: id = %d, want %d", got, want)
	}
}

func TestPublisherIDsUniqueUnderConcurrency(t *testing.T) {
	t.Parallel()
	p := NewPublisher(testenv.Redis(t), PublisherOptions{Prefix: testenv.Name("rb")})
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
	seen := map[uint64]bool{}
	first := uint64(0)
	for id := range ids {
		n := parseID(t, id)
		if seen[n] {
			t.Errorf("id %s given twice", id)
		}
		seen[n] = true
		if first == 0 || n < first {
			first = n
		}
	}
	// The ids given are consecutive, from the first one.
	for i := range uint64(workers * each) {
		if !seen[first+i] {
			t.Errorf("id %d (first + %d) never given", first+i, i)
		}
	}
}

// The envelope a Publisher puts on Redis decodes, with Decode, to exactly
// the channel, id and payload it was given.
func TestPublisherEnvelopeOnRedis(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	prefix := testenv.Name("rb")
	p := NewPublisher(rdb, PublisherOptions{Prefix: prefix})

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
			var first string
			for i, tc := range payloads {
				id := publish(t, p, channel, tc.payload)
				if i == 0 {
					first = id
				} else if want := plus(t, first, i); id != want {
					t.Errorf("%s: id = %q, want %q (first + %d)", tc.name, id, want, i)
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
				if core(e) != want {
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
	p := NewPublisher(testenv.Redis(t), PublisherOptions{Prefix: s.prefix})
	ctx := context.Background()

	for round := range 3 { // fresh channels each round, on the same connection
		a, b := fmt.Sprint("a", round), fmt.Sprint("b", round)
		if err := s.Acquire(ctx, []string{a, b}); err != nil {
			t.Fatal(err)
		}
		idA := publish(t, p, a, "first")
		idB := publish(t, p, b, "second")
		s.expect(t, event.Event{Channel: a, ID: idA, Payload: "first"})
		s.expect(t, event.Event{Channel: b, ID: idB, Payload: "second"})
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
	p := NewPublisher(testenv.Redis(t), PublisherOptions{Prefix: s.prefix})
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
	id := publish(t, p, "a", "hello")
	s.expect(t, event.Event{Channel: "a", ID: id, Payload: "hello"})
}

func TestReleaseCountsReferences(t *testing.T) {
	t.Parallel()
	s := startSub(t)
	rdb := testenv.Redis(t)
	p := NewPublisher(rdb, PublisherOptions{Prefix: s.prefix})
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
	id := publish(t, p, "a", "still here")
	s.expect(t, event.Event{Channel: "a", ID: id, Payload: "still here"})

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
	first := publish(t, p, "s", "sentinel")
	if got := s.next(t); got.Channel != "s" {
		t.Fatalf("handled %+v after the last Release of a, want only the sentinel", got)
	}

	// Releasing what was never acquired (or once too often) is harmless.
	s.Release([]string{"a", "never"})
	publish(t, p, "s", "sentinel 2")
	s.expect(t, event.Event{Channel: "s", ID: plus(t, first, 1), Payload: "sentinel 2"})
}

// Messages a foreign writer put on a channel that are not valid envelopes
// for it are skipped, counted and logged; the next valid one is delivered.
func TestMalformedMessagesSkipped(t *testing.T) {
	t.Parallel()
	s := startSub(t)
	rdb := testenv.Redis(t)
	p := NewPublisher(rdb, PublisherOptions{Prefix: s.prefix})
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
	id := publish(t, p, "x", "valid")
	s.expect(t, event.Event{Channel: "x", ID: id, Payload: "valid"})
	if got := s.Malformed(); got != uint64(len(bad)) {
		t.Errorf("Malformed() = %d, want %d", got, len(bad))
	}
	if got := s.Received(); got != 1 {
		t.Errorf("Received() = %d, want 1 (malformed messages are not counted)", got)
	}
	if got := strings.Count(s.logs.String(), "skipped malformed message"); got != len(bad) {
		t.Errorf("logged %d skipped messages, want %d:\n%s", got, len(bad), s.logs.String())
	}
	// A foreign writer's valid envelope is delivered like the relay's.
	next := plus(t, id, 1)
	if err := rdb.Publish(ctx, channelKey(s.prefix, "x"), `{"channel":"x","id":"`+next+`","payload":"foreign"}`).Err(); err != nil {
		t.Fatal(err)
	}
	s.expect(t, event.Event{Channel: "x", ID: next, Payload: "foreign"})
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
	p := NewPublisher(admin, PublisherOptions{Prefix: s.prefix})
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
	idA := publish(t, p, "a", "after")
	idB := publish(t, p, "b", "reconnect")
	// Each channel's events are in order, but not the channels' relative to
	// each other: the new connection's confirmations catch each channel up
	// from the history in turn, and b's may come first.
	want := map[string]event.Event{
		"a": {Channel: "a", ID: idA, Payload: "after"},
		"b": {Channel: "b", ID: idB, Payload: "reconnect"},
	}
	for range 2 {
		got := core(s.next(t))
		if got != want[got.Channel] {
			t.Fatalf("handled %+v, want one of %+v", got, want)
		}
		delete(want, got.Channel)
	}
	// Neither is handled twice: the next events are the next ones published.
	idA2 := publish(t, p, "a", "a2")
	s.expect(t, event.Event{Channel: "a", ID: idA2, Payload: "a2"})
	idB2 := publish(t, p, "b", "b2")
	s.expect(t, event.Event{Channel: "b", ID: idB2, Payload: "b2"})
	waitFor(t, "subscriber live again", s.Live)
	if n := s.Reconnects(); n != 1 {
		t.Errorf("Reconnects() = %d, want 1", n)
	}
	if n := s.Channels(); n != 2 {
		t.Errorf("Channels() = %d, want 2", n)
	}
}

// Sequencing: Handle gets each channel's events in id order, once each,
// filling gaps from the history.

// silentPublish does what the publish script does for payload on channel,
// except PUBLISH: the next id, and the envelope appended to the history
// (trimmed to maxLen entries if maxLen > 0). Subscribers do not see it live.
// It returns the envelope and its id.
func silentPublish(t *testing.T, rdb *redis.Client, prefix, channel, payload string, maxLen int64) (envelope, id string) {
	t.Helper()
	ctx := context.Background()
	n, err := rdb.Incr(ctx, seqKey(prefix, channel)).Result()
	if err != nil {
		t.Fatal(err)
	}
	id = strconv.FormatInt(n, 10)
	body, err := json.Marshal(struct {
		Channel string `json:"channel"`
		Payload string `json:"payload"`
	}{channel, payload})
	if err != nil {
		t.Fatal(err)
	}
	envelope = `{"id":"` + id + `",` + string(body[1:])
	if err := rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: historyKey(prefix, channel), MaxLen: maxLen, ID: id + "-0", Values: []string{"e", envelope},
	}).Err(); err != nil {
		t.Fatal(err)
	}
	return envelope, id
}

// expectIDs fails t unless the next events handled are channel's ids (with
// their payloads), in order.
func (s *sub) expectIDs(t *testing.T, channel string, ids, payloads []string) {
	t.Helper()
	for i := range ids {
		s.expect(t, event.Event{Channel: channel, ID: ids[i], Payload: payloads[i]})
	}
}

// expectNoReset fails t if Reset was called.
func (s *sub) expectNoReset(t *testing.T) {
	t.Helper()
	select {
	case r := <-s.resets:
		t.Errorf("Reset(%q, %d) called, want no reset", r.channel, r.at)
	default:
	}
	if n := s.Resets(); n != 0 {
		t.Errorf("Resets() = %d, want 0", n)
	}
}

// An id jump (events the subscriber did not see live) is filled from the
// history before the event that revealed it.
func TestGapFilledFromHistory(t *testing.T) {
	t.Parallel()
	s := startSub(t)
	rdb := testenv.Redis(t)
	p := NewPublisher(rdb, PublisherOptions{Prefix: s.prefix})
	if err := s.Acquire(context.Background(), []string{"c"}); err != nil {
		t.Fatal(err)
	}
	id1 := publish(t, p, "c", "e1")
	s.expect(t, event.Event{Channel: "c", ID: id1, Payload: "e1"})

	_, id2 := silentPublish(t, rdb, s.prefix, "c", "e2", 0)
	_, id3 := silentPublish(t, rdb, s.prefix, "c", "e3", 0)
	id4 := publish(t, p, "c", "e4")
	if id2 != plus(t, id1, 1) || id3 != plus(t, id1, 2) || id4 != plus(t, id1, 3) {
		t.Fatalf("ids %s %s %s %s, want consecutive", id1, id2, id3, id4)
	}
	s.expectIDs(t, "c", []string{id2, id3, id4}, []string{"e2", "e3", "e4"})
	// Nothing is handled twice: the next event is the next one published.
	id5 := publish(t, p, "c", "e5")
	s.expect(t, event.Event{Channel: "c", ID: id5, Payload: "e5"})

	if n := s.Duplicates(); n != 0 {
		t.Errorf("Duplicates() = %d, want 0", n)
	}
	s.expectNoReset(t)
	if !strings.Contains(s.logs.String(), "gap in channel") {
		t.Errorf("the gap was not logged:\n%s", s.logs.String())
	}
}

// killableSub returns a running, live Subscriber on a client named for
// CLIENT LIST, with channels acquired (after calling before, if not nil, with
// the Publisher of its prefix), its Publisher, and a function that kills its
// pub/sub connection. Reconnecting takes at least 150ms, so that what the
// test publishes right after the kill is missed live.
func killableSub(t *testing.T, before func(*Publisher), channels ...string) (s *sub, p *Publisher, kill func()) {
	t.Helper()
	name := testenv.Name("rbconn")
	admin := testenv.Redis(t)
	s = newSub(t, namedRedis(t, name))
	p = NewPublisher(admin, PublisherOptions{Prefix: s.prefix})
	s.opts.MinBackoff, s.opts.MaxBackoff = 300*time.Millisecond, 300*time.Millisecond
	s.run(t)
	waitFor(t, "subscriber live", s.Live)
	if before != nil {
		before(p)
	}
	if err := s.Acquire(context.Background(), channels); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint("/sub=", len(channels)+1)
	var conns []string
	waitFor(t, "the pub/sub connection", func() bool {
		conns = pubsubConns(t, admin, name)
		return len(conns) == 1 && strings.HasSuffix(conns[0], want)
	})
	oldID, _, _ := strings.Cut(conns[0], "/")
	kill = func() {
		t.Helper()
		if err := admin.Do(context.Background(), "CLIENT", "KILL", "ID", oldID).Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if !strings.Contains(s.logs.String(), "redis subscription lost") {
				t.Errorf("the connection kill went unnoticed")
			}
		})
	}
	return s, p, kill
}

// Events published while the connection is down are caught up from the
// history once Redis confirms the new subscription.
func TestReconnectCatchesUpFromHistory(t *testing.T) {
	t.Parallel()
	s, p, kill := killableSub(t, nil, "c")
	id1 := publish(t, p, "c", "e1")
	s.expect(t, event.Event{Channel: "c", ID: id1, Payload: "e1"})

	kill()
	var ids []string
	payloads := []string{"e2", "e3", "e4", "e5"}
	for _, payload := range payloads {
		ids = append(ids, publish(t, p, "c", payload))
	}
	s.expectIDs(t, "c", ids, payloads)
	id6 := publish(t, p, "c", "e6")
	s.expect(t, event.Event{Channel: "c", ID: id6, Payload: "e6"})
	s.expectNoReset(t)
	if got, want := s.trace.get(), []string{
		"event c " + id1, "event c " + ids[0], "event c " + ids[1], "event c " + ids[2], "event c " + ids[3], "event c " + id6,
	}; !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

// A channel acquired before it had any event is caught up after a reconnect
// too: the events published while the connection was down are not lost, and
// the events published before Acquire are not replayed.
func TestReconnectCatchesUpChannelWithoutEvents(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		older int // events published before Acquire
	}{
		{"channel with older events", 3},
		{"channel never published to", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, p, kill := killableSub(t, func(p *Publisher) {
				for i := range tc.older {
					publish(t, p, "c", fmt.Sprint("before acquire ", i))
				}
			}, "c")
			// Acquired, no event handled yet: kill the connection, publish
			// while it is down, then once it is back.
			kill()
			id1 := publish(t, p, "c", "while down")
			waitFor(t, "the subscription to come back", func() bool {
				return s.Live() && strings.Count(s.logs.String(), "redis subscription live") >= 2
			})
			id2 := publish(t, p, "c", "after")
			if got := s.next(t); core(got) != (event.Event{Channel: "c", ID: id1, Payload: "while down"}) {
				t.Fatalf("first event handled is %+v, want %s, published while the connection was down", got, id1)
			}
			s.expect(t, event.Event{Channel: "c", ID: id2, Payload: "after"})
			id3 := publish(t, p, "c", "sentinel")
			s.expect(t, event.Event{Channel: "c", ID: id3, Payload: "sentinel"})
			s.expectNoReset(t)
		})
	}
}

// The first confirmation learns the channel's position: a gap right after
// Acquire, before any event was handled, is filled from the history too.
func TestGapBeforeFirstEventFilled(t *testing.T) {
	t.Parallel()
	s := startSub(t)
	rdb := testenv.Redis(t)
	p := NewPublisher(rdb, PublisherOptions{Prefix: s.prefix})
	id0 := publish(t, p, "c", "before acquire")
	if err := s.Acquire(context.Background(), []string{"c"}); err != nil {
		t.Fatal(err)
	}
	_, id1 := silentPublish(t, rdb, s.prefix, "c", "e1", 0)
	id2 := publish(t, p, "c", "e2")
	if id1 != plus(t, id0, 1) || id2 != plus(t, id0, 2) {
		t.Fatalf("ids %s %s %s, want consecutive", id0, id1, id2)
	}
	s.expectIDs(t, "c", []string{id1, id2}, []string{"e1", "e2"})
	id3 := publish(t, p, "c", "e3")
	s.expect(t, event.Event{Channel: "c", ID: id3, Payload: "e3"})
	s.expectNoReset(t)
}

// A gap the history no longer holds is reported with Reset, once, before
// the events the history still has.
func TestUnfillableGapResets(t *testing.T) {
	t.Parallel()
	s := startSub(t)
	rdb := testenv.Redis(t)
	const size = 3
	p := NewPublisher(rdb, PublisherOptions{Prefix: s.prefix, HistorySize: size})
	if err := s.Acquire(context.Background(), []string{"c", "d"}); err != nil {
		t.Fatal(err)
	}
	id1 := publish(t, p, "c", "e1")
	s.expect(t, event.Event{Channel: "c", ID: id1, Payload: "e1"})
	idD := publish(t, p, "d", "other")
	s.expect(t, event.Event{Channel: "d", ID: idD, Payload: "other"})

	for i := range 10 {
		silentPublish(t, rdb, s.prefix, "c", fmt.Sprint("silent", i), size)
	}
	id12 := publish(t, p, "c", "e12")
	if id12 != plus(t, id1, 11) {
		t.Fatalf("id after 10 silent events = %s, want %s", id12, plus(t, id1, 11))
	}
	// The history holds the last 3: first+9 (silent8), first+10 (silent9), first+11.
	select {
	case r := <-s.resets:
		if want := (resetCall{"c", parseID(t, id1) + 8}); r != want {
			t.Errorf("Reset%+v, want %+v (the id before the oldest kept)", r, want)
		}
	case <-time.After(wait):
		t.Fatalf("Reset not called within %s", wait)
	}
	s.expectIDs(t, "c", []string{plus(t, id1, 9), plus(t, id1, 10), id12}, []string{"silent8", "silent9", "e12"})
	id13 := publish(t, p, "c", "e13")
	idD2 := publish(t, p, "d", "other 2")
	s.expect(t, event.Event{Channel: "c", ID: id13, Payload: "e13"})
	s.expect(t, event.Event{Channel: "d", ID: idD2, Payload: "other 2"})

	if n := s.Resets(); n != 1 {
		t.Errorf("Resets() = %d, want 1", n)
	}
	select {
	case r := <-s.resets:
		t.Errorf("Reset called again: %+v", r)
	default:
	}
	if got, want := s.trace.get(), []string{
		"event c " + id1, "event d " + idD,
		fmt.Sprint("reset c ", parseID(t, id1)+8),
		"event c " + plus(t, id1, 9), "event c " + plus(t, id1, 10), "event c " + id12,
		"event c " + id13, "event d " + idD2,
	}; !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if n := s.Duplicates(); n != 0 {
		t.Errorf("Duplicates() = %d, want 0", n)
	}
}

// Redis loses its data while a subscriber is live: the next id jumps
// forward, and the subscriber resets before handing it on.
func TestSubscriberResetsAfterDataLoss(t *testing.T) {
	t.Parallel()
	s := startSub(t)
	rdb := testenv.Redis(t)
	p := NewPublisher(rdb, PublisherOptions{Prefix: s.prefix})
	if err := s.Acquire(context.Background(), []string{"c"}); err != nil {
		t.Fatal(err)
	}
	id1 := publish(t, p, "c", "e1")
	s.expect(t, event.Event{Channel: "c", ID: id1, Payload: "e1"})
	time.Sleep(2 * time.Millisecond) // not a readiness wait: the clock must move past id1's seed
	if err := rdb.Del(context.Background(), seqKey(s.prefix, "c"), historyKey(s.prefix, "c")).Err(); err != nil {
		t.Fatal(err)
	}
	id2 := publish(t, p, "c", "e2")
	if parseID(t, id2) <= parseID(t, id1)+1 {
		t.Fatalf("id after the data loss = %s, want a jump forward from %s", id2, id1)
	}
	select {
	case r := <-s.resets:
		if want := (resetCall{"c", parseID(t, id2) - 1}); r != want {
			t.Errorf("Reset%+v, want %+v", r, want)
		}
	case <-time.After(wait):
		t.Fatalf("Reset not called within %s", wait)
	}
	s.expect(t, event.Event{Channel: "c", ID: id2, Payload: "e2"})
	id3 := publish(t, p, "c", "e3")
	s.expect(t, event.Event{Channel: "c", ID: id3, Payload: "e3"})
	if n := s.Resets(); n != 1 {
		t.Errorf("Resets() = %d, want 1", n)
	}
}

// The same envelope delivered twice is handled once, and counted.
func TestDuplicateDeliveryDropped(t *testing.T) {
	t.Parallel()
	s := startSub(t)
	rdb := testenv.Redis(t)
	p := NewPublisher(rdb, PublisherOptions{Prefix: s.prefix})
	ctx := context.Background()
	if err := s.Acquire(ctx, []string{"c"}); err != nil {
		t.Fatal(err)
	}
	id1 := publish(t, p, "c", "e1")
	s.expect(t, event.Event{Channel: "c", ID: id1, Payload: "e1"})

	env, id2 := silentPublish(t, rdb, s.prefix, "c", "e2", 0)
	for range 2 {
		if err := rdb.Publish(ctx, channelKey(s.prefix, "c"), env).Err(); err != nil {
			t.Fatal(err)
		}
	}
	s.expect(t, event.Event{Channel: "c", ID: id2, Payload: "e2"})
	id3 := publish(t, p, "c", "e3")
	s.expect(t, event.Event{Channel: "c", ID: id3, Payload: "e3"})
	if n := s.Duplicates(); n != 1 {
		t.Errorf("Duplicates() = %d, want 1", n)
	}
	// An older event delivered again is a duplicate too.
	if err := rdb.Publish(ctx, channelKey(s.prefix, "c"), env).Err(); err != nil {
		t.Fatal(err)
	}
	id4 := publish(t, p, "c", "e4")
	s.expect(t, event.Event{Channel: "c", ID: id4, Payload: "e4"})
	if n := s.Duplicates(); n != 2 {
		t.Errorf("Duplicates() = %d, want 2", n)
	}
	// Received counts what came from Redis, duplicates included: e1, e2
	// three times, e3, e4.
	if n := s.Received(); n != 6 {
		t.Errorf("Received() = %d, want 6", n)
	}
	s.expectNoReset(t)
	if n := s.Malformed(); n != 0 {
		t.Errorf("Malformed() = %d, want 0", n)
	}
}
