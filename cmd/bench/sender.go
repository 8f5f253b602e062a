package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifier sends one notification; each sender goroutine has its own.
type notifier interface {
	Notify(ctx context.Context, channel, payload string) error
	Close()
}

// pgNotifier sends with SELECT pg_notify($1, $2) on one connection, in
// autocommit: the notification is delivered when the statement commits.
type pgNotifier struct{ conn *pgx.Conn }

func dialPG(ctx context.Context, url string) (notifier, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	return &pgNotifier{conn: conn}, nil
}

func (n *pgNotifier) Notify(ctx context.Context, channel, payload string) error {
	_, err := n.conn.Exec(ctx, "SELECT pg_notify($1, $2)", channel, payload)
	return err
}

func (n *pgNotifier) Close() { n.conn.Close(context.Background()) }

// sendPlan is what send sends.
type sendPlan struct {
	Channel string
	Run     string
	Count   int
	Rate    float64 // notifications per second
	Size    int     // payload bytes
}

// sendResult is how sending went.
type sendResult struct {
	Sent     uint64
	Err      error // the first failure; sending stopped there
	Start    time.Time
	End      time.Time     // when the last notification's statement returned
	MaxLate  time.Duration // most a notification left after its slot
	Exec     *hist         // pg_notify round trips
	Senders  int
	Achieved float64 // notifications per second, first to last
}

// send sends plan.Count notifications, notification i at start + i/Rate,
// spread over the notifiers. A notifier that falls behind sends at once
// until it has caught up; several notifiers keep the rate when one round
// trip is longer than a slot. It stops at the first error.
func send(ctx context.Context, ns []notifier, plan sendPlan) sendResult {
	res := sendResult{Exec: &hist{}, Senders: len(ns)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    atomic.Int64
		sent    atomic.Uint64
		maxLate atomic.Int64
		errOnce sync.Once
		wg      sync.WaitGroup
	)
	period := float64(time.Second) / plan.Rate
	start := time.Now()
	res.Start = start
	for _, n := range ns {
		wg.Go(func() {
			buf := make([]byte, 0, plan.Size+64)
			for ctx.Err() == nil {
				seq := next.Add(1) - 1
				if seq >= int64(plan.Count) {
					return
				}
				due := start.Add(time.Duration(float64(seq) * period))
				if d := time.Until(due); d > 0 {
					sleepCtx(ctx, d)
				} else if late := int64(-d); late > maxLate.Load() {
					maxLate.Store(late) // racy maximum: good enough for a report
				}
				t0 := time.Now()
				buf = appendPayload(buf[:0], plan.Run, strconv.FormatInt(seq, 10), t0.UnixNano(), plan.Size)
				if err := n.Notify(ctx, plan.Channel, string(buf)); err != nil {
					if !errors.Is(err, context.Canceled) {
						errOnce.Do(func() { res.Err = fmt.Errorf("notification %d: %w", seq, err) })
					}
					cancel()
					return
				}
				res.Exec.Record(time.Since(t0))
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	res.End = time.Now()
	res.Sent = sent.Load()
	res.MaxLate = time.Duration(maxLate.Load())
	if d := res.End.Sub(res.Start); d > 0 && res.Sent > 1 {
		res.Achieved = float64(res.Sent) / d.Seconds()
	}
	return res
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
