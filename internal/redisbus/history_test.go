package redisbus

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/event"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// bus is a Publisher and a History on a fresh prefix of the test Redis.
type bus struct {
	rdb    *redis.Client
	prefix string
	pub    *Publisher
	hist   *History
}

func newBus(t *testing.T, opts PublisherOptions) *bus {
	t.Helper()
	rdb := testenv.Redis(t)
	opts.Prefix = testenv.Name("rb")
	return &bus{rdb: rdb, prefix: opts.Prefix, pub: NewPublisher(rdb, opts), hist: NewHistory(rdb, opts.Prefix)}
}

// publishN publishes payloads "p0".."p(n-1)" on channel and returns their
// ids, checking that they are consecutive.
func (b *bus) publishN(t *testing.T, channel string, n int) []uint64 {
	t.Helper()
	ids := make([]uint64, n)
	for i := range n {
		ids[i] = parseID(t, publish(t, b.pub, channel, fmt.Sprint("p", i)))
		if i > 0 && ids[i] != ids[i-1]+1 {
			t.Fatalf("publish %d on %q: id %d after %d, want consecutive ids", i, channel, ids[i], ids[i-1])
		}
	}
	return ids
}

func (b *bus) after(t *testing.T, channel string, after uint64, limit int) Page {
	t.Helper()
	pg, err := b.hist.After(context.Background(), channel, after, limit)
	if err != nil {
		t.Fatalf("After(%q, %d, %d): %v", channel, after, limit, err)
	}
	return pg
}

// checkEvents fails t unless pg's events are channel's ids from..to (payloads
// "p<k>", k the id's offset from first), in order.
func checkEvents(t *testing.T, pg Page, channel string, first, from, to uint64) {
	t.Helper()
	var want []event.Event
	for id := from; id <= to && from != 0; id++ {
		want = append(want, event.Event{Channel: channel, ID: strconv.FormatUint(id, 10), Payload: fmt.Sprint("p", id-first)})
	}
	if len(pg.Events) != len(want) {
		t.Fatalf("page has %d events %+v, want %d (ids %d..%d)", len(pg.Events), pg.Events, len(want), from, to)
	}
	for i := range want {
		if core(pg.Events[i]) != want[i] {
			t.Fatalf("event %d of the page = %+v, want %+v", i, pg.Events[i], want[i])
		}
	}
}

func checkReset(t *testing.T, pg Page, after, wantAt uint64, wantOK bool) {
	t.Helper()
	if at, ok := pg.Reset(after); at != wantAt || ok != wantOK {
		t.Errorf("Reset(%d) of page {Complete:%v Last:%d, %d events} = %d, %v; want %d, %v",
			after, pg.Complete, pg.Last, len(pg.Events), at, ok, wantAt, wantOK)
	}
}

func TestHistoryFreshChannel(t *testing.T) {
	t.Parallel()
	b := newBus(t, PublisherOptions{})
	for _, after := range []uint64{0, 1, 1795626204851271} {
		pg := b.after(t, "fresh", after, 10)
		if len(pg.Events) != 0 || pg.Last != 0 {
			t.Errorf("After(fresh, %d) = %+v, want no events and Last 0", after, pg)
		}
		// Nothing was ever published, so nothing is missing from
		// position 0; from a later one (a client of a Redis that lost its
		// data) nothing exists yet to tell it about.
		if after == 0 && !pg.Complete {
			t.Errorf("After(fresh, 0) is incomplete")
		}
		checkReset(t, pg, after, 0, false)
	}
}

