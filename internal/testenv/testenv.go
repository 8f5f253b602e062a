// Package testenv gives tests the PostgreSQL and Redis they run against, and
// names that keep tests sharing those servers apart.
//
// The servers come from PGRELAY_TEST_DATABASE_URL and PGRELAY_TEST_REDIS_URL,
// which `make test` sets after finding or starting them (scripts/services.sh).
// Unset, they default to the local servers a development machine usually has.
// A server that does not answer fails the test with a message saying how to
// get one: tests never skip for a missing service.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

const hint = "run `make test`, which finds or starts PostgreSQL and Redis, or set PGRELAY_TEST_DATABASE_URL and PGRELAY_TEST_REDIS_URL"

// DatabaseURL returns a PostgreSQL URL that answers, or fails t.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("PGRELAY_TEST_DATABASE_URL")
	if url == "" {
		url = "postgres://127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("PostgreSQL at %s does not answer: %v\n%s", redact(url), err, hint)
	}
	conn.Close(ctx)
	return url
}

// Conn returns a new connection to the test database, closed at cleanup.
func Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// RedisURL returns a Redis URL that answers, or fails t.
func RedisURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("PGRELAY_TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("PGRELAY_TEST_REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s does not answer: %v\n%s", redact(url), err, hint)
	}
	return url
}

// Redis returns a client for the test Redis, closed at cleanup.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	opts, _ := redis.ParseURL(RedisURL(t))
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Name returns a name unique to this run, for a channel, a prefix or a lock:
// "base_" followed by random hex, lowercase, within PostgreSQL's 63 bytes.
func Name(base string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return strings.ToLower(base) + "_" + hex.EncodeToString(b)
}

func redact(url string) string {
	if i := strings.Index(url, "@"); i >= 0 {
		if j := strings.Index(url, "://"); j >= 0 && j < i {
			return url[:j+3] + "…" + url[i:]
		}
	}
	return url
}
