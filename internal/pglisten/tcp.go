package pglisten

import (
	"context"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// TCP bounds how long each end of the connection keeps a connection whose
// peer has vanished without a word (a crashed node, a dropped network path:
// no FIN, no RST). Each zero field leaves that setting to the system.
//
// Keepalive probes find a dead peer on an idle connection: after
// KeepaliveIdle without traffic, a probe every KeepaliveInterval, and the
// connection is dropped after KeepaliveCount unanswered probes. UserTimeout
// drops a connection whose sent data (or, once probing has begun, whose
// probes) have gone unacknowledged that long; on Linux it also replaces
// KeepaliveCount. On the server these bound how long PostgreSQL keeps the
// session, and so the lock, of a leader that vanished.
type TCP struct {
	KeepaliveIdle     time.Duration
	KeepaliveInterval time.Duration
	KeepaliveCount    int
	UserTimeout       time.Duration
}

// serverParams are PostgreSQL's names for the TCP settings, in its units.
func (o TCP) serverParams() map[string]string {
	p := map[string]string{}
	secs := func(d time.Duration) string { return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10) }
	if o.KeepaliveIdle > 0 {
		p["tcp_keepalives_idle"] = secs(o.KeepaliveIdle)
	}
	if o.KeepaliveInterval > 0 {
		p["tcp_keepalives_interval"] = secs(o.KeepaliveInterval)
	}
	if o.KeepaliveCount > 0 {
		p["tcp_keepalives_count"] = strconv.Itoa(o.KeepaliveCount)
	}
	if o.UserTimeout > 0 {
		p["tcp_user_timeout"] = strconv.FormatInt(o.UserTimeout.Milliseconds(), 10)
	}
	return p
}

// SetTCP applies o to both ends of connections made with cc: PostgreSQL's
// tcp_keepalives_idle, tcp_keepalives_interval, tcp_keepalives_count and
// tcp_user_timeout as connection parameters (each unless cc already sets
// it, in the URL or in its options), and the same settings on the client's
// socket. Connections over a Unix socket ignore them.
func SetTCP(cc *pgx.ConnConfig, o TCP) {
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	options := cc.RuntimeParams["options"]
	for k, v := range o.serverParams() {
		if _, set := cc.RuntimeParams[k]; set || strings.Contains(options, k) {
			continue
		}
		cc.RuntimeParams[k] = v
	}
	d := &net.Dialer{
		Timeout: cc.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     o.KeepaliveIdle,
			Interval: o.KeepaliveInterval,
			Count:    o.KeepaliveCount,
		},
	}
	if o.UserTimeout > 0 {
		d.Control = func(network, _ string, c syscall.RawConn) error {
			if !strings.HasPrefix(network, "tcp") {
				return nil
			}
			var serr error
			err := c.Control(func(fd uintptr) { serr = setUserTimeout(fd, o.UserTimeout) })
			if err != nil {
				return err
			}
			return serr
		}
	}
	cc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}
