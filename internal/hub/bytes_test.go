package hub

import "testing"

// A subscriber whose queued frames exceed QueueBytes is kicked even though
// its queue has room; taking frames off the queue frees their bytes.
func TestQueueBytesKicks(t *testing.T) {
	h := New(Options{QueueSize: 100, QueueBytes: 1000})
	reader, stalled := h.Subscribe([]string{"c"}, nil), h.Subscribe([]string{"c"}, nil)
	big := &Message{Channel: "c", ID: 1, Frame: make([]byte, 400)}
	for i := range 10 {
		h.Publish(big)
		m := <-reader.Queue()
		reader.Dequeued(m)
		select {
		case <-reader.Kicked():
			t.Fatalf("a reader that keeps up was kicked at message %d", i)
		default:
		}
	}
	select {
	case <-stalled.Kicked():
	default:
		t.Fatal("a subscriber with 4000 bytes queued against a 1000-byte bound was not kicked")
	}
	if n := stalled.QueueLen(); n != 2 {
		t.Fatalf("stalled subscriber holds %d frames, want 2 (the third would pass 1000 bytes)", n)
	}
}

// One frame larger than QueueBytes still reaches a subscriber whose queue is
// empty: a big message must not cut every client of its channel.
func TestQueueBytesAcceptsOneBigFrame(t *testing.T) {
	h := New(Options{QueueSize: 10, QueueBytes: 100})
	s := h.Subscribe([]string{"c"}, nil)
	big := &Message{Channel: "c", ID: 1, Frame: make([]byte, 1000)}
	if got := h.Publish(big); got != 1 {
		t.Fatalf("a big frame into an empty queue: delivered to %d, want 1", got)
	}
	h.Publish(&Message{Channel: "c", ID: 2, Frame: make([]byte, 10)})
	select {
	case <-s.Kicked():
	default:
		t.Fatal("a second frame behind 1000 queued bytes (bound 100) did not kick")
	}
}
