package wsconn

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/pgrelay/pgrelay/internal/hub"
)

// wire puts a client's frames on its socket without ever blocking its
// caller. It tries one non-blocking write(2); what the kernel does not take
// waits in pending, and only then does a flusher goroutine start, which
// writes with a deadline until pending is empty and then ends. So one
// goroutine can fan a message out to thousands of clients without waiting
// on any, a client that keeps up costs no writer goroutine, and frames that
// pile up for one that falls behind leave together, in one write.
//
// Data frames are appended under mu (appendLocked) and sent together
// (commitLocked), in one write. wire is also the io.Writer under
// coder/websocket's write buffer, for the library's own frames (pongs,
// pings, closes), which are sent at once.
//
// The non-blocking write goes straight to the socket's descriptor, not
// through the runtime's RawConn (which locks and unlocks the descriptor on
// every write). That is safe because wire owns every close of the socket:
// everyone else, coder/websocket included, is given a conn whose Close is
// wire's close. The close marks the wire closed under mu before it closes
// the socket, and every write checks the mark under mu: the descriptor's
// number, which the kernel may hand to the next socket accepted, is never
// written to once it is not ours.
type wire struct {
	// mu also guards the state of the wsClient the wire is part of, so
	// that a delivery takes one lock. The fields used on every delivery
	// come first: they share a cache line or two with the client's.
	mu       sync.Mutex
	frames   int  // frames in pending, as counted by commitLocked's callers
	flushing bool // a flusher goroutine is writing; nobody else may
	closed   bool // raw is closed, or being closed: fd is no longer ours
	// closeSent: the library wrote a close frame (its echo of the
	// client's, or a protocol error's): no data frame may follow it
	// (RFC 6455 §5.5.1).
	closeSent bool
	fd        int // raw's descriptor, for the non-blocking write; -1: none (the flusher sends everything)
	pending   []byte
	err       error

	raw     net.Conn
	timeout time.Duration // bound on each of the flusher's writes
	shrunk  sync.Cond     // broadcast when pending shrinks, or on an error
}

// maxIdleBuffer is the largest pending buffer kept once empty: a burst may
// grow it, and 15,000 idle clients should not keep 16 KiB each.
const maxIdleBuffer = 4 << 10

func newWire(raw net.Conn, timeout time.Duration) *wire {
	w := new(wire)
	w.init(raw, timeout)
	return w
}

// init readies w, a zero wire, to write to raw.
func (w *wire) init(raw net.Conn, timeout time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.raw, w.fd, w.timeout = raw, -1, timeout
	w.shrunk.L = &w.mu
	if sc, ok := raw.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { w.fd = int(fd) })
		}
	}
}

// wireConn is the socket as everyone but the wire sees it: its Close is
// the wire's (see wire), and writing is the wire's alone.
type wireConn struct {
	net.Conn
	w *wire
}

func (c *wireConn) Close() error { return c.w.close() }

func (c *wireConn) Write([]byte) (int, error) {
	return 0, errors.New("wsconn: write through the wire, not the socket")
}

// close closes the socket, once; what is pending is not sent. The
// descriptor stops being written to at once; the close itself runs
// outside mu, since it waits for the reader's and the flusher's calls on
// raw to return, and the fan-out should not wait on that.
func (w *wire) close() error {
	w.mu.Lock()
	first := w.markClosedLocked()
	w.mu.Unlock()
	if !first {
		return nil
	}
	return w.raw.Close()
}

// markClosedLocked stops every later write to fd; true the first time,
// when the caller must close raw.
func (w *wire) markClosedLocked() bool {
	if w.closed {
		return false
	}
	w.closed = true
	w.fd = -1
	return true
}

// Write is the library's way in: it queues p and sends it. It fails only
// once a write to the socket has failed: the connection is then useless.
func (w *wire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	// The library flushes after each control frame, and they fit its
	// write buffer: a close frame comes whole, at the start of p.
	if len(p) > 0 && p[0]&0x0f == 0x8 {
		w.closeSent = true
	}
	w.pending = append(w.pending, p...)
	w.sendLocked()
	return len(p), nil
}

