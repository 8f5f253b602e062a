package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgrelay/pgrelay/internal/edge"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// A client that stops reading is cut off once its queue is full, and the
// client beside it on the same edge and channel still gets every message.
func TestSlowClientIsCutAlone(t *testing.T) {
	const n = 3000
	prefix, ch := testenv.Name("slow"), testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{ch})
	waitLeader(t, r)
	// Room for the reading client to lag under -race on a busy machine
	// (it is cut if ~1,000 of these frames wait); the stalled one passes
	// the 8 MiB bound (plus its kernel buffer) well before the 3,000th.
	e := startEdge(t, "edge", prefix, func(c *edge.Config) { c.QueueSize, c.QueueBytes = 4096, 8<<20 })

	// The slow client never reads, and its small receive buffer fills soon.
	slow := dialWith(t, e, ch, smallBufferClient())
	fast := dial(t, e, ch)

	done := make(chan error, 1)
	go func() { done <- expectSequenceFrom(fast, ch, n) }()
	conn := testenv.Conn(t)
	pad := strings.Repeat("p", 7900)
	for i := range n {
		notify(t, conn, ch, strconv.Itoa(i)+" "+pad)
	}
	if err := <-done; err != nil {
		t.Fatalf("fast client: %v", err)
	}

	waitReadyz(t, e, "ready, 1 clients")
	if !strings.Contains(e.logs.String(), "slow client cut off") {
		t.Error("edge did not log the kick")
	}
	if v := metricValue(t, e, "pgrelay_edge_slow_clients_total"); v != 1 {
		t.Errorf("pgrelay_edge_slow_clients_total = %v, want 1", v)
	}
	if v := metricValue(t, e, `pgrelay_edge_disconnections_total{reason="slow",transport="ws"}`); v != 1 {
		t.Errorf("slow disconnections = %v, want 1", v)
	}
	if v := metricValue(t, e, "pgrelay_edge_messages_delivered_total"); v < n {
		t.Errorf("pgrelay_edge_messages_delivered_total = %v, want at least %d", v, n)
	}
	if v := metricValue(t, e, "pgrelay_edge_delivery_latency_seconds_count"); v < n {
		t.Errorf("delivery latency observations = %v, want at least %d", v, n)
	}
	got := 0
	for {
		if _, err := slow.next(5 * time.Second); err != nil {
			break
		}
		got++
	}
	if got >= n {
		t.Fatalf("slow client received all %d messages; it was never cut", got)
	}
	t.Logf("slow client read %d of %d messages before its connection ended", got, n)
}

func expectSequenceFrom(c *client, ch string, n int) error {
	for i := range n {
		e, err := c.next(30 * time.Second)
		if err != nil {
			return err
		}
		if want := strconv.Itoa(i) + " "; e.Channel != ch || !strings.HasPrefix(e.Payload, want) {
			return fmt.Errorf("message %d: got %q on %q", i, e.Payload[:min(10, len(e.Payload))], e.Channel)
		}
	}
	return nil
}

// smallBufferClient dials with a 4 KiB receive buffer.
func smallBufferClient() *http.Client {
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func dialWith(t *testing.T, p *proc, ch string, hc *http.Client) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+p.addr+"/ws?channel="+ch, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial %s: %v", p.name, err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return &client{t: t, ws: ws}
}

// Stopping an edge closes its clients with 1001 within the drain window.
func TestEdgeShutdownSaysGoingAway(t *testing.T) {
	e := startEdge(t, "edge", testenv.Name("drain"), func(c *edge.Config) { c.DrainTimeout = 500 * time.Millisecond })
	cs := []*client{dial(t, e, "a"), dial(t, e, "b"), dial(t, e, "a", "b")}
	errs := make(chan error, len(cs))
	for _, c := range cs {
		go func() {
			_, err := c.next(10 * time.Second)
			errs <- err
		}()
	}
	start := time.Now()
	e.stop(t)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("edge took %s to stop with a 500ms drain window", took)
	}
	for range cs {
		if err := <-errs; websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("client: got %v, want close 1001", err)
		}
	}
}