func TestHistoryAfter(t *testing.T) {
	t.Parallel()
	b := newBus(t, PublisherOptions{})
	const n = 10
	ids := b.publishN(t, "c", n)
	first, last := ids[0], ids[n-1]
	publish(t, b.pub, "other", "noise") // another channel's events stay out

	pg := b.after(t, "c", first-1, 100)
	if !pg.Complete || pg.Last != last {
		t.Errorf("After(first-1): Complete %v, Last %d; want true, %d", pg.Complete, pg.Last, last)
	}
	checkEvents(t, pg, "c", first, first, last)
	checkReset(t, pg, first-1, 0, false)

	mid := first + 4
	pg = b.after(t, "c", mid, 100)
	if !pg.Complete || pg.Last != last {
		t.Errorf("After(first+4): Complete %v, Last %d; want true, %d", pg.Complete, pg.Last, last)
	}
	checkEvents(t, pg, "c", first, mid+1, last)

	pg = b.after(t, "c", last, 100)
	if !pg.Complete || pg.Last != last || len(pg.Events) != 0 {
		t.Errorf("After(last) = %+v, want complete and empty, Last %d", pg, last)
	}
	checkReset(t, pg, last, 0, false)

	// A position ahead of the channel (say, from a Redis that has since
	// lost recent writes) has nothing after it, and nothing to reset.
	pg = b.after(t, "c", last+5, 100)
	if len(pg.Events) != 0 || pg.Last != last {
		t.Errorf("After(last+5) = %+v, want no events, Last %d", pg, last)
	}
	checkReset(t, pg, last+5, 0, false)
}

// Reading from the oldest position in pages of limit events yields every
// event once, in order, each page complete.
func TestHistoryPaging(t *testing.T) {
	t.Parallel()
	b := newBus(t, PublisherOptions{})
	const n = 11
	ids := b.publishN(t, "c", n)
	first, last := ids[0], ids[n-1]
	for _, limit := range []int{1, 2, 3, 5, 10, 11, 12} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			after, pages := first-1, 0
			for {
				pg := b.after(t, "c", after, limit)
				pages++
				if !pg.Complete || pg.Last != last {
					t.Fatalf("page %d after %d: Complete %v, Last %d; want true, %d", pages, after, pg.Complete, pg.Last, last)
				}
				if len(pg.Events) > limit {
					t.Fatalf("page %d has %d events, limit %d", pages, len(pg.Events), limit)
				}
				to := min(after+uint64(limit), last)
				if to == after {
					checkEvents(t, pg, "c", first, 0, 0)
				} else {
					checkEvents(t, pg, "c", first, after+1, to)
				}
				if len(pg.Events) < limit {
					break
				}
				after = to
			}
			if want := n/limit + 1; pages != want {
				t.Errorf("%d pages, want %d", pages, want)
			}
		})
	}
}

// A history of 5 keeps the last 5 events: a reader from the start has a gap
// it cannot fill, and is told the last id lost.
func TestHistoryTrimmed(t *testing.T) {
	t.Parallel()
	b := newBus(t, PublisherOptions{HistorySize: 5})
	ids := b.publishN(t, "c", 10)
	first, last := ids[0], ids[9]
	if n := b.rdb.XLen(context.Background(), historyKey(b.prefix, "c")).Val(); n != 5 {
		t.Errorf("history holds %d entries, want HistorySize 5", n)
	}

	pg := b.after(t, "c", first-1, 100)
	if pg.Complete || pg.Last != last {
		t.Errorf("After(first-1): Complete %v, Last %d; want false, %d", pg.Complete, pg.Last, last)
	}
	checkEvents(t, pg, "c", first, first+5, last)
	checkReset(t, pg, first-1, first+4, true)

	// From any position before the oldest kept, the same.
	pg = b.after(t, "c", first+2, 100)
	checkEvents(t, pg, "c", first, first+5, last)
	checkReset(t, pg, first+2, first+4, true)

	// From the last id lost, nothing is missing.
	pg = b.after(t, "c", first+4, 100)
	if !pg.Complete {
		t.Errorf("After(first+4) incomplete, but the history holds first+5 onward")
	}
	checkEvents(t, pg, "c", first, first+5, last)
	checkReset(t, pg, first+4, 0, false)

	pg = b.after(t, "c", last, 100)
	if !pg.Complete || len(pg.Events) != 0 {
		t.Errorf("After(last) = %+v, want complete and empty", pg)
	}
	// A limited page of a trimmed history is incomplete too.
	pg = b.after(t, "c", first-1, 2)
	checkEvents(t, pg, "c", first, first+5, first+6)
	checkReset(t, pg, first-1, first+4, true)
}

