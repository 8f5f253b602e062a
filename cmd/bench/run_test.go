package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func newDialer() *net.Dialer { return &net.Dialer{Timeout: 5 * time.Second} }

// fakeEdge stands in for relay + edge: Notify hands the notification, with
// the next id, to every client's queue, as the edge's hub does; a client
// whose queue is full is cut off. It serves /metrics with figures the
// test can predict.
type fakeEdge struct {
	mu     sync.Mutex
	subs   map[chan []byte]struct{}
	id     uint64
	queue  int
	srv    *httptest.Server
	served atomic.Uint64 // frames written
	kicked atomic.Uint64
}

func newFakeEdge(t *testing.T, queue int) *fakeEdge {
	e := &fakeEdge{subs: map[chan []byte]struct{}{}, queue: queue}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", e.serveWS)
	mux.HandleFunc("GET /metrics", e.metrics)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *fakeEdge) Notify(_ context.Context, channel, payload string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.id++
	frame, _ := json.Marshal(map[string]string{"channel": channel, "id": fmt.Sprint(e.id), "payload": payload})
	for q := range e.subs {
		select {
		case q <- frame:
		default:
			delete(e.subs, q)
			close(q)
			e.kicked.Add(1)
		}
	}
	return nil
}

func (e *fakeEdge) Close() {}

func (e *fakeEdge) serveWS(w http.ResponseWriter, r *http.Request) {
	q := make(chan []byte, e.queue)
	e.mu.Lock()
	e.subs[q] = struct{}{} // live before the socket opens, as on the edge
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		if _, ok := e.subs[q]; ok {
			delete(e.subs, q)
		}
		e.mu.Unlock()
	}()
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ctx := ws.CloseRead(context.Background())
	for {
		select {
		case f, ok := <-q:
			if !ok {
				return // kicked: CloseNow
			}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := ws.Write(wctx, websocket.MessageText, f)
			cancel()
			if err != nil {
				return
			}
			e.served.Add(1)
		case <-ctx.Done():
			return
		}
	}
}

// metrics: 1000 bytes of RSS per client, a microsecond of CPU per frame.
func (e *fakeEdge) metrics(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	n := len(e.subs)
	e.mu.Unlock()
	served := e.served.Load()
	fmt.Fprintf(w, "process_resident_memory_bytes %d\n", 10_000_000+1000*n)
	fmt.Fprintf(w, "process_cpu_seconds_total %g\n", float64(served)*1e-6)
	fmt.Fprintf(w, "pgrelay_edge_messages_delivered_total %d\n", served)
	fmt.Fprintf(w, "pgrelay_edge_slow_clients_total %d\n", e.kicked.Load())
	fmt.Fprintf(w, "pgrelay_edge_clients %d\n", n)
	fmt.Fprintf(w, "go_memstats_heap_inuse_bytes %d\n", 1_000_000+600*n)
	fmt.Fprintf(w, "go_memstats_stack_inuse_bytes %d\n", 500_000+400*n)
	fmt.Fprintf(w, "go_goroutines %d\n", 10+2*n)
}

// TestRunFakeEdge runs the whole tool against the fake edge: connecting,
// the path check, sending at a rate, counting, the slow clients and the
// figures from /metrics.
func TestRunFakeEdge(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, 1024)
	edges, err := parseEdges(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Edges: edges, DatabaseURL: "postgres://127.0.0.1/x", Channel: "bench_test",
		Clients: 30, Rate: 1000, Count: 200, Payload: 128, SlowFraction: 0.1,
		Metrics: true, Wait: 5 * time.Second,
	}
	var progress bytes.Buffer
	res, err := Run(context.Background(), cfg, env{
		dialNotifier: func(context.Context) (notifier, error) { return e, nil },
		progress:     &progress,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	c, m := res.Clients, res.Messages
	if c.Connected != 30 || c.Readers != 27 || c.Slow != 3 || c.Failed != 0 {
		t.Errorf("clients %+v", c)
	}
	if m.Sent != 200 || m.Expected != 200*27 || m.Delivered != m.Expected || m.Missing != 0 ||
		m.Duplicates != 0 || m.OutOfOrder != 0 || m.Gaps != 0 || m.Foreign != 0 || m.Malformed != 0 || m.ReadersComplete != 27 {
		t.Errorf("messages %+v", m)
	}
	if res.Latency.Samples != m.Delivered || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
		t.Errorf("latency %+v", res.Latency)
	}
	// On Linux the reactors read with the kernel's stamps. The first
	// segments after the first socket asks may lack one (stampingOn),
	// hence not "every delivery".
	if a, l := res.Arrival, res.Latency; runtime.GOOS == "linux" &&
		(a.Samples == 0 || a.Samples > l.Samples || a.P50 > l.P50 || a.Max > l.Max) {
		t.Errorf("arrival %+v, latency %+v: want samples, each arrival no later than its read", a, l)
	}
	if runtime.GOOS == "linux" && c.EpollReaders != c.Readers {
		t.Errorf("%d of %d readers on epoll sets; want all (ws://, Linux)", c.EpollReaders, c.Readers)
	}
	if s := res.Slow; s == nil || s.Clients != 3 || s.CutOff+s.StillConnected != 3 {
		t.Errorf("slow %+v", s)
	}
	ed := res.Edge
	// The path check's connection may still be open on the fake edge when
	// the "before" sample is taken: 29 or 30 connections' worth of growth,
	// for each figure the fake edge grows by per connection.
	perConn := func(got, each float64) bool { return got >= each*29/30-1e-9 && got <= each+1e-9 }
	if ed.Source != "metrics" || !perConn(ed.RSSPerConnConnect, 1000) || !perConn(ed.HeapPerConnIdle, 600) ||
		!perConn(ed.StackPerConnIdle, 400) || !perConn(ed.GoroutinesPerConn, 2) {
		t.Errorf("edge memory %+v", ed)
	}
	if ed.DeliveriesSource != "metrics" || ed.Deliveries < float64(m.Delivered) || ed.CPUPerDeliveryUS < 0.99 || ed.CPUPerDeliveryUS > 1.01 {
		t.Errorf("edge CPU %+v", ed)
	}

	var table, js bytes.Buffer
	if err := writeTable(&table, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"5400 of 5400 (100.0000%)", "0 duplicates", "slow clients", "1.00 µs per delivery", "\narrival  "} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if err := writeJSON(&js, res); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back["latency_ms"] == nil || back["arrival_ms"] == nil {
		t.Errorf("JSON: %v\n%s", err, js.String())
	}
}

