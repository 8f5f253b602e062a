package wsconn

import (
	"context"
	"math/rand/v2"
	"time"
)

// Shutdown refuses new clients, then closes every connected client with 1001
// at a random moment within window, so their reconnects spread over the other
// edges instead of arriving at once. It returns when all clients are gone, or
// ctx ends (the remaining writers are then still closing). It is safe to call
// more than once.
func (h *Handler) Shutdown(ctx context.Context, window time.Duration) error {
	h.mu.Lock()
	h.draining.Store(true)
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()

	// Nobody is closed in the first fifth of the window (at most a second):
	// load balancers take a moment to see readiness go off, and a client
	// closed at once would often reconnect to this same edge.
	first := min(window/5, time.Second)
	for _, c := range conns {
		delay := first
		if window > first {
			delay += rand.N(window - first)
		}
		time.AfterFunc(delay, c.sendGoAway)
	}

	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.sendGoAway()
		}
		return ctx.Err()
	}
}
