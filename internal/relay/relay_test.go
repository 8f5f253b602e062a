package relay

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgrelay/pgrelay/internal/redisbus"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// run starts Run with cfg until the test ends and returns its address.
func run(t *testing.T, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener = ln
	logs := &logBuf{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
		if t.Failed() {
			t.Logf("--- relay logs ---\n%s", logs.String())
		}
	})
	return ln.Addr().String()
}

// eventually polls cond until it holds, or fails t after 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readyz(addr string) string {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// With RELAY_SOURCE=outbox and RELAY_OUTBOX_MIGRATE=true, the leader creates
// the table, publishes what is inserted (woken by the trigger) and deletes
// it; a row whose wake is lost is published by the poll.
func TestRunOutbox(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.DatabaseURL = testenv.DatabaseURL(t)
	cfg.RedisURL = testenv.RedisURL(t)
	cfg.Prefix = testenv.Name("relay")
	cfg.Source = SourceOutbox
	cfg.OutboxTable = testenv.Name("outbox")
	cfg.OutboxWakeChannel = testenv.Name("wake")
	cfg.OutboxMigrate = true
	cfg.OutboxPollInterval = time.Hour // until the wake-less part below
	cfg.MaxPayload = 100
	conn := testenv.Conn(t)
	table := pgx.Identifier{cfg.OutboxTable}.Sanitize()
	t.Cleanup(func() {
		c := testenv.Conn(t)
		c.Exec(context.Background(), "DROP TABLE IF EXISTS "+table+", "+pgx.Identifier{cfg.OutboxTable + "_rejected"}.Sanitize())
		c.Exec(context.Background(), "DROP FUNCTION IF EXISTS "+pgx.Identifier{cfg.OutboxTable + "_wake"}.Sanitize())
	})

	addr := run(t, cfg)
	eventually(t, "the relay to lead", func() bool { return readyz(addr) == "leader" })
	eventually(t, "the migration", func() bool {
		var ok bool
		err := conn.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok)
		return err == nil && ok
	})
	hist := redisbus.NewHistory(testenv.Redis(t), cfg.Prefix)
	published := func(ch string) []string {
		pg, err := hist.After(context.Background(), ch, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range pg.Events {
			out = append(out, e.Payload)
		}
		return out
	}
	insert := func(ch, payload string) {
		t.Helper()
		if _, err := conn.Exec(context.Background(), "INSERT INTO "+table+" (channel, payload) VALUES ($1, $2)", ch, payload); err != nil {
			t.Fatal(err)
		}
	}

	for _, p := range []string{"a", "b", "c"} {
		insert("orders", p)
	}
	insert("data", strings.Repeat("x", 100))
	eventually(t, "three rows on orders", func() bool { return strings.Join(published("orders"), ",") == "a,b,c" })
	eventually(t, "the 100-byte row on data", func() bool { return len(published("data")) == 1 })
	if _, err := conn.Exec(context.Background(), "INSERT INTO "+table+" (channel, payload) VALUES ('data', $1)", strings.Repeat("x", 101)); err == nil {
		t.Error("101 bytes accepted with RELAY_MAX_PAYLOAD=100")
	}
	var left int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&left); err != nil || left != 0 {
		t.Errorf("rows left after publishing: %d, %v", left, err)
	}
}

// A row whose wake-up is lost (here the trigger is disabled) is published
// by the next poll.
func TestRunOutboxPollsWithoutWake(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.DatabaseURL = testenv.DatabaseURL(t)
	cfg.RedisURL = testenv.RedisURL(t)
	cfg.Prefix = testenv.Name("relay")
	cfg.Source = SourceOutbox
	cfg.OutboxTable = testenv.Name("outbox")
	cfg.OutboxWakeChannel = testenv.Name("wake")
	cfg.OutboxMigrate = true
	cfg.OutboxPollInterval = 200 * time.Millisecond
	conn := testenv.Conn(t)
	table := pgx.Identifier{cfg.OutboxTable}.Sanitize()
	t.Cleanup(func() {
		c := testenv.Conn(t)
		c.Exec(context.Background(), "DROP TABLE IF EXISTS "+table+", "+pgx.Identifier{cfg.OutboxTable + "_rejected"}.Sanitize())
		c.Exec(context.Background(), "DROP FUNCTION IF EXISTS "+pgx.Identifier{cfg.OutboxTable + "_wake"}.Sanitize())
	})
	addr := run(t, cfg)
	eventually(t, "the relay to lead", func() bool { return readyz(addr) == "leader" })
	eventually(t, "the migration", func() bool {
		_, err := conn.Exec(context.Background(), "ALTER TABLE "+table+" DISABLE TRIGGER pgrelay_wake")
		return err == nil
	})
	if _, err := conn.Exec(context.Background(), "INSERT INTO "+table+" (channel, payload) VALUES ('c', 'unannounced')"); err != nil {
		t.Fatal(err)
	}
	hist := redisbus.NewHistory(testenv.Redis(t), cfg.Prefix)
	eventually(t, "the row to be published without a wake", func() bool {
		pg, err := hist.After(context.Background(), "c", 0, 10)
		return err == nil && len(pg.Events) == 1 && pg.Events[0].Payload == "unannounced"
	})
}
