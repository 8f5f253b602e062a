package hub_test

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/hub"
)

// TestMain fails the package if a test leaves goroutines behind: the hub
// starts none itself, so every goroutine a test starts must have ended.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			runtime.Gosched()
			time.Sleep(10 * time.Millisecond) // polling for goroutines to exit, not for readiness
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "goroutine leak: %d goroutines before the tests, %d after\n%s\n", before, n, buf)
			code = 1
		}
	}
	os.Exit(code)
}

// msg returns a message for channel carrying frame, with no id.
func msg(channel string, frame []byte) *hub.Message {
	return &hub.Message{Channel: channel, Frame: frame}
}

// drain returns the frame of every message queued for s without waiting.
func drain(s *hub.Subscriber) []string {
	var out []string
	for {
		select {
		case f := <-s.Queue():
			out = append(out, string(f.Frame))
		default:
			return out
		}
	}
}

func TestPublishReachesOnlySubscribersOfChannel(t *testing.T) {
	t.Parallel()
	h := hub.New(hub.Options{})
	a1 := h.Subscribe([]string{"a"}, nil)
	a2 := h.Subscribe([]string{"a"}, nil)
	b := h.Subscribe([]string{"b"}, nil)
	prefix := h.Subscribe([]string{"aa"}, nil) // a name that merely shares a prefix

	if n := h.Publish(msg("a", []byte("x"))); n != 2 {
		t.Errorf("Publish(a) delivered to %d subscribers, want 2", n)
	}
	for _, s := range []*hub.Subscriber{a1, a2} {
		if got := drain(s); !slices.Equal(got, []string{"x"}) {
			t.Errorf("subscriber of a got %q, want [x]", got)
		}
	}
	for _, s := range []*hub.Subscriber{b, prefix} {
		if got := drain(s); len(got) != 0 {
			t.Errorf("subscriber of %v got %q from channel a", s.Channels(), got)
		}
	}

	if n := h.Publish(msg("nobody", []byte("y"))); n != 0 {
		t.Errorf("Publish to a channel without subscribers delivered to %d", n)
	}
	if n := h.Publish(msg("b", []byte("z"))); n != 1 {
		t.Errorf("Publish(b) delivered to %d subscribers, want 1", n)
	}
	if got := drain(b); !slices.Equal(got, []string{"z"}) {
		t.Errorf("subscriber of b got %q, want [z]", got)
	}
	for _, s := range []*hub.Subscriber{a1, a2, prefix} {
		if got := drain(s); len(got) != 0 {
			t.Errorf("subscriber of %v got %q from channel b", s.Channels(), got)
		}
	}
}

func TestOrderPreservedPerSubscriber(t *testing.T) {
	t.Parallel()
	const n = 200
	h := hub.New(hub.Options{QueueSize: n})
	subs := []*hub.Subscriber{h.Subscribe([]string{"c"}, nil), h.Subscribe([]string{"c", "other"}, nil), h.Subscribe([]string{"c"}, nil)}
	sent := make([]*hub.Message, n)
	for i := range n {
		sent[i] = &hub.Message{Channel: "c", ID: uint64(1000 + i), Frame: []byte(strconv.Itoa(i))}
		h.Publish(sent[i])
	}
	for j, s := range subs {
		var got []*hub.Message
		for len(s.Queue()) > 0 {
			got = append(got, <-s.Queue())
		}
		if len(got) != n {
			t.Fatalf("subscriber %d got %d messages, want %d", j, len(got), n)
		}
		for i, m := range got {
			// Every subscriber is handed the very Message published,
			// untouched: the frame is encoded once for all.
			if m != sent[i] {
				t.Fatalf("subscriber %d: message %d is %+v, want the one published %d-th (order broken or copied)", j, i, m, i)
			}
			if m.Channel != "c" || m.ID != uint64(1000+i) || string(m.Frame) != strconv.Itoa(i) || m.Reset {
				t.Fatalf("subscriber %d: message %d was modified: %+v", j, i, m)
			}
		}
	}
}

