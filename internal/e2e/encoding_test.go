package e2e

import (
	"context"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgrelay/pgrelay/internal/relay"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// A SQL_ASCII database can NOTIFY bytes that are not UTF-8. They reach the
// client byte for byte, as base64 with "encoding":"base64"; valid UTF-8 from
// the same database arrives as it is.
func TestNonUTF8PayloadArrivesAsBase64(t *testing.T) {
	admin := testenv.Conn(t)
	db := testenv.Name("sqlascii")
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+db+" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"); err != nil {
		t.Fatalf("create a SQL_ASCII database: %v", err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP DATABASE "+db+" WITH (FORCE)") })
	u, _ := url.Parse(testenv.DatabaseURL(t))
	u.Path = "/" + db

	prefix, ch := testenv.Name("bytes"), testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{ch}, func(c *relay.Config) { c.DatabaseURL = u.String() })
	waitLeader(t, r)
	e := startEdge(t, "edge", prefix)
	c := dialQuery(t, e, "channel="+ch)

	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	raw := []byte{'o', 'k', 0xff, 0xfe, 0x80, 'x'}
	if _, err := conn.Exec(ctx, "SELECT pg_notify($1, convert_from($2::bytea, 'SQL_ASCII'))", ch, raw); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_notify($1, 'plain é')", ch); err != nil {
		t.Fatal(err)
	}

	_, b, err := c.ws.Read(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"encoding":"base64"`) {
		t.Fatalf("frame %s lacks the base64 flag", b)
	}
	var f frame
	decodeStrictFrame(t, b, &f)
	got, err := base64.StdEncoding.DecodeString(f.Payload)
	if err != nil || string(got) != string(raw) {
		t.Fatalf("payload %q decodes to %q (%v), want %q", f.Payload, got, err, raw)
	}
	plain, err := c.next(10 * time.Second)
	if err != nil || plain.Payload != "plain é" {
		t.Fatalf("valid UTF-8 payload: %+v %v", plain, err)
	}
}
