// Package redisbus carries events between the relay and the edges over Redis
// pub/sub. It owns the Redis key and channel names and the envelope format.
//
// The relay uses a Publisher: each Publish gives the event the next id of its
// channel (a counter key), appends it to the channel's bounded history (a
// stream) and publishes the envelope, in one Lua script. Ids of a channel are
// consecutive integers; they only grow, even across a loss of Redis's data
// (the counter is then reseeded from the clock, and readers see a gap).
//
// An edge uses one Subscriber: one Redis pub/sub connection whatever the number
// of clients. Acquire subscribes to channels with reference counting and waits
// until Redis confirms, so a client that Acquire returned for is live;
// Release unsubscribes when the last user of a channel leaves. Run owns the
// connection: it reads, pings, and reconnects with backoff, resubscribing to
// every acquired channel. Messages published while the connection is down are
// not seen (Redis pub/sub is at-most-once); Run logs each such gap.
//
// History reads a channel's events after a given id, for resuming clients and
// for the Subscriber, which delivers each channel's events in id order and
// fills any gap it sees (after a reconnect, or an id jump) from the history
// before going on; a gap the history cannot fill is reported as a reset.
//
// Names, for a prefix P: channel "P:ch:NAME" carries NAME's envelopes, key
// "P:seq:NAME" holds NAME's last id, stream "P:h:NAME" its history,
// "P:once:ID" marks a source id already published, and "P:ctl" is a control
// channel every edge subscribes to so its connection exists with no clients.
//
// Publisher and Subscriber are safe for concurrent use.
package redisbus

// DefaultPrefix is the prefix of every key and channel unless configured.
const DefaultPrefix = "pgrelay"

func channelKey(prefix, name string) string { return prefix + ":ch:" + name }
func seqKey(prefix, name string) string     { return prefix + ":seq:" + name }
func historyKey(prefix, name string) string { return prefix + ":h:" + name }
func dedupeKey(prefix, id string) string    { return prefix + ":once:" + id }
func controlChannel(prefix string) string   { return prefix + ":ctl" }
