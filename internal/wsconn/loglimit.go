package wsconn

import (
	"sync"
	"time"
)

// logLimiter lets one log line per key through each second and counts the
// ones it held back. The zero value is ready to use.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

// allow reports whether a line for key may be logged now, and how many were
// held back since the last one.
func (l *logLimiter) allow(key string) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if now.Sub(l.last[key]) < time.Second {
		l.held[key]++
		return 0, false
	}
	l.last[key] = now
	n := l.held[key]
	l.held[key] = 0
	return n, true
}
