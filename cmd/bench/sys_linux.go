package main

import (
	"syscall"
	"time"
)

// raiseNoFile raises the soft open-files limit to the hard one (the Go
// runtime does too, since Go 1.19; this makes it explicit and reports it).
func raiseNoFile() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return lim.Cur, lim.Max, err
		}
	}
	return lim.Cur, lim.Max, nil
}

// ownCPU returns this process's user + system CPU time.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h): bind to a
// source address now but pick the port at connect, per destination, so one
// source address holds the whole ephemeral range towards each edge.
const ipBindAddressNoPort = 24

// sourceControl prepares a socket bound to a source address.
func sourceControl(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// smallRcvBuf shrinks a socket's receive buffer, so that a client that
// never reads stops taking data soon, as a stalled browser tab would,
// instead of soaking up megabytes in the kernel first.
func smallRcvBuf(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	if err != nil {
		return err
	}
	return serr
}
