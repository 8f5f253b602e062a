package wsconn

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/hub"
)

// sockets is n loopback TCP connections: near ends to write to, and the far
// ends' descriptors (non-blocking) for drain.
type sockets struct {
	near []*net.TCPConn
	far  []int
	buf  []byte
}

func socketPairs(tb testing.TB, n int) *sockets {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	s := &sockets{buf: make([]byte, 64<<10)}
	var files []*os.File
	tb.Cleanup(func() {
		for _, c := range s.near {
			c.Close()
		}
		for _, f := range files {
			f.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		s.near = append(s.near, c.(*net.TCPConn))
		far, err := ln.Accept()
		if err != nil {
			tb.Fatal(err)
		}
		f, err := far.(*net.TCPConn).File() // a blocking duplicate
		far.Close()
		if err != nil {
			tb.Fatal(err)
		}
		files = append(files, f)
		if err := syscall.SetNonblock(int(f.Fd()), true); err != nil {
			tb.Fatal(err)
		}
		s.far = append(s.far, int(f.Fd()))
	}
	return s
}

// drain reads what every far end has, without waiting.
func (s *sockets) drain(tb testing.TB) {
	for _, fd := range s.far {
		for {
			n, err := syscall.Read(fd, s.buf)
			if err == syscall.EAGAIN || (err == nil && n < len(s.buf)) {
				break
			}
			if err != nil || n == 0 {
				tb.Fatalf("read: %d, %v", n, err)
			}
		}
	}
}

// eachRound drains the far ends, with the timer stopped, before write i
// of a benchmark that writes to the sockets in turn, once each has had one.
func (s *sockets) eachRound(b *testing.B, i int) {
	if i%len(s.near) == 0 && i > 0 {
		b.StopTimer()
		s.drain(b)
		b.StartTimer()
	}
}

// fdOf returns c's descriptor.
func fdOf(c *net.TCPConn) (fd int) {
	rc, _ := c.SyscallConn()
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// deliver is a delivery of m as Deliver makes it: lock, append, commit.
func deliver(w *wire, m *hub.Message) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	took := w.appendLocked(m)
	if took {
		w.commitLocked(1)
	}
	return took
}

// frame200 is the size of a 128-byte notification's frame; msg200 carries
// it as an encoded message.
var (
	frame200 = make([]byte, 200)
	msg200   = &hub.Message{Wire: frame200}
)

// BenchmarkSocketWrite is the floor under BenchmarkWire: one write(2) of a
// 200-byte frame per op, in turn to each of 1,000 loopback sockets, as a
// fan-out does. On loopback that includes the receiving side's TCP work.
// The far ends are read between rounds, with the timer stopped: nobody
// waits on them, so no reader's wake-up is counted.
func BenchmarkSocketWrite(b *testing.B) {
	s := socketPairs(b, 1000)
	fds := make([]int, len(s.near))
	for i, c := range s.near {
		fds[i] = fdOf(c)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.eachRound(b, i)
		if n, err := syscall.Write(fds[i%len(fds)], frame200); n != len(frame200) {
			b.Fatalf("write: %d, %v", n, err)
		}
	}
}

// BenchmarkWire is what the edge does per delivery on the wire: lock, append
// one frame, commit (one non-blocking write(2) to the descriptor), unlock,
// over the same 1,000 sockets. The difference to
// BenchmarkSocketWrite is the wire's own cost. It must not allocate.
func BenchmarkWire(b *testing.B) {
	s := socketPairs(b, 1000)
	wires := make([]*wire, len(s.near))
	for i, c := range s.near {
		wires[i] = newWire(c, time.Second)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.eachRound(b, i)
		deliver(wires[i%len(wires)], msg200)
	}
	b.StopTimer()
	for _, w := range wires {
		if bytes, _ := w.queued(); bytes > 0 || w.failed() != nil {
			b.Fatalf("the kernel refused a write (%d bytes queued, %v)", bytes, w.failed())
		}
	}
}

// TestWireWriteAllocates nothing: a delivery to a client that keeps up
// costs no allocation.
func TestWireWriteAllocatesNothing(t *testing.T) {
	s := socketPairs(t, 1)
	w := newWire(s.near[0], time.Second)
	allocs := testing.AllocsPerRun(100, func() {
		deliver(w, msg200)
	})
	s.drain(t)
	if allocs != 0 {
		t.Errorf("%.1f allocations per write, want 0", allocs)
	}
	if err := w.failed(); err != nil {
		t.Fatal(err)
	}
}

// TestWireNeverWritesToAClosedDescriptor: once the socket is closed, by
// whoever holds its wireConn, nothing more is written to its descriptor
// number, even when the kernel has given that number to a new socket.
func TestWireNeverWritesToAClosedDescriptor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func() (near *net.TCPConn, far net.Conn, fd int) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		far, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); far.Close() })
		return c.(*net.TCPConn), far, fdOf(c.(*net.TCPConn))
	}

	// The lowest free number is the one just freed: the next socket gets
	// it, unless another goroutine opened a file meanwhile; then again.
	var (
		w             *wire
		nextFar       net.Conn
		oldFD, nextFD int
	)
	for try := 0; ; try++ {
		var old *net.TCPConn
		old, _, oldFD = dial()
		w = newWire(old, time.Second)
		if err := (&wireConn{Conn: old, w: w}).Close(); err != nil {
			t.Fatal(err)
		}
		_, nextFar, nextFD = dial()
		if nextFD == oldFD {
			break
		}
		if try == 5 {
			t.Fatalf("the kernel never gave the freed descriptor (%d) to the next socket (%d): the test cannot tell", oldFD, nextFD)
		}
	}

	deliver(w, &hub.Message{Wire: []byte("not yours")})
	if w.failed() == nil {
		t.Error("a delivery after the close did not fail")
	}
	if _, err := w.Write([]byte("nor this")); err == nil {
		t.Error("a library write after the close did not fail")
	}

	nextFar.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	got, _ := io.ReadAll(nextFar)
	if len(got) > 0 {
		t.Errorf("the socket that took descriptor %d received %q", nextFD, got)
	}
}

