// Package backoff holds the retry delays the relay's and the edge's
// reconnect loops share. Stdlib only; safe for concurrent use.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jitter spreads d over [d/2, d], so that many processes that lost the same
// server do not all retry in step.
func Jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// Next doubles d, up to max: the next delay of an exponential backoff.
func Next(d, max time.Duration) time.Duration {
	return min(2*d, max)
}
