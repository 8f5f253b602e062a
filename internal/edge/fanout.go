package edge

import (
	"context"
	"time"

	"github.com/pgrelay/pgrelay/internal/hub"
)

// fanout hands the messages from Redis to the hub from a goroutine of its
// own, in batches. While the hub fans one message out, the next ones wait
// here and then go out together: a client that is sent several gets them
// in one write, so an edge that falls behind spends less per delivery
// instead of more. When the edge keeps up, each message goes alone, at once.
type fanout struct {
	hub *hub.Hub
	in  chan *hub.Message
	// done, if set, is told of each batch: its messages, the deliveries
	// the hub made of them, and when it finished (the metrics).
	done func(ms []*hub.Message, delivered int, at time.Time)
}

// Bounds of the fan-out: messages that may wait for the hub before the
// Redis reader waits too, and the most handed to the hub at once.
const (
	fanoutQueue = 4096
	// fanoutBatch stays well under EDGE_QUEUE_SIZE's default (256): one
	// batch alone must not look like a client falling behind.
	fanoutBatch = 64
)

func newFanout(h *hub.Hub) *fanout {
	return &fanout{hub: h, in: make(chan *hub.Message, fanoutQueue)}
}

// publish queues m, waiting if the queue is full, until ctx ends.
func (f *fanout) publish(ctx context.Context, m *hub.Message) {
	select {
	case f.in <- m:
	case <-ctx.Done():
	}
}

// run publishes what is queued until ctx ends.
func (f *fanout) run(ctx context.Context) {
	batch := make([]*hub.Message, 0, fanoutBatch)
	for {
		select {
		case m := <-f.in:
			batch = append(batch[:0], m)
		more:
			for len(batch) < fanoutBatch {
				select {
				case m := <-f.in:
					batch = append(batch, m)
				default:
					break more
				}
			}
			n := f.hub.PublishBatch(batch)
			if f.done != nil {
				f.done(batch, n, time.Now())
			}
			clear(batch) // let the messages go once every client has them
		case <-ctx.Done():
			return
		}
	}
}
