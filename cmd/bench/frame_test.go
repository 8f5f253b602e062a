package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsServer serves one WebSocket per request with coder/websocket (the
// library the edge uses) and runs script on it.
func wsServer(t *testing.T, script func(ctx context.Context, ws *websocket.Conn) error) *url.URL {
	t.Helper()
	errc := make(chan error, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			errc <- err
			return
		}
		defer ws.CloseNow()
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		// The client only listens: CloseRead reads its pongs and close.
		ctx = ws.CloseRead(ctx)
		if err := script(ctx, ws); err != nil {
			errc <- err
		}
	}))
	t.Cleanup(func() {
		srv.Close()
		close(errc)
		for err := range errc {
			t.Errorf("server: %v", err)
		}
	})
	u, _ := url.Parse(srv.URL)
	u.Scheme, u.Path, u.RawQuery = "ws", "/ws", "channel=x"
	return u
}

func dialTest(t *testing.T, u *url.URL) *wsConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialWS(ctx, u, dialOptions{Dialer: newDialer()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestReadMessageCoder reads what coder/websocket writes: small, 16-bit and
// 64-bit lengths, a fragmented message, a ping the client must answer
// (Ping returns only once the pong arrived), and a close with its code.
func TestReadMessageCoder(t *testing.T) {
	t.Parallel()
	medium := strings.Repeat("m", 300)
	large := bytes.Repeat([]byte("L"), 100_000)
	u := wsServer(t, func(ctx context.Context, ws *websocket.Conn) error {
		if err := ws.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
			return err
		}
		if err := ws.Ping(ctx); err != nil {
			return errors.New("ping not answered: " + err.Error())
		}
		if err := ws.Write(ctx, websocket.MessageText, []byte("after ping")); err != nil {
			return err
		}
		if err := ws.Write(ctx, websocket.MessageText, []byte(medium)); err != nil {
			return err
		}
		w, err := ws.Writer(ctx, websocket.MessageText)
		if err != nil {
			return err
		}
		for _, part := range []string{"frag", "men", "ted"} {
			if _, err := w.Write([]byte(part)); err != nil {
				return err
			}
		}
		if err := w.Close(); err != nil {
			return err
		}
		if err := ws.Write(ctx, websocket.MessageBinary, large); err != nil {
			return err
		}
		return ws.Close(websocket.StatusTryAgainLater, "slow client")
	})
	c := dialTest(t, u)

	want := []struct {
		op   byte
		data string
	}{
		{opText, "hello"},
		{opText, "after ping"},
		{opText, medium},
		{opText, "fragmented"},
		{opBinary, string(large)},
	}
	for i, w := range want {
		op, got, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if op != w.op || string(got) != w.data {
			t.Fatalf("message %d: got op %d, %d bytes %.20q; want op %d, %d bytes %.20q", i, op, len(got), got, w.op, len(w.data), w.data)
		}
	}
	// 5 data messages in 7 data frames (one of them in 3 plus an empty
	// final one), and the ping.
	if c.p.frames < 9 {
		t.Errorf("%d frames decoded; the fragmented message should have made more", c.p.frames)
	}
	_, _, err := c.ReadMessage()
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 1013 || ce.Reason != "slow client" {
		t.Fatalf("after the last message: %v, want close 1013 slow client", err)
	}
}

// TestFeedPieces feeds a stream a byte at a time and in random cuts: the
// parser must give the same messages whatever the reads look like.
func TestFeedPieces(t *testing.T) {
	t.Parallel()
	var stream []byte
	stream = append(stream, serverFrame(true, opText, []byte("one"))...)
	stream = append(stream, serverFrame(true, opPing, []byte("pp"))...)
	stream = append(stream, serverFrame(false, opText, []byte("tw"))...)
	stream = append(stream, serverFrame(true, opPong, nil)...) // between fragments
	stream = append(stream, serverFrame(true, opContinuation, []byte("o"))...)
	stream = append(stream, serverFrame(true, opBinary, bytes.Repeat([]byte("b"), 70_000))...)
	stream = append(stream, serverFrame(true, opText, bytes.Repeat([]byte("c"), 200))...)
	stream = append(stream, serverFrame(true, opClose, []byte{0x03, 0xe8, 'b', 'y', 'e'})...)

	type got struct {
		op  byte
		len int
		s   string
	}
	want := []got{{opText, 3, "one"}, {opPing, 2, "pp"}, {opPong, 0, ""}, {opText, 3, "two"},
		{opBinary, 70_000, "bbbb"}, {opText, 200, "cccc"}, {opClose, 5, "\x03\xe8by"}}
	for _, cut := range []int{1, 2, 3, 7, 64, 1000, len(stream)} {
		p := frameParser{maxMessage: 1 << 20}
		var out []got
		fn := func(op byte, b []byte) error {
			out = append(out, got{op, len(b), string(b[:min(len(b), 4)])})
			return nil
		}
		for i := 0; i < len(stream); i += cut {
			if err := p.feed(stream[i:min(i+cut, len(stream))], fn); err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
		}
		if len(out) != len(want) {
			t.Fatalf("cut %d: got %v, want %v", cut, out, want)
		}
		for i := range want {
			if out[i] != want[i] {
				t.Fatalf("cut %d: message %d is %v, want %v", cut, i, out[i], want[i])
			}
		}
		if len(p.rest) != 0 {
			t.Errorf("cut %d: %d bytes left over", cut, len(p.rest))
		}
	}
}

func TestFeedRefuses(t *testing.T) {
	t.Parallel()
	masked := serverFrame(true, opText, []byte("x"))
	masked[1] |= 0x80
	reserved := serverFrame(true, opText, []byte("x"))
	reserved[0] |= 0x40
	longPing := serverFrame(true, opPing, bytes.Repeat([]byte("p"), 126))
	for name, stream := range map[string][]byte{
		"masked":             masked,
		"reserved bits":      reserved,
		"long control":       longPing,
		"stray continuation": serverFrame(true, opContinuation, []byte("x")),
		"unknown opcode":     serverFrame(true, 0x3, []byte("x")),
		"over the limit":     serverFrame(true, opText, bytes.Repeat([]byte("x"), 2000)),
		"interleaved":        append(serverFrame(false, opText, []byte("a")), serverFrame(true, opText, []byte("b"))...),
	} {
		p := frameParser{maxMessage: 1000}
		if err := p.feed(stream, func(byte, []byte) error { return nil }); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestDialTLS: wss, with the bearer token as a header.
func TestDialTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0k" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ws.Write(r.Context(), websocket.MessageText, []byte("over tls"))
		ws.Close(websocket.StatusNormalClosure, "")
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	u.Scheme, u.Path = "wss", "/ws"
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	o := dialOptions{Dialer: newDialer(), TLS: &tls.Config{RootCAs: pool}}
	if _, err := dialWS(context.Background(), u, o); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without a token: %v, want the 401", err)
	}
	o.Header = http.Header{"Authorization": {"Bearer t0k"}}
	c, err := dialWS(context.Background(), u, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "over tls" {
		t.Fatalf("%q %v", msg, err)
	}
}

// serverFrame encodes an unmasked frame, as a server sends it.
func serverFrame(fin bool, op byte, p []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var f []byte
	switch n := len(p); {
	case n < 126:
		f = []byte{b0, byte(n)}
	case n <= 0xffff:
		f = []byte{b0, 126, 0, 0}
		binary.BigEndian.PutUint16(f[2:], uint16(n))
	default:
		f = make([]byte, 10)
		f[0], f[1] = b0, 127
		binary.BigEndian.PutUint64(f[2:], uint64(n))
	}
	return append(f, p...)
}

func TestControlFrameMasked(t *testing.T) {
	t.Parallel()
	f := controlFrame(nil, opPong, []byte("abcd1"), 0x04030201)
	if f[0] != 0x80|opPong || f[1] != 0x80|5 {
		t.Fatalf("header %x", f[:2])
	}
	key := f[2:6]
	var un []byte
	for i, b := range f[6:] {
		un = append(un, b^key[i%4])
	}
	if string(un) != "abcd1" {
		t.Fatalf("unmasked %q", un)
	}
}