// queuedLocked returns the bytes and frames waiting (see queued).
func (w *wire) queuedLocked() (bytes, frames int) {
	return len(w.pending), w.frames
}

// appendLocked adds m's frame (encoded here if Encode was not called on
// it), to be sent by commitLocked; false once a write to the socket has
// failed, or a close frame was sent.
func (w *wire) appendLocked(m *hub.Message) bool {
	if w.err != nil || w.closeSent {
		return false
	}
	if m.Wire != nil {
		w.pending = append(w.pending, m.Wire...)
	} else {
		w.pending = appendFrame(w.pending, m.Frame)
	}
	return true
}

// commitLocked sends what appendLocked added: frames frames.
func (w *wire) commitLocked(frames int) {
	w.frames += frames
	w.sendLocked()
}

// queued returns the bytes and frames waiting for the socket (not counting
// a write the flusher has under way).
func (w *wire) queued() (bytes, frames int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queuedLocked()
}

// waitBelow waits until at most n bytes are waiting, or a write failed.
func (w *wire) waitBelow(n int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.pending) > n && w.flushing && w.err == nil {
		w.shrunk.Wait()
	}
	return w.err
}

// failed returns the error that broke the socket, if any.
func (w *wire) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// sendLocked tries to send pending without blocking, and starts the flusher
// with whatever the kernel would not take.
func (w *wire) sendLocked() {
	if w.flushing || len(w.pending) == 0 || w.err != nil || w.raw == nil {
		return // raw == nil: not hijacked yet (init)
	}
	if w.closed {
		w.failLocked(net.ErrClosed)
		return
	}
	if w.fd >= 0 {
		// O_NONBLOCK, as every socket of the runtime's: a full socket
		// returns EAGAIN instead of waiting.
		n, err := syscall.Write(w.fd, w.pending)
		n = max(n, 0)
		switch {
		case n == len(w.pending):
			w.emptyLocked()
			return
		case err != nil && !retryable(err):
			w.failLocked(err)
			return
		}
		w.pending = append(w.pending[:0], w.pending[n:]...)
	}
	w.flushing = true
	go w.flush()
}

func retryable(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ENOBUFS)
}

// flush writes pending until it is empty; it is the socket's only writer
// while it runs. Frames that arrive meanwhile go out in its next write.
func (w *wire) flush() {
	var buf []byte
	for {
		w.mu.Lock()
		w.shrunk.Broadcast()
		if len(w.pending) == 0 || w.err != nil {
			w.flushing = false
			if w.err == nil {
				w.emptyLocked()
			}
			w.mu.Unlock()
			return
		}
		buf, w.pending = w.pending, buf[:0]
		w.frames = 0
		w.mu.Unlock()

		// Through the runtime, which waits for the socket: if the wire
		// closes raw meanwhile, this write returns at once with an error.
		_ = w.raw.SetWriteDeadline(time.Now().Add(w.timeout))
		if _, err := w.raw.Write(buf); err != nil {
			w.mu.Lock()
			w.failLocked(err)
			w.flushing = false
			w.shrunk.Broadcast()
			w.mu.Unlock()
			return
		}
		if cap(buf) > maxIdleBuffer {
			buf = nil
		}
	}
}

func (w *wire) emptyLocked() {
	w.frames = 0
	if cap(w.pending) > maxIdleBuffer {
		w.pending = nil
	} else {
		w.pending = w.pending[:0]
	}
}

// failLocked records the first write error; the socket is closed so that
// the client's reader ends too.
func (w *wire) failLocked(err error) {
	if w.err != nil {
		return
	}
	w.err = err
	w.pending = nil
	w.frames = 0
	if w.markClosedLocked() {
		// Under mu, as before the wire wrote to the descriptor itself: a
		// failed write is rare, and the reader must end too.
		_ = w.raw.Close()
	}
}
