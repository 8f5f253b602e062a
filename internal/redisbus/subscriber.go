package redisbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgrelay/pgrelay/internal/backoff"
	"github.com/pgrelay/pgrelay/internal/event"
	"github.com/redis/go-redis/v9"
)

// SubscriberOptions configures a Subscriber.
type SubscriberOptions struct {
	// Prefix of every channel name. Empty means DefaultPrefix.
	Prefix string
	// Handle receives each acquired channel's events in id order, without
	// repeats and without gaps: a gap (an id jump, or a reconnect) is filled
	// from the history first. Called from Run's goroutine; must not block.
	Handle func(event.Event)
	// Reset is called, before the next event of channel, when a gap cannot
	// be filled because the history no longer holds it: events after the
	// last one handled, up to and including id at, are lost. Must not block.
	Reset func(channel string, at uint64)
	// Logger for reconnects and skipped messages. Nil means slog.Default().
	Logger *slog.Logger
	// PingInterval is how long the connection may stay silent before Run
	// pings Redis; three silent intervals in a row count as a dead
	// connection. Zero means 5s.
	PingInterval time.Duration
	// MinBackoff and MaxBackoff bound the exponential, jittered delay between
	// reconnect attempts. Zero means 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
}

// Subscriber is an edge's single Redis pub/sub connection.
type Subscriber struct {
	rdb  *redis.Client
	hist *History
	opts SubscriberOptions
	log  *slog.Logger

	mu    sync.Mutex
	ps    *redis.PubSub         // current connection; nil between connections
	chans map[string]*chanState // acquired channels by name

	live       atomic.Bool
	malformed  atomic.Uint64
	duplicates atomic.Uint64
	resets     atomic.Uint64
	received   atomic.Uint64
	reconnects atomic.Uint64
}

// fillPage is how many history entries one read fetches while filling a gap:
// small, since entries may be large (outbox payloads).
const fillPage = 64

type chanState struct {
	refs      int
	last      uint64 // id of the last event handled (or the newest when first confirmed; 0: none yet). Written by Run only.
	confirmed bool
	ready     chan struct{} // closed when Redis confirms the subscription
}

// NewSubscriber returns a Subscriber; call Run to connect.
func NewSubscriber(rdb *redis.Client, opts SubscriberOptions) *Subscriber {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 5 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.Reset == nil {
		opts.Reset = func(string, uint64) {}
	}
	return &Subscriber{
		rdb:   rdb,
		hist:  NewHistory(rdb, opts.Prefix),
		opts:  opts,
		log:   opts.Logger,
		chans: make(map[string]*chanState),
	}
}

// Live reports whether the pub/sub connection is up and answering.
func (s *Subscriber) Live() bool { return s.live.Load() }

// Malformed counts messages skipped because they were not valid envelopes.
func (s *Subscriber) Malformed() uint64 { return s.malformed.Load() }

// Duplicates counts messages dropped because their id was already handled.
func (s *Subscriber) Duplicates() uint64 { return s.duplicates.Load() }

// Resets counts gaps the history could not fill.
func (s *Subscriber) Resets() uint64 { return s.resets.Load() }

// Received counts valid messages read from Redis (live, before dedupe).
func (s *Subscriber) Received() uint64 { return s.received.Load() }

// Reconnects counts pub/sub connections lost and retried.
func (s *Subscriber) Reconnects() uint64 { return s.reconnects.Load() }

// Channels returns how many channels are subscribed.
func (s *Subscriber) Channels() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.chans)
}

// Acquire subscribes to channels (one reference each) and waits until Redis
// has confirmed every one of them, or ctx ends. On error the references are
// already released.
func (s *Subscriber) Acquire(ctx context.Context, channels []string) error {
	waits := make([]chan struct{}, 0, len(channels))
	var fresh []string
	s.mu.Lock()
	for _, name := range channels {
		st := s.chans[name]
		if st == nil {
			st = &chanState{ready: make(chan struct{})}
			s.chans[name] = st
			fresh = append(fresh, channelKey(s.opts.Prefix, name))
		}
		st.refs++
		if !st.confirmed {
			waits = append(waits, st.ready)
		}
	}
	if s.ps != nil && len(fresh) > 0 {
		// A failed write surfaces in Run, which reconnects and resubscribes
		// to every acquired channel, so the error needs no handling here.
		_ = s.ps.Subscribe(context.WithoutCancel(ctx), fresh...)
	}
	s.mu.Unlock()

	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			s.Release(channels)
			return fmt.Errorf("subscribe: %w", ctx.Err())
		}
	}
	return nil
}

// Release drops one reference to each of channels and unsubscribes from those
// no one uses any more.
func (s *Subscriber) Release(channels []string) {
	var gone []string
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range channels {
		st := s.chans[name]
		if st == nil {
			continue
		}
		if st.refs--; st.refs <= 0 {
			delete(s.chans, name)
			gone = append(gone, channelKey(s.opts.Prefix, name))
		}
	}
	if s.ps != nil && len(gone) > 0 {
		_ = s.ps.Unsubscribe(context.Background(), gone...)
	}
}

// Run keeps the subscription alive until ctx ends, and returns ctx.Err().
func (s *Subscriber) Run(ctx context.Context) error {
	delay := s.opts.MinBackoff
	for {
		start := time.Now()
		err := s.runOnce(ctx)
		s.live.Store(false)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > 2*s.opts.MaxBackoff {
			delay = s.opts.MinBackoff // the connection had been healthy: start over
		}
		s.reconnects.Add(1)
		s.log.Warn("redis subscription lost; reconnecting, then filling the gap from the history",
			"err", err, "retry_in", delay.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff.Jitter(delay)):
		}
		delay = backoff.Next(delay, s.opts.MaxBackoff)
	}
}

