package edge

import (
	"context"
	"errors"
	"strconv"

	"github.com/pgrelay/pgrelay/internal/event"

	"github.com/pgrelay/pgrelay/internal/hub"
	"github.com/pgrelay/pgrelay/internal/redisbus"
	"github.com/pgrelay/pgrelay/internal/wsconn"
)

// broker subscribes a client in the hub first and in Redis second: a message
// that arrives once Redis confirms finds the client already in the hub.
type broker struct {
	hub  *hub.Hub
	bus  *redisbus.Subscriber
	hist *redisbus.History
}

// replayPage is how many history entries one read fetches during a replay:
// small, since entries may be large (outbox payloads) and the client slow.
const replayPage = 32

var _ wsconn.Broker = (*broker)(nil)

func (b *broker) Subscribe(ctx context.Context, channels []string, sink hub.Sink) (*hub.Subscriber, error) {
	if !b.bus.Live() {
		// Fail fast: the client retries, perhaps on an edge that is live.
		return nil, errors.New("redis subscription down")
	}
	s := b.hub.Subscribe(channels, sink)
	if err := b.bus.Acquire(ctx, s.Channels()); err != nil {
		b.hub.Unsubscribe(s)
		return nil, err
	}
	return s, nil
}

func (b *broker) Unsubscribe(s *hub.Subscriber) {
	b.hub.Unsubscribe(s)
	b.bus.Release(s.Channels())
}

func (b *broker) Position(channel string) uint64 { return b.bus.Position(channel) }

func (b *broker) Replay(ctx context.Context, channel string, after uint64, yield func(*hub.Message) error) error {
	_, err := b.hist.Each(ctx, channel, after, replayPage,
		func(at uint64) error { return yield(resetMessage(channel, at)) },
		func(e event.Event, id uint64) error {
			m := message(e)
			m.Published = 0 // an old message: not a delivery latency
			return yield(m)
		})
	return err
}

func message(e event.Event) *hub.Message {
	return wsconn.Encode(&hub.Message{Channel: e.Channel, ID: eventID(e), Frame: e.Frame(), Published: e.TS})
}

func resetMessage(channel string, at uint64) *hub.Message {
	return wsconn.Encode(&hub.Message{Channel: channel, ID: at, Frame: event.ResetFrame(channel, at), Reset: true})
}

// eventID is e's id as a number; events from redisbus have been checked.
func eventID(e event.Event) uint64 {
	id, _ := strconv.ParseUint(e.ID, 10, 64)
	return id
}