func TestSubscriberOfSeveralChannelsGetsAll(t *testing.T) {
	t.Parallel()
	h := hub.New(hub.Options{})
	s := h.Subscribe([]string{"x", "y", "z"}, nil)
	only := h.Subscribe([]string{"y"}, nil)
	h.Publish(msg("x", []byte("1")))
	h.Publish(msg("y", []byte("2")))
	h.Publish(msg("z", []byte("3")))
	h.Publish(msg("y", []byte("4")))
	h.Publish(msg("w", []byte("5")))
	if got, want := drain(s), []string{"1", "2", "3", "4"}; !slices.Equal(got, want) {
		t.Errorf("subscriber of x,y,z got %q, want %q", got, want)
	}
	if got, want := drain(only), []string{"2", "4"}; !slices.Equal(got, want) {
		t.Errorf("subscriber of y got %q, want %q", got, want)
	}
}

func TestDuplicateChannelsDeduped(t *testing.T) {
	t.Parallel()
	h := hub.New(hub.Options{})
	s := h.Subscribe([]string{"a", "b", "a", "a", "b"}, nil)
	if got, want := s.Channels(), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("Channels() = %q, want %q", got, want)
	}
	if n := h.Publish(msg("a", []byte("m"))); n != 1 {
		t.Errorf("Publish delivered %d copies, want 1", n)
	}
	if n := h.Publish(msg("b", []byte("n"))); n != 1 {
		t.Errorf("Publish delivered %d copies, want 1", n)
	}
	if got, want := drain(s), []string{"m", "n"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want one copy of each: %q", got, want)
	}
	if h.Len() != 1 {
		t.Errorf("Len() = %d, want 1", h.Len())
	}
	h.Unsubscribe(s)
	if n := h.Publish(msg("a", []byte("m"))); n != 0 {
		t.Errorf("after Unsubscribe, Publish delivered to %d", n)
	}
	if h.Len() != 0 {
		t.Errorf("after Unsubscribe, Len() = %d, want 0", h.Len())
	}
}

// A subscriber that never reads is kicked once its queue is full, and the
// others on the same channel keep receiving every frame: Publish never waits.
func TestFullQueueKicksOnlyThatSubscriber(t *testing.T) {
	t.Parallel()
	const size = 8
	var (
		mu     sync.Mutex
		kicked []*hub.Subscriber
	)
	h := hub.New(hub.Options{QueueSize: size, OnKick: func(s *hub.Subscriber) {
		mu.Lock()
		kicked = append(kicked, s)
		mu.Unlock()
	}})
	slow := h.Subscribe([]string{"c"}, nil)
	fast := h.Subscribe([]string{"c"}, nil)

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 * size {
			frame := strconv.Itoa(i)
			want := 2
			if i >= size {
				want = 1 // slow is full (i == size) or already kicked (i > size)
			}
			if n := h.Publish(msg("c", []byte(frame))); n != want {
				t.Errorf("publish %d: delivered to %d, want %d", i, n, want)
			}
			// fast reads each frame as soon as Publish returns.
			select {
			case got := <-fast.Queue():
				if string(got.Frame) != frame {
					t.Errorf("fast subscriber got %q, want %q", got.Frame, frame)
				}
			default:
				t.Errorf("frame %d not queued for the fast subscriber", i)
			}
			select {
			case <-slow.Kicked():
				if i < size {
					t.Errorf("slow subscriber kicked after %d frames, its queue holds %d", i+1, size)
				}
			default:
				if i >= size {
					t.Errorf("slow subscriber not kicked after frame %d", i)
				}
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}

	select {
	case <-fast.Kicked():
		t.Error("the reading subscriber was kicked")
	default:
	}
	mu.Lock()
	if len(kicked) != 1 || kicked[0] != slow {
		t.Errorf("OnKick called for %d subscribers (slow=%v), want once for slow", len(kicked), len(kicked) > 0 && kicked[0] == slow)
	}
	mu.Unlock()
	if n := h.Kicks(); n != 1 {
		t.Errorf("Kicks() = %d, want 1", n)
	}
	// The kicked subscriber keeps what it had queued: the first frames, in order.
	got := drain(slow)
	want := make([]string, size)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	if !slices.Equal(got, want) {
		t.Errorf("slow subscriber's queue = %q, want %q", got, want)
	}
	// Once kicked it is skipped even though its queue now has room.
	if n := h.Publish(msg("c", []byte("late"))); n != 1 {
		t.Errorf("Publish after the kick delivered to %d, want 1 (fast only)", n)
	}
	if got := drain(slow); len(got) != 0 {
		t.Errorf("kicked subscriber still receives: %q", got)
	}
	// Kicked subscribers stay registered until their owner unsubscribes.
	if h.Len() != 2 {
		t.Errorf("Len() = %d, want 2", h.Len())
	}
	h.Unsubscribe(slow)
	if h.Len() != 1 {
		t.Errorf("Len() after unsubscribing the kicked one = %d, want 1", h.Len())
	}
}

// Many publishers racing to overflow the same subscriber kick it exactly once.
func TestKickHappensOnceUnderConcurrentPublishers(t *testing.T) {
	t.Parallel()
	var kicks atomic.Int32
	h := hub.New(hub.Options{QueueSize: 1, OnKick: func(*hub.Subscriber) { kicks.Add(1) }})
	s := h.Subscribe([]string{"c"}, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				h.Publish(msg("c", []byte("x")))
			}
		})
	}
	wg.Wait()
	select {
	case <-s.Kicked():
	default:
		t.Fatal("subscriber with a full queue was not kicked")
	}
	if n := kicks.Load(); n != 1 {
		t.Errorf("OnKick called %d times, want 1", n)
	}
	if n := h.Kicks(); n != 1 {
		t.Errorf("Kicks() = %d, want 1", n)
	}
}

