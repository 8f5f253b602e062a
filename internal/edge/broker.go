package edge

import (
	"context"
	"errors"

	"github.com/pgrelay/pgrelay/internal/hub"
	"github.com/pgrelay/pgrelay/internal/redisbus"
	"github.com/pgrelay/pgrelay/internal/wsconn"
)

// broker subscribes a client in the hub first and in Redis second: a message
// that arrives once Redis confirms finds the client already in the hub.
type broker struct {
	hub *hub.Hub
	bus *redisbus.Subscriber
}

var _ wsconn.Broker = (*broker)(nil)

func (b *broker) Subscribe(ctx context.Context, channels []string) (*hub.Subscriber, error) {
	if !b.bus.Live() {
		// Fail fast: the client retries, perhaps on an edge that is live.
		return nil, errors.New("redis subscription down")
	}
	s := b.hub.Subscribe(channels)
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
