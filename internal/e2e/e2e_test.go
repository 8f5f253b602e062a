package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgrelay/pgrelay/internal/event"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// A burst of 1,000 NOTIFYs reaches each of 20 clients on two edges, all of
// them, once each, in order.
func TestBurstReachesEveryClientInOrder(t *testing.T) {
	const (
		clients = 20
		burst   = 1000
	)
	prefix, ch := testenv.Name("burst"), testenv.Name("data")
	r1 := startRelay(t, "relay-1", prefix, []string{ch})
	r2 := startRelay(t, "relay-2", prefix, []string{ch})
	waitLeader(t, r1, r2)
	edges := []*proc{startEdge(t, "edge-1", prefix), startEdge(t, "edge-2", prefix)}

	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = dial(t, edges[i%len(edges)], ch)
	}

	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i, c := range cs {
		wg.Go(func() { errs[i] = expectSequence(c, ch, burst) })
	}
	conn := testenv.Conn(t)
	for i := range burst {
		notify(t, conn, ch, strconv.Itoa(i))
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d (on %s): %v", i, edges[i%len(edges)].name, err)
		}
	}
}

// expectSequence reads payloads "0".."n-1" on ch, in order, with growing ids,
// and then nothing else before a final check frame is absent (no duplicates).
func expectSequence(c *client, ch string, n int) error {
	var lastID uint64
	for i := range n {
		e, err := c.next(30 * time.Second)
		if err != nil {
			return fmt.Errorf("after %d messages: %w", i, err)
		}
		if e.Channel != ch || e.Payload != strconv.Itoa(i) {
			return fmt.Errorf("message %d: got channel %q payload %q, want %q %q", i, e.Channel, e.Payload, ch, strconv.Itoa(i))
		}
		id, err := strconv.ParseUint(e.ID, 10, 64)
		if err != nil || id <= lastID {
			return fmt.Errorf("message %d: id %q does not grow from %d", i, e.ID, lastID)
		}
		lastID = id
	}
	return nil
}

// Two relays on one database: exactly one publishes. Stopping the leader
// hands over to the standby, and the next NOTIFY arrives, once.
func TestStandbyTakesOverWhenLeaderStops(t *testing.T) {
	prefix, ch := testenv.Name("failover"), testenv.Name("data")
	r1 := startRelay(t, "relay-1", prefix, []string{ch})
	r2 := startRelay(t, "relay-2", prefix, []string{ch})
	leader := waitLeader(t, r1, r2)
	standby := r2
	if leader == r2 {
		standby = r1
	}
	e := startEdge(t, "edge", prefix)
	c := dial(t, e, ch)
	conn := testenv.Conn(t)

	// With two relays listening, a duplicate would show up between these
	// two messages.
	notify(t, conn, ch, "one")
	notify(t, conn, ch, "two")
	expectPayloads(t, c, "one", "two")

	leader.stop(t)
	if got := waitLeader(t, standby); got != standby {
		t.Fatal("standby did not become leader")
	}
	notify(t, conn, ch, "three")
	notify(t, conn, ch, "four")
	expectPayloads(t, c, "three", "four")
	if strings.Count(standby.logs.String(), "role=leader") != 1 {
		t.Errorf("standby should have become leader exactly once; logs:\n%s", standby.logs.String())
	}
	for sample, want := range map[string]float64{
		"pgrelay_relay_leader":                        1,
		"pgrelay_relay_leadership_acquired_total":     1,
		"pgrelay_relay_messages_published_total":      2,
		"pgrelay_relay_publish_latency_seconds_count": 2,
	} {
		if v := metricValue(t, standby, sample); v != want {
			t.Errorf("standby-turned-leader %s = %v, want %v", sample, v, want)
		}
	}
}

func expectPayloads(t *testing.T, c *client, want ...string) {
	t.Helper()
	for _, w := range want {
		e, err := c.next(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %q: %v", w, err)
		}
		if e.Payload != w {
			t.Fatalf("got payload %q, want %q", e.Payload, w)
		}
	}
}

// Channel names that need quoting work end to end, and payloads arrive
// byte-identical, up to NOTIFY's limit of 7,999 bytes.
func TestNamesAndPayloadsSurviveTheTrip(t *testing.T) {
	prefix := testenv.Name("quote")
	suffix := strings.TrimPrefix(testenv.Name(""), "_")
	chans := []string{"Orders_" + suffix, "my-channel-" + suffix, "a b " + suffix, `q"uote ` + suffix}
	r := startRelay(t, "relay", prefix, chans)
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix)
	c := dial(t, e, chans...)
	conn := testenv.Conn(t)

	big := strings.Repeat("x", 7999-len("é🟢")) + "é🟢"
	payloads := []string{
		`it's "quoted" \ back\slash`,
		"line one\nline two\r\n\ttabbed",
		"emoji 🟢🔴🔵 and ünïcödé",
		"<b>html</b> & {\"json\":true}",
		"",
		big,
	}
	for _, ch := range chans {
		for _, p := range payloads {
			notify(t, conn, ch, p)
			got, err := c.next(10 * time.Second)
			if err != nil {
				t.Fatalf("channel %q payload of %d bytes: %v", ch, len(p), err)
			}
			if got.Channel != ch || got.Payload != p {
				t.Fatalf("channel %q: got %q / %d bytes, want %q / %d bytes", ch, got.Channel, len(got.Payload), ch, len(p))
			}
		}
	}
	if len(big) != 7999 {
		t.Fatalf("big payload is %d bytes, want 7999", len(big))
	}
}

// Bad /ws requests are refused before the upgrade with 400 and a reason.
func TestBadSocketRequestsGet400(t *testing.T) {
	e := startEdge(t, "edge", testenv.Name("bad"))
	cases := []struct{ name, query, reason string }{
		{"no channel", "", "missing channel"},
		{"empty channel", "channel=", "empty channel name"},
		{"one empty of two", "channel=a&channel=", "channel 2"},
		{"64 bytes", "channel=" + strings.Repeat("x", 64), "longer than 63 bytes"},
		{"too many", strings.Repeat("channel=a&", 33), "too many channels"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.url("/ws?"+tc.query), nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tc.reason) {
				t.Fatalf("got %d %q, want 400 with %q", resp.StatusCode, body, tc.reason)
			}
		})
	}
	t.Run("plain GET", func(t *testing.T) {
		resp, err := http.Get(e.url("/ws?channel=a"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("got %d, want 426", resp.StatusCode)
		}
	})
	// The longest legal name is accepted.
	c := dial(t, e, strings.Repeat("y", event.MaxChannelLen))
	c.ws.CloseNow()
}

// A client that sends data (clients only listen) is closed with 1008; the
// other clients on the edge are untouched.
func TestClientSendingDataIsClosedAlone(t *testing.T) {
	prefix, ch := testenv.Name("rude"), testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{ch})
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix)
	rude, good := dial(t, e, ch), dial(t, e, ch)
	if err := rude.ws.Write(context.Background(), 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := rude.next(5 * time.Second); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("rude client: got %v, want close 1008", err)
	}
	notify(t, testenv.Conn(t), ch, "still here")
	expectPayloads(t, good, "still here")
}
