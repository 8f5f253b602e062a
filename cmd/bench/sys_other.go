//go:build !linux

package main

import (
	"syscall"
	"time"
)

func raiseNoFile() (soft, hard uint64, err error) { return 0, 0, nil }

func ownCPU() time.Duration { return 0 }

func sourceControl(_, _ string, _ syscall.RawConn) error { return nil }

func smallRcvBuf(_, _ string, _ syscall.RawConn) error { return nil }