// runOnce opens one pub/sub connection, subscribes to every acquired channel
// and reads until the connection fails or ctx ends.
func (s *Subscriber) runOnce(ctx context.Context) error {
	ps := s.rdb.Subscribe(ctx)
	// A blocked read does not watch ctx: closing the connection ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		s.ps = nil
		s.mu.Unlock()
		_ = ps.Close()
	}()

	s.mu.Lock()
	names := []string{controlChannel(s.opts.Prefix)}
	for name := range s.chans {
		names = append(names, channelKey(s.opts.Prefix, name))
	}
	err := ps.Subscribe(ctx, names...)
	if err == nil {
		s.ps = ps
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}

	silent := 0
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.opts.PingInterval)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return fmt.Errorf("receive: %w", err)
			}
			if silent++; silent >= 3 {
				return fmt.Errorf("receive: no reply from redis in %s", 3*s.opts.PingInterval)
			}
			if err := ps.Ping(ctx); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			continue
		}
		silent = 0
		if !s.live.Swap(true) {
			s.log.Info("redis subscription live", "channels", len(names))
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				if err := s.confirm(ctx, m.Channel); err != nil {
					return err
				}
			}
		case *redis.Message:
			if err := s.deliver(ctx, m); err != nil {
				return err
			}
		case *redis.Pong:
		}
	}
}

// confirm handles Redis's confirmation of a subscription; from then on every
// message of the channel reaches this connection.
//
// The first confirmation learns the channel's position (its newest id)
// before it releases the clients waiting in Acquire: what they trigger after
// their socket opens has a greater id, and a later gap can be measured from
// it. A confirmation after a reconnect is the moment to fill what the
// connection missed: the history up to now, then the live stream.
func (s *Subscriber) confirm(ctx context.Context, redisChannel string) error {
	name, ok := strings.CutPrefix(redisChannel, s.opts.Prefix+":ch:")
	if !ok {
		return nil
	}
	s.mu.Lock()
	st := s.chans[name]
	var first bool
	var last uint64
	if st != nil {
		first, last = !st.confirmed, st.last
	}
	s.mu.Unlock()
	switch {
	case st == nil:
		return nil // released meanwhile
	case !first:
		return s.fill(ctx, name, last, 0)
	}
	pos, err := s.hist.Newest(ctx, name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.confirmed {
		return nil
	}
	st.last, st.confirmed = pos, true
	close(st.ready)
	return nil
}

func (s *Subscriber) deliver(ctx context.Context, m *redis.Message) error {
	name, ok := strings.CutPrefix(m.Channel, s.opts.Prefix+":ch:")
	if !ok {
		return nil // the control channel carries nothing yet
	}
	e, err := event.Decode([]byte(m.Payload))
	if err == nil && e.Channel != name {
		err = fmt.Errorf("envelope for channel %q published on %q", e.Channel, name)
	}
	if err != nil {
		n := s.malformed.Add(1)
		s.log.Warn("skipped malformed message from redis", "channel", name, "err", err, "skipped_total", n)
		return nil
	}
	s.received.Add(1)
	id, _ := strconv.ParseUint(e.ID, 10, 64) // Decode checked it
	last, ok := s.lastOf(name)
	switch {
	case !ok:
		return nil // released meanwhile: no one wants it
	case last != 0 && id <= last:
		s.duplicates.Add(1)
		return nil
	case last != 0 && id > last+1:
		s.log.Warn("gap in channel; filling from history", "channel", name, "last", last, "got", id)
		if err := s.fill(ctx, name, last, id); err != nil {
			return err
		}
		if last, _ = s.lastOf(name); id <= last {
			return nil // the history had it
		}
	}
	s.emit(name, e, id)
	return nil
}

// fill hands channel's events after id from to Handle, reading the history
// until it has passed upTo (0: until the history ends). It calls Reset first
// if the history lacks events right after from.
func (s *Subscriber) fill(ctx context.Context, name string, from, upTo uint64) error {
	done := errors.New("filled")
	malformed, err := s.hist.Each(ctx, name, from, fillPage,
		func(at uint64) error {
			n := s.resets.Add(1)
			s.log.Warn("gap in channel cannot be filled: history no longer holds it",
				"channel", name, "lost_through", at, "resets_total", n)
			s.setLast(name, at)
			s.opts.Reset(name, at)
			return nil
		},
		func(e event.Event, id uint64) error {
			s.emit(name, e, id)
			if upTo != 0 && id >= upTo {
				return done
			}
			return nil
		})
	if malformed > 0 {
		n := s.malformed.Add(uint64(malformed))
		s.log.Warn("skipped malformed entries in the history", "channel", name, "entries", malformed, "skipped_total", n)
	}
	if errors.Is(err, done) {
		return nil
	}
	return err
}

func (s *Subscriber) emit(name string, e event.Event, id uint64) {
	s.setLast(name, id)
	s.opts.Handle(e)
}

// Position returns the id of the last event of channel handed to Handle (or
// the channel's newest id when it was first subscribed); 0 if none or not
// acquired. Everything after it will be handed to Handle.
func (s *Subscriber) Position(channel string) uint64 {
	last, _ := s.lastOf(channel)
	return last
}

func (s *Subscriber) lastOf(name string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.chans[name]
	if st == nil {
		return 0, false
	}
	return st.last, true
}

func (s *Subscriber) setLast(name string, id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.chans[name]; st != nil {
		st.last = id
	}
}
