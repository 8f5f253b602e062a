// Package hub fans messages out to the clients of one edge process.
//
// A Hub maps channel → subscribers. Publish hands an already-encoded frame to
// every subscriber of the channel without ever blocking on one: a subscriber
// either has a bounded queue, which its owner drains, or a Sink that takes
// the frame at once (the WebSocket writer does, to save a goroutine wake-up
// per client per message). One that cannot take a frame (a full queue, or a
// Sink saying no) is cut off (Kicked is closed) and skipped from then on, so
// a slow client never delays the others. The owner of a Subscriber watches
// Kicked and calls Unsubscribe when done.
//
// Subscribers are spread over shards, one per CPU by default, and Publish
// fans out to the shards in parallel: the time to reach every client of a
// busy channel is divided by the cores, not multiplied by the clients.
//
// All Hub methods are safe for concurrent use. The hub imports only the
// standard library, so it can be tested with nothing but channels.
package hub

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// DefaultQueueSize is the per-subscriber queue length used when Options.QueueSize is zero.
const DefaultQueueSize = 256

// Options configures a Hub.
type Options struct {
	// QueueSize is how many frames may wait in one subscriber's queue (a
	// subscriber with a Sink bounds itself). Zero means DefaultQueueSize. A subscriber whose queue is full when a
	// frame arrives is kicked.
	QueueSize int
	// QueueBytes bounds the frame bytes waiting for one subscriber; zero
	// means no byte bound. A subscriber over it is kicked, like one whose
	// queue is full: large payloads cannot pile up QueueSize times. A frame
	// is always accepted into an empty queue, whatever its size.
	QueueBytes int
	// OnKick, if set, is called once for each kicked subscriber, from the
	// goroutine delivering to it. It must not block and must not call the Hub.
	OnKick func(*Subscriber)
	// Written, if set, is told how many messages Sinks wrote during each
	// shard's part of a publish: once per shard per Publish or
	// PublishBatch, from that shard's goroutine, not once per subscriber.
	// Queued subscribers are not counted: their reader writes them.
	Written func(n int)
	// Shards is how many parts the subscribers are split into, each
	// delivered to by its own goroutine during a Publish. Zero means
	// runtime.GOMAXPROCS(0).
	Shards int
}

// parallelMin is the fewest subscribers of a channel for which Publish
// starts goroutines for the other shards: below it, one goroutine is quicker.
const parallelMin = 64

// Hub is an in-process channel → subscribers map. The zero value is not usable; call New.
type Hub struct {
	opts   Options
	shards []shard
	next   atomic.Uint32 // round robin over shards for new subscribers
	n      atomic.Int64  // subscribers registered

	kicks atomic.Uint64
}

// shard is one part of the subscribers, with its own lock.
type shard struct {
	mu   sync.RWMutex
	subs map[string]map[*Subscriber]struct{}
	_    [64]byte // keeps two shards' locks off one cache line
}

// New returns an empty Hub.
func New(opts Options) *Hub {
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Shards <= 0 {
		opts.Shards = runtime.GOMAXPROCS(0)
	}
	h := &Hub{opts: opts, shards: make([]shard, opts.Shards)}
	for i := range h.shards {
		h.shards[i].subs = make(map[string]map[*Subscriber]struct{})
	}
	return h
}

// A Sink takes a subscriber's messages in place of a queue. Deliver is
// given one or more messages of one channel, in publish order, and must
// not block. Messages published from one goroutine reach it from one
// goroutine at a time (not always the same one); with several publishers,
// calls may overlap, so it must be safe for concurrent use. It returns
// how many of ms it wrote (for Options.Written; messages it holds back or
// drops are not written), and ok false when the subscriber cannot take
// them (it fell too far behind), and the hub kicks it. A Sink that writes
// to a socket can send what it is given in one write.
type Sink interface {
	Deliver(ms []*Message) (written int, ok bool)
}

// Message is one encoded frame and where it sits in its channel's stream. A
// Message is shared by every subscriber it is queued for: never modify one
// after Publish.
type Message struct {
	Channel string
	// ID is the message's id; for a reset, the last id lost.
	ID uint64
	// Frame is the encoded message (JSON), encoded once for all.
	Frame []byte
	// Wire, if set, is Frame as the WebSocket frame sent to clients,
	// header included, also encoded once for all (see wsconn.Encode).
	Wire []byte
	// Reset marks a frame telling clients that messages up to ID are lost.
	Reset bool
	// Position marks a frame telling a client where a channel stands.
	Position bool
	// Published is when the relay published the message (Unix µs; 0 if
	// unknown), for the delivery latency metric.
	Published int64
}

