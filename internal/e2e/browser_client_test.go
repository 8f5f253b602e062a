package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pgrelay/pgrelay/internal/relay"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// The demo page, through web/pgrelay.js, survives the loss of its edge: it is
// served by edge 1 behind a proxy, edge 1 shuts down (1001) while
// notifications flow, the proxy sends the page's next connection to edge 2
// and holds it until more notifications have gone by, and the page resumes
// there with since=: its log holds every payload exactly once, in order, with
// consecutive ids.
func TestBrowserClientResumesOnOtherEdge(t *testing.T) {
	const before, during, after = 10, 25, 5 // 40 in all, under the page's 50-entry log
	const n = before + during + after
	// The channel holds a colon: since=CHANNEL:ID is split at the last one.
	prefix, ch := testenv.Name("browserresume"), testenv.Name("data:x")
	r := startRelay(t, "relay", prefix, []string{ch})
	waitLeader(t, r)
	e1, e2 := startEdge(t, "edge-1", prefix), startEdge(t, "edge-2", prefix)
	px := startSwitchProxy(t, e1.addr)
	conn := testenv.Conn(t)

	b := startBrowser(t)
	b.open(px.url("/?channel=" + url.QueryEscape(ch)))
	b.waitFor(`#state[data-state="connected"]`, "the page connects")
	if s := readClientPage(b); s.SocketURL != "ws://"+px.addr()+"/ws?channel="+url.QueryEscape(ch) {
		t.Errorf("#url shows %q", s.SocketURL)
	}

	payload := func(i int) string { return fmt.Sprintf("m%02d", i) }
	for i := range before {
		notify(t, conn, ch, payload(i))
	}
	waitClientPage(t, b, fmt.Sprintf("%d messages", before), func(s clientPage) bool { return len(s.messages()) >= before })

	// Notifications flow while edge 1 shuts down.
	sent := make(chan error, 1)
	halfway := make(chan struct{})
	go func() {
		defer close(sent)
		for i := before; i < before+during; i++ {
			if i == before+during/2 {
				close(halfway)
			}
			if _, err := conn.Exec(context.Background(), "SELECT pg_notify($1, $2)", ch, payload(i)); err != nil {
				sent <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	<-halfway
	px.setTarget(e2.addr)
	px.hold()
	e1.stop(t) // returns once its clients are closed
	if err := <-sent; err != nil {
		t.Fatalf("pg_notify: %v", err)
	}
	// The page is between edges now: these come from edge 2's replay.
	for i := before + during; i < n; i++ {
		notify(t, conn, ch, payload(i))
	}
	px.release()

	s := waitClientPage(t, b, fmt.Sprintf("all %d messages, on edge 2", n), func(s clientPage) bool {
		return len(s.messages()) >= n && s.State == "connected" && len(s.Events) > 0 &&
			strings.Contains(s.Events[0], "since=")
	})
	t.Logf("the page's connection events, newest first: %q", s.Events)
	checkConsecutive(t, s, ch, payload, 0, n)
	if px.dialed(e2.addr) == 0 {
		t.Errorf("no connection reached edge 2\nthe page shows: %s", s)
	}
	if !s.hasEvent("closed 1001") {
		t.Errorf("the log shows no close with 1001 from edge 1\nthe page shows: %s", s)
	}
	if !strings.Contains(s.Events[0], "since="+url.QueryEscape(ch+":")) {
		t.Errorf("the page did not reconnect with since=%s:ID\nthe page shows: %s", ch, s)
	}
}

// A page that misses more than the history while its connection is down gets
// a reset, which the demo shows as a control entry, then what the history
// still holds and the live stream; its state recovers to connected.
func TestBrowserClientGetsReset(t *testing.T) {
	prefix, ch := testenv.Name("browserreset"), testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{ch}, func(c *relay.Config) { c.HistorySize = 5 })
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix)
	px := startSwitchProxy(t, e.addr)
	conn := testenv.Conn(t)
	watcher := dial(t, e, ch) // tells when the edge has seen every message

	b := startBrowser(t)
	b.open(px.url("/?channel=" + url.QueryEscape(ch)))
	b.waitFor(`#state[data-state="connected"]`, "the page connects")
	notify(t, conn, ch, "first")
	expectPayloads(t, watcher, "first")
	s := waitClientPage(t, b, "the first message", func(s clientPage) bool { return len(s.messages()) == 1 })
	first, _ := strconv.ParseUint(s.messages()[0].ID, 10, 64)

	// The page loses its connection, and its next attempt waits in the proxy
	// while 20 messages go by: 15 of them fall out of the 5-message history.
	px.pause()
	b.waitFor(`#state[data-state="reconnecting"]`, "the page sees its connection cut")
	want := make([]string, 20)
	for i := range want {
		want[i] = strconv.Itoa(i)
		notify(t, conn, ch, want[i])
	}
	expectPayloads(t, watcher, want...)
	px.release()

	s = waitClientPage(t, b, "a reset, then the last 5 messages", func(s clientPage) bool {
		return len(s.messages()) >= 6 && s.State == "connected"
	})
	got := s.oldestFirst()
	if len(got) != 7 {
		t.Fatalf("the log has %d entries, want first, a reset and 5 messages\nthe page shows: %s", len(got), s)
	}
	resetID := strconv.FormatUint(first+15, 10)
	var reset struct{ Type, Channel, ID string }
	if err := json.Unmarshal([]byte(got[1].Payload), &reset); err != nil || got[1].Type != "reset" ||
		reset.Type != "reset" || reset.Channel != ch || reset.ID != resetID {
		t.Errorf("second entry: %+v (%v); want a reset of %q at id %s\nthe page shows: %s", got[1], err, ch, resetID, s)
	}
	for i, m := range got[2:] {
		if id := strconv.FormatUint(first+16+uint64(i), 10); m.Type != "" || m.Payload != want[15+i] || m.ID != id {
			t.Errorf("entry %d: %+v, want payload %q id %s\nthe page shows: %s", i+2, m, want[15+i], id, s)
		}
	}

	// The stream goes on after the reset.
	notify(t, conn, ch, "live")
	s = waitClientPage(t, b, "a live message after the reset", func(s clientPage) bool { return len(s.messages()) == 7 })
	if m := s.messages()[0]; m.Payload != "live" || m.ID != strconv.FormatUint(first+21, 10) {
		t.Errorf("newest entry %+v, want payload %q id %d", m, "live", first+21)
	}
	b.screenshot()
}

// checkConsecutive checks that the page's messages, oldest first, are
// payload(from)..payload(to-1) on ch with consecutive ids.
func checkConsecutive(t *testing.T, s clientPage, ch string, payload func(int) string, from, to int) {
	t.Helper()
	msgs := s.messages()
	slices.Reverse(msgs)
	if len(msgs) != to-from {
		t.Errorf("the log has %d messages, want %d\nthe page shows: %s", len(msgs), to-from, s)
	}
	var prev uint64
	for i, m := range msgs {
		id, err := strconv.ParseUint(m.ID, 10, 64)
		if m.Channel != ch || m.Payload != payload(from+i) || err != nil || (i > 0 && id != prev+1) {
			t.Fatalf("message %d: channel %q id %q payload %q; want channel %q, id %d, payload %q\nthe page shows: %s",
				i, m.Channel, m.ID, m.Payload, ch, prev+1, payload(from+i), s)
		}
		prev = id
	}
}

// clientPage is the demo page's log, read from its DOM hooks: entries (class
// "entry": messages, and control frames with data-type) and events (class
// "event": connection state changes), newest first.
type clientPage struct {
	State     string       `json:"state"`
	SocketURL string       `json:"socketURL"`
	Entries   []clientItem `json:"entries"`
	Events    []string     `json:"events"`
	Err       string       `json:"-"`
}

type clientItem struct {
	Type    string `json:"type"` // data-type of a control entry; "" for a message
	Channel string `json:"channel"`
	ID      string `json:"id"`
	Payload string `json:"payload"`
}

const clientPageJS = `(() => {
	const text = (el) => (el ? el.textContent : '');
	const state = document.getElementById('state');
	return {
		state: state ? state.dataset.state ?? '' : '',
		socketURL: text(document.getElementById('url')),
		entries: [...document.querySelectorAll('#log li.entry')].map((li) => ({
			type: li.dataset.type ?? '',
			channel: li.dataset.channel ?? '',
			id: li.dataset.id ?? '',
			payload: text(li.querySelector('.payload')),
		})),
		events: [...document.querySelectorAll('#log li.event')].map(text),
	};
})()`

func readClientPage(b *browser) clientPage {
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[clientPage](clientPageJS))
	if err != nil {
		return clientPage{Err: err.Error()}
	}
	return s
}

