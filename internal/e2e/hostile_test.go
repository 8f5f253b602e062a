package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/pgrelay/pgrelay/internal/edge"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// A table of hostile and broken clients against one real edge with JWT auth
// on. Each gets its documented answer, is counted, and leaves a healthy
// client on the same edge receiving every message.
func TestHostileClients(t *testing.T) {
	secret := []byte("a shared secret for the hostile test!")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pemPath := filepath.Join(t.TempDir(), "pub.pem")
	os.WriteFile(pemPath, pubPEM, 0o600)

	prefix := testenv.Name("hostile")
	ch := testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{ch, "orders.1", "b"})
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix, func(c *edge.Config) {
		c.Auth = "jwt"
		c.JWTSecret = string(secret)
		c.JWTPublicKeyFile = pemPath
		c.MaxConnections = 6
		c.HeaderTimeout = 300 * time.Millisecond
	})
	conn := testenv.Conn(t)

	token := func(m jwt.SigningMethod, key any, exp time.Duration, channels ...string) string {
		tok := jwt.NewWithClaims(m, jwt.MapClaims{"exp": time.Now().Add(exp).Unix(), "channels": channels})
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := token(jwt.SigningMethodHS256, secret, time.Hour, ch, "orders.*")

	healthy := dialToken(t, e, "channel="+url.QueryEscape(ch), good, nil)
	sent := 0
	stillHealthy := func(t *testing.T) {
		t.Helper()
		sent++
		p := fmt.Sprintf("healthy %d", sent)
		notify(t, conn, ch, p)
		expectPayloads(t, healthy, p)
	}

	// Refused before the upgrade, with an HTTP status.
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "channels": []string{ch}}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	refusals := []struct {
		name, query, token string
		header             http.Header
		status             int
	}{
		{"no token", "channel=" + ch, "", nil, 401},
		{"expired token", "channel=" + ch, token(jwt.SigningMethodHS256, secret, -time.Minute, ch), nil, 401},
		{"wrong signature", "channel=" + ch, token(jwt.SigningMethodRS256, otherKey, time.Hour, ch), nil, 401},
		{"alg none", "channel=" + ch, noneTok, nil, 401},
		{"HS256 signed with the RS public key", "channel=" + ch, token(jwt.SigningMethodHS256, pubPEM, time.Hour, ch), nil, 401},
		{"token for a asking b", "channel=b", good, nil, 403},
		{"wildcard does not cover a sibling", "channel=orders", good, nil, 403},
		{"bad origin", "channel=" + ch, good, http.Header{"Origin": {"https://evil.example"}}, 403},
		{"10,000 channels in one URL", strings.Repeat("channel=c&", 10000), good, nil, 431},
		{"too many channels", strings.Repeat("channel=c&", 33), good, nil, 400},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			status, body := upgradeStatus(t, e, tc.query, tc.token, tc.header)
			if status != tc.status {
				t.Fatalf("got %d %q, want %d", status, body, tc.status)
			}
			stillHealthy(t)
		})
	}

	t.Run("wildcard claim grants its prefix", func(t *testing.T) {
		c := dialToken(t, e, "channel=orders.1", good, nil)
		notify(t, conn, "orders.1", "o1")
		expectPayloads(t, c, "o1")
		c.ws.CloseNow()
		stillHealthy(t)
	})
	t.Run("token in a cookie", func(t *testing.T) {
		c := dialToken(t, e, "channel="+url.QueryEscape(ch), "", http.Header{"Cookie": {"pgrelay_token=" + good}})
		c.ws.CloseNow()
		stillHealthy(t)
	})
	t.Run("1 MiB frame from the client", func(t *testing.T) {
		c := dialToken(t, e, "channel="+url.QueryEscape(ch), good, nil)
		_ = c.ws.Write(context.Background(), websocket.MessageBinary, make([]byte, 1<<20))
		var err error
		for err == nil { // a position frame may come first
			_, err = c.nextFrame(5 * time.Second)
		}
		if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Fatalf("got %v, want close 1008", err)
		}
		stillHealthy(t)
	})
	t.Run("data frame header announcing 1 TiB, then silence", func(t *testing.T) {
		nc := rawUpgrade(t, e, "channel="+url.QueryEscape(ch), good)
		// FIN+text, masked, 64-bit length 2^40, mask key; then nothing.
		nc.Write([]byte{0x81, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4})
		start := time.Now()
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 256)
		for {
			if _, err := nc.Read(buf); err != nil {
				break // the close frame came first, then the socket closed
			}
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("the edge held the socket %s, want closed within its 2s close grace", d)
		}
		stillHealthy(t)
	})
	t.Run("token expires while connected", func(t *testing.T) {
		short := token(jwt.SigningMethodHS256, secret, 1500*time.Millisecond, ch)
		c := dialToken(t, e, "channel="+url.QueryEscape(ch), short, nil)
		start := time.Now()
		for {
			_, err := c.nextFrame(5 * time.Second)
			if err == nil {
				continue // healthy traffic of the other cases
			}
			if websocket.CloseStatus(err) != 4001 {
				t.Fatalf("got %v, want close 4001", err)
			}
			break
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("closed %s after connecting, want at its exp (~1.5s)", d)
		}
		stillHealthy(t)
	})
	t.Run("slowloris handshake", func(t *testing.T) {
		nc, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		fmt.Fprintf(nc, "GET /ws?channel=%s HTTP/1.1\r\nHost: x\r\n", ch) // never finishes its headers
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		buf := make([]byte, 512)
		for {
			if _, err := nc.Read(buf); err != nil {
				break
			}
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("connection held for %s, want closed after EDGE_HEADER_TIMEOUT (300ms)", d)
		}
		stillHealthy(t)
	})
	t.Run("connection flood past the limit", func(t *testing.T) {
		// The healthy client holds one of the 6 slots.
		var held []*client
		for range 5 {
			held = append(held, dialToken(t, e, "channel="+url.QueryEscape(ch), good, nil))
		}
		status, _ := upgradeStatus(t, e, "channel="+ch, good, nil)
		if status != 503 {
			t.Fatalf("connection past the limit: got %d, want 503", status)
		}
		for _, c := range held {
			c.ws.CloseNow()
		}
		stillHealthy(t)
	})

	for sample, min := range map[string]float64{
		`pgrelay_edge_requests_refused_total{reason="unauthorized"}`:               7,
		`pgrelay_edge_requests_refused_total{reason="bad_request"}`:                2,
		`pgrelay_edge_requests_refused_total{reason="full"}`:                       1,
		`pgrelay_edge_disconnections_total{reason="policy",transport="ws"}`:        1,
		`pgrelay_edge_disconnections_total{reason="token_expired",transport="ws"}`: 1,
	} {
		if v := metricValue(t, e, sample); v < min {
			t.Errorf("%s = %v, want at least %v", sample, v, min)
		}
	}
}