// TestWireSendsWhatTheKernelRefused: frames the socket has no room for
// wait in the wire and leave, in order and whole, once the reader reads
// again.
func TestWireSendsWhatTheKernelRefused(t *testing.T) {
	s := socketPairs(t, 1)
	// A small send buffer, so that the kernel refuses early on any host
	// (Linux doubles it). The receive buffer stays as it is: a tiny one
	// on loopback makes TCP wait for window probes.
	if err := s.near[0].SetWriteBuffer(8 << 10); err != nil {
		t.Fatal(err)
	}
	w := newWire(s.near[0], 5*time.Second)
	const frames, size = 500, 1 << 10 // 500 KiB
	var want []byte
	for i := range frames {
		f := bytes.Repeat([]byte{byte(i)}, size)
		binary.BigEndian.PutUint32(f, uint32(i))
		want = append(want, f...)
		deliver(w, &hub.Message{Wire: f})
	}
	if bytes, _ := w.queued(); bytes == 0 {
		t.Fatal("nothing waits in the wire: the kernel took 500 KiB, so this tests nothing")
	}
	if err := syscall.SetNonblock(s.far[0], false); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < len(want) {
		n, err := syscall.Read(s.far[0], s.buf)
		if err != nil || n == 0 {
			t.Fatalf("read after %d of %d bytes: %d, %v", len(got), len(want), n, err)
		}
		got = append(got, s.buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("byte %d (frame %d) differs: %d, want %d", i, i/size, got[i], want[i])
			}
		}
	}
	if err := w.waitBelow(0); err != nil {
		t.Fatal(err)
	}
	// And nothing more: the far end has no byte beyond them.
	syscall.SetNonblock(s.far[0], true)
	if n, err := syscall.Read(s.far[0], s.buf); n > 0 {
		t.Errorf("%d bytes more than were written (%v)", n, err)
	}
}

// TestWireSendsNothingAfterCloseFrame: once the library has written a
// close frame (its echo of the client's, or a protocol error's), the
// wire takes no data frame: nothing may follow a close (RFC 6455 §5.5.1).
func TestWireSendsNothingAfterCloseFrame(t *testing.T) {
	s := socketPairs(t, 1)
	w := newWire(s.near[0], time.Second)
	closeFrame := []byte{0x88, 0x02, 0x03, 0xe8} // 1000
	if _, err := w.Write(closeFrame); err != nil {
		t.Fatal(err)
	}
	if deliver(w, liveMessage("c", 1)) {
		t.Error("the wire took a data frame after the close frame")
	}
	time.Sleep(10 * time.Millisecond)
	n, _ := syscall.Read(s.far[0], s.buf)
	if got := s.buf[:max(n, 0)]; !bytes.Equal(got, closeFrame) {
		t.Errorf("the client got % x, want only the close frame % x", got, closeFrame)
	}
}
