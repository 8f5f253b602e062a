package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// wsConn is the client side of a WebSocket that only listens, on the raw
// connection: a general client (coder/websocket) costs several times the
// CPU per message, and the benchmark client shares the machine with the
// server. ReadMessage reads it from the calling goroutine; a reader on
// Linux instead hands the socket to the epoll reactor (reactor_linux.go).
// Either way frameParser decodes the frames.
//
// A wsConn is used by one goroutine at a time: ReadMessage also writes.
type wsConn struct {
	nc     net.Conn
	p      frameParser
	buf    []byte // read buffer
	early  []byte // bytes read with the handshake answer, not yet parsed
	msg    []byte // the message ReadMessage returns
	hasMsg bool
	op     byte
	more   bool // the last feed stopped at a message: p.rest may hold whole frames
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// dialOptions are the per-connection settings of dialWS.
type dialOptions struct {
	Dialer     *net.Dialer
	TLS        *tls.Config // for wss; nil uses the defaults with the URL's host
	Header     http.Header // extra request headers (Authorization)
	MaxMessage int         // largest message accepted
}

// dialWS opens a WebSocket to u (ws:// or wss://) and completes the
// opening handshake.
func dialWS(ctx context.Context, u *url.URL, o dialOptions) (*wsConn, error) {
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "wss" {
			host = net.JoinHostPort(u.Hostname(), "443")
		} else {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	nc, err := o.Dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "wss" {
		cfg := &tls.Config{}
		if o.TLS != nil {
			cfg = o.TLS.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		nc = tls.Client(nc, cfg)
	}
	c, err := handshake(ctx, nc, u, o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func handshake(ctx context.Context, nc net.Conn, u *url.URL, o dialOptions) (*wsConn, error) {
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
		defer nc.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var raw [16]byte
	binary.LittleEndian.PutUint64(raw[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(raw[8:], rand.Uint64())
	key := base64.StdEncoding.EncodeToString(raw[:])

	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", u.RequestURI(), u.Host, key)
	for k, vs := range o.Header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(nc, b.String()); err != nil {
		return nil, fmt.Errorf("send handshake: %w", err)
	}

	br := bufio.NewReaderSize(nc, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet, URL: u})
	if err != nil {
		return nil, fmt.Errorf("read handshake answer: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		resp.Body.Close()
		return nil, fmt.Errorf("edge answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return nil, fmt.Errorf("%w: answer 101 without Upgrade: websocket", errProtocol)
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return nil, fmt.Errorf("%w: wrong Sec-WebSocket-Accept", errProtocol)
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		return nil, fmt.Errorf("%w: extension %q that was not offered", errProtocol, ext)
	}
	maxMsg := o.MaxMessage
	if maxMsg <= 0 {
		maxMsg = 16 << 20
	}
	c := &wsConn{nc: nc, p: frameParser{maxMessage: maxMsg}}
	// Frames the server sent right after its answer may sit in br.
	if n := br.Buffered(); n > 0 {
		early, _ := br.Peek(n)
		c.early = append([]byte(nil), early...)
	}
	return c, nil
}

// ReadMessage returns the next text or binary message. The slice is valid
// until the next call. Pings are answered on the way; a close frame is
// echoed and returned as a *CloseError.
func (c *wsConn) ReadMessage() (opcode byte, p []byte, err error) {
	c.hasMsg = false
	for {
		data := c.early
		c.early = nil
		switch {
		case data != nil:
		case c.more:
			c.more = false // parse what is kept before reading
		default:
			if c.buf == nil {
				c.buf = make([]byte, 4096)
			}
			n, err := c.nc.Read(c.buf)
			if n == 0 && err != nil {
				return 0, nil, err
			}
			data = c.buf[:n]
		}
		if err := c.p.feed(data, c.take); err != nil && err != errHaveMessage {
			return 0, nil, err
		}
		if c.hasMsg {
			c.more = true
			return c.op, c.msg, nil
		}
	}
}

// errHaveMessage stops feed after one message; the parser keeps the rest.
var errHaveMessage = errors.New("have a message")

// take is ReadMessage's frame callback.
func (c *wsConn) take(op byte, p []byte) error {
	switch op {
	case opPing:
		return c.writeControl(opPong, p)
	case opPong:
		return nil
	case opClose:
		ce := closeError(p)
		// Echo the code, as the protocol asks; the server may be gone.
		_ = c.writeControl(opClose, p[:min(len(p), 2)])
		return ce
	}
	c.op, c.msg, c.hasMsg = op, append(c.msg[:0], p...), true
	return errHaveMessage
}

// writeControl sends a masked control frame.
func (c *wsConn) writeControl(op byte, p []byte) error {
	f := controlFrame(make([]byte, 0, 6+len(p)), op, p, rand.Uint32())
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(f)
	return err
}

// Close closes the connection without a closing handshake.
func (c *wsConn) Close() error { return c.nc.Close() }