// waitClientPage polls the page until cond holds, and returns what it shows.
func waitClientPage(t *testing.T, b *browser, what string, cond func(clientPage) bool) clientPage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := readClientPage(b)
		if s.Err == "" && cond(s) {
			return s
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			t.Fatalf("waiting for %s: the page shows: %s", what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// messages returns the message entries, newest first.
func (s clientPage) messages() []clientItem {
	var m []clientItem
	for _, e := range s.Entries {
		if e.Type == "" {
			m = append(m, e)
		}
	}
	return m
}

// oldestFirst returns all entries, oldest first.
func (s clientPage) oldestFirst() []clientItem {
	e := slices.Clone(s.Entries)
	slices.Reverse(e)
	return e
}

func (s clientPage) hasEvent(sub string) bool {
	return slices.ContainsFunc(s.Events, func(e string) bool { return strings.Contains(e, sub) })
}

func (s clientPage) String() string {
	if s.Err != "" {
		return "(cannot read the page: " + s.Err + ")"
	}
	var sb strings.Builder
	sb.WriteString("state=" + strconv.Quote(s.State) + " url=" + strconv.Quote(s.SocketURL) + "\n  log, newest first:")
	for _, e := range s.Entries {
		fmt.Fprintf(&sb, "\n    type=%q channel=%q id=%q payload=%q", e.Type, e.Channel, e.ID, e.Payload)
	}
	sb.WriteString("\n  events, newest first:")
	for _, e := range s.Events {
		sb.WriteString("\n    " + e)
	}
	return sb.String()
}

// switchProxy forwards TCP connections to a backend that the test can
// change, so that a page keeps its origin while its edge changes. It can hold
// new connections until released, and cut the open ones.
type switchProxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	target  string
	counts  map[string]int        // connections forwarded, by backend
	conns   map[net.Conn]struct{} // both ends of every forwarded connection
	resumed chan struct{}         // nil unless holding; closed on release
	closed  chan struct{}
}

func startSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	p := &switchProxy{ln: listen(t), target: target, counts: map[string]int{},
		conns: map[net.Conn]struct{}{}, closed: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		close(p.closed)
		p.ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *switchProxy) addr() string           { return p.ln.Addr().String() }
func (p *switchProxy) url(path string) string { return "http://" + p.addr() + path }

func (p *switchProxy) setTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

func (p *switchProxy) dialed(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[addr]
}

// hold makes new connections wait until release.
func (p *switchProxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resumed == nil {
		p.resumed = make(chan struct{})
	}
}

// pause cuts every connection and holds new ones until release.
func (p *switchProxy) pause() {
	p.hold()
	p.cut()
}

func (p *switchProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resumed != nil {
		close(p.resumed)
		p.resumed = nil
	}
}

// cut closes every forwarded connection, on both sides.
func (p *switchProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *switchProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(c)
		}()
	}
}

func (p *switchProxy) forward(c net.Conn) {
	defer c.Close()
	p.mu.Lock()
	wait := p.resumed
	p.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-p.closed:
			return
		}
	}
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	p.mu.Lock()
	select {
	case <-p.closed:
		p.mu.Unlock()
		return
	default:
	}
	p.counts[target]++
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.conns, up)
		p.mu.Unlock()
	}()

	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // until either side ends or is cut
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}
