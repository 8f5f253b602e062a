package pglisten_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgrelay/pgrelay/internal/pglisten"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// batches is a Handle that reports each call's batch on calls and returns
// what the test replies, or nil once release is closed.
type batches struct {
	calls   chan []note
	results chan error
	release chan struct{}
	handled atomic.Int32 // notifications in calls that returned nil
}

func newBatches() *batches {
	return &batches{calls: make(chan []note, 1000), results: make(chan error), release: make(chan struct{})}
}

func (b *batches) handle(_ context.Context, batch []pglisten.Notification) error {
	got := make([]note, len(batch)) // batch is reused once Handle returns
	for i, n := range batch {
		got[i] = note{n.Channel, n.Payload}
	}
	b.calls <- got
	var err error
	select {
	case err = <-b.results:
	case <-b.release:
	}
	if err == nil {
		b.handled.Add(int32(len(batch)))
	}
	return err
}

// next returns the batch of the next call, which waits for reply.
func (b *batches) next(t *testing.T) []note {
	t.Helper()
	select {
	case got := <-b.calls:
		return got
	case <-time.After(wait):
		t.Fatalf("no Handle call within %s", wait)
		return nil
	}
}

func (b *batches) reply(err error) { b.results <- err }

// burst sends n notifications p0…p(n-1) on ch in one transaction: they
// reach the listener together, in order.
func burst(t *testing.T, conn *pgx.Conn, ch string, n int) {
	t.Helper()
	if _, err := conn.Exec(context.Background(),
		"SELECT pg_notify($1, 'p' || g) FROM generate_series(0, $2 - 1) g", ch, n); err != nil {
		t.Fatalf("burst on %q: %v", ch, err)
	}
}

func notes(ch string, from, to int) []note {
	var out []note
	for i := from; i < to; i++ {
		out = append(out, note{ch, fmt.Sprint("p", i)})
	}
	return out
}

// batchTest is a leading listener on a fresh channel whose Handle is b
// (MaxBatch 10), counting what it reads and drops, and a connection to
// notify on.
type batchTest struct {
	ch             string
	b              *batches
	l              *listener
	conn           *pgx.Conn
	reads, dropped atomic.Int32
}

func startBatchTest(t *testing.T) *batchTest {
	t.Helper()
	bt := &batchTest{ch: testenv.Name("pl"), b: newBatches()}
	bt.l = start(t, lockKey(), options{
		channels: []string{bt.ch},
		batch:    bt.b.handle,
		maxBatch: 10,
		read:     func(pglisten.Notification) { bt.reads.Add(1) },
		dropped:  func(n int) { bt.dropped.Add(int32(n)) },
	})
	bt.l.waitRole(t, pglisten.RoleLeader)
	bt.conn = testenv.Conn(t)
	return bt
}

// A lone notification is passed at once, alone; those that arrive while
// Handle runs come in the next call, together, in order, at most MaxBatch at
// a time; and no more than MaxBatch are read ahead.
func TestHandleGetsWhatArrivedMeanwhile(t *testing.T) {
	t.Parallel()
	bt := startBatchTest(t)
	ch, b, conn, reads := bt.ch, bt.b, bt.conn, &bt.reads
	notify(t, conn, ch, "first")
	if got := b.next(t); !slices.Equal(got, []note{{ch, "first"}}) {
		t.Fatalf("first call got %v, want only the lone notification", got)
	}

	// While that call runs, 25 arrive: 10 are queued and one more read.
	burst(t, conn, ch, 25)
	waitFor(t, "the queue to fill", func() bool { return reads.Load() >= 12 })
	if n := reads.Load(); n != 12 {
		t.Errorf("read %d notifications while Handle ran, want 1 + MaxBatch + 1 = 12", n)
	}
	b.reply(nil)
	if got, want := b.next(t), notes(ch, 0, 10); !slices.Equal(got, want) {
		t.Fatalf("second call got %v, want what was queued meanwhile: %v", got, want)
	}
	b.reply(nil)
	got := notes(ch, 0, 10)
	for len(got) < 25 {
		batch := b.next(t)
		if len(batch) > 10 {
			t.Errorf("a call got %d notifications, over MaxBatch 10", len(batch))
		}
		got = append(got, batch...)
		b.reply(nil)
	}
	if want := notes(ch, 0, 25); !slices.Equal(got, want) {
		t.Errorf("handled %v, want %v", got, want)
	}
}

// A Handle error ends the session; what was queued behind the failed call
// is never handled but counted by OnDropped. The next session starts clean.
func TestHandleErrorDropsTheQueue(t *testing.T) {
	t.Parallel()
	bt := startBatchTest(t)
	ch, b, l, conn, reads, dropped := bt.ch, bt.b, bt.l, bt.conn, &bt.reads, &bt.dropped
	notify(t, conn, ch, "first")
	b.next(t)
	burst(t, conn, ch, 11)
	waitFor(t, "the burst to be read", func() bool { return reads.Load() == 12 })
	b.reply(errors.New("redis is down"))
	l.waitRole(t, pglisten.RoleConnecting)
	if n := dropped.Load(); n != 11 {
		t.Errorf("OnDropped told of %d notifications, want the 11 queued behind the failed call", n)
	}
	l.waitRole(t, pglisten.RoleLeader)
	notify(t, conn, ch, "after")
	if got := b.next(t); !slices.Equal(got, []note{{ch, "after"}}) {
		t.Errorf("the new session's first call got %v, want only [after]", got)
	}
	b.reply(nil)
}

// When the connection dies while Handle runs, the call in flight finishes;
// every notification read is then either handled or counted by OnDropped,
// exactly once.
func TestConnectionLossDropsTheQueue(t *testing.T) {
	t.Parallel()
	bt := startBatchTest(t)
	ch, b, l, conn, reads, dropped := bt.ch, bt.b, bt.l, bt.conn, &bt.reads, &bt.dropped
	notify(t, conn, ch, "first")
	b.next(t)
	burst(t, conn, ch, 5)
	waitFor(t, "the burst to be read", func() bool { return reads.Load() == 6 })
	var ok bool
	if err := conn.QueryRow(context.Background(),
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", l.name).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend = %v, %v", ok, err)
	}
	close(b.release) // this call and any later one of the dying session succeed
	l.waitRole(t, pglisten.RoleConnecting)
	if h, d := b.handled.Load(), dropped.Load(); h+d != 6 || h < 1 {
		t.Errorf("handled %d and dropped %d of 6 notifications read, want each counted once, the one in flight handled", h, d)
	}
}

// A graceful stop while Handle runs still passes everything received to
// Handle, in order, before Run returns; nothing is dropped.
func TestGracefulStopHandlesTheQueue(t *testing.T) {
	t.Parallel()
	bt := startBatchTest(t)
	ch, b, l, conn, reads, dropped := bt.ch, bt.b, bt.l, bt.conn, &bt.reads, &bt.dropped
	notify(t, conn, ch, "first")
	b.next(t)
	burst(t, conn, ch, 30) // 10 queued, 1 held, 19 left in the socket
	waitFor(t, "the queue to fill", func() bool { return reads.Load() == 12 })
	l.cancel()
	close(b.release)
	l.stop(t)
	close(b.calls)
	var got []note
	for batch := range b.calls {
		got = append(got, batch...)
	}
	if want := notes(ch, 0, 30); !slices.Equal(got, want) {
		t.Errorf("handled after the stop %v, want %v", got, want)
	}
	if n := dropped.Load(); n != 0 {
		t.Errorf("dropped %d on a graceful stop", n)
	}
}
