// Package wsconn serves clients: the WebSocket endpoint,
// GET /ws?channel=a&channel=b[&since=a:17], and its Server-Sent Events
// fallback, GET /events (sse.go). Both resume: what a client missed since the
// position it names is replayed from the history before the live stream, and
// Positions drops what both hold.
//
// A request is checked before the upgrade (channel names, their number, the
// server draining), then subscribed through a Broker, then upgraded. Because
// the subscription is live before the 101 response, a client that sees its
// socket open will receive every message published from then on.
//
// Each WebSocket client has one goroutine, which reads: it answers pings
// and closes, and a data frame from a client closes that client with 1008
// (policy violation), since clients only listen. The hub writes to it
// (client.go): until the client's position frames and replay are written,
// its live messages are held; then each message is appended to the
// client's wire (wire.go), already framed (Encode), and sent with one
// non-blocking write(2). Only a client whose socket is full gets a flusher
// goroutine, for as long as its backlog lasts. Timers ping a client after
// EDGE_PING_INTERVAL without a write, and close it when its token expires.
// Every close handshake is bounded (closeGrace) by closing the hijacked
// socket under it. A client that falls more than EDGE_QUEUE_SIZE frames or
// EDGE_QUEUE_BYTES behind is closed with 1013 (try again later) and may
// resume. On Shutdown every client is closed with 1001 (going away), spread
// over the drain window.
//
// Handler is safe for concurrent use.
package wsconn
