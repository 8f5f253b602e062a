package wsconn

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// wire is the io.Writer under coder/websocket's write buffer for one client:
// the library encodes frames, wire puts them on the socket. It never blocks
// its caller. It tries one non-blocking write(2); what the kernel does not
// take waits in pending, and only then does a flusher goroutine start, which
// writes with a deadline until pending is empty and then ends. So one
// goroutine can fan a message out to thousands of clients without waiting
// on any, a client that keeps up costs no writer goroutine, and frames that
// pile up for one that falls behind leave together, in one write.
//
// Callers that write several frames in a row hold the wire (hold, then
// release): what they write is sent once, at release. Writes made without a
// hold (the library answering a ping, or echoing a close) are sent at once.
type wire struct {
	raw     net.Conn
	rc      syscall.RawConn // nil: no non-blocking write here; the flusher sends everything
	timeout time.Duration   // bound on each of the flusher's writes

	// writeFn is w.write1 made once: a closure made per write would be
	// allocated per write. Its argument and results pass through out,
	// under mu.
	writeFn func(fd uintptr) bool
	out     struct {
		b   []byte
		n   int
		err error
	}

	mu       sync.Mutex
	shrunk   sync.Cond // broadcast when pending shrinks, or on an error
	pending  []byte
	frames   int  // frames in pending, as counted by the caller
	holds    int  // holders whose frames go out at release
	flushing bool // a flusher goroutine is writing; nobody else may
	err      error
}

// maxIdleBuffer is the largest pending buffer kept once empty: a burst may
// grow it, and 15,000 idle clients should not keep 16 KiB each.
const maxIdleBuffer = 4 << 10

func newWire(raw net.Conn, timeout time.Duration) *wire {
	w := &wire{raw: raw, timeout: timeout}
	w.shrunk.L = &w.mu
	w.writeFn = w.write1
	if sc, ok := raw.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			w.rc = rc
		}
	}
	return w
}

// Write queues p and, without a hold, sends it. It fails only once a write
// to the socket has failed: the connection is then useless.
func (w *wire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.pending = append(w.pending, p...)
	if w.holds == 0 {
		w.sendLocked()
	}
	return len(p), nil
}

// hold defers sending until the matching release, and returns the bytes
// and frames waiting at that moment (see queued).
func (w *wire) hold() (bytes, frames int) {
	w.mu.Lock()
	w.holds++
	bytes, frames = len(w.pending), w.frames
	w.mu.Unlock()
	return bytes, frames
}

// release ends a hold; frames counts the frames written during it. The
// last release sends what the holds gathered.
func (w *wire) release(frames int) {
	w.mu.Lock()
	w.holds--
	w.frames += frames
	if w.holds == 0 {
		w.sendLocked()
	}
	w.mu.Unlock()
}

// queued returns the bytes and frames waiting for the socket (not counting
// a write the flusher has under way).
func (w *wire) queued() (bytes, frames int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending), w.frames
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
	if w.flushing || len(w.pending) == 0 || w.err != nil {
		return
	}
	if w.rc != nil {
		n, err := w.tryWrite(w.pending)
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

// tryWrite is one write(2) that returns instead of waiting when the socket
// is full. The caller holds mu.
func (w *wire) tryWrite(b []byte) (n int, err error) {
	w.out.b = b
	if err := w.rc.Write(w.writeFn); err != nil {
		w.out.b = nil
		return 0, err // closed, or a deadline the flusher left has passed
	}
	n, err = max(w.out.n, 0), w.out.err
	w.out.b, w.out.err = nil, nil
	return n, err
}

// write1 is tryWrite's callback.
func (w *wire) write1(fd uintptr) bool {
	w.out.n, w.out.err = syscall.Write(int(fd), w.out.b)
	return true // done either way: never wait for the socket here
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
				// The next non-blocking write must not find this deadline.
				_ = w.raw.SetWriteDeadline(time.Time{})
			}
			w.mu.Unlock()
			return
		}
		buf, w.pending = w.pending, buf[:0]
		w.frames = 0
		w.mu.Unlock()

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
	_ = w.raw.Close()
}