// The counter is ahead but the history is empty (it expired, or was lost):
// everything after the position is missing, up to the counter.
func TestHistoryCounterAheadOfEmptyHistory(t *testing.T) {
	t.Parallel()
	b := newBus(t, PublisherOptions{})
	ids := b.publishN(t, "c", 3)
	if err := b.rdb.Del(context.Background(), historyKey(b.prefix, "c")).Err(); err != nil {
		t.Fatal(err)
	}
	pg := b.after(t, "c", ids[0], 100)
	if pg.Complete || len(pg.Events) != 0 || pg.Last != ids[2] {
		t.Errorf("After(first) with the stream gone = %+v, want incomplete, no events, Last %d", pg, ids[2])
	}
	checkReset(t, pg, ids[0], ids[2], true)

	// A reader that had everything is not told anything.
	pg = b.after(t, "c", ids[2], 100)
	if !pg.Complete {
		t.Errorf("After(last) with the stream gone = %+v, want complete", pg)
	}
	checkReset(t, pg, ids[2], 0, false)

	// The next event is kept, and the gap before it still shows.
	next := parseID(t, publish(t, b.pub, "c", "p3"))
	if next != ids[2]+1 {
		t.Fatalf("Publish after the stream was deleted: id %d, want %d (the counter goes on)", next, ids[2]+1)
	}
	pg = b.after(t, "c", ids[0], 100)
	checkEvents(t, pg, "c", ids[0], next, next)
	checkReset(t, pg, ids[0], ids[2], true)
}

// Redis loses its data (counter and history): ids do not start over, they
// jump forward, seeded from the clock, and readers see a gap.
func TestHistoryDataLossIDsOnlyGrow(t *testing.T) {
	t.Parallel()
	b := newBus(t, PublisherOptions{})
	ctx := context.Background()
	ids := b.publishN(t, "c", 5)
	last := ids[4]
	// Ids given in the same microsecond as the first would not show a
	// jump; make sure the clock has moved on by more than that.
	time.Sleep(2 * time.Millisecond) // not a readiness wait: the clock must advance
	if err := b.rdb.Del(ctx, seqKey(b.prefix, "c"), historyKey(b.prefix, "c")).Err(); err != nil {
		t.Fatal(err)
	}

	// Before any new event, nothing exists to tell a reader about.
	pg := b.after(t, "c", last, 100)
	if len(pg.Events) != 0 || pg.Last != 0 {
		t.Errorf("After(last) once the data is lost = %+v, want no events, Last 0", pg)
	}
	checkReset(t, pg, last, 0, false)

	before := uint64(time.Now().UnixMicro())
	next := parseID(t, publish(t, b.pub, "c", "after loss"))
	if next <= last+1 {
		t.Fatalf("first id after the data loss = %d, want far more than the last id before it, %d", next, last)
	}
	if now := uint64(time.Now().UnixMicro()); next < before-60_000_000 || next > now+60_000_000 {
		t.Errorf("first id after the data loss = %d, want about the clock in µs (%d)", next, now)
	}
	// The reader that had everything up to last is told of the jump.
	pg = b.after(t, "c", last, 100)
	if pg.Complete || len(pg.Events) != 1 || pg.Events[0].ID != strconv.FormatUint(next, 10) {
		t.Errorf("After(last) after the data loss = %+v, want incomplete with event %d", pg, next)
	}
	checkReset(t, pg, last, next-1, true)
	if again := parseID(t, publish(t, b.pub, "c", "x")); again != next+1 {
		t.Errorf("second id after the data loss = %d, want %d", again, next+1)
	}
}

