package outbox_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgrelay/pgrelay/internal/outbox"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite migrations/001_outbox.sql from the template")

const shipped = "../../migrations/001_outbox.sql"

// The migration shipped in the repository is the template rendered for the
// defaults, byte for byte. `go test ./internal/outbox -run Shipped -update`
// rewrites it after a change to the template.
func TestShippedMigrationIsTheTemplate(t *testing.T) {
	t.Parallel()
	want, err := outbox.DefaultSchema().SQL()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(shipped, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s differs from the template rendered for the defaults; run go test ./internal/outbox -run Shipped -update", shipped)
	}
}

// The shipped file runs as plain SQL (as psql or a migration tool would run
// it), twice, and makes a working outbox.
func TestShippedMigrationApplies(t *testing.T) {
	t.Parallel()
	sql, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	conn := testenv.Conn(t)
	schema := newSchema(t, conn)
	exec(t, conn, "SET search_path = "+pgx.Identifier{schema}.Sanitize())
	for range 2 {
		exec(t, conn, string(sql))
	}
	exec(t, conn, "INSERT INTO pgrelay_outbox (channel, payload) VALUES ('c', 'p')")
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pgrelay_outbox").Scan(&n); err != nil || n != 1 {
		t.Fatalf("count = %d, %v", n, err)
	}
}

func TestParseTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want outbox.Table
		ok   bool
	}{
		{"pgrelay_outbox", outbox.Table{Name: "pgrelay_outbox"}, true},
		{"app.Outbox_2", outbox.Table{Schema: "app", Name: "Outbox_2"}, true},
		{"_x", outbox.Table{Name: "_x"}, true},
		{strings.Repeat("t", 54), outbox.Table{Name: strings.Repeat("t", 54)}, true},
		{strings.Repeat("t", 55), outbox.Table{}, false}, // no room for _rejected
		{strings.Repeat("s", 64) + ".t", outbox.Table{}, false},
		{"", outbox.Table{}, false},
		{"a.b.c", outbox.Table{}, false},
		{".t", outbox.Table{}, false},
		{"s.", outbox.Table{}, false},
		{"1abc", outbox.Table{}, false},
		{"my-table", outbox.Table{}, false},
		{`a"b`, outbox.Table{}, false},
		{"a b", outbox.Table{}, false},
		{"tablé", outbox.Table{}, false},
	} {
		got, err := outbox.ParseTable(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTable(%q) = %+v, %v; want %+v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("ParseTable(%q).String() = %q", tc.in, got.String())
		}
	}
}

func TestCheckWakeChannel(t *testing.T) {
	t.Parallel()
	for in, ok := range map[string]bool{
		"pgrelay_outbox": true, "app.wake-1": true, strings.Repeat("w", 63): true,
		"": false, strings.Repeat("w", 64): false, "a'b": false, "a$b": false, "a b": false,
	} {
		if err := outbox.CheckWakeChannel(in); (err == nil) != ok {
			t.Errorf("CheckWakeChannel(%q) = %v, want ok %v", in, err, ok)
		}
	}
}

func TestSchemaCheck(t *testing.T) {
	t.Parallel()
	s := outbox.DefaultSchema()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	for _, mod := range []func(*outbox.Schema){
		func(s *outbox.Schema) { s.MaxPayload = 0 },
		func(s *outbox.Schema) { s.MaxPayload = outbox.MaxMaxPayload + 1 },
		func(s *outbox.Schema) { s.WakeChannel = "" },
		func(s *outbox.Schema) { s.Table.Name = "bad name" },
	} {
		s := outbox.DefaultSchema()
		mod(&s)
		if _, err := s.SQL(); err == nil {
			t.Errorf("SQL of %+v: no error", s)
		}
	}
}