func TestDefaultQueueSize(t *testing.T) {
	t.Parallel()
	h := hub.New(hub.Options{}) // QueueSize 0 means DefaultQueueSize
	s := h.Subscribe([]string{"c"}, nil)
	for i := range hub.DefaultQueueSize {
		if n := h.Publish(msg("c", []byte("x"))); n != 1 {
			t.Fatalf("publish %d of %d: delivered %d, want 1", i+1, hub.DefaultQueueSize, n)
		}
	}
	if s.QueueLen() != hub.DefaultQueueSize {
		t.Errorf("QueueLen() = %d, want %d", s.QueueLen(), hub.DefaultQueueSize)
	}
	select {
	case <-s.Kicked():
		t.Fatal("kicked before its queue was full")
	default:
	}
	if n := h.Publish(msg("c", []byte("x"))); n != 0 {
		t.Errorf("publish into a full queue delivered %d, want 0", n)
	}
	select {
	case <-s.Kicked():
	default:
		t.Error("not kicked when its queue overflowed")
	}
}

func TestUnsubscribeTwiceIsHarmless(t *testing.T) {
	t.Parallel()
	h := hub.New(hub.Options{})
	s1 := h.Subscribe([]string{"a", "b"}, nil)
	s2 := h.Subscribe([]string{"a"}, nil)
	h.Unsubscribe(s1)
	h.Unsubscribe(s1)
	if h.Len() != 1 {
		t.Errorf("Len() = %d after unsubscribing one of two subscribers twice, want 1", h.Len())
	}
	if n := h.Publish(msg("a", []byte("x"))); n != 1 {
		t.Errorf("Publish(a) delivered %d, want 1 (s2)", n)
	}
	if got := drain(s2); !slices.Equal(got, []string{"x"}) {
		t.Errorf("remaining subscriber got %q", got)
	}
	if got := drain(s1); len(got) != 0 {
		t.Errorf("unsubscribed subscriber got %q", got)
	}
	if n := h.Publish(msg("b", []byte("y"))); n != 0 {
		t.Errorf("Publish(b) delivered %d after its only subscriber left", n)
	}
	h.Unsubscribe(s2)
	h.Unsubscribe(s2)
	if h.Len() != 0 {
		t.Errorf("Len() = %d, want 0", h.Len())
	}
}

