package wsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pgrelay/pgrelay/internal/event"
	"github.com/pgrelay/pgrelay/internal/hub"
)

// Broker subscribes clients to channels. Subscribe returns once the
// subscription is live (or fails); Unsubscribe undoes it. Position is the
// newest id of a channel the subscription has passed on (0: none), read
// after Subscribe: messages after it reach the subscriber. Replay hands
// yield a channel's messages after id after, from the history, oldest first,
// starting with a reset message if the history no longer reaches back to
// after; it stops at the first error from yield.
type Broker interface {
	Subscribe(ctx context.Context, channels []string, sink hub.Sink) (*hub.Subscriber, error)
	Unsubscribe(*hub.Subscriber)
	Position(channel string) uint64
	Replay(ctx context.Context, channel string, after uint64, yield func(*hub.Message) error) error
}

// Close codes sent to clients, besides the library's usual ones.
const (
	// CodeTokenExpired tells a client its token expired: fetch a new one
	// and reconnect (with since). Codes 4001-4099 are for authentication.
	CodeTokenExpired websocket.StatusCode = 4001
	// CodeSlow tells a client it fell behind and should reconnect later.
	CodeSlow = websocket.StatusTryAgainLater
	// CodeGoingAway tells a client this edge is shutting down.
	CodeGoingAway = websocket.StatusGoingAway
)

// Observer is told what happens to clients, for metrics. Its methods are
// called from every client's goroutine: they must be quick and safe for
// concurrent use.
type Observer interface {
	// Refused counts a request refused before the upgrade, by reason:
	// "bad_request", "unauthorized", "draining", "full", "unavailable".
	Refused(reason string)
	// Connected counts a client that got its stream; transport is "ws" or "sse".
	Connected(transport string)
	// Disconnected counts a client that is gone, by reason: "client" (it
	// left), "slow", "going_away", "write_error", "ping_timeout",
	// "history_unavailable", "policy" (it sent data), "token_expired".
	Disconnected(transport, reason string)
	// Delivered counts one message written to a client, except
	// those a WebSocket client writes in its Deliver: the hub reports those
	// in bulk (hub.Options.Written).
	Delivered()
}

type nopObserver struct{}

func (nopObserver) Refused(string)              {}
func (nopObserver) Connected(string)            {}
func (nopObserver) Disconnected(string, string) {}
func (nopObserver) Delivered()                  {}

// Authorize decides whether r may read channels. It returns when the grant
// expires (zero: never) or an error, which refuses the request before the
// upgrade: with the status of an *AuthError, else 401.
type Authorize func(r *http.Request, channels []string) (expires time.Time, err error)

// AuthError is an Authorize error with its HTTP status (401 or 403).
type AuthError struct {
	Status int
	Err    error
}

func (e *AuthError) Error() string { return e.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Err }

