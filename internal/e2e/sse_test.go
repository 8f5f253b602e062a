package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/edge"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, kind string
	data     frame
}

// sseClient reads an event stream the way curl or EventSource would.
type sseClient struct {
	resp   *http.Response
	events chan sseEvent
	errc   chan error
}

func openSSE(t *testing.T, p *proc, query, lastEventID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url("/events?"+query), nil)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("/events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{resp: resp, events: make(chan sseEvent, 1000), errc: make(chan error, 1)}
	go c.read()
	t.Cleanup(func() { resp.Body.Close() })
	return c
}

func (c *sseClient) read() {
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev sseEvent
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if len(data) > 0 {
				if err := json.Unmarshal([]byte(strings.Join(data, "\n")), &ev.data); err != nil {
					c.errc <- fmt.Errorf("event data %q: %w", data, err)
					return
				}
				c.events <- ev
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry:"):
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.kind = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[6:])
		default:
			c.errc <- fmt.Errorf("unexpected line %q", line)
			return
		}
	}
	c.errc <- fmt.Errorf("stream ended: %v", sc.Err())
}

func (c *sseClient) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev := <-c.events:
		return ev
	case err := <-c.errc:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sseEvent{}
}

// The SSE fallback carries the same messages and ids, and a client that
// reconnects with Last-Event-ID gets what it missed on every channel, once.
func TestSSEResumesWithLastEventID(t *testing.T) {
	prefix := testenv.Name("sse")
	a, b := testenv.Name("a"), testenv.Name("b:x y")
	r := startRelay(t, "relay", prefix, []string{a, b})
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix)
	conn := testenv.Conn(t)
	query := "channel=" + url.QueryEscape(a) + "&channel=" + url.QueryEscape(b)

	c := openSSE(t, e, query, "")
	notify(t, conn, a, "a1")
	notify(t, conn, b, "b1")
	ev1, ev2 := c.next(t), c.next(t)
	if ev1.kind != "message" || ev1.data.Payload != "a1" || ev2.data.Payload != "b1" {
		t.Fatalf("got %+v, %+v", ev1, ev2)
	}
	c.resp.Body.Close()

	notify(t, conn, a, "a2")
	notify(t, conn, b, "b2")
	notify(t, conn, a, "a3")
	c2 := openSSE(t, e, query, ev2.id)
	got := map[string][]string{}
	var lastID = map[string]uint64{}
	for range 3 {
		ev := c2.next(t)
		id, _ := strconv.ParseUint(ev.data.ID, 10, 64)
		if prev := lastID[ev.data.Channel]; prev != 0 && id != prev+1 {
			t.Fatalf("channel %q: id %d after %d", ev.data.Channel, id, prev)
		}
		lastID[ev.data.Channel] = id
		got[ev.data.Channel] = append(got[ev.data.Channel], ev.data.Payload)
	}
	if strings.Join(got[a], ",") != "a2,a3" || strings.Join(got[b], ",") != "b2" {
		t.Fatalf("resumed with %v, want a: a2,a3 and b: b2", got)
	}
	notify(t, conn, b, "live")
	if ev := c2.next(t); ev.data.Payload != "live" {
		t.Fatalf("got %+v, want the live message", ev)
	}
}

// An SSE client that stops reading is cut off as slow with the default
// EDGE_SEND_BUFFER, as a WebSocket client is (TestDefaultsFindStalledClient):
// with the kernel's autotuning its socket would take the 2,000 messages of
// ~1 KB and the edge would never see it fall behind. Its stream ends as
// soon as it is kicked, not after EDGE_WRITE_TIMEOUT, and as "slow".
func TestSSEStalledClientIsCut(t *testing.T) {
	stalledClientIsCut(t, "ssestall", "sse", func(c *edge.Config) {})
}
