package wsconn

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgrelay/pgrelay/internal/event"
	"github.com/pgrelay/pgrelay/internal/hub"
)

// memBroker serves the handler from a hub alone: the Redis side is tested
// elsewhere, here only the client side of the edge is under test.
type memBroker struct{ h *hub.Hub }

func (b memBroker) Subscribe(_ context.Context, chans []string, sink hub.Sink) (*hub.Subscriber, error) {
	return b.h.Subscribe(chans, sink), nil
}
func (b memBroker) Unsubscribe(s *hub.Subscriber) { b.h.Unsubscribe(s) }
func (b memBroker) Position(string) uint64        { return 0 }
func (b memBroker) Replay(context.Context, string, uint64, func(*hub.Message) error) error {
	return nil
}

// FuzzParseChannels: no query makes ParseChannels or ParseSince panic, and
// what they accept is valid.
func FuzzParseChannels(f *testing.F) {
	for _, s := range []string{"", "channel=a", "channel=a&channel=b&since=a:1", "channel=&since=x", "channel=%ff%00&since=%3A1", strings.Repeat("channel=x&", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		chans, err := ParseChannels(q, 32)
		if err != nil {
			return
		}
		for _, ch := range chans {
			if event.ValidateChannel(ch) != nil {
				t.Fatalf("accepted invalid channel %q", ch)
			}
		}
		pos, err := event.ParseSince(chans, q["since"])
		if err != nil {
			return
		}
		for ch := range pos {
			if !contains(chans, ch) {
				t.Fatalf("position for unasked channel %q", ch)
			}
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var (
	fuzzOnce   sync.Once
	fuzzServer *httptest.Server
	fuzzHub    *hub.Hub
)

// FuzzClientFrames: whatever bytes a client sends after the upgrade, the
// edge closes that client (or ignores a valid ping) and never crashes; a
// healthy client beside it still gets its message.
func FuzzClientFrames(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1}) // masked text "hello"
	f.Add([]byte{0x89, 0x80, 0, 0, 0, 0})                                              // masked ping
	f.Add([]byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8})                                  // masked close 1000
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4})                   // 1 MiB binary header
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzOnce.Do(func() {
			fuzzHub = hub.New(hub.Options{})
			h := New(Options{Broker: memBroker{fuzzHub}, PingInterval: time.Minute})
			fuzzServer = httptest.NewServer(h)
		})
		addr := strings.TrimPrefix(fuzzServer.URL, "http://")
		ch := fmt.Sprintf("c%d", time.Now().UnixNano())

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		healthy, _, err := websocket.Dial(ctx, fuzzServer.URL+"?channel="+ch, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer healthy.CloseNow()

		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		fmt.Fprintf(nc, "GET /?channel=%s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", ch, addr)
		br := bufio.NewReader(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		nc.Write(data)
		// Read whatever the edge answers until it closes or stays quiet.
		nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		io.Copy(io.Discard, br)

		fuzzHub.Publish(&hub.Message{Channel: ch, ID: 1, Frame: []byte(`{"channel":"` + ch + `","id":"1","payload":"x"}`)})
		if _, _, err := healthy.Read(ctx); err != nil {
			t.Fatalf("healthy client after %x: %v", data, err)
		}
	})
}
