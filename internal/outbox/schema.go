package outbox

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults of a Schema.
const (
	DefaultTable       = "pgrelay_outbox"
	DefaultWakeChannel = "pgrelay_outbox"
	DefaultMaxPayload  = 1 << 20 // 1 MiB
	// MaxMaxPayload bounds MaxPayload: every payload passes whole through
	// Redis, the history and each client's queue.
	MaxMaxPayload = 64 << 20
)

// maxTableName leaves room for the "_rejected" and "_wake" names derived
// from a table's name within PostgreSQL's 63 bytes.
const maxTableName = 63 - len("_rejected")

// Table is an outbox table: an optional schema and a name.
type Table struct {
	Schema string // empty: the search_path decides
	Name   string
}

// ParseTable reads "name" or "schema.name". Each part is letters, digits and
// underscores, not starting with a digit; the name is at most 54 bytes. Names
// are used as written (quoted), so case matters: "Outbox" is not "outbox".
func ParseTable(s string) (Table, error) {
	var t Table
	parts := strings.Split(s, ".")
	switch len(parts) {
	case 1:
		t.Name = parts[0]
	case 2:
		t.Schema, t.Name = parts[0], parts[1]
		if err := checkName(t.Schema, 63); err != nil {
			return Table{}, fmt.Errorf("schema %q: %w", t.Schema, err)
		}
	default:
		return Table{}, fmt.Errorf("%q: want name or schema.name", s)
	}
	if err := checkName(t.Name, maxTableName); err != nil {
		return Table{}, fmt.Errorf("table %q: %w", t.Name, err)
	}
	return t, nil
}

func checkName(s string, max int) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > max:
		return fmt.Errorf("longer than %d bytes", max)
	case s[0] >= '0' && s[0] <= '9':
		return errors.New("starts with a digit")
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Errorf("has %q: use letters, digits and underscores", c)
		}
	}
	return nil
}

// String is the table as ParseTable reads it.
func (t Table) String() string {
	if t.Schema == "" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

// sql is the table's quoted name; the others are derived from it.
func (t Table) sql() string      { return t.with("") }
func (t Table) rejected() string { return t.with("_rejected") }
func (t Table) wakeFunc() string { return t.with("_wake") }

func (t Table) with(suffix string) string {
	if t.Schema == "" {
		return pgx.Identifier{t.Name + suffix}.Sanitize()
	}
	return pgx.Identifier{t.Schema, t.Name + suffix}.Sanitize()
}

// CheckWakeChannel reports whether name can be the wake channel: 1 to 63
// bytes of letters, digits, '_', '.' and '-'.
func CheckWakeChannel(name string) error {
	if name == "" || len(name) > 63 {
		return errors.New("must be 1 to 63 bytes")
	}
	for _, c := range name {
		if !(c == '_' || c == '.' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Errorf("has %q: use letters, digits, '_', '.' and '-'", c)
		}
	}
	return nil
}

// Schema is what the migration creates.
type Schema struct {
	Table       Table
	WakeChannel string // LISTENed to by the relay
	MaxPayload  int    // bytes; the CHECK on payload
}

// DefaultSchema is the schema of the shipped migrations/001_outbox.sql.
func DefaultSchema() Schema {
	return Schema{Table: Table{Name: DefaultTable}, WakeChannel: DefaultWakeChannel, MaxPayload: DefaultMaxPayload}
}

// Check reports the first invalid field of s.
func (s Schema) Check() error {
	if _, err := ParseTable(s.Table.String()); err != nil {
		return err
	}
	if err := CheckWakeChannel(s.WakeChannel); err != nil {
		return fmt.Errorf("wake channel %q: %w", s.WakeChannel, err)
	}
	if s.MaxPayload < 1 || s.MaxPayload > MaxMaxPayload {
		return fmt.Errorf("max payload %d: must be 1 to %d bytes", s.MaxPayload, MaxMaxPayload)
	}
	return nil
}

//go:embed schema.sql.tmpl
var schemaText string

var schemaTmpl = template.Must(template.New("schema.sql").Option("missingkey=error").Parse(schemaText))

// SQL renders the migration for s: plain SQL that any client can run, in
// one transaction or statement by statement.
func (s Schema) SQL() (string, error) {
	if err := s.Check(); err != nil {
		return "", err
	}
	var b bytes.Buffer
	err := schemaTmpl.Execute(&b, map[string]any{
		"Table":      s.Table.sql(),
		"Rejected":   s.Table.rejected(),
		"WakeFunc":   s.Table.wakeFunc(),
		"TableLit":   quoteLiteral(s.Table.sql()),
		"TableText":  s.Table.String(),
		"WakeLit":    quoteLiteral(s.WakeChannel),
		"WakeText":   s.WakeChannel,
		"MaxPayload": s.MaxPayload,
	})
	return b.String(), err
}

// quoteLiteral quotes s as an SQL string (standard_conforming_strings on,
// the default since PostgreSQL 9.1). Names reaching here are restricted to
// characters that need no escaping; doubling quotes is belt and braces.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// MigrateLockTimeout bounds how long Migrate waits for a lock on the table.
// A change to the trigger or the limit needs one, and while Migrate waits
// for it, new INSERTs queue behind it: better to fail and retry.
const MigrateLockTimeout = 5 * time.Second

// Migrate applies s's migration on conn in one transaction. It is
// idempotent, and migrations of one table are serialized by an advisory
// transaction lock, so concurrent calls are safe.
func Migrate(ctx context.Context, conn *pgx.Conn, s Schema) error {
	sql, err := s.SQL()
	if err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", s.Table, err)
	}
	defer func() {
		// A no-op after Commit. On the way out of an error it must not
		// leave the session inside a failed transaction.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	h := fnv.New64a()
	h.Write([]byte("pgrelay outbox migration:" + s.Table.sql()))
	steps := []struct {
		sql  string
		args []any
	}{
		{fmt.Sprintf("SET LOCAL lock_timeout = %d", MigrateLockTimeout.Milliseconds()), nil},
		{"SELECT pg_advisory_xact_lock($1)", []any{int64(h.Sum64())}},
		{sql, nil}, // no arguments: the simple protocol, several statements
	}
	for _, st := range steps {
		if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
			return fmt.Errorf("migrate %s: %w", s.Table, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", s.Table, err)
	}
	return nil
}
