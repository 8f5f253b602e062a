package redisbus

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// publishScript gives an event the next id of its channel, appends it to the
// channel's history and publishes it, in one atomic step: a subscriber can
// never see a message the history lacks, or the reverse.
//
// KEYS: the id counter, the history stream, the dedupe key ("" when unused).
// ARGV: the pub/sub channel, the envelope without its id (a JSON object), the
// history length, the history TTL in seconds (0: none), the dedupe TTL.
//
// A missing counter is seeded from the server clock in microseconds, so ids
// keep growing even after Redis lost its data (they jump forward; edges and
// clients see the jump as a gap the history cannot fill and reset). The
// counter itself never expires: an idle channel keeps contiguous ids.
const publishLua = `
if KEYS[3] ~= "" then
  local prev = redis.call("GET", KEYS[3])
  if prev then return {prev, 1} end
end
if redis.call("EXISTS", KEYS[1]) == 0 then
  local t = redis.call("TIME")
  redis.call("SET", KEYS[1], string.format("%d", tonumber(t[1]) * 1000000 + tonumber(t[2])))
end
local id = string.format("%d", redis.call("INCR", KEYS[1]))
local env = '{"id":"' .. id .. '",' .. string.sub(ARGV[2], 2)
redis.call("XADD", KEYS[2], "MAXLEN", ARGV[3], id .. "-0", "e", env)
local ttl = tonumber(ARGV[4])
if ttl > 0 then redis.call("EXPIRE", KEYS[2], ttl) end
redis.call("PUBLISH", ARGV[1], env)
if KEYS[3] ~= "" then redis.call("SET", KEYS[3], id, "EX", ARGV[5]) end
return {id, 0}
`

var publishScript = redis.NewScript(publishLua)

// Defaults for PublisherOptions.
const (
	DefaultHistorySize = 1000
	DefaultHistoryTTL  = 24 * time.Hour
)

// PublisherOptions configures a Publisher.
type PublisherOptions struct {
	// Prefix of every key and channel. Empty means DefaultPrefix.
	Prefix string
	// HistorySize is how many recent events per channel Redis keeps for
	// resuming clients and healing edges. Zero means DefaultHistorySize.
	HistorySize int
	// HistoryTTL drops a channel's history after this long without a new
	// event. Zero means DefaultHistoryTTL; negative keeps it forever.
	HistoryTTL time.Duration
}

// Publisher publishes events for the relay.
type Publisher struct {
	rdb  redis.Cmdable
	opts PublisherOptions
}

// NewPublisher returns a Publisher.
func NewPublisher(rdb redis.Cmdable, opts PublisherOptions) *Publisher {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.HistorySize <= 0 {
		opts.HistorySize = DefaultHistorySize
	}
	if opts.HistoryTTL == 0 {
		opts.HistoryTTL = DefaultHistoryTTL
	}
	return &Publisher{rdb: rdb, opts: opts}
}

// Publish gives payload the next id of channel, records it in the history
// and publishes it. It returns the id. An error means the event may or may
// not have been published.
func (p *Publisher) Publish(ctx context.Context, channel, payload string) (id string, err error) {
	id, _, err = p.publish(ctx, channel, payload, "")
	return id, err
}

// PublishOnce is Publish for an event with a source identity (an outbox row
// id): if an event with the same dedupeID was published within the history
// TTL, it is not published again and its id is returned with dup true.
func (p *Publisher) PublishOnce(ctx context.Context, channel, payload, dedupeID string) (id string, dup bool, err error) {
	return p.publish(ctx, channel, payload, dedupeKey(p.opts.Prefix, dedupeID))
}

func (p *Publisher) publish(ctx context.Context, channel, payload, dkey string) (string, bool, error) {
	c, err := p.call(channel, payload, dkey)
	if err != nil {
		return "", false, err
	}
	return c.result(publishScript.Run(ctx, p.rdb, c.keys, c.args...))
}

// call is one run of publishScript: its keys and arguments.
type call struct {
	channel string
	keys    []string
	args    []any
}