// Migrate twice: the second run changes nothing and succeeds; a
// schema-qualified table works.
func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	conn := testenv.Conn(t)
	s := outbox.Schema{Table: outbox.Table{Schema: newSchema(t, conn), Name: "Outbox"}, WakeChannel: testenv.Name("wake"), MaxPayload: 100}
	for range 2 {
		if err := outbox.Migrate(context.Background(), conn, s); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, conn, "INSERT INTO "+pgx.Identifier{s.Table.Schema, "Outbox"}.Sanitize()+" (channel, payload) VALUES ('c', 'p')")
	var objects []string
	rows, _ := conn.Query(context.Background(), `
		SELECT 'table ' || relname FROM pg_class WHERE relnamespace = $1::regnamespace AND relkind = 'r'
		UNION ALL SELECT 'check ' || conname FROM pg_constraint WHERE conrelid = $2::regclass AND contype = 'c'
		UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = $2::regclass
		UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = $1::regnamespace
		ORDER BY 1`, pgx.Identifier{s.Table.Schema}.Sanitize(), pgx.Identifier{s.Table.Schema, "Outbox"}.Sanitize())
	objects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"check channel_1_to_63_bytes", "check payload_at_most_100_bytes", "function Outbox_wake", "table Outbox", "table Outbox_rejected", "trigger pgrelay_wake"}
	if strings.Join(objects, ", ") != strings.Join(want, ", ") {
		t.Errorf("objects after two migrations:\n got %q\nwant %q", objects, want)
	}
}

// Once applied, Migrate takes no lock on the table: it does not wait behind
// (and so does not hold up) a transaction that has inserted and not
// committed. A new limit does need the lock (Migrate gives up after
// MigrateLockTimeout; here the context ends first).
func TestMigrateWhenCurrentTakesNoTableLock(t *testing.T) {
	t.Parallel()
	conn := testenv.Conn(t)
	s := newOutbox(t, conn, 1000)
	writer := testenv.Conn(t)
	tx, err := writer.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(context.Background(), "INSERT INTO "+ident(s)+" (channel, payload) VALUES ('c', 'open')"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := outbox.Migrate(ctx, conn, s); err != nil {
		t.Fatalf("Migrate with a writer's transaction open: %v", err)
	}

	s.MaxPayload = 2000
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := outbox.Migrate(ctx, testenv.Conn(t), s); err == nil {
		t.Fatal("Migrate to a new limit finished behind an open writer: it took no lock?")
	}
}

// A new limit replaces the old one; rows already there are not re-checked.
func TestMigrateChangesLimit(t *testing.T) {
	t.Parallel()
	conn := testenv.Conn(t)
	s := newOutbox(t, conn, 100)
	insert(t, conn, s, "c", strings.Repeat("x", 100))
	if err := tryInsert(conn, s, "c", strings.Repeat("x", 101)); err == nil {
		t.Fatal("101 bytes accepted under a 100-byte limit")
	}
	s.MaxPayload = 50
	if err := outbox.Migrate(context.Background(), conn, s); err != nil {
		t.Fatalf("lowering the limit with a longer row present: %v", err)
	}
	if err := tryInsert(conn, s, "c", strings.Repeat("x", 51)); err == nil {
		t.Fatal("51 bytes accepted under a 50-byte limit")
	}
	s.MaxPayload = 200
	if err := outbox.Migrate(context.Background(), conn, s); err != nil {
		t.Fatal(err)
	}
	insert(t, conn, s, "c", strings.Repeat("x", 200))
	var names []string
	rows, _ := conn.Query(context.Background(), "SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND conname LIKE 'payload%' ", ident(s))
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(names) != 1 || names[0] != "payload_at_most_200_bytes" {
		t.Fatalf("payload constraints = %q, %v; want only payload_at_most_200_bytes", names, err)
	}
}

// 1 MiB is accepted; 1 MiB + 1 byte is refused by the INSERT itself, with
// an error that names the limit. The channel must be 1 to 63 bytes.
func TestInsertLimits(t *testing.T) {
	t.Parallel()
	conn := testenv.Conn(t)
	s := newOutbox(t, conn, outbox.DefaultMaxPayload)
	insert(t, conn, s, "c", strings.Repeat("é", 1<<19)) // 1 MiB in two-byte characters
	err := tryInsert(conn, s, "c", strings.Repeat("x", 1<<20+1))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" || pgErr.ConstraintName != "payload_at_most_1048576_bytes" {
		t.Fatalf("INSERT of 1 MiB + 1 byte = %v, want a check violation of payload_at_most_1048576_bytes", err)
	}
	if !strings.Contains(err.Error(), `violates check constraint "payload_at_most_1048576_bytes"`) {
		t.Errorf("error %q does not say which limit", err)
	}
	t.Logf("1 MiB + 1 byte: %v", err)
	for _, ch := range []string{"", strings.Repeat("c", 64)} {
		if err := tryInsert(conn, s, ch, "p"); !errors.As(err, &pgErr) || pgErr.ConstraintName != "channel_1_to_63_bytes" {
			t.Errorf("INSERT on channel of %d bytes = %v, want a check violation", len(ch), err)
		}
	}
}

