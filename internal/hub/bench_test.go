package hub

import (
	"fmt"
	"testing"
)

// BenchmarkPublish measures one Publish to a channel with n subscribers
// whose writers keep up (drained between publishes, outside the timer's
// hot loop as far as possible). Allocation counts must stay at zero: a
// message is encoded once, never per subscriber.
//
//	go test -run '^$' -bench Publish -benchmem ./internal/hub/
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 5000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := New(Options{QueueSize: 1024})
			subs := make([]*Subscriber, n)
			for i := range subs {
				subs[i] = h.Subscribe([]string{"c"})
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
