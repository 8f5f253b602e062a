package edge

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// connWatch counts connections closed before they sent a complete request:
// a slowloris cut off by EDGE_HEADER_TIMEOUT, or a browser's preconnect that
// was never used. http.Server closes them without telling the handler.
type connWatch struct {
	log    *slog.Logger
	active sync.Map // net.Conn → struct{} once a request has started
	count  atomic.Uint64
}

func (w *connWatch) track(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateActive:
		w.active.Store(c, struct{}{})
	case http.StateHijacked, http.StateClosed:
		if _, started := w.active.LoadAndDelete(c); !started {
			w.count.Add(1)
			w.log.Debug("connection closed before a complete request", "remote", c.RemoteAddr().String())
		}
	}
}
