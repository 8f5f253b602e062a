package main

import (
	"encoding/binary"
	"net"
	"syscall"
	"testing"
	"time"
)

// stampedPair returns a loopback TCP connection's sending end and a
// duplicate of its receiving socket with receive stamps on, as a reactor
// holds it (non-blocking).
func stampedPair(tb testing.TB) (send net.Conn, fd int) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	recv, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	send, err = ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { send.Close(); recv.Close() })
	rc, err := recv.(*net.TCPConn).SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var derr error
	rc.Control(func(f uintptr) { fd, derr = dupCloexec(int(f)) })
	if derr != nil {
		tb.Fatal(derr)
	}
	tb.Cleanup(func() { syscall.Close(fd) })
	if err := enableArrival(fd); err != nil {
		tb.Fatal(err)
	}
	return send, fd
}

// stampingOn makes sure the kernel stamps what it receives, until the
// test ends. The first socket to ask turns stamping on for every socket,
// but the kernel does that in the background (a static key flipped by a
// work item): the first segments after it may carry no stamp. The last
// socket to close turns it off again.
func stampingOn(tb testing.TB) {
	tb.Helper()
	send, fd := stampedPair(tb)
	buf, oob := make([]byte, 16), newOOB()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := send.Write([]byte("x")); err != nil {
			tb.Fatal(err)
		}
		if _, arrival := recvWait(tb, fd, buf, oob); arrival != 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	tb.Fatal("the kernel stamps nothing after 5s")
}

// recvWait is recvArrival, retried while the data is still on its way.
func recvWait(tb testing.TB, fd int, buf, oob []byte) (n int, arrival int64) {
	for range 100_000 {
		n, arrival, err := recvArrival(fd, buf, oob)
		if err == syscall.EAGAIN {
			continue
		}
		if err != nil || n <= 0 {
			tb.Fatalf("recvmsg: %d, %v", n, err)
		}
		return n, arrival
	}
	tb.Fatal("recvmsg: nothing arrived")
	return 0, 0
}

// TestRecvArrival: recvmsg returns the data and a stamp between the write
// and the read, the one syscall.ParseSocketControlMessage finds; reading
// and parsing allocate nothing.
func TestRecvArrival(t *testing.T) {
	stampingOn(t)
	send, fd := stampedPair(t)
	buf, oob := make([]byte, 4096), newOOB()

	before := time.Now().UnixNano()
	if _, err := send.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	written := time.Now().UnixNano()
	n, arrival := recvWait(t, fd, buf, oob)
	read := time.Now().UnixNano()
	if string(buf[:n]) != "hello" {
		t.Fatalf("read %q", buf[:n])
	}
	if arrival < before || arrival > written || arrival > read {
		t.Errorf("arrival %d, want within the write [%d, %d], before the read %d", arrival, before, written, read)
	}

	// The same stamp as the standard library's parser finds.
	if _, err := send.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	var oobn int
	for {
		var err error
		_, oobn, _, _, err = syscall.Recvmsg(fd, buf, oob, 0)
		if err != syscall.EAGAIN {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 || msgs[0].Header.Type != syscall.SCM_TIMESTAMPNS {
		t.Fatalf("control messages %+v, %v; want one SCM_TIMESTAMPNS", msgs, err)
	}
	if d := msgs[0].Data; len(d) == 16 { // a 64-bit timespec
		want := int64(binary.NativeEndian.Uint64(d[:8]))*1e9 + int64(binary.NativeEndian.Uint64(d[8:]))
		if got := arrivalOf(oob[:oobn]); got != want {
			t.Errorf("arrivalOf %d, the control message holds %d", got, want)
		}
	}
	if arrivalOf(oob[:oobn-1]) != 0 || arrivalOf(nil) != 0 {
		t.Error("arrivalOf found a stamp in a truncated message")
	}

	x := []byte("x")
	allocs := testing.AllocsPerRun(200, func() {
		send.Write(x)
		if _, a := recvWait(t, fd, buf, oob); a == 0 {
			t.Fatal("no stamp")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per read, want 0", allocs)
	}
}

// BenchmarkRecv compares a reactor's read with and without the stamp, per
// 200-byte write and read on loopback (the write is in every figure).
func BenchmarkRecv(b *testing.B) {
	msg := make([]byte, 200)
	for _, tc := range []struct {
		name string
		recv func(fd int, buf, oob []byte) (int64, error)
	}{
		{"read", func(fd int, buf, _ []byte) (int64, error) {
			_, err := syscall.Read(fd, buf)
			return 0, err
		}},
		{"recvmsg", func(fd int, buf, oob []byte) (int64, error) {
			_, a, err := recvArrival(fd, buf, oob)
			return a, err
		}},
		{"recvmsg+ParseSocketControlMessage", func(fd int, buf, oob []byte) (int64, error) {
			_, oobn, _, _, err := syscall.Recvmsg(fd, buf, oob, 0)
			if err != nil {
				return 0, err
			}
			msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
			return int64(len(msgs)), nil
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			stampingOn(b)
			send, fd := stampedPair(b)
			buf, oob := make([]byte, 4096), newOOB()
			b.ReportAllocs()
			for b.Loop() {
				send.Write(msg)
				for {
					if _, err := tc.recv(fd, buf, oob); err != syscall.EAGAIN {
						break
					}
				}
			}
		})
	}
}
