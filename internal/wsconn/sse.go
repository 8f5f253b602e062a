package wsconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pgrelay/pgrelay/internal/event"
	"github.com/pgrelay/pgrelay/internal/hub"
)

// SSE returns the Server-Sent Events fallback, GET /events?channel=..., for
// networks that block WebSocket. It shares the hub, ids, limits and drain of
// the WebSocket handler. Each message is an event:
//
//	id: data=17
//	event: message
//	data: {"channel":"data","id":"17","payload":"green"}
//
// (event: reset for a reset frame, event: position for a position frame). The id field is a cursor holding the last
// id of every channel seen on this stream, so the browser's automatic
// Last-Event-ID (or a lastEventId query parameter, for a first connect)
// resumes every channel at once. Comment lines keep the stream alive.
func (h *Handler) SSE() http.Handler { return http.HandlerFunc(h.serveSSE) }

func (h *Handler) serveSSE(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	chans, err := ParseChannels(q, h.opts.MaxChannels)
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	cursor := r.Header.Get("Last-Event-ID")
	if cursor == "" {
		cursor = q.Get("lastEventId")
	}
	since, err := event.ParseCursor(chans, cursor)
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, "bad_request", "Last-Event-ID: "+err.Error())
		return
	}
	sub, expires, ok := h.subscribe(w, r, chans, nil)
	if !ok {
		return
	}
	defer h.unsubscribe(sub)
	start := h.positions(chans, since) // before the stream opens: see Broker.Position

	c := &conn{goAway: make(chan struct{})}
	if !h.track(c) {
		h.refuse(w, r, http.StatusServiceUnavailable, "draining", "edge is shutting down")
		return
	}
	defer h.untrack(c)

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // ask nginx-style proxies not to buffer
	w.WriteHeader(http.StatusOK)
	s := &sseStream{h: h, rc: http.NewResponseController(w), bw: bufio.NewWriter(w), pos: make(map[string]uint64)}
	h.opts.Observer.Connected("sse")
	h.opts.Observer.Disconnected("sse", h.serveEvents(r.Context(), s, c, sub, start, since, expires))
}

// sseStream writes events to one response; its writer goroutine is the only user.
type sseStream struct {
	h   *Handler
	rc  *http.ResponseController
	bw  *bufio.Writer
	pos map[string]uint64 // last id written per channel: the cursor
}

// send writes one event and flushes it within WriteTimeout.
func (s *sseStream) send(m *hub.Message) error {
	s.pos[m.Channel] = m.ID
	kind := "message"
	switch {
	case m.Reset:
		kind = "reset"
	case m.Position:
		kind = "position"
	}
	fmt.Fprintf(s.bw, "id: %s\nevent: %s\ndata: %s\n\n", event.FormatCursor(s.pos), kind, m.Frame)
	if err := s.flush(); err != nil {
		return writeError{err}
	}
	s.h.opts.Observer.Delivered()
	return nil
}

func (s *sseStream) comment(text string) error {
	fmt.Fprintf(s.bw, ": %s\n\n", strings.ReplaceAll(text, "\n", " "))
	return s.flush()
}

func (s *sseStream) flush() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.h.opts.WriteTimeout))
	if err := s.bw.Flush(); err != nil {
		return err
	}
	return s.rc.Flush()
}

// serveEvents is the SSE twin of serve: replay, then the live queue, with
// keepalive comments and the same slow-client and drain handling. It
// returns why the stream ended.
func (h *Handler) serveEvents(ctx context.Context, s *sseStream, c *conn, sub *hub.Subscriber, start []*hub.Message, since map[string]uint64, expires time.Time) (reason string) {
	expired := expiry(expires)
	defer expired.Stop()
	// A kick must not wait for a write blocked on a client that stopped
	// reading (up to WriteTimeout): it ends that write now.
	sub.OnKick(func() { _ = s.rc.SetWriteDeadline(time.Now()) })
	ended := func() string {
		select {
		case <-sub.Kicked():
			return "slow"
		default:
		}
		if ctx.Err() != nil {
			return "client"
		}
		return "write_error"
	}
	fmt.Fprintf(s.bw, "retry: 1000\n\n") // reconnect after 1s, not the browser's 3s
	if err := s.comment("pgrelay"); err != nil {
		return ended()
	}
	pos := make(hub.Positions, len(since)+len(start))
	for _, m := range start {
		pos[m.Channel] = m.ID
		if err := s.send(m); err != nil {
			return ended()
		}
	}
	for ch, id := range since {
		pos[ch] = id
		s.pos[ch] = id
		err := h.opts.Broker.Replay(ctx, ch, id, func(m *hub.Message) error {
			if !pos.Pass(m) {
				return nil
			}
			return s.send(m)
		})
		if err != nil {
			if ctx.Err() == nil && !errors.As(err, new(writeError)) {
				if n, ok := h.refusals.allow("replay_failed"); ok {
					h.log.Warn("replay failed", "channel", ch, "since", id, "err", err, "suppressed", n)
				}
				_ = s.comment("history unavailable, reconnect later")
				return "history_unavailable"
			}
			return ended()
		}
	}
	ping := time.NewTicker(h.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case m := <-sub.Queue():
			sub.Dequeued(m)
			if !pos.Live(m) {
				continue
			}
			if err := s.send(m); err != nil {
				return ended()
			}
		case <-ping.C:
			if err := s.comment("ping"); err != nil {
				return ended()
			}
		case <-sub.Kicked():
			_ = s.comment("slow client, reconnect later")
			return "slow"
		case <-c.goAway:
			_ = s.comment("edge is shutting down")
			return "going_away"
		case <-expired.C:
			_ = s.comment("token expired: fetch a new one and reconnect")
			return "token_expired"
		case <-ctx.Done():
			return "client"
		}
	}
}
