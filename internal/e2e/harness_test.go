package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/pgrelay/pgrelay/internal/edge"
	"github.com/pgrelay/pgrelay/internal/relay"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// logBuf collects a process's logs and prints them if the test fails.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger(t testing.TB, name string) (*slog.Logger, *logBuf) {
	b := &logBuf{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- logs of %s ---\n%s", name, b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// proc is a relay or edge running in a goroutine.
type proc struct {
	name   string
	addr   string // host:port of its HTTP server
	logs   *logBuf
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // what Run returned; read after done
}

// stop ends the process as SIGTERM would and waits for it.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.cancel()
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s: Run returned %v", p.name, p.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop within 20s", p.name)
	}
}

func (p *proc) url(path string) string { return "http://" + p.addr + path }

func listen(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func start(t testing.TB, name string, ln net.Listener, run func(ctx context.Context) error) *proc {
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{name: name, addr: ln.Addr().String(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop within 20s of cleanup", name)
		}
	})
	return p
}

// startRelay runs a relay with the test's prefix; mod may change its config.
func startRelay(t testing.TB, name, prefix string, channels []string, mod ...func(*relay.Config)) *proc {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.DatabaseURL = testenv.DatabaseURL(t)
	cfg.RedisURL = testenv.RedisURL(t)
	cfg.Prefix = prefix
	cfg.Channels = channels
	cfg.Listener = listen(t)
	var logs *logBuf
	cfg.Logger, logs = newLogger(t, name)
	for _, m := range mod {
		m(&cfg)
	}
	p := start(t, name, cfg.Listener, func(ctx context.Context) error { return relay.Run(ctx, cfg) })
	p.logs = logs
	return p
}

// startEdge runs an edge with the test's prefix and waits until it is ready.
func startEdge(t testing.TB, name, prefix string, mod ...func(*edge.Config)) *proc {
	t.Helper()
	p := startEdgeNoWait(t, name, prefix, mod...)
	waitReadyz(t, p, "ready")
	return p
}

// startEdgeNoWait runs an edge with the test's prefix.
func startEdgeNoWait(t testing.TB, name, prefix string, mod ...func(*edge.Config)) *proc {
	t.Helper()
	cfg := edge.DefaultConfig()
	cfg.RedisURL = testenv.RedisURL(t)
	cfg.Prefix = prefix
	cfg.Listener = listen(t)
	cfg.DrainTimeout = time.Second
	var logs *logBuf
	cfg.Logger, logs = newLogger(t, name)
	for _, m := range mod {
		m(&cfg)
	}
	p := start(t, name, cfg.Listener, func(ctx context.Context) error { return edge.Run(ctx, cfg) })
	p.logs = logs
	return p
}

// readyz returns the status code and body of p's /readyz.
func readyz(p *proc) (int, string, error) {
	resp, err := http.Get(p.url("/readyz"))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// waitReadyz polls /readyz until it answers 200 with a body starting with want.
func waitReadyz(t testing.TB, p *proc, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var code int
	var body string
	var err error
	for time.Now().Before(deadline) {
		code, body, err = readyz(p)
		if err == nil && code == http.StatusOK && strings.HasPrefix(body, want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s /readyz: want 200 %q, last got %d %q (err %v)", p.name, want, code, body, err)
}

// waitLeader waits until exactly one of relays reports leader and returns it.
func waitLeader(t testing.TB, relays ...*proc) *proc {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var leaders []*proc
		standbys := 0
		for _, r := range relays {
			_, body, _ := readyz(r)
			switch body {
			case "leader":
				leaders = append(leaders, r)
			case "standby":
				standbys++
			}
		}
		if len(leaders) > 1 {
			t.Fatalf("%d relays report leader at once", len(leaders))
		}
		if len(leaders) == 1 && standbys == len(relays)-1 {
			return leaders[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no single leader among %d relays within 15s", len(relays))
	return nil
}

// client is a WebSocket client of an edge.
type client struct {
	t  testing.TB
	ws *websocket.Conn
}

func dial(t testing.TB, p *proc, channels ...string) *client {
	t.Helper()
	q := make([]string, len(channels))
	for i, ch := range channels {
		q[i] = "channel=" + url.QueryEscape(ch)
	}
	return dialQuery(t, p, strings.Join(q, "&"))
}

// dialQuery opens /ws?query on p.
func dialQuery(t testing.TB, p *proc, query string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+p.addr+"/ws?"+query, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", p.name, err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return &client{t: t, ws: ws}
}

// frame is what a client receives: a message, or a control frame (Type set).
type frame struct {
	Type     string `json:"type"`
	Channel  string `json:"channel"`
	ID       string `json:"id"`
	Payload  string `json:"payload"`
	Encoding string `json:"encoding"`
}

// next reads one message frame, decoded strictly as the documented format.
// Position frames (sent first, for channels not resumed) are checked and
// skipped; any other control frame is an error.
func (c *client) next(timeout time.Duration) (frame, error) {
	for {
		f, err := c.nextFrame(timeout)
		if err == nil && f.Type == "position" {
			if _, perr := strconv.ParseUint(f.ID, 10, 64); perr != nil || f.Channel == "" {
				return f, fmt.Errorf("malformed position frame %+v", f)
			}
			continue
		}
		if err == nil && f.Type != "" {
			return f, fmt.Errorf("got a %q frame, want a message: %+v", f.Type, f)
		}
		return f, err
	}
}

// nextFrame reads one frame of any type.
func (c *client) nextFrame(timeout time.Duration) (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	typ, b, err := c.ws.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	if typ != websocket.MessageText {
		return frame{}, fmt.Errorf("frame type %v, want text", typ)
	}
	var f frame
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return frame{}, fmt.Errorf("frame %q: %w", b, err)
	}
	if f.Type == "" && (f.Channel == "" || f.ID == "") || f.Type != "" && f.Payload != "" {
		return frame{}, fmt.Errorf("frame %q does not follow the documented format", b)
	}
	return f, nil
}

// notify sends one notification through conn.
func notify(t testing.TB, conn *pgx.Conn, channel, payload string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), "SELECT pg_notify($1, $2)", channel, payload); err != nil {
		t.Fatalf("pg_notify(%q): %v", channel, err)
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// decodeStrictFrame decodes b into v, failing t on unknown fields.
func decodeStrictFrame(t testing.TB, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
}
