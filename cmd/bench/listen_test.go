package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// The real PostgreSQL and Redis these tests use, as the server's tests do.
const (
	testDB    = "postgres://127.0.0.1:5432/test?sslmode=disable"
	testRedis = "redis://127.0.0.1:6379/0"
)

// standInRelay LISTENs on channel and, for each notification, publishes
// the relay's envelope on Redis and then hands the payload to the fake
// edge, as relay and edge would. It publishes sequence number dup twice and
// drop not at all, on Redis only.
func standInRelay(t *testing.T, channel, prefix string, e *fakeEdge, dup, drop string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, testDB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	opts, err := redisOptions(testRedis)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done }) // runs first
	go func() {
		defer close(done)
		for id := 1; ; id++ {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				return
			}
			env, _ := json.Marshal(map[string]any{"id": fmt.Sprint(id), "channel": channel, "payload": n.Payload, "ts": time.Now().UnixMicro()})
			times := 1
			switch strings.Split(n.Payload, ".")[1] { // RUN.SEQ.SENT.xxx
			case dup:
				times = 2
			case drop:
				times = 0
			}
			for range times {
				if err := rdb.Publish(ctx, redisChannel(prefix, channel), env).Err(); err != nil {
					t.Errorf("publish: %v", err)
				}
			}
			e.Notify(ctx, channel, n.Payload)
		}
	}()
}

// TestRunRedis runs the tool with -pg-listen and -redis against the real
// PostgreSQL and Redis, through a stand-in relay that repeats notification
// 7 and drops 5 on Redis: the Redis row must count both, the raw LISTEN
// row must have every notification once, and their difference must be
// reported.
func TestRunRedis(t *testing.T) {
	t.Parallel()
	channel, prefix := "bench_test_"+randomHex(4), "bench_test_"+randomHex(4)
	e := newFakeEdge(t, 1024)
	standInRelay(t, channel, prefix, e, "7", "5")
	edges, err := parseEdges(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Edges: edges, DatabaseURL: testDB, Channel: channel,
		Clients: 3, Rate: 500, Count: 50, Payload: 128, Wait: time.Second,
		PGListen: true, RedisURL: testRedis, RedisPrefix: prefix,
	}
	var progress bytes.Buffer
	res, err := Run(context.Background(), cfg, env{
		dialNotifier: func(ctx context.Context) (notifier, error) { return dialPG(ctx, testDB) },
		progress:     &progress,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if m := res.Messages; m.Sent != 50 || m.Delivered != 150 || m.Missing != 0 {
		t.Errorf("clients' messages %+v", m)
	}
	pg, rd := res.PGListen, res.Redis
	if pg == nil || rd == nil {
		t.Fatalf("pg_listen %+v, redis %+v", pg, rd)
	}
	if pg.Received != 50 || pg.Delivered != 50 || pg.Duplicates != 0 || pg.Missing != 0 || pg.Latency.Samples != 50 {
		t.Errorf("raw LISTEN %+v", pg)
	}
	if rd.Received != 50 || rd.Delivered != 49 || rd.Duplicates != 1 || rd.Missing != 1 || rd.Latency.Samples != 49 {
		t.Errorf("Redis %+v", rd)
	}
	for _, l := range []latencyJSON{pg.Latency, rd.Latency} {
		if l.P50 <= 0 || l.P99 < l.P50 || l.Max < l.P99 || l.Max > 5000 {
			t.Errorf("latency %+v", l)
		}
	}
	a := res.RelayAdds
	if a == nil || a.P50 != rd.Latency.P50-pg.Latency.P50 || a.P99 != rd.Latency.P99-pg.Latency.P99 {
		t.Errorf("relay adds %+v; raw LISTEN %+v, Redis %+v", a, pg.Latency, rd.Latency)
	}

	var table, js bytes.Buffer
	if err := writeTable(&table, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"raw LISTEN", "(50 of 50, 0 duplicates, 0 missing;",
		"via relay (Redis)", "(49 of 50, 1 duplicates, 1 missing;",
		fmt.Sprintf("relay adds         p50 %.2f ms, p99 %.2f ms over raw LISTEN", a.P50, a.P99),
	} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if err := writeJSON(&js, res); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Redis     *listenJSON    `json:"redis"`
		RelayAdds *relayAddsJSON `json:"relay_adds_ms"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Redis == nil || back.Redis.Duplicates != 1 || back.RelayAdds == nil {
		t.Errorf("JSON: %v\n%s", err, js.String())
	}
}

// TestRunRedisWrongPrefix: the edges get the warm-up notification but the
// Redis channel does not; the run stops, naming -redis-prefix.
func TestRunRedisWrongPrefix(t *testing.T) {
	t.Parallel()
	e := newFakeEdge(t, 16)
	edges, _ := parseEdges(e.srv.URL)
	cfg := Config{Edges: edges, DatabaseURL: testDB, Channel: "c", Clients: 1, Rate: 1, Count: 1, Payload: 128,
		RedisURL: testRedis, RedisPrefix: "bench_nobody_" + randomHex(4)}
	_, err := Run(context.Background(), cfg, env{dialNotifier: func(context.Context) (notifier, error) { return e, nil }})
	if err == nil || !strings.Contains(err.Error(), "-redis-prefix") || !strings.Contains(err.Error(), cfg.RedisPrefix+":ch:c") {
		t.Fatalf("err %v, want one naming -redis-prefix and the Redis channel", err)
	}
}

// TestRedisURLRedacted: a URL go-redis cannot parse is refused without
// showing its password.
func TestRedisURLRedacted(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"redis://u:sekrit@h:notaport", "redis://:sek%zzrit@h/0", "redis://u:sekrit@h/x"} {
		var out, errb bytes.Buffer
		code := run([]string{"-redis", raw}, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "-redis:") || strings.Contains(errb.String(), "sek") {
			t.Errorf("%s: exit %d, stderr %q; want 2, naming -redis, without the password", raw, code, errb.String())
		}
	}
}