// TestRunNoRelay: a channel nobody publishes on fails fast, saying why.
func TestRunNoRelay(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, 16)
	edges, _ := parseEdges(e.srv.URL)
	cfg := Config{Edges: edges, DatabaseURL: "postgres://127.0.0.1/x", Channel: "c", Clients: 1, Rate: 1, Count: 1, Payload: 128}
	silent := notifierFunc(func(context.Context, string, string) error { return nil })
	_, err := Run(context.Background(), cfg, env{dialNotifier: func(context.Context) (notifier, error) { return silent, nil }})
	if err == nil || !strings.Contains(err.Error(), "RELAY_CHANNELS") {
		t.Fatalf("err %v, want the hint about RELAY_CHANNELS", err)
	}
}

type notifierFunc func(ctx context.Context, channel, payload string) error

func (f notifierFunc) Notify(ctx context.Context, channel, payload string) error {
	return f(ctx, channel, payload)
}
func (notifierFunc) Close() {}

func TestFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-clients", "0"}, "-clients"},
		{[]string{"-rate", "0"}, "-rate"},
		{[]string{"-payload", "10"}, "-payload"},
		{[]string{"-payload", "8000"}, "-payload"},
		{[]string{"-count", "5", "-duration", "1s"}, "-count and -duration"},
		{[]string{"-count", "0"}, "-count"},
		{[]string{"-duration", "-1s"}, "-duration"},
		{[]string{"-edges", "ftp://x"}, "-edges"},
		{[]string{"-edges", "http://h/?a=b"}, "-edges"},
		{[]string{"-edges", ""}, "-edges"},
		{[]string{"-sources", "2", "-edges", "http://example.com"}, "-sources"},
		{[]string{"-sources", "300"}, "-sources"},
		{[]string{"-edge-pid", "abc"}, "-edge-pid"},
		{[]string{"-edge-pid", "1,2"}, "-edge-pid"},
		{[]string{"-slow-fraction", "1"}, "-slow-fraction"},
		{[]string{"-db", "postgres://%zz"}, "-db"},
		{[]string{"-channel", strings.Repeat("c", 64)}, "-channel"},
		{[]string{"-ramp", "-1"}, "-ramp"},
		{[]string{"-clients", "100000", "-count", "1000000"}, "-count"},
		{[]string{"-senders", "99"}, "-senders"},
		{[]string{"-redis", "http://127.0.0.1:6379"}, "-redis: redis: invalid URL scheme"},
		{[]string{"-redis", "127.0.0.1:6379"}, "-redis"},
		{[]string{"-redis", "redis://h", "-redis-prefix", ""}, "-redis-prefix: required"},
		{[]string{"-redis-prefix", "p"}, "-redis-prefix: only with -redis"},
		{[]string{"stray"}, "unexpected argument"},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-h"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "-slow-fraction") {
		t.Errorf("-h: exit %d, %q", code, errb.String())
	}
}

func TestParseEdges(t *testing.T) {
	t.Parallel()
	us, err := parseEdges("http://127.0.0.1:8080, https://edge.example.com/pgrelay/ ,ws://h:1/ws")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range us {
		got = append(got, u.String()+" "+metricsURL(u))
	}
	want := []string{
		"ws://127.0.0.1:8080/ws http://127.0.0.1:8080/metrics",
		"wss://edge.example.com/pgrelay/ws https://edge.example.com/pgrelay/metrics",
		"ws://h:1/ws http://h:1/metrics",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	cfg, err := parseFlags([]string{"-rate", "50", "-duration", "3s"}, &bytes.Buffer{})
	if err != nil || cfg.Count != 150 || !strings.HasPrefix(cfg.Channel, "bench_") {
		t.Errorf("-rate 50 -duration 3s: count %d, channel %q, %v", cfg.Count, cfg.Channel, err)
	}
}

// TestAckMode: the table says which readers delayed their ACKs.
func TestAckMode(t *testing.T) {
	for _, tc := range []struct {
		quick          bool
		readers, epoll int
		want           string
	}{
		{false, 10, 10, "delayed"},
		{true, 10, 10, "at once"},
		{false, 10, 0, "at once"},
		{false, 10, 7, "delayed on 7, at once on 3"},
	} {
		if got := ackMode(tc.quick, tc.readers, tc.epoll); got != tc.want {
			t.Errorf("ackMode(%v, %d, %d) = %q, want %q", tc.quick, tc.readers, tc.epoll, got, tc.want)
		}
	}
}