func TestLen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		subscribe   [][]string
		unsubscribe []int // indexes into subscribe
		want        int
	}{
		{"empty", nil, nil, 0},
		{"one", [][]string{{"a"}}, nil, 1},
		{"same channel", [][]string{{"a"}, {"a"}, {"a"}}, nil, 3},
		{"several channels count once", [][]string{{"a", "b", "c"}}, nil, 1},
		{"mixed", [][]string{{"a"}, {"b"}, {"a", "b"}}, nil, 3},
		{"after unsubscribe", [][]string{{"a"}, {"b"}, {"a", "b"}}, []int{2}, 2},
		{"all gone", [][]string{{"a"}, {"a", "b"}}, []int{0, 1}, 0},
		{"repeated unsubscribe", [][]string{{"a"}, {"a"}}, []int{0, 0, 0}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hub.New(hub.Options{})
			var subs []*hub.Subscriber
			for _, chans := range tc.subscribe {
				subs = append(subs, h.Subscribe(chans, nil))
			}
			for _, i := range tc.unsubscribe {
				h.Unsubscribe(subs[i])
			}
			if got := h.Len(); got != tc.want {
				t.Errorf("Len() = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestSubscribersPerChannel(t *testing.T) {
	t.Parallel()
	h := hub.New(hub.Options{})
	a := h.Subscribe([]string{"a", "b"}, nil)
	b := h.Subscribe([]string{"b", "b"}, nil)
	for ch, want := range map[string]int{"a": 1, "b": 2, "c": 0, "": 0} {
		if got := h.Subscribers(ch); got != want {
			t.Errorf("Subscribers(%q) = %d, want %d", ch, got, want)
		}
	}
	h.Unsubscribe(a)
	h.Unsubscribe(b)
	for _, ch := range []string{"a", "b"} {
		if got := h.Subscribers(ch); got != 0 {
			t.Errorf("Subscribers(%q) = %d after everyone left, want 0", ch, got)
		}
	}
	if n := h.Kicks(); n != 0 {
		t.Errorf("Kicks() = %d, nobody was kicked", n)
	}
}

// A subscriber registered with no channel counts in Len, so unsubscribing it
// must uncount it.
func TestUnsubscribeWithoutChannelsUpdatesLen(t *testing.T) {
	t.Parallel()
	for _, chans := range [][]string{nil, {}} {
		h := hub.New(hub.Options{})
		s := h.Subscribe(chans, nil)
		if h.Len() != 1 {
			t.Fatalf("Subscribe(%#v): Len() = %d, want 1", chans, h.Len())
		}
		h.Unsubscribe(s)
		if got := h.Len(); got != 0 {
			t.Errorf("Subscribe(%#v) then Unsubscribe: Len() = %d, want 0", chans, got)
		}
	}
}

// Subscribe, Unsubscribe and Publish from many goroutines at once (run with
// -race). Subscribers present for the whole run get every frame, each
// publisher's frames in its order; churning subscribers never disturb them.
func TestConcurrentSubscribeUnsubscribePublish(t *testing.T) {
	t.Parallel()
	const (
		publishers = 4
		perPub     = 300
		stable     = 3
		churners   = 4
	)
	h := hub.New(hub.Options{QueueSize: publishers * perPub})
	var stables []*hub.Subscriber
	for range stable {
		stables = append(stables, h.Subscribe([]string{"c", "d"}, nil))
	}

	// Readers drain the stable subscribers while the publishers run.
	results := make([][]string, stable)
	var readers sync.WaitGroup
	for i, s := range stables {
		readers.Go(func() {
			for len(results[i]) < publishers*perPub {
				select {
				case f := <-s.Queue():
					results[i] = append(results[i], string(f.Frame))
				case <-s.Kicked():
					t.Errorf("stable subscriber %d kicked", i)
					return
				case <-time.After(10 * time.Second):
					t.Errorf("stable subscriber %d: got %d frames, want %d", i, len(results[i]), publishers*perPub)
					return
				}
			}
		})
	}

	stop := make(chan struct{})
	var churn sync.WaitGroup
	for range churners {
		churn.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := h.Subscribe([]string{"c", "e"}, nil)
				h.Publish(msg("e", []byte("noise")))
				_ = h.Len()
				drain(s)
				h.Unsubscribe(s)
			}
		})
	}

	var pubs sync.WaitGroup
	for p := range publishers {
		pubs.Go(func() {
			for i := range perPub {
				h.Publish(msg("c", fmt.Appendf(nil, "%d-%d", p, i)))
			}
		})
	}
	pubs.Wait()
	close(stop)
	churn.Wait()
	readers.Wait()

	for i, got := range results {
		next := make([]int, publishers)
		for _, f := range got {
			var p, n int
			if _, err := fmt.Sscanf(f, "%d-%d", &p, &n); err != nil {
				t.Fatalf("stable subscriber %d: unexpected frame %q", i, f)
			}
			if n != next[p] {
				t.Fatalf("stable subscriber %d: publisher %d's frame %d arrived when %d was expected", i, p, n, next[p])
			}
			next[p]++
		}
		for p, n := range next {
			if n != perPub {
				t.Errorf("stable subscriber %d got %d frames from publisher %d, want %d", i, n, p, perPub)
			}
		}
	}
	if h.Len() != stable {
		t.Errorf("Len() = %d after the churn, want %d", h.Len(), stable)
	}
}
