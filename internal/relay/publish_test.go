package relay

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/metrics"
	"github.com/pgrelay/pgrelay/internal/pglisten"
	"github.com/pgrelay/pgrelay/internal/redisbus"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
)

// scrape returns the relay's unlabelled metrics by name.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return parseMetrics(t, resp.Body)
}

func parseMetrics(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			m[name] = v
		}
	}
	return m
}

// A burst of notifications on two channels, sent in one transaction, is
// published in order with consecutive ids per channel, and every message is
// counted and timed once.
func TestRunPublishesABurstInOrder(t *testing.T) {
	t.Parallel()
	const n = 3000
	cfg := DefaultConfig()
	cfg.DatabaseURL = testenv.DatabaseURL(t)
	cfg.RedisURL = testenv.RedisURL(t)
	cfg.Prefix = testenv.Name("relay")
	cfg.HistorySize = n
	a, b := testenv.Name("burst"), testenv.Name("burst")
	cfg.Channels = []string{a, b}
	addr := run(t, cfg)
	eventually(t, "the relay to lead", func() bool { return readyz(addr) == "leader" })

	conn := testenv.Conn(t)
	if _, err := conn.Exec(context.Background(),
		"SELECT pg_notify(CASE WHEN g % 3 = 0 THEN $2 ELSE $1 END, g::text) FROM generate_series(1, $3) g", a, b, n); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every message to be published", func() bool {
		return scrape(t, addr)["pgrelay_relay_messages_published_total"] == n
	})
	hist := redisbus.NewHistory(testenv.Redis(t), cfg.Prefix)
	for _, ch := range []string{a, b} {
		var want []string
		for g := 1; g <= n; g++ {
			if (g%3 == 0) == (ch == b) {
				want = append(want, strconv.Itoa(g))
			}
		}
		pg, err := hist.After(context.Background(), ch, 0, n)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i, e := range pg.Events {
			got = append(got, e.Payload)
			if i > 0 {
				prev, _ := strconv.ParseUint(pg.Events[i-1].ID, 10, 64)
				if id, _ := strconv.ParseUint(e.ID, 10, 64); id != prev+1 {
					t.Errorf("%s: id %d follows %d", ch, id, prev)
					break
				}
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: published %d payloads, not the %d sent in order", ch, len(got), len(want))
		}
	}
	m := scrape(t, addr)
	for name, want := range map[string]float64{
		"pgrelay_relay_notifications_received_total":  n,
		"pgrelay_relay_messages_published_total":      n,
		"pgrelay_relay_publish_latency_seconds_count": n,
		"pgrelay_relay_publish_failures_total":        0,
	} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
}

// The notify source's Handle counts and times each message on its own: a message Redis
// refuses is a failure, the others of its batch are published, and their
// latency runs from their arrival, not from the start of the batch.
func TestPublishBatchCountsEachMessage(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	prefix := testenv.Name("relay")
	// A counter of the wrong type makes the publish script fail for "bad".
	if err := rdb.HSet(context.Background(), prefix+":seq:bad", "x", "y").Err(); err != nil {
		t.Fatal(err)
	}
	pub := redisbus.NewPublisher(rdb, redisbus.PublisherOptions{Prefix: prefix})
	reg := prometheus.NewRegistry()
	m := metrics.NewRelay(reg, nil)
	logs := &logBuf{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	arrived := time.Now().Add(-100 * time.Millisecond)
	batch := []pglisten.Notification{
		{Channel: "ok", Payload: "1", Received: arrived},
		{Channel: "bad", Payload: "2", Received: arrived},
		{Channel: "ok", Payload: "3", Received: arrived},
	}
	p := notifyPublisher{pub: pub, m: m, log: log, timeout: 5 * time.Second}
	if err := p.publish(context.Background(), batch); err == nil {
		t.Error("publish returned nil although a message failed")
	}
	got := gather(t, reg)
	for name, want := range map[string]float64{
		"pgrelay_relay_notifications_received_total":  3,
		"pgrelay_relay_messages_published_total":      2,
		"pgrelay_relay_publish_failures_total":        1,
		"pgrelay_relay_publish_latency_seconds_count": 2,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if s := got["pgrelay_relay_publish_latency_seconds_sum"]; s < 0.2 {
		t.Errorf("latency sum %.3fs, want at least 2 × 100ms (from each message's arrival)", s)
	}
	if !strings.Contains(logs.String(), "count=1 batch=3") {
		t.Errorf("the failure is not logged with its count:\n%s", logs.String())
	}
}

// gather is reg's metrics as /metrics shows them.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	w := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return parseMetrics(t, w.Body)
}