func (p *Publisher) call(channel, payload, dkey string) (call, error) {
	// A payload that is not valid UTF-8 would be mangled by JSON (each bad
	// byte becomes U+FFFD): send its base64 instead, and say so.
	encoding := ""
	if !utf8.ValidString(payload) {
		payload, encoding = base64.StdEncoding.EncodeToString([]byte(payload)), "base64"
	}
	body, err := json.Marshal(struct {
		Channel  string `json:"channel"`
		Payload  string `json:"payload"`
		Encoding string `json:"encoding,omitempty"`
		TS       int64  `json:"ts"`
	}{channel, payload, encoding, time.Now().UnixMicro()})
	if err != nil {
		return call{}, fmt.Errorf("encode %q: %w", channel, err)
	}
	ttl := int64(p.opts.HistoryTTL / time.Second)
	dttl := ttl
	if ttl <= 0 {
		ttl, dttl = 0, int64(DefaultHistoryTTL/time.Second)
	}
	return call{
		channel: channel,
		keys:    []string{seqKey(p.opts.Prefix, channel), historyKey(p.opts.Prefix, channel), dkey},
		args:    []any{channelKey(p.opts.Prefix, channel), body, p.opts.HistorySize, ttl, dttl},
	}, nil
}

// result reads the script's answer: the id, and whether it was a repeat.
func (c call) result(cmd *redis.Cmd) (string, bool, error) {
	res, err := cmd.Slice()
	if err != nil {
		return "", false, fmt.Errorf("publish %q: %w", c.channel, err)
	}
	id, _ := res[0].(string)
	dup, _ := res[1].(int64)
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return "", false, fmt.Errorf("publish %q: unexpected id %q", c.channel, id)
	}
	return id, dup == 1, nil
}

// Message is one event for PublishBatch.
type Message struct {
	Channel, Payload string
}

// PublishBatch publishes msgs in one round trip: a pipeline of the script
// Publish runs, so each message is still one atomic step, and the ids of a
// channel follow the order of msgs. It returns the id of each message, ""
// for one that failed, and the first error. As with Publish, a message that
// failed may or may not have been published.
//
// If Redis lost the script (a restart, SCRIPT FLUSH), the messages it
// refused are sent again, in order, in one more round trip, the first of
// them with EVAL (which caches the script again) and the rest with EVALSHA;
// the commands are those Publish needs, nothing more. They keep their order
// among themselves; a message after them that Redis accepted the first time
// (possible only if another client loaded the script while this pipeline
// ran) would be published before them.
func (p *Publisher) PublishBatch(ctx context.Context, msgs []Message) ([]string, error) {
	if len(msgs) == 1 {
		// The common case when idle: a plain command (EVALSHA, EVAL on
		// NOSCRIPT). It is also quicker to fail: go-redis gives up dialing a
		// Redis that refuses connections in ~1.7s for a command, ~3.3s for a
		// pipeline (v9.23, default options).
		id, err := p.Publish(ctx, msgs[0].Channel, msgs[0].Payload)
		return []string{id}, err
	}
	ids := make([]string, len(msgs))
	errs := make([]error, len(msgs))
	calls := make([]call, len(msgs))
	todo := make([]int, 0, len(msgs)) // indexes to send
	for i, m := range msgs {
		if calls[i], errs[i] = p.call(m.Channel, m.Payload, ""); errs[i] == nil {
			todo = append(todo, i)
		}
	}
	hash := publishScript.Hash()
	// Attempt 0 sends EVALSHA only; 1 starts with an EVAL; 2, should Redis
	// not cache scripts run by EVAL, sends EVAL only.
	for attempt := 0; len(todo) > 0; attempt++ {
		pipe := p.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(todo))
		for j, i := range todo {
			if attempt == 2 || attempt == 1 && j == 0 {
				cmds[j] = pipe.Eval(ctx, publishLua, calls[i].keys, calls[i].args...)
			} else {
				cmds[j] = pipe.EvalSha(ctx, hash, calls[i].keys, calls[i].args...)
			}
		}
		_, _ = pipe.Exec(ctx) // each command has its own error
		again := todo[:0]
		for j, i := range todo {
			if attempt < 2 && redis.HasErrorPrefix(cmds[j].Err(), "NOSCRIPT") {
				again = append(again, i) // not run: safe to send again
				continue
			}
			ids[i], _, errs[i] = calls[i].result(cmds[j])
		}
		todo = again
	}
	for _, err := range errs {
		if err != nil {
			return ids, err
		}
	}
	return ids, nil
}
