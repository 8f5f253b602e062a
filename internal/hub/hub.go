// Package hub fans messages out to the clients of one edge process.
//
// A Hub maps channel → subscribers. Publish hands an already-encoded frame to
// every subscriber of the channel without ever blocking: each subscriber has a
// bounded queue, and one whose queue is full is cut off (Kicked is closed) and
// skipped from then on, so a slow client never delays the others. The owner of
// a Subscriber drains Queue, watches Kicked, and calls Unsubscribe when done.
//
// All Hub methods are safe for concurrent use. The hub imports only the
// standard library, so it can be tested with nothing but channels.
package hub

import (
	"sync"
	"sync/atomic"
)

// DefaultQueueSize is the per-subscriber queue length used when Options.QueueSize is zero.
const DefaultQueueSize = 256

// Options configures a Hub.
type Options struct {
	// QueueSize is how many frames may wait for one subscriber's writer.
	// Zero means DefaultQueueSize. A subscriber whose queue is full when a
	// frame arrives is kicked.
	QueueSize int
	// QueueBytes bounds the frame bytes waiting for one subscriber; zero
	// means no byte bound. A subscriber over it is kicked, like one whose
	// queue is full: large payloads cannot pile up QueueSize times. A frame
	// is always accepted into an empty queue, whatever its size.
	QueueBytes int
	// OnKick, if set, is called once for each kicked subscriber, from the
	// publishing goroutine. It must not block and must not call the Hub.
	OnKick func(*Subscriber)
}

// Hub is an in-process channel → subscribers map. The zero value is not usable; call New.
type Hub struct {
	opts Options

	mu   sync.RWMutex
	subs map[string]map[*Subscriber]struct{}
	n    int // subscribers registered

	kicks atomic.Uint64
}

// New returns an empty Hub.
func New(opts Options) *Hub {
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	return &Hub{opts: opts, subs: make(map[string]map[*Subscriber]struct{})}
}

// Message is one encoded frame and where it sits in its channel's stream. A
// Message is shared by every subscriber it is queued for: never modify one
// after Publish.
type Message struct {
	Channel string
	// ID is the message's id; for a reset, the last id lost.
	ID uint64
	// Frame is the encoded WebSocket text frame, encoded once for all.
	Frame []byte
	// Reset marks a frame telling clients that messages up to ID are lost.
	Reset bool
	// Position marks a frame telling a client where a channel stands.
	Position bool
	// Published is when the relay published the message (Unix µs; 0 if
	// unknown), for the delivery latency metric.
	Published int64
}

// Subscriber is one client's registration: the channels it reads and its queue.
type Subscriber struct {
	channels []string
	queue    chan *Message
	kicked   chan struct{}
	isKicked atomic.Bool
	inHub    bool         // guarded by Hub.mu
	bytes    atomic.Int64 // frame bytes queued, when Options.QueueBytes is set
	onKick   atomic.Pointer[func()]
}

// OnKick sets f to be called (once, from the publishing goroutine) when the
// hub kicks s, or at once if it already has. f must not block; the WebSocket
// writer uses it to abandon a write blocked on a client that stopped reading.
func (s *Subscriber) OnKick(f func()) {
	s.onKick.Store(&f)
	if s.isKicked.Load() && s.onKick.CompareAndSwap(&f, nil) {
		f()
	}
}

// Dequeued tells the hub the subscriber's writer took m off its queue, so
// that its bytes no longer count against Options.QueueBytes.
func (s *Subscriber) Dequeued(m *Message) { s.bytes.Add(-int64(len(m.Frame))) }

// Channels returns the channels s was subscribed with. Do not modify it.
func (s *Subscriber) Channels() []string { return s.channels }

// Queue delivers messages in publish order. It is never closed.
func (s *Subscriber) Queue() <-chan *Message { return s.queue }

// Kicked is closed when the hub cut s off because its queue was full.
func (s *Subscriber) Kicked() <-chan struct{} { return s.kicked }

// QueueLen is the number of frames waiting; for logs and metrics.
func (s *Subscriber) QueueLen() int { return len(s.queue) }

// Subscribe registers a new subscriber for channels (duplicates are ignored).
func (h *Hub) Subscribe(channels []string) *Subscriber {
	s := &Subscriber{
		channels: dedupe(channels),
		queue:    make(chan *Message, h.opts.QueueSize),
		kicked:   make(chan struct{}),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range s.channels {
		m := h.subs[ch]
		if m == nil {
			m = make(map[*Subscriber]struct{})
			h.subs[ch] = m
		}
		m[s] = struct{}{}
	}
	s.inHub = true
	h.n++
	return s
}

// Unsubscribe removes s from every channel. Calling it twice is harmless.
func (h *Hub) Unsubscribe(s *Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.inHub {
		return
	}
	s.inHub = false
	h.n--
	for _, ch := range s.channels {
		m := h.subs[ch]
		delete(m, s)
		if len(m) == 0 {
			delete(h.subs, ch)
		}
	}
}

// Publish queues m for every subscriber of m.Channel and returns how many
// accepted it. It never blocks; a subscriber with a full queue is kicked.
// Messages published from one goroutine reach each subscriber in that order.
func (h *Hub) Publish(m *Message) (delivered int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.subs[m.Channel] {
		if s.isKicked.Load() {
			continue
		}
		// A frame larger than the bound on its own still goes into an
		// empty queue: otherwise one big message would cut every client.
		if n := int64(len(m.Frame)); h.opts.QueueBytes > 0 {
			if queued := s.bytes.Add(n) - n; queued > 0 && queued+n > int64(h.opts.QueueBytes) {
				h.kick(s)
				continue
			}
		}
		select {
		case s.queue <- m:
			delivered++
		default:
			h.kick(s)
		}
	}
	return delivered
}

// kick cuts s off once. Safe under the read lock: isKicked makes it idempotent
// even when two publishers race for the same subscriber.
func (h *Hub) kick(s *Subscriber) {
	if s.isKicked.Swap(true) {
		return
	}
	h.kicks.Add(1)
	close(s.kicked)
	if f := s.onKick.Swap(nil); f != nil {
		(*f)()
	}
	if h.opts.OnKick != nil {
		h.opts.OnKick(s)
	}
}

// Kicks counts subscribers cut off for a full queue.
func (h *Hub) Kicks() uint64 { return h.kicks.Load() }

// Subscribers returns the number of subscribers of channel.
func (h *Hub) Subscribers(channel string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs[channel])
}

// Len returns the number of registered subscribers.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.n
}

func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