// dialToken opens /ws?query with token offered as a subprotocol, as a browser would.
func dialToken(t *testing.T, p *proc, query, token string, header http.Header) *client {
	t.Helper()
	opts := &websocket.DialOptions{HTTPHeader: header, Subprotocols: []string{"pgrelay"}}
	if token != "" {
		opts.Subprotocols = append(opts.Subprotocols, "bearer."+token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws://"+p.addr+"/ws?"+query, opts)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", p.name, err, resp)
	}
	if ws.Subprotocol() != "pgrelay" {
		t.Fatalf("edge selected subprotocol %q, want pgrelay", ws.Subprotocol())
	}
	t.Cleanup(func() { ws.CloseNow() })
	return &client{t: t, ws: ws}
}

// upgradeStatus sends a WebSocket upgrade and returns the HTTP status.
func upgradeStatus(t *testing.T, p *proc, query, token string, header http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", p.url("/ws?"+query), nil)
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if token != "" {
		req.Header.Set("Sec-WebSocket-Protocol", "pgrelay, bearer."+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b [200]byte
	n, _ := resp.Body.Read(b[:])
	return resp.StatusCode, string(b[:n])
}

// rawUpgrade performs a WebSocket upgrade on a plain TCP connection, to send
// frames no well-behaved client library would.
func rawUpgrade(t *testing.T, p *proc, query, token string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET /ws?%s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: pgrelay, bearer.%s\r\n\r\n",
		query, p.addr, token)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if br.Buffered() > 0 {
		// A position frame may already be in the buffer; it does not matter.
		br.Discard(br.Buffered())
	}
	return nc
}