func TestPublishOnce(t *testing.T) {
	t.Parallel()
	b := newBus(t, PublisherOptions{HistoryTTL: time.Hour})
	ctx := context.Background()
	ps := b.rdb.Subscribe(ctx, channelKey(b.prefix, "c"))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the subscribe confirmation
		t.Fatal(err)
	}
	receive := func() event.Event {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		m, err := ps.ReceiveMessage(rctx)
		if err != nil {
			t.Fatal(err)
		}
		e, err := event.Decode([]byte(m.Payload))
		if err != nil {
			t.Fatal(err)
		}
		return core(e)
	}

	id, dup, err := b.pub.PublishOnce(ctx, "c", "first", "row-1")
	if err != nil || dup {
		t.Fatalf("PublishOnce(row-1) = %q, dup %v, %v; want a new event", id, dup, err)
	}
	if e := receive(); e != (event.Event{Channel: "c", ID: id, Payload: "first"}) {
		t.Fatalf("received %+v, want the event %s", e, id)
	}
	// Again, even with another payload or channel: the first id, dup, and
	// nothing published or recorded.
	for _, again := range []struct{ channel, payload string }{{"c", "first"}, {"c", "changed"}, {"d", "first"}} {
		got, dup, err := b.pub.PublishOnce(ctx, again.channel, again.payload, "row-1")
		if err != nil || !dup || got != id {
			t.Errorf("PublishOnce(%q, %q, row-1) again = %q, dup %v, %v; want %q, dup", again.channel, again.payload, got, dup, err, id)
		}
	}
	if pg := b.after(t, "c", parseID(t, id), 10); len(pg.Events) != 0 || pg.Last != parseID(t, id) {
		t.Errorf("the history after a duplicate PublishOnce = %+v, want nothing after %s", pg, id)
	}
	if n := b.rdb.Exists(ctx, historyKey(b.prefix, "d"), seqKey(b.prefix, "d")).Val(); n != 0 {
		t.Errorf("a duplicate PublishOnce on channel d created %d of its keys", n)
	}
	// Another source id is another event; Publish is never deduplicated.
	id2, dup, err := b.pub.PublishOnce(ctx, "c", "second", "row-2")
	if err != nil || dup || id2 != plus(t, id, 1) {
		t.Fatalf("PublishOnce(row-2) = %q, dup %v, %v; want %s, new", id2, dup, err, plus(t, id, 1))
	}
	if e := receive(); e != (event.Event{Channel: "c", ID: id2, Payload: "second"}) {
		t.Fatalf("received %+v after the duplicates, want %s (a duplicate was published?)", e, id2)
	}
	id3 := publish(t, b.pub, "c", "first")
	if e := receive(); e != (event.Event{Channel: "c", ID: id3, Payload: "first"}) {
		t.Fatalf("received %+v, want %s", e, id3)
	}
	// The mark lives as long as the history.
	ttl := b.rdb.TTL(ctx, dedupeKey(b.prefix, "row-1")).Val()
	if ttl <= 0 || ttl > time.Hour {
		t.Errorf("TTL of the dedupe mark = %s, want within the history TTL (1h)", ttl)
	}
	// Once it is gone, the source id publishes again.
	if err := b.rdb.Del(ctx, dedupeKey(b.prefix, "row-1")).Err(); err != nil {
		t.Fatal(err)
	}
	id4, dup, err := b.pub.PublishOnce(ctx, "c", "first", "row-1")
	if err != nil || dup || id4 != plus(t, id3, 1) {
		t.Errorf("PublishOnce(row-1) once its mark expired = %q, dup %v, %v; want %s, new", id4, dup, err, plus(t, id3, 1))
	}
}

// With a history kept forever, dedupe marks still expire (after the default TTL).
func TestPublishOnceMarkExpiresWithoutHistoryTTL(t *testing.T) {
	t.Parallel()
	b := newBus(t, PublisherOptions{HistoryTTL: -1})
	ctx := context.Background()
	if _, _, err := b.pub.PublishOnce(ctx, "c", "x", "row"); err != nil {
		t.Fatal(err)
	}
	if ttl := b.rdb.TTL(ctx, dedupeKey(b.prefix, "row")).Val(); ttl <= 0 || ttl > DefaultHistoryTTL {
		t.Errorf("TTL of the dedupe mark = %s, want within %s", ttl, DefaultHistoryTTL)
	}
	if ttl := b.rdb.TTL(ctx, historyKey(b.prefix, "c")).Val(); ttl != -1 {
		t.Errorf("TTL of the history with HistoryTTL < 0 = %s, want none (-1)", ttl)
	}
}

