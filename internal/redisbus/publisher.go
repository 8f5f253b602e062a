package redisbus

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// publishScript increments the channel's counter and publishes the envelope
// with that id spliced in as its first member, in one atomic step. ARGV[2] is
// a JSON object without an id; the id is digits only, so no escaping is needed.
var publishScript = redis.NewScript(`
local id = string.format("%d", redis.call("INCR", KEYS[1]))
redis.call("PUBLISH", ARGV[1], '{"id":"' .. id .. '",' .. string.sub(ARGV[2], 2))
return id
`)

// Publisher publishes events for the relay.
type Publisher struct {
	rdb    redis.Scripter
	prefix string
}

// NewPublisher returns a Publisher that writes under prefix.
func NewPublisher(rdb redis.Scripter, prefix string) *Publisher {
	return &Publisher{rdb: rdb, prefix: prefix}
}

// Publish gives payload the next id of channel and publishes it. It returns
// the id. An error means the event may or may not have been published.
func (p *Publisher) Publish(ctx context.Context, channel, payload string) (id string, err error) {
	body, err := json.Marshal(struct {
		Channel string `json:"channel"`
		Payload string `json:"payload"`
	}{channel, payload})
	if err != nil {
		return "", fmt.Errorf("encode %q: %w", channel, err)
	}
	res, err := publishScript.Run(ctx, p.rdb,
		[]string{seqKey(p.prefix, channel)},
		channelKey(p.prefix, channel), body).Text()
	if err != nil {
		return "", fmt.Errorf("publish %q: %w", channel, err)
	}
	if _, err := strconv.ParseUint(res, 10, 64); err != nil {
		return "", fmt.Errorf("publish %q: unexpected id %q", channel, res)
	}
	return res, nil
}
