package e2e

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/testenv"
)

// BenchmarkNotifyToClient measures one notification's trip: from just before
// pg_notify is sent until one WebSocket client has read the frame, through a
// relay, Redis and an edge, all on this machine. It reports the median and
// the 99th percentile; ns/op includes the client's own round trip.
//
//	go test -run '^$' -bench NotifyToClient -benchtime 100x ./internal/e2e/
func BenchmarkNotifyToClient(b *testing.B) {
	prefix, ch := testenv.Name("latency"), testenv.Name("data")
	r := startRelay(b, "relay", prefix, []string{ch})
	waitLeader(b, r)
	e := startEdge(b, "edge", prefix)
	c := dial(b, e, ch)
	conn := testenv.Conn(b)

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		p := strconv.Itoa(i)
		t0 := time.Now()
		notify(b, conn, ch, p)
		got, err := c.next(10 * time.Second)
		if err != nil || got.Payload != p {
			b.Fatalf("message %d: got %q, %v", i, got.Payload, err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkCatchUp1000 measures how long a client that missed 1,000
// messages takes to get them all: from dialing with its last id until it has
// read the 1,000th from the history replay.
//
//	go test -run '^$' -bench CatchUp1000 -benchtime 20x ./internal/e2e/
func BenchmarkCatchUp1000(b *testing.B) {
	prefix, ch := testenv.Name("catchup"), testenv.Name("data")
	r := startRelay(b, "relay", prefix, []string{ch})
	waitLeader(b, r)
	e := startEdge(b, "edge", prefix)
	conn := testenv.Conn(b)
	c := dial(b, e, ch)
	notify(b, conn, ch, "start")
	start, err := c.next(10 * time.Second)
	if err != nil {
		b.Fatal(err)
	}
	payload := strings.Repeat("x", 128)
	for range 1000 {
		notify(b, conn, ch, payload)
	}
	for range 1000 {
		if _, err := c.next(10 * time.Second); err != nil {
			b.Fatal(err)
		}
	}
	c.ws.CloseNow()

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		cc := dialQuery(b, e, "channel="+url.QueryEscape(ch)+"&since="+start.ID)
		for i := range 1000 {
			if f, err := cc.next(10 * time.Second); err != nil || f.Payload != payload {
				b.Fatalf("message %d: %+v %v", i, f, err)
			}
		}
		lat = append(lat, time.Since(t0))
		cc.ws.CloseNow()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