// What the history keeps is byte for byte what subscribers received.
func TestHistoryEntryIsWhatWasPublished(t *testing.T) {
	t.Parallel()
	b := newBus(t, PublisherOptions{})
	ctx := context.Background()
	channels := []string{"c", `with"quote`, "é:ü 🚀", "a:b:17"}
	var keys []string
	for _, ch := range channels {
		keys = append(keys, channelKey(b.prefix, ch))
	}
	ps := b.rdb.Subscribe(ctx, keys...)
	defer ps.Close()
	for range keys {
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	payloads := []string{"", "green", `{"id":"1","channel":"x"}`, "a\"b\\c\nd\u2028🚀", `","id":"666`, "%d %s .."}
	for _, ch := range channels {
		for _, payload := range payloads {
			id := publish(t, b.pub, ch, payload)
			rctx, cancel := context.WithTimeout(ctx, wait)
			m, err := ps.ReceiveMessage(rctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if m.Channel != channelKey(b.prefix, ch) {
				t.Fatalf("received on %q, want %q", m.Channel, channelKey(b.prefix, ch))
			}
			entries, err := b.rdb.XRange(ctx, historyKey(b.prefix, ch), id+"-0", id+"-0").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Fatalf("history of %q has %d entries with id %s-0, want 1", ch, len(entries), id)
			}
			if len(entries[0].Values) != 1 {
				t.Errorf("history entry %s has fields %v, want only e", id, entries[0].Values)
			}
			if raw, _ := entries[0].Values["e"].(string); raw != m.Payload {
				t.Errorf("history entry %s = %q, published %q", id, raw, m.Payload)
			}
			var obj map[string]any
			if err := json.Unmarshal([]byte(m.Payload), &obj); err != nil || obj["id"] != id || obj["channel"] != ch || obj["payload"] != payload {
				t.Errorf("envelope %s: %v, want id %s, channel %q, payload %q", m.Payload, err, id, ch, payload)
			}
		}
	}
}

// The history expires after HistoryTTL without events; the counter never
// does, so an idle channel keeps contiguous ids.
func TestHistoryTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		ttl  time.Duration
		want time.Duration
	}{
		{0, DefaultHistoryTTL},
		{90 * time.Second, 90 * time.Second},
	} {
		b := newBus(t, PublisherOptions{HistoryTTL: tc.ttl})
		publish(t, b.pub, "c", "x")
		got, err := b.rdb.TTL(ctx, historyKey(b.prefix, "c")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got <= 0 || got > tc.want || got < tc.want-time.Minute {
			t.Errorf("HistoryTTL %s: TTL of the history = %s, want about %s", tc.ttl, got, tc.want)
		}
		if got := b.rdb.TTL(ctx, seqKey(b.prefix, "c")).Val(); got != -1 {
			t.Errorf("HistoryTTL %s: TTL of the counter = %s, want none (-1)", tc.ttl, got)
		}
		// Each event renews the history's TTL.
		if err := b.rdb.Expire(ctx, historyKey(b.prefix, "c"), 10*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
		publish(t, b.pub, "c", "y")
		if got := b.rdb.TTL(ctx, historyKey(b.prefix, "c")).Val(); got <= 10*time.Second {
			t.Errorf("HistoryTTL %s: TTL after a new event = %s, want it renewed to about %s", tc.ttl, got, tc.want)
		}
	}
}

// An entry that is not a valid envelope of the channel at its id is skipped
// and counted, never handed on, and never an error that would stop every
// reader of the channel.
func TestHistoryBadEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct{ name, id, entry string }{
		{"not JSON", "5", "junk"},
		{"other channel", "5", `{"id":"5","channel":"d","payload":"x"}`},
		{"id differs from the entry's", "5", `{"id":"6","channel":"c","payload":"x"}`},
		{"id is a prefix of the entry's", "55", `{"id":"5","channel":"c","payload":"x"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBus(t, PublisherOptions{})
			if err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: historyKey(b.prefix, "c"), ID: tc.id + "-0", Values: []string{"e", tc.entry}}).Err(); err != nil {
				t.Fatal(err)
			}
			pg, err := b.hist.After(ctx, "c", 1, 10)
			if err != nil || len(pg.Events) != 0 || pg.Malformed != 1 || strconv.FormatUint(pg.Through, 10) != tc.id {
				t.Errorf("After over a bad entry = %+v, %v; want no events, 1 malformed, through %s", pg, err, tc.id)
			}
		})
	}
}

// Each reads past a bad entry between good ones, telling the reader of the
// hole with a reset before the next good event.
func TestHistoryEachSkipsBadEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBus(t, PublisherOptions{})
	add := func(id int, entry string) {
		if err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: historyKey(b.prefix, "c"), ID: strconv.Itoa(id) + "-0", Values: []string{"e", entry}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	good := func(id int) string { return `{"id":"` + strconv.Itoa(id) + `","channel":"c","payload":"p"}` }
	add(10, good(10))
	add(11, "junk")
	add(12, good(12))
	add(13, good(13))
	var got []string
	malformed, err := b.hist.Each(ctx, "c", 9, 2,
		func(at uint64) error { got = append(got, "reset "+strconv.FormatUint(at, 10)); return nil },
		func(e event.Event, id uint64) error { got = append(got, e.ID); return nil })
	want := "10,reset 11,12,13"
	if err != nil || malformed != 1 || strings.Join(got, ",") != want {
		t.Fatalf("Each = %q, %d malformed, %v; want %q, 1 malformed", got, malformed, err, want)
	}
}

// A position beyond every id (the largest a client may send) has nothing
// after it.
func TestHistoryAfterMaxID(t *testing.T) {
	t.Parallel()
	b := newBus(t, PublisherOptions{})
	b.publishN(t, "c", 3)
	pg, err := b.hist.After(context.Background(), "c", math.MaxUint64, 10)
	if err != nil {
		t.Fatalf("After(MaxUint64) = %v", err)
	}
	if len(pg.Events) != 0 {
		t.Errorf("After(MaxUint64) returned %d events (ids %s…), want none: every id is ≤ MaxUint64", len(pg.Events), pg.Events[0].ID)
	}
	checkReset(t, pg, math.MaxUint64, 0, false)
}

// After reads the counter and the history together: a page read while
// events are being published is consistent, never showing a gap that is
// not there.
func TestHistoryConsistentUnderPublishing(t *testing.T) {
	t.Parallel()
	b := newBus(t, PublisherOptions{})
	first := b.publishN(t, "c", 1)[0]
	const n = 300
	var wg sync.WaitGroup
	defer wg.Wait() // also when a check below fails
	wg.Go(func() {
		for i := range n {
			if _, err := b.pub.Publish(context.Background(), "c", fmt.Sprint("p", i+1)); err != nil {
				t.Error(err)
				return
			}
		}
	})
	after := first
	for reads := 0; after < first+n; reads++ {
		pg := b.after(t, "c", after, 1000)
		if !pg.Complete {
			t.Fatalf("read %d after %d: incomplete page %+v while nothing was lost", reads, after, pg)
		}
		if _, ok := pg.Reset(after); ok {
			t.Fatalf("read %d after %d: reset with nothing lost", reads, after)
		}
		want := after
		if k := len(pg.Events); k > 0 {
			want = parseID(t, pg.Events[k-1].ID)
			checkEvents(t, pg, "c", first, after+1, want)
		}
		if pg.Last != want {
			t.Fatalf("read %d after %d: Last %d but the page ends at %d", reads, after, pg.Last, want)
		}
		after = want
		if reads > 100*n {
			t.Fatal("publishing does not progress")
		}
	}
}

func TestPageReset(t *testing.T) {
	t.Parallel()
	ev := func(id uint64) event.Event { return event.Event{Channel: "c", ID: strconv.FormatUint(id, 10)} }
	for _, tc := range []struct {
		name   string
		pg     Page
		after  uint64
		at     uint64
		wantOK bool
	}{
		{"complete with events", Page{Events: []event.Event{ev(11)}, Complete: true, Last: 11}, 10, 0, false},
		{"complete and empty", Page{Complete: true, Last: 10}, 10, 0, false},
		{"events after a gap", Page{Events: []event.Event{ev(15), ev(16)}, Last: 16}, 10, 14, true},
		{"empty, counter ahead", Page{Last: 20}, 10, 20, true},
		{"empty, counter behind", Page{Last: 5}, 10, 0, false},
		{"empty, no counter", Page{}, 10, 0, false},
	} {
		if at, ok := tc.pg.Reset(tc.after); at != tc.at || ok != tc.wantOK {
			t.Errorf("%s: Reset(%d) = %d, %v; want %d, %v", tc.name, tc.after, at, ok, tc.at, tc.wantOK)
		}
	}
}
