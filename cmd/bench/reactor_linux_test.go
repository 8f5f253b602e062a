package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestReactorCoder hands a connection to an epoll set and checks what the
// client recorded: messages (one fragmented), a duplicate, the ping it
// answered (Ping returns only after the pong) and the close.
func TestReactorCoder(t *testing.T) {
	t.Parallel()
	const run = "r1"
	frame := func(id, seq int) string {
		p := appendPayload(nil, run, fmt.Sprint(seq), time.Now().UnixNano(), 100)
		return fmt.Sprintf(`{"channel":"x","id":"%d","payload":"%s"}`, id, p)
	}
	serverDone := make(chan struct{})
	u := wsServer(t, func(ctx context.Context, ws *websocket.Conn) error {
		defer close(serverDone)
		msgs := []string{`{"type":"position","channel":"x","id":"10"}`, frame(11, 0), frame(12, 1)}
		for _, m := range msgs {
			if err := ws.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				return err
			}
		}
		if err := ws.Ping(ctx); err != nil {
			return errors.New("ping not answered: " + err.Error())
		}
		w, err := ws.Writer(ctx, websocket.MessageText)
		if err != nil {
			return err
		}
		f := frame(13, 2)
		w.Write([]byte(f[:20]))
		w.Write([]byte(f[20:]))
		if err := w.Close(); err != nil {
			return err
		}
		if err := ws.Write(ctx, websocket.MessageText, []byte(frame(13, 2))); err != nil {
			return err
		}
		return ws.Close(websocket.StatusTryAgainLater, "slow")
	})
	r, err := newReactors(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(0, false, 10, run, &hist{})
	c.conn = dialTest(t, u)
	if ok, err := r.attach(c); !ok || err != nil {
		t.Fatalf("attach: %v %v", ok, err)
	}
	select {
	case <-serverDone:
	case <-time.After(10 * time.Second):
		t.Fatal("server script did not finish")
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.unique.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the close frame follows
	r.close()
	if c.unique.Load() != 3 || c.duplicates != 1 || c.outOfOrder != 1 || c.gaps != 0 || c.lat.Count() != 3 {
		t.Errorf("unique %d, duplicates %d, out of order %d, gaps %d, latencies %d; want 3, 1, 1, 0, 3",
			c.unique.Load(), c.duplicates, c.outOfOrder, c.gaps, c.lat.Count())
	}
	var ce *CloseError
	if !errors.As(c.err, &ce) || ce.Code != 1013 {
		t.Errorf("err %v, want close 1013", c.err)
	}
}
