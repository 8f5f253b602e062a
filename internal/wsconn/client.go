package wsconn

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pgrelay/pgrelay/internal/hub"
)

// Buffer sizes for a client's socket once upgraded. The reader sees only
// pings, pongs and closes (clients send no data); the writer buffer only
// has to hold a typical frame, since wire keeps what waits.
const (
	readBufferSize  = 128
	writeBufferSize = 512
)

// replayHigh is how many bytes a replay lets wait for a client before it
// waits for them to be written: a replay goes at the client's pace.
const replayHigh = 64 << 10

// hijackRecorder keeps the socket coder/websocket hijacks, so that a close
// can be bounded (the library's close handshake has no deadline of its
// own), and gives the library small buffers over a wire instead of the
// 4 KiB + 4 KiB that net/http hands over. The library, like everyone else,
// gets the socket as a wireConn: the wire owns its close.
type hijackRecorder struct {
	http.ResponseWriter
	timeout time.Duration
	conn    net.Conn // a *wireConn
	wire    *wire    // the client's, readied at the hijack
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return c, brw, err
	}
	h.wire.init(c, h.timeout)
	h.conn = &wireConn{Conn: c, w: h.wire}
	r := brw.Reader
	if r.Buffered() == 0 { // else the client already sent something: keep it
		r = bufio.NewReaderSize(h.conn, readBufferSize)
	}
	return h.conn, bufio.NewReadWriter(r, bufio.NewWriterSize(h.wire, writeBufferSize)), nil
}

func (h *hijackRecorder) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// wsClient is one WebSocket client's end of the hub. Until it goes live
// (after its position frames and replay), the messages the hub delivers
// are held; from then on Deliver writes them at once, from the hub's
// goroutine, through the wire. Its own goroutine only reads (pings, pongs,
// close); timers ping it, expire it and let it go.
type wsClient struct {
	// Guarded by wire.mu, the client's one lock: a delivery locks once.
	// Deliver's fields come first, next to the wire's.
	h         *Handler
	live      bool
	closing   bool // the close has begun: nothing more is written (RFC 6455 §5.5.1)
	pos       hub.Positions
	lastWrite atomic.Int64 // Unix ns of the last frame written, for the pinger
	wire      wire
	held      []*hub.Message
	heldBytes int

	ws *websocket.Conn
	c  *conn

	endOnce sync.Once
	why     string        // the Observer's reason, set once by endOnce
	ended   chan struct{} // closed when the close that end began is done
}

var _ hub.Sink = (*wsClient)(nil)

func newWSClient(h *Handler) *wsClient {
	cl := &wsClient{h: h, ended: make(chan struct{})}
	cl.wire.fd = -1 // until the hijack: 0 would be stdin
	return cl
}

// Deliver is the hub's way in: never blocking, false if the client is too
// far behind (the hub then kicks it). What one call is given leaves in one
// write. It returns how many messages it wrote: the hub counts those for
// the metrics; held ones are counted by goLive when written, and those
// Positions drops are not counted.
func (cl *wsClient) Deliver(ms []*hub.Message) (written int, ok bool) {
	w := &cl.wire
	w.mu.Lock()
	defer w.mu.Unlock()
	if cl.closing {
		return 0, true // the client is going: not slow
	}
	if !cl.live {
		for _, m := range ms {
			if len(cl.held) >= cl.h.opts.QueueSize || (len(cl.held) > 0 && cl.heldBytes+len(m.Frame) > cl.h.opts.QueueBytes) {
				return 0, false
			}
			cl.held = append(cl.held, m)
			cl.heldBytes += len(m.Frame)
		}
		return 0, true
	}
	bytes, frames := w.queuedLocked()
	n := 0
	ok = true
	for _, m := range ms {
		if !cl.pos.Live(m) {
			continue
		}
		// A frame larger than the bound on its own is still taken by an
		// empty queue: otherwise one big message would cut every client.
		if frames+n >= cl.h.opts.QueueSize || (bytes > 0 && bytes+len(m.Frame) > cl.h.opts.QueueBytes) {
			ok = false
			break
		}
		if !w.appendLocked(m) {
			break // a failed write ends the connection, not as "slow"
		}
		n++
		bytes += len(m.Frame) + 14 // at most 14 bytes of frame header
	}
	if len(cl.pos) == 0 {
		cl.pos = nil // nil: Live looks at no map from now on
	}
	w.commitLocked(n)
	cl.wrote(n)
	return n, ok
}

// wrote notes that n frames were just written, for the pinger.
func (cl *wsClient) wrote(n int) {
	if n > 0 {
		cl.lastWrite.Store(time.Now().UnixNano())
	}
}

// writeNow writes m from the client's own goroutine (position frames and
// replay), waiting while too much is queued: a replay goes at the client's
// pace.
func (cl *wsClient) writeNow(m *hub.Message) error {
	cl.wire.mu.Lock()
	ok := !cl.closing && cl.wire.appendLocked(m)
	if ok {
		cl.wire.commitLocked(1)
		cl.wrote(1)
		cl.h.opts.Observer.Delivered()
	}
	cl.wire.mu.Unlock()
	if !ok {
		return writeError{net.ErrClosed}
	}
	if err := cl.wire.waitBelow(replayHigh); err != nil {
		return writeError{err}
	}
	return nil
}

