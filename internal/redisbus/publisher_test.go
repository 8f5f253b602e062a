package redisbus

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// historyOf is every payload in channel's history, in id order, with the ids.
func historyOf(t *testing.T, rdb redis.Cmdable, prefix, channel string) (ids []uint64, payloads []string) {
	t.Helper()
	pg, err := NewHistory(rdb, prefix).After(context.Background(), channel, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range pg.Events {
		ids = append(ids, parseID(t, e.ID))
		payloads = append(payloads, e.Payload)
	}
	return ids, payloads
}

// batchOf is n messages alternating over channels, payloads "ch:i".
func batchOf(n int, channels ...string) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		ch := channels[i%len(channels)]
		msgs[i] = Message{Channel: ch, Payload: fmt.Sprintf("%s:%d", ch, i)}
	}
	return msgs
}

// consecutive fails t unless ids (of one channel, in publish order) are
// consecutive integers.
func consecutive(t *testing.T, what string, ids []uint64) {
	t.Helper()
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Errorf("%s: ids %v are not consecutive at %d", what, ids, i)
			return
		}
	}
}

// PublishBatch gives each channel's messages consecutive ids in the order of
// the batch, records them in that order, and the next batch (or Publish)
// goes on from there.
func TestPublishBatchOrderAndIDs(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	prefix := testenv.Name("rb")
	p := NewPublisher(rdb, PublisherOptions{Prefix: prefix})
	ctx := context.Background()
	first := batchOf(300, "a", "b", "c")
	ids, err := p.PublishBatch(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	second := batchOf(7, "a", "b")
	ids2, err := p.PublishBatch(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	lone := publish(t, p, "a", "lone")

	byChannel := map[string][]uint64{}
	want := map[string][]string{}
	for i, m := range append(first, second...) {
		id := append(ids, ids2...)[i]
		byChannel[m.Channel] = append(byChannel[m.Channel], parseID(t, id))
		want[m.Channel] = append(want[m.Channel], m.Payload)
	}
	byChannel["a"] = append(byChannel["a"], parseID(t, lone))
	want["a"] = append(want["a"], "lone")
	for _, ch := range []string{"a", "b", "c"} {
		consecutive(t, ch+" (as returned)", byChannel[ch])
		hids, payloads := historyOf(t, rdb, prefix, ch)
		if !slices.Equal(hids, byChannel[ch]) {
			t.Errorf("%s: history ids %v, want those returned %v", ch, hids, byChannel[ch])
		}
		if !slices.Equal(payloads, want[ch]) {
			t.Errorf("%s: history payloads %v, want %v", ch, payloads, want[ch])
		}
	}
	if ids, err := p.PublishBatch(ctx, nil); err != nil || len(ids) != 0 {
		t.Errorf("PublishBatch(nil) = %v, %v; want nothing", ids, err)
	}
}

// A message Redis refuses fails alone: the others of its batch are
// published, and the error names it.
func TestPublishBatchOneMessageFails(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	prefix := testenv.Name("rb")
	p := NewPublisher(rdb, PublisherOptions{Prefix: prefix})
	ctx := context.Background()
	// A counter of the wrong type makes the script fail for "bad" only.
	if err := rdb.HSet(ctx, seqKey(prefix, "bad"), "x", "y").Err(); err != nil {
		t.Fatal(err)
	}
	msgs := []Message{{"ok", "1"}, {"bad", "2"}, {"ok", "3"}}
	ids, err := p.PublishBatch(ctx, msgs)
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("PublishBatch error = %v, want the WRONGTYPE of the bad message", err)
	}
	if len(ids) != 3 || ids[0] == "" || ids[1] != "" || ids[2] == "" {
		t.Fatalf("ids = %q, want the ok messages' ids and none for bad", ids)
	}
	if got, want := parseID(t, ids[2]), parseID(t, ids[0])+1; got != want {
		t.Errorf("second ok id = %d, want %d", got, want)
	}
	if _, payloads := historyOf(t, rdb, prefix, "ok"); !slices.Equal(payloads, []string{"1", "3"}) {
		t.Errorf("ok's history = %v, want [1 3]", payloads)
	}
}

// A Redis that does not have the script (never loaded, or flushed as by a
// restart) answers EVALSHA with NOSCRIPT: PublishBatch loads it and sends
// the batch again, in order, with nothing lost or doubled.
func TestPublishBatchReloadsTheScript(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t) // its script cache is this test's own
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", srv.Port)})
	t.Cleanup(func() { rdb.Close() })
	prefix := testenv.Name("rb")
	p := NewPublisher(rdb, PublisherOptions{Prefix: prefix})
	ctx := context.Background()
	loaded := func() bool {
		ok, err := rdb.ScriptExists(ctx, publishScript.Hash()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return ok[0]
	}

	var all []Message
	var allIDs []string
	for round, size := range []int{50, 1, 50} { // one message takes another path
		if loaded() {
			t.Fatalf("round %d: the script is loaded already: the test does not reach NOSCRIPT", round)
		}
		msgs := batchOf(size, "a", "b")
		ids, err := p.PublishBatch(ctx, msgs)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !loaded() {
			t.Errorf("round %d: the script was not loaded", round)
		}
		all, allIDs = append(all, msgs...), append(allIDs, ids...)
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, ch := range []string{"a", "b"} {
		var want []string
		var wantIDs []uint64
		for i, m := range all {
			if m.Channel == ch {
				want = append(want, m.Payload)
				wantIDs = append(wantIDs, parseID(t, allIDs[i]))
			}
		}
		ids, payloads := historyOf(t, rdb, prefix, ch)
		if !slices.Equal(payloads, want) || !slices.Equal(ids, wantIDs) {
			t.Errorf("%s: history %v %v, want %v %v", ch, ids, payloads, wantIDs, want)
		}
		consecutive(t, ch, ids)
	}
}

// The cost of a message published alone (one round trip each) against one
// in a pipelined batch of 64. Run with -bench Publish.
func BenchmarkPublish(b *testing.B) {
	rdb := testenv.Redis(b)
	p := NewPublisher(rdb, PublisherOptions{Prefix: testenv.Name("bench"), HistorySize: 1000})
	ctx := context.Background()
	b.Cleanup(func() { deletePrefix(rdb, p.opts.Prefix) })
	b.Run("one", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.Publish(ctx, "c", "payload"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("batch64", func(b *testing.B) {
		msgs := batchOf(64, "c")
		for b.Loop() {
			if _, err := p.PublishBatch(ctx, msgs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/msg")
	})
}

func deletePrefix(rdb *redis.Client, prefix string) {
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, prefix+":*").Result()
	if err == nil && len(keys) > 0 {
		rdb.Del(ctx, keys...)
	}
}

// BenchmarkPublishLatency measures one message's trip through Redis to a
// pub/sub subscriber, 10 ms apart (the machine idle between them, as at 100
// messages/s): with a bare PUBLISH (the floor of any hop through Redis),
// and with the relay's Publisher (its script: id, history, publish). The
// difference is the script's share of what the relay adds; the rest of the
// relay's share is its own process. Run with -bench PublishLatency
// -benchtime 300x; ns/op is meaningless here, read p50-ms and p99-ms.
func BenchmarkPublishLatency(b *testing.B) {
	rdb := testenv.Redis(b)
	p := NewPublisher(rdb, PublisherOptions{Prefix: testenv.Name("lat"), HistorySize: 1000})
	ctx := context.Background()
	b.Cleanup(func() { deletePrefix(rdb, p.opts.Prefix) })
	ps := rdb.Subscribe(ctx, channelKey(p.opts.Prefix, "c"))
	b.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, publish func() error) {
		var lat []time.Duration
		for b.Loop() {
			b.StopTimer()
			time.Sleep(10 * time.Millisecond)
			b.StartTimer()
			start := time.Now()
			if err := publish(); err != nil {
				b.Fatal(err)
			}
			if _, err := ps.ReceiveMessage(ctx); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.Run("publish", func(b *testing.B) {
		run(b, func() error { return rdb.Publish(ctx, channelKey(p.opts.Prefix, "c"), `{"channel":"c"}`).Err() })
	})
	b.Run("publisher", func(b *testing.B) {
		run(b, func() error { _, err := p.Publish(ctx, "c", "payload"); return err })
	})
}
