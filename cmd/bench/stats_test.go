package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScanFrames(t *testing.T) {
	t.Parallel()
	type f struct{ typ, ch, id, payload string }
	for _, tc := range []struct {
		name string
		in   string
		want []f
		bad  bool
	}{
		{"frame", `{"channel":"data","id":"17","payload":"green"}`, []f{{"", "data", "17", "green"}}, false},
		{"control", `{"type":"position","channel":"data","id":"41"}`, []f{{"position", "data", "41", ""}}, false},
		{"spaces and extra fields", ` { "id" : "1" , "n": 12.5, "o": {"id":"no","a":[1,{"b":"}"}]}, "t": true, "payload":"p\"q" } `,
			[]f{{"", "", "1", `p\"q`}}, false},
		{"array", `[{"id":"1","payload":"a"},{"id":"2","payload":"b"}]`, []f{{"", "", "1", "a"}, {"", "", "2", "b"}}, false},
		{"empty array", `[]`, nil, false},
		{"lines", "{\"id\":\"1\"}\n{\"id\":\"2\"}\n", []f{{"", "", "1", ""}, {"", "", "2", ""}}, false},
		{"truncated", `{"id":"1","payload":"ab`, nil, true},
		{"not json", `hello`, nil, true},
		{"unclosed array", `[{"id":"1"}`, []f{{"", "", "1", ""}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []f
			err := scanFrames([]byte(tc.in), &fields{}, func(x *fields) {
				got = append(got, f{string(x.typ), string(x.channel), string(x.id), string(x.payload)})
			})
			if (err != nil) != tc.bad {
				t.Fatalf("err %v, want error %v", err, tc.bad)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPayload(t *testing.T) {
	t.Parallel()
	p := appendPayload(nil, "abcd1234", "12345678901234567890", 1795625760855649123, minPayload)
	if len(p) != minPayload {
		t.Fatalf("len %d, want %d", len(p), minPayload)
	}
	got, ok := parsePayload(p, "abcd1234")
	if !ok || got.seq != 12345678901234567890 || got.sent != 1795625760855649123 || got.warm != -1 {
		t.Fatalf("parsed %+v %v", got, ok)
	}
	w, ok := parsePayload(appendPayload(nil, "abcd1234", "w3", 5, 128), "abcd1234")
	if !ok || w.warm != 3 || w.sent != 5 {
		t.Fatalf("warm-up parsed %+v %v", w, ok)
	}
	for _, foreign := range []string{"green", "abcd1235.1.2.", "abcd1234.x.2.", "abcd1234.1.", "abcd1234..2.", ""} {
		if _, ok := parsePayload([]byte(foreign), "abcd1234"); ok {
			t.Errorf("%q parsed as this run's", foreign)
		}
	}
}

// TestClientCounts feeds a client frames in the order an edge could send
// them and checks each count.
func TestClientCounts(t *testing.T) {
	t.Parallel()
	const run = "run1"
	msg := func(id, seq int) []byte {
		return fmt.Appendf(nil, `{"channel":"c","id":"%d","payload":"%s"}`, id, appendPayload(nil, run, fmt.Sprint(seq), 1000, 80))
	}
	c := newClient(0, false, 10, run, &hist{}, &hist{})
	for _, m := range [][]byte{
		[]byte(`{"type":"position","channel":"c","id":"100"}`),
		msg(101, 0),
		msg(102, 1),
		msg(102, 1), // duplicate: same id again
		msg(105, 2), // gap: 103 and 104 missing
		[]byte(`{"channel":"c","id":"106","payload":"someone else"}`),
		msg(104, 3), // late: out of order
		[]byte(`{"type":"reset","channel":"c","id":"200"}`),
		msg(201, 4),
		msg(202, 99), // a sequence number this run never sends
		[]byte(`not a frame`),
		[]byte(`[` + string(msg(203, 5)) + `,` + string(msg(204, 6)) + `]`), // a batch
	} {
		c.handle(m, 2000, 1500)
	}
	c.handle(msg(205, 7), 2000, 0) // no kernel stamp: no arrival
	got := fmt.Sprintf("unique %d frames %d dup %d ooo %d gaps %d resets %d foreign %d malformed %d lat %d arrival %d",
		c.unique.Load(), c.frames, c.duplicates, c.outOfOrder, c.gaps, c.resets, c.foreign, c.malformed, c.lat.Count(), c.arr.Count())
	want := "unique 8 frames 9 dup 1 ooo 2 gaps 1 resets 1 foreign 2 malformed 1 lat 8 arrival 7"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if c.lat.Max() != 1000 || c.arr.Max() != 500 {
		t.Errorf("latency %v, arrival %v; want 1µs (2000 - 1000 ns), 500ns (1500 - 1000 ns)", c.lat.Max(), c.arr.Max())
	}
}

// TestHandleAllocs: recording a message allocates nothing, so the
// client's cost per delivery stays the read.
func TestHandleAllocs(t *testing.T) {
	c := newClient(0, false, 1_000_000, "run1", &hist{}, &hist{})
	var frames [][]byte
	for i := range 1000 {
		frames = append(frames, fmt.Appendf(nil, `{"channel":"c","id":"%d","payload":"%s"}`, i+1, appendPayload(nil, "run1", fmt.Sprint(i), 1000, 128)))
	}
	i := 0
	allocs := testing.AllocsPerRun(500, func() {
		c.handle(frames[i%len(frames)], 2000, 1500)
		i++
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message, want 0", allocs)
	}
}

// BenchmarkHandle is the client's cost per message past the read: without
// a kernel stamp (one histogram) and with one (two).
func BenchmarkHandle(b *testing.B) {
	for _, tc := range []struct {
		name    string
		arrival int64
	}{{"read", 0}, {"read+arrival", 1500}} {
		b.Run(tc.name, func(b *testing.B) {
			frames := make([][]byte, 1000)
			for i := range frames {
				frames[i] = fmt.Appendf(nil, `{"channel":"c","id":"%d","payload":"%s"}`, i+1, appendPayload(nil, "run1", fmt.Sprint(i), 1000, 128))
			}
			c := newClient(0, false, len(frames), "run1", &hist{}, &hist{})
			i := 0
			for b.Loop() {
				if i == len(frames) {
					i = 0
					clear(c.seen) // no duplicates: each message is recorded
				}
				c.handle(frames[i], 2000, tc.arrival)
				i++
			}
			if c.duplicates != 0 {
				b.Fatalf("%d duplicates: not every message was recorded", c.duplicates)
			}
		})
	}
}

func TestHistBuckets(t *testing.T) {
	t.Parallel()
	prev := -1
	for i := range histBuckets {
		lo, w := bucketRange(i)
		if bucketOf(lo) != i || bucketOf(lo+w-1) != i {
			t.Fatalf("bucket %d: [%d, %d) maps to %d and %d", i, lo, lo+w, bucketOf(lo), bucketOf(lo+w-1))
		}
		if i > 0 {
			plo, pw := bucketRange(prev)
			if plo+pw != lo {
				t.Fatalf("bucket %d starts at %d, the previous ends at %d", i, lo, plo+pw)
			}
		}
		prev = i
		if lo > 1<<62 {
			break
		}
	}
	if b := bucketOf(^uint64(0)); b >= histBuckets {
		t.Fatalf("max value in bucket %d of %d", b, histBuckets)
	}
}

// TestHistQuantiles compares the histogram's percentiles with the exact
// ones of the same samples: within the bucket precision.
func TestHistQuantiles(t *testing.T) {
	t.Parallel()
	var h hist
	if h.Quantile(0.5) != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram not zero")
	}
	r := rand.New(rand.NewPCG(1, 2))
	var samples []time.Duration
	for range 100_000 {
		// Log-normal-ish: mostly a few ms, a tail to seconds.
		d := time.Duration(float64(time.Millisecond) * r.ExpFloat64() * r.ExpFloat64() * 3)
		samples = append(samples, d)
		h.Record(d)
	}
	h.Record(-5) // a clock step backwards counts as 0
	samples = append(samples, 0)
	slices.Sort(samples)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		exact := samples[int(q*float64(len(samples)))-1]
		got := h.Quantile(q)
		if diff := float64(got-exact) / float64(exact); diff > 0.005 || diff < -0.005 {
			t.Errorf("q%v: %v, exact %v (%.2f%% off)", q, got, exact, 100*diff)
		}
	}
	if h.Max() != samples[len(samples)-1] || h.Quantile(1) != h.Max() {
		t.Errorf("max %v / q1 %v, want %v", h.Max(), h.Quantile(1), samples[len(samples)-1])
	}
	if h.Count() != uint64(len(samples)) {
		t.Errorf("count %d", h.Count())
	}

	// Shards merge to the same figures.
	s := newShardedHist(4)
	for i, d := range samples {
		s.shard(i).Record(d)
	}
	m := s.merged()
	if m.Quantile(0.99) != h.Quantile(0.99) || m.Max() != h.Max() || m.Count() != h.Count() {
		t.Errorf("merged shards differ: p99 %v/%v", m.Quantile(0.99), h.Quantile(0.99))
	}
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	m, err := parseMetrics(strings.NewReader(`# HELP x
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_resident_memory_bytes 3.2e+07
pgrelay_edge_disconnections_total{reason="slow",transport="ws"} 3
pgrelay_edge_disconnections_total{reason="client",transport="ws"} 4
go_goroutines 7 1700000000000
`))
	if err != nil {
		t.Fatal(err)
	}
	if m["process_cpu_seconds_total"] != 12.5 || m["process_resident_memory_bytes"] != 3.2e7 ||
		m["pgrelay_edge_disconnections_total"] != 7 || m["go_goroutines"] != 7 {
		t.Fatalf("%v", m)
	}
}

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	// The command name may hold spaces and parentheses.
	line := "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 100 0 0"
	cpu, err := parseStatCPU(line)
	if err != nil || cpu != 3 {
		t.Fatalf("%v %v, want 3 s (300 ticks)", cpu, err)
	}
}

func TestIsSlow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int
		f    float64
		want int
	}{{1000, 0.1, 100}, {10, 0.1, 1}, {7, 0, 0}, {3, 0.5, 1}, {100, 0.9, 90}} {
		got := 0
		for i := range tc.n {
			if isSlow(i, tc.f) {
				got++
			}
		}
		if got != tc.want {
			t.Errorf("%d clients × %v: %d slow, want %d", tc.n, tc.f, got, tc.want)
		}
	}
}