// metricValue reads one sample (name with its labels, as exposed) from p's /metrics.
func metricValue(t *testing.T, p *proc, sample string) float64 {
	t.Helper()
	resp, err := http.Get(p.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("%s /metrics has no sample %s", p.name, sample)
	return 0
}

// A peer that stops answering pings on an idle connection is dropped after
// about two ping intervals; a peer that answers stays.
func TestIdlePeerWithoutPongIsDropped(t *testing.T) {
	prefix := testenv.Name("ping")
	e := startEdge(t, "edge", prefix, func(c *edge.Config) { c.PingInterval = 200 * time.Millisecond })
	alive := dial(t, e, "a")
	go func() { _, _ = alive.next(30 * time.Second) }() // reading answers pings
	_ = dial(t, e, "a")                                 // never reads: never pongs
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if metricValue(t, e, "pgrelay_edge_clients") == 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v := metricValue(t, e, `pgrelay_edge_disconnections_total{reason="ping_timeout",transport="ws"}`); v != 1 {
		t.Fatalf("ping_timeout disconnections = %v, want 1", v)
	}
	time.Sleep(600 * time.Millisecond) // three more ping rounds
	if v := metricValue(t, e, "pgrelay_edge_clients"); v != 1 {
		t.Fatalf("clients = %v: the peer that answers pings was dropped too", v)
	}
}

// With a capped socket send buffer (EDGE_SEND_BUFFER), a client that stops
// reading is cut off once about EDGE_QUEUE_SIZE messages wait for it, not
// after the kernel has taken megabytes for it: with autotuning (up to 4 MiB
// here), the 2,000 messages of ~1 KB would all fit in its send buffer and
// it would never be cut.
func TestSendBufferCapFindsStalledClient(t *testing.T) {
	stalledClientIsCut(t, "sndbuf", "ws", func(c *edge.Config) {
		c.SendBuffer = 16 << 10
		c.QueueSize = 1000 // room for the reader's lag under -race; the stalled one passes it
	})
}

// With the defaults (EDGE_SEND_BUFFER 256 KiB, EDGE_QUEUE_SIZE 256), a
// client that stops reading is cut within ~2 MB of 1 KB messages, while
// one that reads gets them all. With the kernel's autotuning instead
// (EDGE_SEND_BUFFER=0) the stalled client would hold up to 4 MiB before the
// edge saw it, and this test fails.
func TestDefaultsFindStalledClient(t *testing.T) {
	stalledClientIsCut(t, "sndbufdef", "ws", func(c *edge.Config) {})
}

// stalledClientIsCut notifies 2,000 messages of ~1 KB to a client that never
// reads (over transport: "ws" or "sse") and a WebSocket client that does, on
// an edge configured by configure, and checks that the first was cut as slow
// and the second got everything.
func stalledClientIsCut(t *testing.T, name, transport string, configure func(*edge.Config)) {
	const n = 2000
	prefix, ch := testenv.Name(name), testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{ch})
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix, configure)

	switch transport {
	case "ws":
		dialWith(t, e, ch, smallBufferClient())
	case "sse":
		req, _ := http.NewRequest("GET", e.url("/events?channel="+url.QueryEscape(ch)), nil)
		resp, err := smallBufferClient().Do(req) // never read
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
	default:
		t.Fatalf("transport %q", transport)
	}
	fast := dial(t, e, ch)
	done := make(chan error, 1)
	go func() { done <- expectSequenceFrom(fast, ch, n) }()
	conn := testenv.Conn(t)
	pad := strings.Repeat("p", 1000)
	for i := range n {
		notify(t, conn, ch, strconv.Itoa(i)+" "+pad)
	}
	if err := <-done; err != nil {
		t.Fatalf("fast client: %v", err)
	}
	waitReadyz(t, e, "ready, 1 clients")
	if v := metricValue(t, e, `pgrelay_edge_disconnections_total{reason="slow",transport="`+transport+`"}`); v != 1 {
		t.Errorf("slow %s disconnections = %v, want 1", transport, v)
	}
}
