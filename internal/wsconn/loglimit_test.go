package wsconn

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pgrelay/pgrelay/internal/hub"
)

// TestLogLimiter: one line per key a second, and the next line says how
// many were held back meanwhile; keys do not share their allowance.
func TestLogLimiter(t *testing.T) {
	var l logLimiter
	if n, ok := l.allow("a"); !ok || n != 0 {
		t.Fatalf("first: %d, %v", n, ok)
	}
	for range 3 {
		if _, ok := l.allow("a"); ok {
			t.Fatal("a second line within the second was let through")
		}
	}
	if _, ok := l.allow("b"); !ok {
		t.Fatal("another key was held back")
	}
	l.last["a"] = time.Now().Add(-time.Second) // a second later
	if n, ok := l.allow("a"); !ok || n != 3 {
		t.Fatalf("a second later: %d, %v; want 3, true", n, ok)
	}
}

// downBroker cannot subscribe anyone, as while Redis is down.
type downBroker struct{ memBroker }

func (downBroker) Subscribe(context.Context, []string, hub.Sink) (*hub.Subscriber, error) {
	return nil, errors.New("redis subscription down")
}

// TestSubscribeFailuresLogOncePerSecond: while no client can be
// subscribed, every one is refused with a 503, but the log gets one
// "subscribe failed" line a second, not one per client.
func TestSubscribeFailuresLogOncePerSecond(t *testing.T) {
	// A file, written by the handlers' goroutines and read once they are done.
	logs, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	h := New(Options{Broker: downBroker{}, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	srv := httptest.NewServer(h)
	defer srv.Close()
	const tries = 20
	start := time.Now()
	for range tries {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, resp, err := websocket.Dial(ctx, srv.URL+"?channel=c", nil)
		cancel()
		if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("dial: %v, %v; want a 503", err, resp)
		}
	}
	seconds := int(time.Since(start)/time.Second) + 1
	text, err := os.ReadFile(logs.Name())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(text), `"msg":"subscribe failed"`); n < 1 || n > seconds {
		t.Errorf("%d subscribe-failed lines for %d refusals in under %d s; want 1 to %d", n, tries, seconds, seconds)
	}
	if n := strings.Count(string(text), `"msg":"client refused"`); n < 1 || n > seconds {
		t.Errorf("%d client-refused lines for %d refusals in under %d s; want 1 to %d", n, tries, seconds, seconds)
	}
}
