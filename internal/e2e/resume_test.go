package e2e

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/relay"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// A client leaves mid-stream, comes back to the other edge with its last id,
// and ends with every message exactly once, in order.
func TestResumeOnOtherEdge(t *testing.T) {
	prefix, ch := testenv.Name("resume"), testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{ch})
	waitLeader(t, r)
	e1, e2 := startEdge(t, "edge-1", prefix), startEdge(t, "edge-2", prefix)
	conn := testenv.Conn(t)

	c := dial(t, e1, ch)
	for i := range 50 {
		notify(t, conn, ch, strconv.Itoa(i))
	}
	var last frame
	for i := range 20 {
		f, err := c.next(10 * time.Second)
		if err != nil || f.Payload != strconv.Itoa(i) {
			t.Fatalf("message %d: %+v, %v", i, f, err)
		}
		last = f
	}
	c.ws.CloseNow() // mid-stream: 30 sent messages unread

	for i := 50; i < 100; i++ {
		notify(t, conn, ch, strconv.Itoa(i))
	}
	c2 := dialQuery(t, e2, "channel="+url.QueryEscape(ch)+"&since="+url.QueryEscape(ch+":"+last.ID))
	prev, _ := strconv.ParseUint(last.ID, 10, 64)
	for i := 20; i < 100; i++ {
		f, err := c2.next(10 * time.Second)
		if err != nil {
			t.Fatalf("after resume, message %d: %v", i, err)
		}
		id, _ := strconv.ParseUint(f.ID, 10, 64)
		if f.Payload != strconv.Itoa(i) || id != prev+1 {
			t.Fatalf("after resume, message %d: got payload %q id %d, want %q id %d", i, f.Payload, id, strconv.Itoa(i), prev+1)
		}
		prev = id
	}
	// Nothing after the last one: a sentinel arrives next, not a duplicate.
	notify(t, conn, ch, "sentinel")
	expectPayloads(t, c2, "sentinel")
}

// A position older than the history gets a reset frame, then what the
// history still holds, then the live stream.
func TestOldPositionGetsReset(t *testing.T) {
	prefix, ch := testenv.Name("reset"), testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{ch}, func(c *relay.Config) { c.HistorySize = 5 })
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix)
	conn := testenv.Conn(t)

	c := dial(t, e, ch)
	notify(t, conn, ch, "first")
	first, err := c.next(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		notify(t, conn, ch, strconv.Itoa(i))
	}
	expectPayloads(t, c, "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19")

	// first's successor and 14 more fell out of the 5-message history.
	old := dialQuery(t, e, "channel="+url.QueryEscape(ch)+"&since="+first.ID)
	f, err := old.nextFrame(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	firstID, _ := strconv.ParseUint(first.ID, 10, 64)
	if want := strconv.FormatUint(firstID+15, 10); f.Type != "reset" || f.Channel != ch || f.ID != want {
		t.Fatalf("got %+v, want a reset of %q at id %s", f, ch, want)
	}
	expectPayloads(t, old, "15", "16", "17", "18", "19")
	notify(t, conn, ch, "live")
	expectPayloads(t, old, "live")
}

// A client resuming from the newest id gets nothing twice.
func TestResumeFromNewestGetsOnlyNew(t *testing.T) {
	prefix, ch := testenv.Name("uptodate"), testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{ch})
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix)
	conn := testenv.Conn(t)
	c := dial(t, e, ch)
	notify(t, conn, ch, "a")
	a, err := c.next(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c2 := dialQuery(t, e, "channel="+url.QueryEscape(ch)+"&since="+url.QueryEscape(ch+":"+a.ID))
	notify(t, conn, ch, "b")
	expectPayloads(t, c2, "b")
}

// A client that joins a channel with a past learns its position at once, so
// it can resume even if it leaves before any message arrives.
func TestPositionFrameLetsAQuietClientResume(t *testing.T) {
	prefix, ch := testenv.Name("position"), testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{ch})
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix)
	conn := testenv.Conn(t)
	first := dial(t, e, ch)
	notify(t, conn, ch, "before")
	before, err := first.next(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}

	quiet := dial(t, e, ch)
	f, err := quiet.nextFrame(10 * time.Second)
	if err != nil || f.Type != "position" || f.Channel != ch || f.ID != before.ID {
		t.Fatalf("first frame %+v (%v), want position %s of %q", f, err, before.ID, ch)
	}
	quiet.ws.CloseNow()
	notify(t, conn, ch, "while away")
	back := dialQuery(t, e, "channel="+url.QueryEscape(ch)+"&since="+f.ID)
	expectPayloads(t, back, "while away")
}

// The edge counts each frame it writes once (pgrelay_edge_messages_delivered_total),
// also when a resuming client's replay and the live messages held during
// it overlap: the edge writes the overlap once, and counts it once.
func TestDeliveredCountsEachFrameOnce(t *testing.T) {
	prefix, ch := testenv.Name("count"), testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{ch})
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix)
	conn := testenv.Conn(t)

	first := dial(t, e, ch)
	notify(t, conn, ch, "start")
	start, err := first.next(10 * time.Second)
	if err != nil || start.Payload != "start" {
		t.Fatalf("first message: %+v, %v", start, err)
	}
	first.ws.CloseNow()
	waitReadyz(t, e, "ready, 0 clients")
	before := metricValue(t, e, "pgrelay_edge_messages_delivered_total")

	// Notifications keep coming while the client resumes, so that its
	// replay reads some of what also reaches it live.
	sender := testenv.Conn(t)
	sent := make(chan error, 1)
	go func() {
		for i := range 400 {
			if _, err := sender.Exec(context.Background(), "SELECT pg_notify($1, $2)", ch, strconv.Itoa(i)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	time.Sleep(100 * time.Millisecond)
	c := dialQuery(t, e, "channel="+url.QueryEscape(ch)+"&since="+url.QueryEscape(ch+":"+start.ID))
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	notify(t, conn, ch, "sentinel")
	frames, messages := 0, 0
	for {
		f, err := c.nextFrame(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d frames: %v", frames, err)
		}
		frames++
		if f.Type != "" {
			continue
		}
		if f.Payload == "sentinel" {
			break
		}
		if f.Payload != strconv.Itoa(messages) {
			t.Fatalf("message %d: payload %q", messages, f.Payload)
		}
		messages++
	}
	if messages != 400 {
		t.Fatalf("got %d messages before the sentinel, want 400", messages)
	}
	if got := metricValue(t, e, "pgrelay_edge_messages_delivered_total") - before; got != float64(frames) {
		t.Errorf("delivered counter grew by %v, the client got %d frames", got, frames)
	}
}
