package hub

import (
	"fmt"
	"testing"
)

// BenchmarkPublish measures one Publish to a channel with n subscribers
// whose writers keep up (drained between publishes, outside the timer's
// hot loop as far as possible). Allocations must not grow with the
// subscribers: a message is encoded once, never per subscriber. (With more
// than parallelMin subscribers, handing a message to the other shards'
// goroutines costs 4 allocations per Publish on 2 CPUs.)
//
//	go test -run '^$' -bench Publish -benchmem ./internal/hub/
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 5000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := New(Options{QueueSize: 1024})
			subs := make([]*Subscriber, n)
			for i := range subs {
				subs[i] = h.Subscribe([]string{"c"}, nil)
			}
			m := &Message{Channel: "c", ID: 1, Frame: make([]byte, 160)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if got := h.Publish(m); got != n {
					b.Fatalf("delivered to %d of %d", got, n)
				}
				if i%512 == 511 {
					b.StopTimer()
					for _, s := range subs {
						for len(s.queue) > 0 {
							<-s.queue
						}
					}
					b.StartTimer()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
		})
	}
}

// nopSink takes every message and does nothing with it.
type nopSink struct{ n int }

func (s *nopSink) Deliver(ms []*Message) (int, bool) { s.n += len(ms); return len(ms), true }

// BenchmarkPublishSinks measures the hub's own share of a fan-out to
// subscribers with a Sink (as WebSocket clients have), one shard and one
// per CPU. The sinks do nothing, so this is the walk over the subscribers
// and the hand-off to the shards' goroutines. Allocations are per Publish,
// never per subscriber.
//
//	go test -run '^$' -bench PublishSinks -benchmem ./internal/hub/
func BenchmarkPublishSinks(b *testing.B) {
	for _, shards := range []int{1, 0} {
		for _, n := range []int{100, 1000, 5000} {
			name := fmt.Sprintf("shards=%d/subscribers=%d", shards, n)
			if shards == 0 {
				name = fmt.Sprintf("shards=GOMAXPROCS/subscribers=%d", n)
			}
			b.Run(name, func(b *testing.B) {
				h := New(Options{Shards: shards})
				for range n {
					h.Subscribe([]string{"c"}, &nopSink{})
				}
				m := &Message{Channel: "c", ID: 1, Frame: make([]byte, 160)}
				b.ReportAllocs()
				for b.Loop() {
					if got := h.Publish(m); got != n {
						b.Fatalf("delivered to %d of %d", got, n)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
			})
		}
	}
}
