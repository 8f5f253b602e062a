package outbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgrelay/pgrelay/internal/outbox"
	"github.com/pgrelay/pgrelay/internal/redisbus"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// bus is a Redis publisher and history reader under a prefix of the test's own.
type bus struct {
	pub  *redisbus.Publisher
	hist *redisbus.History
}

func newBus(t *testing.T) bus {
	rdb := testenv.Redis(t)
	prefix := testenv.Name("outbox")
	return bus{
		pub:  redisbus.NewPublisher(rdb, redisbus.PublisherOptions{Prefix: prefix, HistorySize: 10000, HistoryTTL: time.Hour}),
		hist: redisbus.NewHistory(rdb, prefix),
	}
}

// payloads returns what was published on channel, in id order, checking
// that ids are consecutive.
func (b bus) payloads(t *testing.T, channel string) []string {
	t.Helper()
	pg, err := b.hist.After(context.Background(), channel, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var prev uint64
	for i, e := range pg.Events {
		var id uint64
		fmt.Sscan(e.ID, &id)
		if i > 0 && id != prev+1 {
			t.Fatalf("%s: id %d after %d", channel, id, prev)
		}
		prev = id
		out = append(out, e.Payload)
	}
	return out
}

// logs collects a Drainer's logs, printed if the test fails.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newDrainer(t *testing.T, o outbox.Options) (*outbox.Drainer, *logs) {
	t.Helper()
	l := &logs{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- drainer logs ---\n%s", l.String())
		}
	})
	o.Logger = slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := outbox.NewDrainer(o)
	if err != nil {
		t.Fatal(err)
	}
	return d, l
}

