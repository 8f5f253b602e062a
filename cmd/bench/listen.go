package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Two listeners can run beside the WebSocket clients, each on its own
// connection, to split the latency: a raw LISTEN on PostgreSQL (-pg-listen),
// the floor with no relay, and a subscriber to the relay's Redis channel
// (-redis), which adds the relay and Redis but not the edge. Both count
// what they receive with arrivals, as a reading client does.

// listener is one of them. read records until ctx ends, then returns;
// close releases the connection after read has returned.
type listener interface {
	read(ctx context.Context)
	close()
}

// startListener runs l.read until the returned func is called. The func
// waits for read to return and closes l; it may be called more than once.
func startListener(ctx context.Context, l listener) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.read(ctx)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			l.close()
		})
	}
}

// arrivals counts what one listener receives: each of this run's
// notifications once (a bit per sequence number), repeats, and the
// latency of first arrivals. One goroutine records; unique and warm may be
// read meanwhile, the rest once it has stopped.
type arrivals struct {
	run   string
	count uint64
	seen  seqSet
	lat   hist

	unique atomic.Uint64 // distinct notifications of this run
	warm   atomic.Int64  // highest warm-up number seen, -1 for none

	frames      uint64 // this run's notifications, repeats included
	duplicates  uint64
	first, last time.Time // receive times
}

func newArrivals(run string, count int) *arrivals {
	a := &arrivals{run: run, count: uint64(count), seen: newSeqSet(count)}
	a.warm.Store(-1)
	return a
}

// record takes one payload received at now (Unix ns). Other senders'
// payloads are ignored.
func (a *arrivals) record(payload []byte, now int64) {
	p, ok := parsePayload(payload, a.run)
	switch {
	case !ok:
		return
	case p.warm >= 0:
		if p.warm > a.warm.Load() {
			a.warm.Store(p.warm)
		}
		return
	case p.seq >= a.count:
		return // a sequence number this run never sends
	}
	if a.frames++; a.frames == 1 {
		a.first = time.Unix(0, now)
	}
	a.last = time.Unix(0, now)
	if !a.seen.add(p.seq) {
		a.duplicates++
		return
	}
	a.unique.Add(1)
	a.lat.Record(time.Duration(now - p.sent))
}

// figures reports what arrived of sent notifications.
func (a *arrivals) figures(sent uint64) *listenJSON {
	got := a.unique.Load()
	out := &listenJSON{Received: a.frames, Delivered: got, Duplicates: a.duplicates, Latency: latencyOf(&a.lat)}
	if sent > got {
		out.Missing = sent - got
	}
	if d := a.last.Sub(a.first); d > 0 {
		out.Rate = float64(a.frames-1) / d.Seconds()
	}
	return out
}

// pgListener is a raw LISTEN connection on the channel: the floor the
// relay is compared with (-pg-listen).
type pgListener struct {
	conn *pgx.Conn
	*arrivals
}

func listenPG(ctx context.Context, url, channel string, a *arrivals) (*pgListener, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("listen: %w", err)
	}
	return &pgListener{conn: conn, arrivals: a}, nil
}

func (l *pgListener) read(ctx context.Context) {
	for {
		n, err := l.conn.WaitForNotification(ctx)
		if err != nil {
			return
		}
		l.record([]byte(n.Payload), time.Now().UnixNano())
	}
}

func (l *pgListener) close() {
	l.conn.Close(context.Background())
}

// redisListener subscribes to the channel the relay publishes the
// channel's envelopes on, PREFIX:ch:CHANNEL, as an edge does (-redis).
type redisListener struct {
	rdb *redis.Client
	ps  *redis.PubSub
	*arrivals
	malformed uint64 // messages that were not an envelope
	err       error  // why reading stopped early; nil when stopped
}

// redisChannel is the relay's pub/sub channel for channel (redisbus's
// naming, kept here so that the tool imports nothing of the server).
func redisChannel(prefix, channel string) string { return prefix + ":ch:" + channel }

// listenRedis subscribes and waits for Redis to confirm, so that every
// envelope published after it returns is received.
func listenRedis(ctx context.Context, url, channel string, a *arrivals) (*redisListener, error) {
	opts, err := redisOptions(url)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opts)
	ps := rdb.Subscribe(ctx, channel)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := ps.Receive(sctx); err != nil {
		ps.Close()
		rdb.Close()
		return nil, fmt.Errorf("subscribe %q: %w", channel, err)
	}
	return &redisListener{rdb: rdb, ps: ps, arrivals: a}, nil
}

func (l *redisListener) read(ctx context.Context) {
	// A blocked receive does not watch ctx: closing the PubSub ends it.
	defer context.AfterFunc(ctx, func() { l.ps.Close() })()
	var f fields
	for {
		m, err := l.ps.ReceiveMessage(ctx)
		if err != nil {
			if ctx.Err() == nil {
				l.err = err
			}
			return
		}
		now := time.Now().UnixNano()
		err = scanFrames([]byte(m.Payload), &f, func(f *fields) { l.record(f.payload, now) })
		if err != nil {
			l.malformed++
		}
	}
}

func (l *redisListener) close() {
	l.ps.Close()
	l.rdb.Close()
}
