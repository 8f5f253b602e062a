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
// Each WebSocket has two goroutines: the handler's, the only writer, which
// also pings the client after EDGE_PING_INTERVAL without a write; and a
// reader, which answers pings and closes. Clients only listen: a data frame
// from a client closes that client with 1008 (policy violation). Every close
// handshake is bounded (closeGrace) by closing the hijacked socket under it. A client the hub cut off for being too slow is
// closed with 1013 (try again later) and may resume. On Shutdown every client
// is closed with 1001 (going away), spread over the drain window.
//
// Handler is safe for concurrent use.
package wsconn