// Subscriber is one client's registration: the channels it reads and its
// queue or Sink.
type Subscriber struct {
	channels []string
	sink     Sink          // nil: the queue
	queue    chan *Message // nil with a sink
	shard    *shard
	kicked   chan struct{}
	isKicked atomic.Bool
	inHub    bool         // guarded by shard.mu
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

// Queue delivers messages in publish order. It is never closed; it is nil
// for a subscriber with a Sink.
func (s *Subscriber) Queue() <-chan *Message { return s.queue }

// Kicked is closed when the hub cut s off because its queue was full.
func (s *Subscriber) Kicked() <-chan struct{} { return s.kicked }

// QueueLen is the number of frames waiting; for logs and metrics.
func (s *Subscriber) QueueLen() int { return len(s.queue) }

// Subscribe registers a new subscriber for channels (duplicates are
// ignored). With a nil sink its messages wait in its Queue; otherwise they
// go to sink.Deliver.
func (h *Hub) Subscribe(channels []string, sink Sink) *Subscriber {
	sh := &h.shards[int(h.next.Add(1))%len(h.shards)]
	s := &Subscriber{
		channels: dedupe(channels),
		sink:     sink,
		shard:    sh,
		kicked:   make(chan struct{}),
	}
	if sink == nil {
		s.queue = make(chan *Message, h.opts.QueueSize)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, ch := range s.channels {
		m := sh.subs[ch]
		if m == nil {
			m = make(map[*Subscriber]struct{})
			sh.subs[ch] = m
		}
		m[s] = struct{}{}
	}
	s.inHub = true
	h.n.Add(1)
	return s
}

// Unsubscribe removes s from every channel. Calling it twice is harmless.
func (h *Hub) Unsubscribe(s *Subscriber) {
	sh := s.shard
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !s.inHub {
		return
	}
	s.inHub = false
	h.n.Add(-1)
	for _, ch := range s.channels {
		m := sh.subs[ch]
		delete(m, s)
		if len(m) == 0 {
			delete(sh.subs, ch)
		}
	}
}

// Publish hands m to every subscriber of m.Channel and returns how many
// took it. It returns once every one has, and never waits for a client: a
// subscriber that cannot take m is kicked. Large channels are served by
// one goroutine per shard. Messages published from one goroutine reach
// each subscriber in that order.
func (h *Hub) Publish(m *Message) (delivered int) {
	return h.PublishBatch([]*Message{m})
}

// PublishBatch is Publish for several messages, in order, and returns the
// deliveries made. Each run of consecutive messages on one channel reaches
// a Sink in one Deliver call, so a client that is sent a run gets it in one
// write: a fan-out that falls behind sends fewer, larger writes.
func (h *Hub) PublishBatch(ms []*Message) (delivered int) {
	if len(ms) == 0 {
		return 0
	}
	if len(h.shards) == 1 || (len(ms) == 1 && h.Subscribers(ms[0].Channel) < parallelMin) {
		for i := range h.shards {
			delivered += h.publishShard(&h.shards[i], ms)
		}
		return delivered
	}
	var (
		wg    sync.WaitGroup
		total atomic.Int64
	)
	for i := 1; i < len(h.shards); i++ {
		wg.Go(func() { total.Add(int64(h.publishShard(&h.shards[i], ms))) })
	}
	delivered = h.publishShard(&h.shards[0], ms)
	wg.Wait()
	return delivered + int(total.Load())
}

func (h *Hub) publishShard(sh *shard, ms []*Message) (delivered int) {
	written := 0
	defer func() {
		if written > 0 && h.opts.Written != nil {
			h.opts.Written(written)
		}
	}()
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for len(ms) > 0 {
		n := 1
		for n < len(ms) && ms[n].Channel == ms[0].Channel {
			n++
		}
		run := ms[:n]
		ms = ms[n:]
		for s := range sh.subs[run[0].Channel] {
			if s.isKicked.Load() {
				continue
			}
			n, ok := h.offer(s, run)
			written += n
			if ok {
				delivered += len(run)
			} else {
				h.kick(s)
			}
		}
	}
	return delivered
}

// offer gives run to s's sink or queue, and reports whether s took it all,
// and how many messages a sink wrote.
func (h *Hub) offer(s *Subscriber, run []*Message) (written int, ok bool) {
	if s.sink != nil {
		return s.sink.Deliver(run)
	}
	for _, m := range run {
		// A frame larger than the bound on its own still goes into an
		// empty queue: otherwise one big message would cut every client.
		if n := int64(len(m.Frame)); h.opts.QueueBytes > 0 {
			if queued := s.bytes.Add(n) - n; queued > 0 && queued+n > int64(h.opts.QueueBytes) {
				return 0, false
			}
		}
		select {
		case s.queue <- m:
		default:
			return 0, false
		}
	}
	return 0, true
}

// kick cuts s off once. Safe under a shard's read lock: isKicked makes it
// idempotent even when two publishers race for the same subscriber.
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
func (h *Hub) Subscribers(channel string) (n int) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		n += len(sh.subs[channel])
		sh.mu.RUnlock()
	}
	return n
}

// Len returns the number of registered subscribers.
func (h *Hub) Len() int { return int(h.n.Load()) }

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
