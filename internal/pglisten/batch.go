package pglisten

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// serve runs a leading session with Handle until the connection fails,
// Handle fails or ctx ends. This goroutine reads notifications into a queue
// (listen); a second one takes everything queued and passes it to Handle in
// one call (publish). Handle pays one round trip per batch instead of one
// per notification, with no waiting: a batch is whatever arrived during the
// previous call.
//
// Every notification read off conn ends up in exactly one place: a Handle
// call (which counts its own failures), or OnDropped. On a graceful stop
// (ctx ended) those received are still passed to Handle before the session
// and its lock are let go.
func (l *Listener) serve(ctx context.Context, conn *pgx.Conn) error {
	q := make(chan Notification, l.cfg.MaxBatch)
	listenCtx, stopListen := context.WithCancel(ctx)
	defer stopListen()
	stop := make(chan struct{}) // closed: the session failed, publish no more
	pubErr := make(chan error, 1)
	go func() {
		err := l.publish(context.WithoutCancel(ctx), q, stop)
		if err != nil {
			stopListen() // a Handle error ends the session
		}
		pubErr <- err
	}()

	var held []Notification // read, but the queue was full when listen ended
	err := l.listen(listenCtx, conn, func(n *pgconn.Notification) error {
		note := Notification{Channel: n.Channel, Payload: n.Payload, Received: time.Now()}
		if l.readHook != nil {
			l.readHook(note)
		}
		select {
		case q <- note:
			return nil
		case <-listenCtx.Done():
			held = append(held, note)
			return listenCtx.Err()
		}
	})
	rest := append(held, notifications(takeReceived(conn))...)

	if ctx.Err() != nil {
		// A graceful stop: this session still holds the lock, so what it
		// has received is its to publish before it lets go.
		return l.flush(ctx, q, rest, pubErr)
	}
	close(stop)
	if perr := <-pubErr; perr != nil {
		err = fmt.Errorf("handle notifications: %w", perr)
	}
	// The publisher is gone: what is left in the queue is lost.
	n := len(rest)
	for len(q) > 0 {
		<-q
		n++
	}
	l.dropped(n, err)
	return err
}

// flush queues rest after what the queue holds, closes it and waits until
// publish has passed it all to Handle. It returns ctx.Err().
func (l *Listener) flush(ctx context.Context, q chan Notification, rest []Notification, pubErr <-chan error) error {
	total := len(q) + len(rest)
	var perr error
	done := false
	for len(rest) > 0 && !done {
		select {
		case q <- rest[0]:
			rest = rest[1:]
		case perr = <-pubErr:
			done = true
		}
	}
	close(q)
	if !done {
		perr = <-pubErr
	}
	if perr == nil {
		if total > 0 {
			l.log.Info("published the notifications received before stopping", "count", total)
		}
		return ctx.Err()
	}
	n := len(rest)
	for range q {
		n++
	}
	l.dropped(n, perr)
	return ctx.Err()
}

// publish passes the queue to Handle, everything queued (up to MaxBatch) in
// each call, until q is closed and empty, stop is closed, or Handle fails.
func (l *Listener) publish(ctx context.Context, q <-chan Notification, stop <-chan struct{}) error {
	batch := make([]Notification, 0, l.cfg.MaxBatch)
	for {
		select {
		case <-stop: // first: a failed session publishes no more batches
			return nil
		default:
		}
		select {
		case <-stop:
			return nil
		case n, ok := <-q:
			if !ok {
				return nil
			}
			batch = append(batch[:0], n)
		}
	fill:
		for len(batch) < l.cfg.MaxBatch {
			select {
			case n, ok := <-q:
				if !ok {
					break fill
				}
				batch = append(batch, n)
			default:
				break fill
			}
		}
		if err := l.cfg.Handle(ctx, batch); err != nil {
			return err
		}
	}
}

// dropped logs and counts n notifications lost when a session ended by err.
func (l *Listener) dropped(n int, err error) {
	if n == 0 {
		return
	}
	l.log.Error("notifications dropped: the session ended before they were published", "count", n, "err", err)
	if l.cfg.OnDropped != nil {
		l.cfg.OnDropped(n)
	}
}

func notifications(ns []*pgconn.Notification) []Notification {
	out := make([]Notification, len(ns))
	now := time.Now()
	for i, n := range ns {
		out[i] = Notification{Channel: n.Channel, Payload: n.Payload, Received: now}
	}
	return out
}
