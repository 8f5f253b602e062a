package hub_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pgrelay/pgrelay/internal/hub"
)

// recordSink keeps the ids it is given and refuses once it holds limit.
type recordSink struct {
	mu    sync.Mutex
	ids   []uint64
	limit int
	runs  []int        // messages per Deliver call
	calls atomic.Int64 // Deliver calls, refused ones included
}

func (r *recordSink) Deliver(ms []*hub.Message) (int, bool) {
	r.calls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, len(ms))
	for i, m := range ms {
		if r.limit > 0 && len(r.ids) >= r.limit {
			return i, false
		}
		r.ids = append(r.ids, m.ID)
	}
	return len(ms), true
}

func (r *recordSink) got() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.ids...)
}

// A sink that refuses a message gets its subscriber kicked, once, and is
// not called again; the sink beside it keeps receiving.
func TestSinkRefusalKicks(t *testing.T) {
	t.Parallel()
	h := hub.New(hub.Options{})
	full := &recordSink{limit: 2}
	ok := &recordSink{}
	sFull := h.Subscribe([]string{"c"}, full)
	h.Subscribe([]string{"c"}, ok)
	if sFull.Queue() != nil {
		t.Error("a subscriber with a sink has a queue")
	}
	for i := range 5 {
		h.Publish(&hub.Message{Channel: "c", ID: uint64(i + 1)})
	}
	if !isClosed(sFull.Kicked()) {
		t.Fatal("the refusing subscriber was not kicked")
	}
	if n := full.calls.Load(); n != 3 {
		t.Errorf("the refusing sink was called %d times, want 3 (2 taken, 1 refused, then skipped)", n)
	}
	if h.Kicks() != 1 {
		t.Errorf("Kicks() = %d, want 1", h.Kicks())
	}
	if got := ok.got(); len(got) != 5 {
		t.Errorf("the other sink got %v, want 5 ids", got)
	}
}

// With many subscribers spread over shards, a Publish reaches every one
// before it returns, and each sees the messages in publish order.
func TestShardedPublishReachesAllInOrder(t *testing.T) {
	t.Parallel()
	for _, shards := range []int{1, 2, 7} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			h := hub.New(hub.Options{Shards: shards})
			sinks := make([]*recordSink, 500)
			for i := range sinks {
				sinks[i] = &recordSink{}
				h.Subscribe([]string{"c"}, sinks[i])
			}
			queued := h.Subscribe([]string{"c"}, nil)
			const n = 50
			for i := range n {
				if got := h.Publish(&hub.Message{Channel: "c", ID: uint64(i + 1)}); got != len(sinks)+1 {
					t.Fatalf("Publish %d delivered to %d, want %d", i, got, len(sinks)+1)
				}
			}
			for i, s := range sinks {
				got := s.got()
				if len(got) != n {
					t.Fatalf("sink %d got %d messages, want %d", i, len(got), n)
				}
				for j, id := range got {
					if id != uint64(j+1) {
						t.Fatalf("sink %d: message %d has id %d: out of order", i, j, id)
					}
				}
			}
			if got := len(drain(queued)); got != n {
				t.Errorf("the queued subscriber got %d, want %d", got, n)
			}
			if h.Subscribers("c") != len(sinks)+1 || h.Len() != len(sinks)+1 {
				t.Errorf("Subscribers = %d, Len = %d, want %d", h.Subscribers("c"), h.Len(), len(sinks)+1)
			}
		})
	}
}

// A batch reaches each sink as runs of one channel, in order: a sink of
// both channels gets a, a, then b, then a; a sink of one channel gets its
// messages only.
func TestPublishBatchRunsPerChannel(t *testing.T) {
	t.Parallel()
	h := hub.New(hub.Options{Shards: 2})
	both, onlyA := &recordSink{}, &recordSink{}
	h.Subscribe([]string{"a", "b"}, both)
	h.Subscribe([]string{"a"}, onlyA)
	q := h.Subscribe([]string{"a", "b"}, nil)
	batch := []*hub.Message{
		{Channel: "a", ID: 1, Frame: []byte("a1")}, {Channel: "a", ID: 2, Frame: []byte("a2")},
		{Channel: "b", ID: 1, Frame: []byte("b1")}, {Channel: "a", ID: 3, Frame: []byte("a3")},
	}
	if n := h.PublishBatch(batch); n != 4+3+4 {
		t.Errorf("PublishBatch delivered %d, want 11", n)
	}
	if got := fmt.Sprint(both.got(), both.runs); got != "[1 2 1 3] [2 1 1]" {
		t.Errorf("sink of a and b: ids and runs %s, want [1 2 1 3] [2 1 1]", got)
	}
	if got := fmt.Sprint(onlyA.got(), onlyA.runs); got != "[1 2 3] [2 1]" {
		t.Errorf("sink of a: ids and runs %s, want [1 2 3] [2 1]", got)
	}
	if got := fmt.Sprint(drain(q)); got != "[a1 a2 b1 a3]" {
		t.Errorf("queue got %s, want [a1 a2 b1 a3]", got)
	}
	if h.PublishBatch(nil) != 0 {
		t.Error("an empty batch delivered something")
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Options.Written is told what sinks wrote, once per shard per publish:
// not what queued subscribers got, nor what a refusing sink did not take.
func TestWrittenCountsWhatSinksWrote(t *testing.T) {
	t.Parallel()
	var written, calls atomic.Int64
	h := hub.New(hub.Options{Shards: 2, Written: func(n int) { written.Add(int64(n)); calls.Add(1) }})
	for range 100 {
		h.Subscribe([]string{"c"}, &recordSink{})
	}
	h.Subscribe([]string{"c"}, nil)                   // a queue: not counted
	h.Subscribe([]string{"c"}, &recordSink{limit: 1}) // takes one of two
	ms := []*hub.Message{{Channel: "c", ID: 1, Frame: []byte("a")}, {Channel: "c", ID: 2, Frame: []byte("b")}}
	if n := h.PublishBatch(ms); n != 2*101 {
		t.Errorf("PublishBatch delivered %d, want %d (sinks and the queue that took both)", n, 2*101)
	}
	if got := written.Load(); got != 2*100+1 {
		t.Errorf("Written told %d, want %d", got, 2*100+1)
	}
	if c := calls.Load(); c < 1 || c > 2 {
		t.Errorf("Written called %d times, want once per shard (1 or 2)", c)
	}
}