// Options configures a Handler. Broker is required.
type Options struct {
	Broker Broker
	// Authorize, if set, checks every request before it subscribes.
	Authorize Authorize
	// MaxConnections is the most clients served at once; beyond it requests
	// get 503 with Retry-After before the upgrade. Zero means 10000.
	MaxConnections int
	// Observer, if set, is told about clients (metrics).
	Observer Observer
	// OriginPatterns lists the extra origins (host patterns, path.Match
	// syntax) allowed to open sockets. The request's own host is always
	// allowed; empty means same-origin only.
	OriginPatterns []string
	// MaxChannels is the most channels one connection may ask for. Zero means 32.
	MaxChannels int
	// WriteTimeout bounds each write to a client. Zero means 10s.
	WriteTimeout time.Duration
	// QueueSize is how many frames may wait for one client; one more and
	// the client is closed with 1013. Zero means hub.DefaultQueueSize.
	QueueSize int
	// QueueBytes bounds the frame bytes waiting for one client, the same
	// way. Zero means 4 MiB.
	QueueBytes int
	// PingInterval is how often a client is pinged; a client that does not
	// answer within the interval is dropped. Zero means 25s.
	PingInterval time.Duration
	// SubscribeTimeout bounds the wait for the Broker. Zero means 5s.
	SubscribeTimeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Handler serves WebSocket clients.
type Handler struct {
	opts Options
	log  *slog.Logger

	draining atomic.Bool
	refusals logLimiter
	slots    atomic.Int64 // clients subscribed or being subscribed, against MaxConnections
	mu       sync.Mutex
	conns    map[*conn]struct{}
	wg       sync.WaitGroup
}

// conn is one client; goAway is closed to ask its writer to close with 1001.
type conn struct {
	goAway     chan struct{}
	goAwayOnce sync.Once
	goAwayFn   atomic.Pointer[func()]
	raw        net.Conn // the hijacked socket (WebSocket only)
}

// closeGrace bounds a close handshake: a client that does not answer the
// close frame (or is still "sending" a huge frame the handshake must skip)
// has its socket closed under it.
const closeGrace = 2 * time.Second

// closeWith closes ws with code and reason, within closeGrace.
func (c *conn) closeWith(ws *websocket.Conn, code websocket.StatusCode, reason string) {
	t := time.AfterFunc(closeGrace, func() { c.raw.Close() })
	defer t.Stop()
	ws.Close(code, reason)
}

func (c *conn) sendGoAway() {
	c.goAwayOnce.Do(func() {
		close(c.goAway)
		if f := c.goAwayFn.Load(); f != nil {
			(*f)()
		}
	})
}

// onGoAway has f called when the edge asks the client to go (or at once
// if it already has). f must not block; it may be called twice.
func (c *conn) onGoAway(f func()) {
	c.goAwayFn.Store(&f)
	select {
	case <-c.goAway:
		f()
	default:
	}
}

// New returns a Handler.
func New(opts Options) *Handler {
	if opts.MaxChannels <= 0 {
		opts.MaxChannels = 32
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = 10000
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = hub.DefaultQueueSize
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = 4 << 20
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 25 * time.Second
	}
	if opts.SubscribeTimeout <= 0 {
		opts.SubscribeTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	return &Handler{opts: opts, log: opts.Logger, conns: make(map[*conn]struct{})}
}

// Len returns the number of connected clients.
func (h *Handler) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// ParseChannels returns the channel parameters of a /ws query, or an error
// that says what is wrong with them, fit to show the client.
func ParseChannels(q map[string][]string, max int) ([]string, error) {
	chans := q["channel"]
	if len(chans) == 0 {
		return nil, errors.New("missing channel parameter: use /ws?channel=NAME")
	}
	if len(chans) > max {
		return nil, fmt.Errorf("too many channels: %d, at most %d", len(chans), max)
	}
	for i, ch := range chans {
		if err := event.ValidateChannel(ch); err != nil {
			return nil, fmt.Errorf("channel %d: %w", i+1, err)
		}
	}
	return chans, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	chans, err := ParseChannels(q, h.opts.MaxChannels)
	if err == nil {
		var since map[string]uint64
		if since, err = event.ParseSince(chans, q["since"]); err == nil {
			h.serveWS(w, r, chans, since)
			return
		}
	}
	h.refuse(w, r, http.StatusBadRequest, "bad_request", err.Error())
}

func (h *Handler) serveWS(w http.ResponseWriter, r *http.Request, chans []string, since map[string]uint64) {
	// A plain GET would be refused by Accept anyway, but only after it cost
	// a subscription in Redis.
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.Header().Set("Upgrade", "websocket")
		h.refuse(w, r, http.StatusUpgradeRequired, "bad_request", "WebSocket upgrade required (or use /events)")
		return
	}
	cl := newWSClient(h)
	sub, expires, ok := h.subscribe(w, r, chans, cl)
	if !ok {
		return
	}
	start := h.positions(chans, since) // before open: see Broker.Position
	rec := &hijackRecorder{ResponseWriter: w, timeout: h.opts.WriteTimeout, wire: &cl.wire}
	ws, err := websocket.Accept(rec, r, &websocket.AcceptOptions{
		OriginPatterns: h.opts.OriginPatterns,
		// A browser sends its token as a second subprotocol; the edge
		// selects this one, never echoing the token.
		Subprotocols: []string{"pgrelay"},
	})
	if err != nil {
		h.unsubscribe(sub)
		if n, ok := h.refusals.allow("bad_request"); ok {
			h.log.Info("client refused", "reason", "bad_request", "msg", err.Error(), "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr, "suppressed", n)
		}
		h.opts.Observer.Refused("bad_request")
		return // Accept has answered the request (403 for a foreign origin)
	}
	c := &conn{goAway: make(chan struct{}), raw: rec.conn}
	cl.ws, cl.c = ws, c
	if !h.track(c) {
		c.closeWith(ws, CodeGoingAway, "edge is shutting down")
		_ = rec.conn.Close()
		h.unsubscribe(sub)
		return
	}
	// The client gets a goroutine of its own and this one returns: net/http
	// then lets go of what it kept for the request (its 4 KiB + 4 KiB
	// buffers, the headers, a deep stack) for as long as the client stays.
	go h.run(cl, sub, start, since, expires, r.RemoteAddr)
}

// run serves an upgraded client until it is gone, then lets go of its
// subscription, socket and slot.
func (h *Handler) run(cl *wsClient, sub *hub.Subscriber, start []*hub.Message, since map[string]uint64, expires time.Time, remote string) {
	defer h.unsubscribe(sub)
	defer cl.c.raw.Close() // runs before unsubscribe: whatever happened, the socket is gone
	defer cl.ws.CloseNow()
	defer h.untrack(cl.c)

	h.opts.Observer.Connected("ws")
	reason := h.serve(cl, sub, start, since, expires)
	h.opts.Observer.Disconnected("ws", reason)
	if reason == "slow" {
		bytes, frames := cl.wire.queued()
		if n, ok := h.refusals.allow("slow"); ok {
			h.log.Warn("slow client cut off", "remote", remote, "channels", sub.Channels(),
				"queued", frames, "queued_bytes", bytes, "suppressed", n)
		}
	}
}

// subscribe authorizes and subscribes a client, or answers the request
// (401/403, or 503 with Retry-After) and returns false.
func (h *Handler) subscribe(w http.ResponseWriter, r *http.Request, chans []string, sink hub.Sink) (*hub.Subscriber, time.Time, bool) {
	var expires time.Time
	if h.opts.Authorize != nil {
		var err error
		if expires, err = h.opts.Authorize(r, chans); err != nil {
			status := http.StatusUnauthorized
			var ae *AuthError
			if errors.As(err, &ae) {
				status = ae.Status
			}
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="pgrelay"`)
			}
			h.refuse(w, r, status, "unauthorized", err.Error())
			return nil, expires, false
		}
	}
	switch {
	case h.draining.Load():
		h.refuse(w, r, http.StatusServiceUnavailable, "draining", "edge is shutting down")
		return nil, expires, false
	case h.slots.Add(1) > int64(h.opts.MaxConnections):
		h.slots.Add(-1)
		h.refuse(w, r, http.StatusServiceUnavailable, "full", "edge is full")
		return nil, expires, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.SubscribeTimeout)
	defer cancel()
	sub, err := h.opts.Broker.Subscribe(ctx, chans, sink)
	if err != nil {
		h.slots.Add(-1)
		if n, ok := h.refusals.allow("subscribe_failed"); ok {
			// Every client retries while Redis is down: one line a second.
			h.log.Warn("subscribe failed", "channels", chans, "err", err, "suppressed", n)
		}
		h.refuse(w, r, http.StatusServiceUnavailable, "unavailable", "subscription not ready")
		return nil, expires, false
	}
	return sub, expires, true
}

// positions returns a position message for each channel not resumed that
// has one, to be the client's first frames.
func (h *Handler) positions(chans []string, since map[string]uint64) []*hub.Message {
	var out []*hub.Message
	for _, ch := range chans {
		if _, resumed := since[ch]; resumed {
			continue
		}
		if id := h.opts.Broker.Position(ch); id > 0 {
			out = append(out, Encode(&hub.Message{Channel: ch, ID: id, Frame: event.PositionFrame(ch, id), Position: true}))
		}
	}
	return out
}

// unsubscribe undoes subscribe.
func (h *Handler) unsubscribe(sub *hub.Subscriber) {
	h.opts.Broker.Unsubscribe(sub)
	h.slots.Add(-1)
}

// writeError marks a failed write to the client, as opposed to a failed
// history read, when both can end a replay.
type writeError struct{ error }

func (e writeError) Unwrap() error { return e.error }

// expiry returns a timer that fires at t, or never if t is zero.
func expiry(t time.Time) *time.Timer {
	if t.IsZero() {
		tm := time.NewTimer(time.Hour)
		tm.Stop()
		return tm
	}
	return time.NewTimer(time.Until(t))
}

func (h *Handler) track(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining.Load() {
		return false
	}
	h.conns[c] = struct{}{}
	h.wg.Add(1)
	return true
}

func (h *Handler) untrack(c *conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	h.wg.Done()
}

// refuse answers a request that gets no stream, with a log line and a count.
// A 503 says when to retry.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, reason, msg string) {
	if n, ok := h.refusals.allow(reason); ok {
		// At most one line per reason a second, so that a flood of bad
		// requests cannot flood the logs; the counter counts them all.
		h.log.Info("client refused", "status", status, "reason", reason, "msg", msg, "remote", r.RemoteAddr, "suppressed", n)
	}
	h.opts.Observer.Refused(reason)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	http.Error(w, msg, status)
}