func drain(t *testing.T, d *outbox.Drainer, conn *pgx.Conn) {
	t.Helper()
	if err := d.Drain(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, conn *pgx.Conn, table string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNewDrainerRequires(t *testing.T) {
	t.Parallel()
	if _, err := outbox.NewDrainer(outbox.Options{Table: outbox.Table{Name: "t"}}); err == nil {
		t.Error("no publisher: no error")
	}
	if _, err := outbox.NewDrainer(outbox.Options{Table: outbox.Table{Name: "bad name"}, Publisher: newBus(t).pub}); err == nil {
		t.Error("bad table: no error")
	}
}

// Rows are published in id order, per channel, across many batches (cut by
// count and by bytes), and deleted.
func TestDrainInOrder(t *testing.T) {
	t.Parallel()
	conn := testenv.Conn(t)
	s := newOutbox(t, conn, 1000)
	b := newBus(t)
	d, _ := newDrainer(t, outbox.Options{Table: s.Table, Publisher: b.pub, MaxPayload: 1000, BatchSize: 37, BatchBytes: 2000})
	chans := []string{"a", "b", "c"}
	want := map[string][]string{}
	tx, err := conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 600 {
		ch := chans[i%3]
		p := fmt.Sprintf("%d:%s", i, strings.Repeat("x", i%200))
		want[ch] = append(want[ch], p)
		if _, err := tx.Exec(context.Background(), "INSERT INTO "+ident(s)+" (channel, payload) VALUES ($1, $2)", ch, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	drain(t, d, conn)
	for _, ch := range chans {
		got := b.payloads(t, ch)
		if strings.Join(got, "\n") != strings.Join(want[ch], "\n") {
			t.Errorf("%s: published %d payloads, want %d in insertion order", ch, len(got), len(want[ch]))
		}
	}
	if n := count(t, conn, ident(s)); n != 0 {
		t.Errorf("%d rows left after the drain", n)
	}
	if st := d.Stats(); st != (outbox.Stats{Published: 600}) {
		t.Errorf("stats = %+v", st)
	}
	drain(t, d, conn) // an empty table is fine
}

// The classic outbox trap: ids come from a sequence and commit out of order.
// A transaction holding a lower id is still open while higher ids commit and
// are published; when it commits, its row is published too, not skipped.
func TestDrainDoesNotSkipSlowTransaction(t *testing.T) {
	t.Parallel()
	conn := testenv.Conn(t)
	s := newOutbox(t, conn, 1000)
	b := newBus(t)
	d, _ := newDrainer(t, outbox.Options{Table: s.Table, Publisher: b.pub})

	slow := testenv.Conn(t)
	tx, err := slow.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	var slowID int64
	if err := tx.QueryRow(context.Background(), "INSERT INTO "+ident(s)+" (channel, payload) VALUES ('c', 'slow') RETURNING id").Scan(&slowID); err != nil {
		t.Fatal(err)
	}
	var fastIDs []int64
	for i := range 5 {
		var id int64
		if err := conn.QueryRow(context.Background(), "INSERT INTO "+ident(s)+" (channel, payload) VALUES ('c', $1) RETURNING id", fmt.Sprint("fast", i)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		fastIDs = append(fastIDs, id)
	}
	if slowID >= fastIDs[0] {
		t.Fatalf("slow row id %d is not below the fast ones %v: the test shows nothing", slowID, fastIDs)
	}
	drain(t, d, conn)
	if got := b.payloads(t, "c"); strings.Join(got, ",") != "fast0,fast1,fast2,fast3,fast4" {
		t.Fatalf("before the slow commit, published %q", got)
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	drain(t, d, conn)
	if got := b.payloads(t, "c"); strings.Join(got, ",") != "fast0,fast1,fast2,fast3,fast4,slow" {
		t.Fatalf("after the slow commit, published %q: the row with the lower id was skipped", got)
	}
	if n := count(t, conn, ident(s)); n != 0 {
		t.Errorf("%d rows left", n)
	}
}

// failAfter publishes for real, then fails once n publishes have passed: the
// leader died after Redis had the rows and before it deleted them.
type failAfter struct {
	outbox.Publisher
	mu   sync.Mutex
	n    int
	dups []bool
}

func (f *failAfter) PublishOnce(ctx context.Context, channel, payload, dedupeID string) (string, bool, error) {
	id, dup, err := f.Publisher.PublishOnce(ctx, channel, payload, dedupeID)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dups = append(f.dups, dup)
	if f.n--; err == nil && f.n < 0 {
		return "", false, errors.New("killed before delete")
	}
	return id, dup, err
}

// A drain cut off after publishing and before deleting leaves the rows; the
// next drain (the next leader) publishes them again, PublishOnce reports
// them as duplicates, and Redis has each row once.
func TestDrainRepublishIsDeduplicated(t *testing.T) {
	t.Parallel()
	conn := testenv.Conn(t)
	s := newOutbox(t, conn, 1000)
	b := newBus(t)
	for i := range 10 {
		insert(t, conn, s, "c", fmt.Sprint(i))
	}
	crashing := &failAfter{Publisher: b.pub, n: 6}
	d1, _ := newDrainer(t, outbox.Options{Table: s.Table, Publisher: crashing})
	if err := d1.Drain(context.Background(), conn); err == nil {
		t.Fatal("the crashing drain returned no error")
	}
	if n := count(t, conn, ident(s)); n != 10 {
		t.Fatalf("%d rows left after a drain that died before deleting, want all 10", n)
	}

	again := &failAfter{Publisher: b.pub, n: 1 << 30}
	d2, _ := newDrainer(t, outbox.Options{Table: s.Table, Publisher: again})
	drain(t, d2, conn)
	wantDups := []bool{true, true, true, true, true, true, true, false, false, false}
	if fmt.Sprint(again.dups) != fmt.Sprint(wantDups) {
		t.Errorf("PublishOnce dup flags on republish = %v, want %v", again.dups, wantDups)
	}
	if st := d2.Stats(); st != (outbox.Stats{Published: 3, Duplicates: 7}) {
		t.Errorf("stats = %+v, want 3 published and 7 duplicates", st)
	}
	if got := b.payloads(t, "c"); strings.Join(got, ",") != "0,1,2,3,4,5,6,7,8,9" {
		t.Errorf("Redis has %q, want each row once, in order", got)
	}
	if n := count(t, conn, ident(s)); n != 0 {
		t.Errorf("%d rows left", n)
	}
}

// A row that got past the CHECK (the constraint was dropped) with a payload
// over the relay's limit, or a bad channel, is moved to the rejected table
// with the reason, logged and counted; the rows around it are published. A
// 1 MiB row is published whole.
func TestDrainRejectsWhatItCannotPublish(t *testing.T) {
	t.Parallel()
	conn := testenv.Conn(t)
	s := newOutbox(t, conn, outbox.DefaultMaxPayload)
	exec(t, conn, "ALTER TABLE "+ident(s)+" DROP CONSTRAINT payload_at_most_1048576_bytes, DROP CONSTRAINT channel_1_to_63_bytes")
	b := newBus(t)
	d, logs := newDrainer(t, outbox.Options{Table: s.Table, Publisher: b.pub, MaxPayload: outbox.DefaultMaxPayload})

	unit := "🚀é\"\\\n<>&" // multi-byte characters and what JSON escapes
	mib := strings.Repeat(unit, 1<<20/len(unit))
	mib += strings.Repeat("z", 1<<20-len(mib))
	if len(mib) != 1<<20 {
		t.Fatalf("payload is %d bytes", len(mib))
	}
	insert(t, conn, s, "c", "before")
	insert(t, conn, s, "c", mib+"x")
	insert(t, conn, s, strings.Repeat("c", 64), "long channel")
	insert(t, conn, s, "c", mib)
	insert(t, conn, s, "c", "after")
	drain(t, d, conn)

	got := b.payloads(t, "c")
	if len(got) != 3 || got[0] != "before" || got[1] != mib || got[2] != "after" {
		t.Fatalf("published %d payloads (sizes %v), want before, the 1 MiB one intact, after", len(got), sizes(got))
	}
	if st := d.Stats(); st != (outbox.Stats{Published: 3, Rejected: 2}) {
		t.Errorf("stats = %+v", st)
	}
	rows, _ := conn.Query(context.Background(), "SELECT octet_length(payload), reason FROM "+pgx.Identifier{s.Table.Name + "_rejected"}.Sanitize()+" ORDER BY id")
	type rejected struct {
		Size   int
		Reason string
	}
	rej, err := pgx.CollectRows(rows, pgx.RowToStructByPos[rejected])
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 2 || rej[0].Size != 1<<20+1 || !strings.Contains(rej[0].Reason, "1048577 bytes is over the limit of 1048576") ||
		rej[1].Size != 12 || !strings.Contains(rej[1].Reason, "longer than 63") {
		t.Errorf("rejected table holds %+v", rej)
	}
	if n := count(t, conn, ident(s)); n != 0 {
		t.Errorf("%d rows left", n)
	}
	if l := logs.String(); strings.Count(l, "level=ERROR msg=\"outbox row refused\"") != 2 || !strings.Contains(l, "rejected_total=2") {
		t.Errorf("logs do not report both refusals as errors:\n%s", l)
	}
}

// Without a rejected table (a schema not made by Migrate), a refused row is
// deleted, with an error log saying so: one bad row must not stop the rest.
func TestDrainRejectWithoutRejectedTable(t *testing.T) {
	t.Parallel()
	conn := testenv.Conn(t)
	s := newOutbox(t, conn, 10)
	exec(t, conn, "DROP TABLE "+pgx.Identifier{s.Table.Name + "_rejected"}.Sanitize())
	b := newBus(t)
	d, logs := newDrainer(t, outbox.Options{Table: s.Table, Publisher: b.pub, MaxPayload: 5})
	insert(t, conn, s, "c", "0123456789")
	insert(t, conn, s, "c", "ok")
	drain(t, d, conn)
	if got := b.payloads(t, "c"); len(got) != 1 || got[0] != "ok" {
		t.Errorf("published %q", got)
	}
	if !strings.Contains(logs.String(), "deleted, the rejected table is missing") {
		t.Errorf("logs do not say the row was deleted:\n%s", logs.String())
	}
}

// A missing table is an error that says how to create it.
func TestDrainMissingTableHints(t *testing.T) {
	t.Parallel()
	d, _ := newDrainer(t, outbox.Options{Table: outbox.Table{Name: testenv.Name("missing")}, Publisher: newBus(t).pub})
	err := d.Drain(context.Background(), testenv.Conn(t))
	if err == nil || !strings.Contains(err.Error(), "RELAY_OUTBOX_MIGRATE=true") {
		t.Fatalf("Drain of a missing table = %v, want a hint", err)
	}
}

func sizes(ps []string) []int {
	var out []int
	for _, p := range ps {
		out = append(out, len(p))
	}
	return out
}
