package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/edge"
	"github.com/pgrelay/pgrelay/internal/relay"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// Redis restarts (keeping its data) while a stream flows: every edge
// resubscribes and heals from the history, and every client sees consecutive
// ids with no gap and no duplicate. Notifications sent while no relay could
// publish are lost at the source (notify mode): they are counted, not hidden.
func TestRedisRestartHealsEdges(t *testing.T) {
	rs := testenv.StartRedis(t)
	prefix, ch := testenv.Name("restart"), testenv.Name("data")
	useRedis := func(c *relay.Config) { c.RedisURL = rs.URL(); c.PingInterval = time.Second }
	r1 := startRelay(t, "relay-1", prefix, []string{ch}, useRedis)
	r2 := startRelay(t, "relay-2", prefix, []string{ch}, useRedis)
	waitLeader(t, r1, r2)
	edgeRedis := func(c *edge.Config) { c.RedisURL = rs.URL() }
	edges := []*proc{startEdge(t, "edge-1", prefix, edgeRedis), startEdge(t, "edge-2", prefix, edgeRedis)}
	var clients []*client
	for i := range 6 {
		clients = append(clients, dial(t, edges[i%2], ch))
	}

	// Readers record every frame until the sentinel. A reader that is cut
	// off (a healed gap can overflow its queue) resumes from its last id, as
	// the browser client does.
	type result struct {
		payloads []string
		resumes  int
		err      error
	}
	results := make([]result, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			var prev uint64
			for {
				f, err := c.next(30 * time.Second)
				// 1013 when the edge could say why; EOF when it abandoned a
				// write to the socket of a client that fell behind.
				if err != nil && !errors.Is(err, context.DeadlineExceeded) && results[i].resumes < 20 {
					results[i].resumes++
					c = dialQuery(t, edges[i%2], "channel="+url.QueryEscape(ch)+"&since="+strconv.FormatUint(prev, 10))
					continue
				}
				if err != nil {
					results[i].err = err
					return
				}
				id, _ := strconv.ParseUint(f.ID, 10, 64)
				if prev != 0 && id != prev+1 {
					results[i].err = fmt.Errorf("id %d after %d: a gap or a duplicate", id, prev)
					return
				}
				prev = id
				if f.Payload == "sentinel" {
					return
				}
				results[i].payloads = append(results[i].payloads, f.Payload)
			}
		})
	}

	conn := testenv.Conn(t)
	ctx, stop := context.WithCancel(context.Background())
	sent := make(chan int, 1)
	go func() {
		n := 0
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			<-tick.C
			if _, err := conn.Exec(context.Background(), "SELECT pg_notify($1, $2)", ch, strconv.Itoa(n)); err != nil {
				break
			}
			n++
		}
		sent <- n
	}()

	time.Sleep(500 * time.Millisecond) // let the stream flow first
	rs.Stop(true)
	time.Sleep(time.Second) // Redis down for a while
	rs.Start()
	for _, e := range edges {
		waitReadyz(t, e, "ready")
	}
	waitLeader(t, r1, r2)
	time.Sleep(500 * time.Millisecond) // and flowing again
	stop()
	n := <-sent
	notify(t, conn, ch, "sentinel")
	wg.Wait()

	for i, res := range results {
		if res.err != nil {
			t.Fatalf("client %d: %v", i, res.err)
		}
		if len(res.payloads) != len(results[0].payloads) {
			t.Errorf("client %d got %d messages, client 0 got %d", i, len(res.payloads), len(results[0].payloads))
		}
	}
	resumes := 0
	for _, res := range results {
		resumes += res.resumes
	}
	t.Logf("sent %d notifications at 200/s; every client received %d, in order, without gaps or duplicates (%d resumes after being cut off); %d fell in the gap while no relay could publish",
		n, len(results[0].payloads), resumes, n-len(results[0].payloads))
}
