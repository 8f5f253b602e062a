package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
	"unsafe"

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
	r, err := newReactors(1, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(0, false, 10, run, &hist{}, &hist{})
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

// TestReactorArrival: frames wait in a socket before the reactor reads
// them. The read latency then holds the wait; the arrival latency must
// not: the kernel stamped the data within the server's write, so each
// arrival sample is at most (end of the last write − first SENT).
func TestReactorArrival(t *testing.T) {
	t.Parallel()
	const (
		run    = "r1"
		frames = 3
		wait   = 50 * time.Millisecond
	)
	start := make(chan struct{})
	type times struct{ sent0, written int64 }
	wrote := make(chan times, 1)
	u := wsServer(t, func(ctx context.Context, ws *websocket.Conn) error {
		// Written after the handshake answer has been read, so that no
		// frame comes in with it (those have no stamp).
		select {
		case <-start:
		case <-ctx.Done():
			return ctx.Err()
		}
		var tm times
		for i := range frames {
			sent := time.Now().UnixNano()
			if i == 0 {
				tm.sent0 = sent
			}
			p := appendPayload(nil, run, fmt.Sprint(i), sent, 100)
			m := fmt.Sprintf(`{"channel":"x","id":"%d","payload":"%s"}`, i+1, p)
			if err := ws.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				return err
			}
		}
		tm.written = time.Now().UnixNano()
		wrote <- tm
		<-ctx.Done() // keep the connection open
		return nil
	})
	// The frames arrive before attach sets the option on the client's
	// socket: they are stamped only if the kernel stamps already.
	stampingOn(t)
	r, err := newReactors(1, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	c := newClient(0, false, frames, run, &hist{}, &hist{})
	c.conn = dialTest(t, u)
	close(start)
	var tm times
	select {
	case tm = <-wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("server did not write")
	}
	time.Sleep(wait) // the frames wait in the socket, unread
	if ok, err := r.attach(c); !ok || err != nil {
		t.Fatalf("attach: %v %v", ok, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.unique.Load() < frames && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	r.close()
	if c.lat.Count() != frames || c.arr.Count() != frames {
		t.Fatalf("%d read latencies, %d arrivals; want %d of each", c.lat.Count(), c.arr.Count(), frames)
	}
	readMin, arrMax := c.lat.Quantile(0), c.arr.Max()
	bound := time.Duration(tm.written - tm.sent0)
	t.Logf("read latency min %v; arrival max %v, bound %v", readMin, arrMax, bound)
	if readMin < wait*99/100 { // the histogram's bucket middle: within 0.4%
		t.Errorf("read latency min %v, want at least the %v the frames waited", readMin, wait)
	}
	if arrMax > bound {
		t.Errorf("arrival max %v, want at most %v (the server's writes), not the time the client read", arrMax, bound)
	}
	if arrMax >= readMin {
		t.Errorf("arrival max %v not below read latency min %v", arrMax, readMin)
	}
}

// TestDelayACK reads small writes with and without delayACK and watches
// the sender's socket: by default the read itself acknowledges the write
// (on loopback, within the read); with delayACK the ACK waits for the
// delayed-ACK timer (40 ms or more), and still comes. Each round counts
// as acknowledged at once if the ACK is in within 5 ms of the read, which
// leaves room for a busy machine without reaching the timer.
func TestDelayACK(t *testing.T) {
	t.Parallel()
	const rounds = 40
	for _, delay := range []bool{false, true} {
		t.Run(fmt.Sprintf("delay=%v", delay), func(t *testing.T) {
			t.Parallel()
			send, fd := stampedPair(t)
			sfd := connFD(t, send)
			buf, oob := make([]byte, 64), newOOB()
			atOnce := 0
			for range rounds {
				if delay {
					delayACK(fd) // before the segment, which decides on arrival too
				}
				if _, err := send.Write([]byte("frame")); err != nil {
					t.Fatal(err)
				}
				if delay {
					delayACK(fd)
				}
				recvWait(t, fd, buf, oob)
				if ackedWithin(t, sfd, 5*time.Millisecond) {
					atOnce++
				}
				if !ackedWithin(t, sfd, 2*time.Second) {
					t.Fatal("the write was not acknowledged within 2s")
				}
			}
			switch {
			case !delay && atOnce < rounds*3/4:
				t.Errorf("%d of %d reads were acknowledged at once; the kernel's default acknowledges in the read", atOnce, rounds)
			case delay && atOnce > rounds/4:
				t.Errorf("%d of %d reads were acknowledged at once with delayACK", atOnce, rounds)
			}
		})
	}
}

// ackedWithin reports whether everything fd sent is acknowledged within d.
func ackedWithin(tb testing.TB, fd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for unacked(tb, fd) > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

// connFD is c's socket, for getsockopt.
func connFD(tb testing.TB, c net.Conn) int {
	tb.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// unacked is the number of segments fd has sent that are not yet
// acknowledged (TCP_INFO).
func unacked(tb testing.TB, fd int) uint32 {
	tb.Helper()
	var info syscall.TCPInfo
	n := uint32(syscall.SizeofTCPInfo)
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		tb.Fatal(errno)
	}
	return info.Unacked
}

// TestReactorDelaysACKs: a reactor made to delay ACKs leaves its socket
// in the kernel's ping-pong mode after a read (getsockopt TCP_QUICKACK
// says 0 until the delayed-ACK timer fires, 40 ms or more later); one
// made with -quickack never does.
func TestReactorDelaysACKs(t *testing.T) {
	t.Parallel()
	const rounds = 5
	for _, delay := range []bool{false, true} {
		t.Run(fmt.Sprintf("delay=%v", delay), func(t *testing.T) {
			t.Parallel()
			next := make(chan struct{})
			u := wsServer(t, func(ctx context.Context, ws *websocket.Conn) error {
				for i := range rounds {
					select {
					case <-next:
					case <-ctx.Done():
						return ctx.Err()
					}
					p := appendPayload(nil, "r1", fmt.Sprint(i), time.Now().UnixNano(), 100)
					m := fmt.Sprintf(`{"channel":"x","id":"%d","payload":"%s"}`, i+1, p)
					if err := ws.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
						return err
					}
				}
				<-ctx.Done()
				return nil
			})
			r, err := newReactors(1, 1, delay)
			if err != nil {
				t.Fatal(err)
			}
			defer r.close()
			c := newClient(0, false, rounds, "r1", &hist{}, &hist{})
			c.conn = dialTest(t, u)
			if ok, err := r.attach(c); !ok || err != nil {
				t.Fatalf("attach: %v %v", ok, err)
			}
			pingPong := 0
			for i := range rounds {
				next <- struct{}{}
				deadline := time.Now().Add(5 * time.Second)
				for c.unique.Load() < uint64(i+1) {
					if time.Now().After(deadline) {
						t.Fatalf("frame %d not read", i)
					}
					time.Sleep(100 * time.Microsecond)
				}
				q, err := syscall.GetsockoptInt(c.fd, syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
				if err != nil {
					t.Fatal(err)
				}
				if q == 0 {
					pingPong++
				}
			}
			switch {
			case delay && pingPong == 0:
				t.Errorf("no read of %d left the socket delaying its ACKs", rounds)
			case !delay && pingPong > 0:
				t.Errorf("%d of %d reads left the socket delaying its ACKs with -quickack", pingPong, rounds)
			}
		})
	}
}
