package main

import (
	"syscall"
	"unsafe"
)

// The arrival figure: the kernel stamps each segment a reactor's socket
// receives (SO_TIMESTAMPNS), and recvmsg hands the stamp over with the
// data. The read time (time.Now after the read) also holds how long the
// client took to get round to the socket, on cores it shares with the
// server; the stamp does not. On loopback the stamp is taken when the
// sender's segment enters the receive path, within the edge's write(2).
//
// For TCP, recvmsg gives one stamp: that of the last segment it read
// (the kernel carries the newest stamp over when it merges segments).
// Frames decoded from earlier segments of the same read arrived at or
// before it, so for them it is an upper bound.

// enableArrival asks the kernel to hand over the stamps of what fd
// receives. Stamping itself is on for every socket as long as one asks;
// the first to ask turns it on in the background, so the first segments
// after it may have none. The warm-up before the measured window covers
// that.
func enableArrival(fd int) error {
	return syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
}

// newOOB returns a control-message buffer for recvArrival: room for the
// stamp and one more message, 8-byte aligned for the Cmsghdr cast in
// arrivalOf (a []byte has no alignment of its own).
func newOOB() []byte {
	words := make([]uint64, 2*syscall.CmsgSpace(int(unsafe.Sizeof(syscall.Timespec{})))/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
}

// recvArrival reads fd into buf like read(2), and returns the kernel's
// receive stamp of the data (Unix ns), 0 when there is none. oob comes
// from newOOB and is reused: nothing is allocated per read.
func recvArrival(fd int, buf, oob []byte) (n int, arrival int64, err error) {
	n, oobn, _, _, err := syscall.Recvmsg(fd, buf, oob, 0)
	if err != nil || oobn == 0 {
		return n, 0, err
	}
	return n, arrivalOf(oob[:oobn]), nil
}

// arrivalOf finds the SCM_TIMESTAMPNS message in oob and returns its time
// (Unix ns), 0 without one. It walks the headers in place, as
// syscall.ParseSocketControlMessage does, but without building a slice
// per read. oob must be 8-byte aligned (newOOB).
func arrivalOf(oob []byte) int64 {
	hdr := cmsgAlign(syscall.SizeofCmsghdr)
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0 // truncated (MSG_CTRUNC) or malformed
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS &&
			l >= hdr+int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&oob[hdr]))
			return ts.Nano()
		}
		oob = oob[min(cmsgAlign(l), len(oob)):]
	}
	return 0
}

// cmsgAlign rounds n up to the alignment of control messages (a long).
func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}
