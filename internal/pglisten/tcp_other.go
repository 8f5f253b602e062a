//go:build !linux

package pglisten

import "time"

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not available: the
// keepalive settings still apply.
func setUserTimeout(uintptr, time.Duration) error { return nil }
