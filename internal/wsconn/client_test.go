package wsconn

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/hub"
)

// rawClient is a WebSocket client over a bare TCP socket: it reads frames
// as they are on the wire and answers nothing (no pong, no close).
type rawClient struct {
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, srv *httptest.Server, query string) *rawClient {
	t.Helper()
	addr := strings.TrimPrefix(srv.URL, "http://")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET /?%s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", query, addr)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return &rawClient{nc: nc, br: br}
}

// frame reads one server frame: its opcode and payload.
func (c *rawClient) frame(timeout time.Duration) (op byte, payload []byte, err error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	var hdr [2]byte
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0] & 0x0f, payload, nil
}

func liveMessage(ch string, id uint64) *hub.Message {
	return Encode(&hub.Message{Channel: ch, ID: id, Frame: fmt.Appendf(nil, `{"channel":%q,"id":"%d","payload":"x"}`, ch, id)})
}

// Once the edge has sent its close frame (here 4001, the token expired),
// no data frame follows it, though the hub keeps delivering to the client
// until the close handshake is over: RFC 6455 §5.5.1.
func TestNoDataFrameAfterClose(t *testing.T) {
	t.Parallel()
	hb := hub.New(hub.Options{})
	h := New(Options{
		Broker:       memBroker{hb},
		PingInterval: time.Minute,
		Authorize: func(*http.Request, []string) (time.Time, error) {
			return time.Now().Add(300 * time.Millisecond), nil
		},
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := dialRaw(t, srv, "channel=c")

	// The first message shows the client live; then publish on until the
	// socket closes.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for id := uint64(1); ; id++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				hb.Publish(liveMessage("c", id))
			}
		}
	}()
	closed := false
	for {
		op, p, err := c.frame(5 * time.Second)
		if err != nil {
			if !closed {
				t.Fatalf("no close frame: %v", err)
			}
			return // the edge closed the socket: done
		}
		switch {
		case op == 0x8:
			if code := binary.BigEndian.Uint16(p); code != uint16(CodeTokenExpired) {
				t.Errorf("close code %d, want %d", code, CodeTokenExpired)
			}
			closed = true
		case closed:
			t.Fatalf("frame with opcode %d after the close frame: %s", op, p)
		}
	}
}

// TestHandlerClosesThroughTheWire: the socket the handler and the library
// hold is the wire's wireConn, and when the client goes, the close went
// through the wire (which then never writes to the descriptor again).
func TestHandlerClosesThroughTheWire(t *testing.T) {
	hb := hub.New(hub.Options{})
	h := New(Options{Broker: memBroker{hb}, PingInterval: time.Minute})
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := dialRaw(t, srv, "channel=c")

	var wc *wireConn
	for deadline := time.Now().Add(5 * time.Second); wc == nil; {
		h.mu.Lock()
		for cn := range h.conns {
			var ok bool
			if wc, ok = cn.raw.(*wireConn); !ok {
				t.Errorf("the handler holds a %T, not the wire's conn", cn.raw)
			}
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the client was never tracked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.nc.Close() // the client goes without a close frame
	for deadline := time.Now().Add(5 * time.Second); ; {
		wc.w.mu.Lock()
		closed := wc.w.closed
		wc.w.mu.Unlock()
		if closed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the client's socket was not closed through the wire")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
