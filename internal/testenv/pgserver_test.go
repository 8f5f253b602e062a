package testenv

import (
	"context"
	"testing"
	"time"
)

// The throwaway server starts, survives fast and immediate restarts on the
// same port, and answers queries after each.
func TestPostgresServerRestarts(t *testing.T) {
	s := StartPostgres(t, PostgresOptions{Settings: map[string]string{"max_connections": "50"}})
	query := func() {
		t.Helper()
		conn := s.Conn(t)
		var v string
		if err := conn.QueryRow(context.Background(), "SHOW max_connections").Scan(&v); err != nil || v != "50" {
			t.Fatalf("max_connections = %q, %v; want the 50 set in Settings", v, err)
		}
	}
	query()
	for _, mode := range []string{"fast", "immediate"} {
		t0 := time.Now()
		s.Restart(mode)
		t.Logf("restart -m %s: %s", mode, time.Since(t0).Round(time.Millisecond))
		query()
	}
}