// goLive writes what was held during the replay (skipping what the replay
// already wrote) in one go, and lets Deliver write from then on.
func (cl *wsClient) goLive(pos hub.Positions) {
	cl.wire.mu.Lock()
	defer cl.wire.mu.Unlock()
	n := 0
	for _, m := range cl.held {
		if !cl.closing && pos.Live(m) && cl.wire.appendLocked(m) {
			n++
			cl.h.opts.Observer.Delivered()
		}
	}
	cl.wire.commitLocked(n)
	cl.wrote(n)
	cl.pos = pos // Deliver drops it once empty
	cl.held, cl.heldBytes = nil, 0
	cl.live = true
}

// end closes the connection with code and text, once, from a goroutine of
// its own (it waits for the client's answer, at most closeGrace); why is
// the reason given to the Observer. The caller must not hold cl.wire.mu.
func (cl *wsClient) end(why string, code websocket.StatusCode, text string) {
	cl.endOnce.Do(func() {
		cl.why = why
		// No frame of ours may follow the close frame: writes stop first.
		cl.wire.mu.Lock()
		cl.closing = true
		cl.wire.mu.Unlock()
		go func() {
			defer close(cl.ended)
			cl.c.closeWith(cl.ws, code, text)
		}()
	})
}

// drop closes the socket without a close frame: the peer is not listening.
func (cl *wsClient) drop(why string) {
	cl.endOnce.Do(func() {
		cl.why = why
		_ = cl.c.raw.Close()
		close(cl.ended)
	})
}

// serve runs a client from the upgrade to the end: the position frames and
// the replay of what it missed, then live delivery by the hub while this
// goroutine reads. It returns why the connection ended, for the Observer.
func (h *Handler) serve(cl *wsClient, sub *hub.Subscriber, start []*hub.Message, since map[string]uint64, expires time.Time) string {
	sub.OnKick(func() { cl.end("slow", CodeSlow, "slow client, reconnect later") })
	cl.c.onGoAway(func() { cl.end("going_away", CodeGoingAway, "edge is shutting down") })
	if !expires.IsZero() {
		t := time.AfterFunc(time.Until(expires), func() {
			cl.end("token_expired", CodeTokenExpired, "token expired: fetch a new one and reconnect")
		})
		defer t.Stop()
	}

	pos := make(hub.Positions, len(since)+len(start))
	if !h.catchUp(cl, pos, start, since) {
		return cl.finish(nil)
	}
	cl.lastWrite.Store(time.Now().UnixNano())
	cl.goLive(pos)

	// An idle connection is pinged, so that proxies keep it and a dead
	// peer is found; any write resets the wait.
	ping := h.pinger(cl)
	defer ping.Stop()

	// Clients only listen: a data frame closes the connection with 1008.
	// Reader also answers pings and returns when the connection closes.
	_, _, err := cl.ws.Reader(context.Background())
	if err == nil {
		cl.end("policy", websocket.StatusPolicyViolation, "unexpected data message: clients only listen")
	}
	return cl.finish(err)
}

// catchUp writes the position frames and replays what the client missed on
// each channel it resumes. The hub holds live messages meanwhile. False
// means the connection is ending.
func (h *Handler) catchUp(cl *wsClient, pos hub.Positions, start []*hub.Message, since map[string]uint64) bool {
	for _, m := range start {
		pos[m.Channel] = m.ID // what the hub holds up to it came before open
		if err := cl.writeNow(m); err != nil {
			return false
		}
	}
	for ch, id := range since {
		pos[ch] = id
		err := h.opts.Broker.Replay(context.Background(), ch, id, func(m *hub.Message) error {
			if !pos.Pass(m) {
				return nil
			}
			return cl.writeNow(m)
		})
		if err != nil {
			if !errors.As(err, new(writeError)) {
				if n, ok := h.refusals.allow("replay_failed"); ok {
					h.log.Warn("replay failed", "channel", ch, "since", id, "err", err, "suppressed", n)
				}
				cl.end("history_unavailable", websocket.StatusTryAgainLater, "history unavailable, reconnect later")
			}
			return false
		}
	}
	return true
}

// finish waits for a close already begun, or marks the end as the
// client's (or a failed write's), and returns the Observer's reason.
func (cl *wsClient) finish(readErr error) string {
	cl.endOnce.Do(func() {
		cl.why = "client"
		// A close from the client ends the reader with its status; a
		// write to the socket closed after it is not a write error.
		if websocket.CloseStatus(readErr) == -1 && cl.wire.failed() != nil {
			cl.why = "write_error"
		}
		close(cl.ended)
	})
	<-cl.ended
	return cl.why
}

// pinger pings cl whenever it has had no frame for PingInterval; a client
// that does not answer within the interval is dropped.
func (h *Handler) pinger(cl *wsClient) *time.Timer {
	every := h.opts.PingInterval
	var t *time.Timer
	t = time.AfterFunc(every, func() {
		if idle := time.Since(time.Unix(0, cl.lastWrite.Load())); idle < every {
			t.Reset(every - idle)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		err := cl.ws.Ping(ctx)
		cancel()
		if err != nil {
			cl.drop("ping_timeout")
			return
		}
		cl.lastWrite.Store(time.Now().UnixNano())
		t.Reset(every)
	})
	return t
}