// The trigger sends one empty notification on the wake channel per
// inserting transaction, at commit.
func TestTriggerWakes(t *testing.T) {
	t.Parallel()
	conn := testenv.Conn(t)
	s := newOutbox(t, conn, 100)
	listener := testenv.Conn(t)
	exec(t, listener, "LISTEN "+pgx.Identifier{s.WakeChannel}.Sanitize())

	tx, err := conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := tx.Exec(context.Background(), "INSERT INTO "+ident(s)+" (channel, payload) VALUES ('c', 'p')"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if n, err := listener.WaitForNotification(ctx); err == nil {
		t.Fatalf("woken before commit: %+v", n)
	}
	cancel()
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(ctx)
	if err != nil || n.Channel != s.WakeChannel || n.Payload != "" {
		t.Fatalf("wake = %+v, %v; want an empty notification on %q", n, err, s.WakeChannel)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if n, err := listener.WaitForNotification(ctx); err == nil {
		t.Fatalf("a second wake for one transaction: %+v", n)
	}
}

// newSchema creates a schema of the test's own, dropped at cleanup.
func newSchema(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	name := testenv.Name("outbox")
	exec(t, conn, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize())
	t.Cleanup(func() {
		c := testenv.Conn(t)
		exec(t, c, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE")
	})
	return name
}

// newOutbox migrates an outbox table of the test's own (unqualified, in the
// default schema, dropped at cleanup).
func newOutbox(t *testing.T, conn *pgx.Conn, maxPayload int) outbox.Schema {
	t.Helper()
	s := outbox.Schema{Table: outbox.Table{Name: testenv.Name("outbox")}, WakeChannel: testenv.Name("wake"), MaxPayload: maxPayload}
	t.Cleanup(func() {
		c := testenv.Conn(t)
		exec(t, c, "DROP TABLE IF EXISTS "+ident(s)+", "+pgx.Identifier{s.Table.Name + "_rejected"}.Sanitize())
		exec(t, c, "DROP FUNCTION IF EXISTS "+pgx.Identifier{s.Table.Name + "_wake"}.Sanitize())
	})
	if err := outbox.Migrate(context.Background(), conn, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func ident(s outbox.Schema) string {
	if s.Table.Schema == "" {
		return pgx.Identifier{s.Table.Name}.Sanitize()
	}
	return pgx.Identifier{s.Table.Schema, s.Table.Name}.Sanitize()
}

func exec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%.80s: %v", sql, err)
	}
}

func tryInsert(conn *pgx.Conn, s outbox.Schema, channel, payload string) error {
	_, err := conn.Exec(context.Background(), "INSERT INTO "+ident(s)+" (channel, payload) VALUES ($1, $2)", channel, payload)
	return err
}

func insert(t *testing.T, conn *pgx.Conn, s outbox.Schema, channel, payload string) {
	t.Helper()
	if err := tryInsert(conn, s, channel, payload); err != nil {
		t.Fatalf("insert %d bytes on %q: %v", len(payload), channel, err)
	}
}
