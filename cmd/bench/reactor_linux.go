package main

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// reactors read the reading clients' sockets with epoll, one goroutine per
// CPU, instead of a goroutine per connection: a socket that has data costs
// one read(2), no goroutine wake-up, no extra read that finds nothing, and
// the readers' thread sleeps once per batch of ready sockets. On this
// kind of machine that halves the client's CPU per delivery, which is CPU
// the server under test does not get.
//
// A client is handed over once its handshake is done: its socket leaves
// Go's poller (dup, then Close of the net.Conn) and joins one epoll set;
// from then on only that set's goroutine touches the client, until stop.
type reactors struct {
	sets      []*epollSet
	slots     []atomic.Pointer[client] // by client index: publishes a client to its set
	delayACKs bool                     // see delayACK
	wg        sync.WaitGroup
	stop      atomic.Bool
}

// errNoReactor: this system has no epoll; readers get goroutines.
var errNoReactor = errors.New("no epoll here")

type epollSet struct {
	fd   int
	file *os.File // fd, in Go's poller: the set's goroutine parks there
	buf  []byte
	oob  []byte // control messages: the kernel's receive stamp
}

// newReactors starts n epoll sets for up to clients clients; with
// delayACKs, their reads delay the sockets' ACKs (delayACK).
func newReactors(n, clients int, delayACKs bool) (*reactors, error) {
	r := &reactors{slots: make([]atomic.Pointer[client], clients), delayACKs: delayACKs}
	for range n {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			r.close()
			return nil, err
		}
		// Non-blocking, so that os.NewFile puts it in Go's poller.
		if err := syscall.SetNonblock(fd, true); err != nil {
			syscall.Close(fd)
			r.close()
			return nil, err
		}
		s := &epollSet{fd: fd, file: os.NewFile(uintptr(fd), "epoll"), buf: make([]byte, 64<<10), oob: newOOB()}
		r.sets = append(r.sets, s)
		r.wg.Go(func() { r.loop(s) })
	}
	return r, nil
}

// attach moves c's connection to an epoll set. It returns false, leaving c
// as it was, for a connection that is not plain TCP (TLS).
func (r *reactors) attach(c *client) (bool, error) {
	tc, ok := c.conn.nc.(*net.TCPConn)
	if !ok {
		return false, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = dupCloexec(int(f)) }); err != nil {
		return false, err
	}
	if derr != nil {
		return false, derr
	}
	// The duplicate shares the socket (and its O_NONBLOCK); closing the
	// original takes it out of Go's poller.
	tc.Close()
	c.fd, c.p = fd, &c.conn.p
	// Without stamps (an old kernel), the reads record no arrival; the
	// report's sample count shows it.
	_ = enableArrival(fd)
	if early := c.conn.early; len(early) > 0 {
		// Read with the handshake answer: no stamp.
		c.conn.early = nil
		c.feed(early, time.Now().UnixNano(), 0)
	}
	r.slots[c.idx].Store(c)
	s := r.sets[c.idx%len(r.sets)]
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.idx)}
	if err := syscall.EpollCtl(s.fd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		r.slots[c.idx].Store(nil)
		syscall.Close(fd)
		c.fd = -1
		return true, err
	}
	return true, nil
}

func dupCloexec(fd int) (int, error) {
	nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(nfd), nil
}

// loop reads the set's ready sockets until stop. The set's own fd waits
// in Go's poller, and epoll_wait is only called when it is ready, with no
// timeout: a goroutine blocked in a system call would keep Go's sysmon
// thread waking every 20 µs to take its P back, a cost the client pays
// on every core it shares with the server.
func (r *reactors) loop(s *epollSet) {
	events := make([]syscall.EpollEvent, 256)
	rc, err := s.file.SyscallConn()
	if err != nil {
		return
	}
	// The callback returns false to wait for the set to be ready again;
	// Read returns when the file is closed (stop).
	_ = rc.Read(func(fd uintptr) bool {
		for {
			n, err := syscall.EpollWait(int(fd), events, 0)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return true
			}
			if n == 0 {
				// Drained: Go's poller is edge-triggered, so the next
				// ready socket makes a new edge.
				return r.stop.Load()
			}
			for _, ev := range events[:n] {
				c := r.slots[ev.Fd].Load()
				if c == nil || c.err != nil {
					continue
				}
				r.read(s, c)
			}
		}
	})
}

// read takes what one socket has (level-triggered: whatever a read leaves
// is reported again) and decodes it, with the read time and the kernel's
// receive stamp (arrival_linux.go). The stamp is the last segment's: for
// frames that came earlier in the same read, an upper bound.
func (r *reactors) read(s *epollSet, c *client) {
	if r.delayACKs {
		delayACK(c.fd)
	}
	n, arrival, err := recvArrival(c.fd, s.buf, s.oob)
	if n > 0 {
		if ferr := c.feed(s.buf[:n], time.Now().UnixNano(), arrival); ferr != nil {
			err = ferr
		}
	}
	switch {
	case err == nil && n == 0:
		err = io.EOF
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return
	case err == nil:
		return
	}
	c.err = err
	// The socket stays open until stop, so its number is not reused
	// while a set may still hold it.
	syscall.EpollCtl(s.fd, syscall.EPOLL_CTL_DEL, c.fd, nil)
}

// delayACK asks the kernel not to acknowledge fd's next read at once.
//
// A socket that only reads sends an ACK within each read(2) that empties
// it after a small segment. On loopback that ACK goes through the whole
// TCP stack twice, sending and receiving, inside the client's read: a
// third of the client's CPU per delivery, on the cores the server's
// fan-out is measured on (perf, 1,000 × 10/s), where a remote client's
// ACKs would cost this machine only their receiving. TCP_QUICKACK off
// (the kernel's "ping-pong" mode) leaves the ACK to the delayed-ACK timer
// (40 ms or more later, still sent: nothing waits on it, the send window
// is far larger than what is in flight). The kernel leaves that mode
// when the timer fires, so the option is set again before every read.
func delayACK(fd int) {
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0)
}

// close stops the sets, then closes the sockets they read.
func (r *reactors) close() {
	r.stop.Store(true)
	for _, s := range r.sets {
		s.file.Close() // wakes its goroutine
	}
	r.wg.Wait()
	for i := range r.slots {
		if c := r.slots[i].Load(); c != nil && c.fd >= 0 {
			syscall.Close(c.fd)
			c.fd = -1
		}
	}
}

// writeRaw sends a masked control frame on a reactor's socket. The socket
// is non-blocking; a control frame that does not fit the send buffer is
// dropped (the server will give up on this client), which a benchmark
// client can afford.
func (c *client) writeRaw(op byte, p []byte) error {
	var buf [6 + 125]byte
	f := controlFrame(buf[:0], op, p, rand.Uint32())
	_, err := syscall.Write(c.fd, f)
	if err == syscall.EAGAIN {
		return nil
	}
	return err
}
