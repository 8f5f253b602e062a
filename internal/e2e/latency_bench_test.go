package e2e

import (
	"slices"
	"strconv"
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
