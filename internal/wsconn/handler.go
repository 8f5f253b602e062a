package wsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pgrelay/pgrelay/internal/event"
	"github.com/pgrelay/pgrelay/internal/hub"
)

// Broker subscribes clients to channels. Subscribe returns once the
// subscription is live (or fails); Unsubscribe undoes it. Replay hands
// yield a channel's messages after id after, from the history, oldest first,
// starting with a reset message if the history no longer reaches back to
// after; it stops at the first error from yield.
type Broker interface {
	Subscribe(ctx context.Context, channels []string) (*hub.Subscriber, error)
	Unsubscribe(*hub.Subscriber)
	Replay(ctx context.Context, channel string, after uint64, yield func(*hub.Message) error) error
}

// Close codes sent to clients, besides the library's usual ones.
const (
	// CodeSlow tells a client it fell behind and should reconnect later.
	CodeSlow = websocket.StatusTryAgainLater
	// CodeGoingAway tells a client this edge is shutting down.
	CodeGoingAway = websocket.StatusGoingAway
)

// Options configures a Handler. Broker is required.
type Options struct {
	Broker Broker
	// OriginPatterns lists the extra origins (host patterns, path.Match
	// syntax) allowed to open sockets. The request's own host is always
	// allowed; empty means same-origin only.
	OriginPatterns []string
	// MaxChannels is the most channels one connection may ask for. Zero means 32.
	MaxChannels int
	// WriteTimeout bounds each write to a client. Zero means 10s.
	WriteTimeout time.Duration
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
	mu       sync.Mutex
	conns    map[*conn]struct{}
	wg       sync.WaitGroup
}

// conn is one client; goAway is closed to ask its writer to close with 1001.
type conn struct {
	goAway     chan struct{}
	goAwayOnce sync.Once
}

func (c *conn) sendGoAway() { c.goAwayOnce.Do(func() { close(c.goAway) }) }

// New returns a Handler.
func New(opts Options) *Handler {
	if opts.MaxChannels <= 0 {
		opts.MaxChannels = 32
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
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
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	since, err := event.ParseSince(chans, q["since"])
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if h.draining.Load() {
		unavailable(w, "edge is shutting down")
		return
	}

	subCtx, cancel := context.WithTimeout(r.Context(), h.opts.SubscribeTimeout)
	sub, err := h.opts.Broker.Subscribe(subCtx, chans)
	cancel()
	if err != nil {
		h.log.Warn("subscribe failed", "channels", chans, "err", err)
		unavailable(w, "subscription not ready")
		return
	}
	defer h.opts.Broker.Unsubscribe(sub)

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: h.opts.OriginPatterns})
	if err != nil {
		return // Accept has answered the request
	}
	defer ws.CloseNow()

	c := &conn{goAway: make(chan struct{})}
	if !h.track(c) {
		ws.Close(CodeGoingAway, "edge is shutting down")
		return
	}
	defer h.untrack(c)

	h.serve(ws, c, sub, since)
}

// serve is the connection's single writer. It first replays what the client
// missed on each channel it resumes, then writes the live queue, which has
// been filling since before the replay began: Positions drops what both hold.
func (h *Handler) serve(ws *websocket.Conn, c *conn, sub *hub.Subscriber, since map[string]uint64) {
	// CloseRead reads (and answers) control frames; a data frame from the
	// client closes the connection with 1008, and ctx ends with the reader.
	ctx := ws.CloseRead(context.Background())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// writeCtx ends when the hub kicks this client: a write blocked on a
	// client that stopped reading is abandoned at once, not after WriteTimeout.
	writeCtx, cancelWrites := context.WithCancel(ctx)
	defer cancelWrites()
	go h.watch(ctx, cancel, cancelWrites, ws, sub)

	pos := make(hub.Positions, len(since))
	for ch, id := range since {
		pos[ch] = id
		err := h.opts.Broker.Replay(writeCtx, ch, id, func(m *hub.Message) error {
			if !pos.Pass(m) {
				return nil
			}
			return h.write(writeCtx, ws, m.Frame)
		})
		if err != nil {
			if writeCtx.Err() == nil {
				h.log.Warn("replay failed", "channel", ch, "since", id, "err", err)
				ws.Close(websocket.StatusTryAgainLater, "history unavailable, reconnect later")
			}
			return
		}
	}

	for {
		select {
		case <-sub.Kicked(): // before any queued frame
			ws.Close(CodeSlow, "slow client, reconnect later")
			return
		default:
		}
		select {
		case m := <-sub.Queue():
			if !pos.Pass(m) {
				continue
			}
			if err := h.write(writeCtx, ws, m.Frame); err != nil {
				return
			}
		case <-sub.Kicked():
			ws.Close(CodeSlow, "slow client, reconnect later")
			return
		case <-c.goAway:
			ws.Close(CodeGoingAway, "edge is shutting down")
			return
		case <-ctx.Done():
			return
		}
	}
}

func (h *Handler) write(ctx context.Context, ws *websocket.Conn, frame []byte) error {
	ctx, cancel := context.WithTimeout(ctx, h.opts.WriteTimeout)
	defer cancel()
	return ws.Write(ctx, websocket.MessageText, frame)
}

// watch pings the client to keep the connection alive through proxies and
// to find dead peers (fail ends the connection), and abandons the writer's
// current write when the hub kicks the client.
func (h *Handler) watch(ctx context.Context, fail, kick context.CancelFunc, ws *websocket.Conn, sub *hub.Subscriber) {
	t := time.NewTicker(h.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.Kicked():
			kick()
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, h.opts.PingInterval)
		err := ws.Ping(pctx)
		cancel()
		if err != nil {
			fail()
			return
		}
	}
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

func unavailable(w http.ResponseWriter, reason string) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, reason, http.StatusServiceUnavailable)
}
