package metrics

import (
	"time"

	"github.com/pgrelay/pgrelay/internal/hub"
	"github.com/prometheus/client_golang/prometheus"
)

// EdgeSources are the counters an edge keeps; each func must be cheap and
// safe for concurrent use.
type EdgeSources struct {
	Clients            func() int
	SubscriptionLive   func() bool
	RedisChannels      func() int
	Received           func() uint64
	Malformed          func() uint64
	Duplicates         func() uint64
	Resets             func() uint64
	RedisReconnects    func() uint64
	Kicks              func() uint64
	Incomplete         func() uint64
	ChannelSubscribers func(channel string) int
}

// Edge holds the edge's metrics and implements wsconn.Observer.
type Edge struct {
	refused      *prometheus.CounterVec
	connected    *prometheus.CounterVec
	disconnected *prometheus.CounterVec
	delivered    prometheus.Counter
	latency      prometheus.Histogram
}

// NewEdge registers the edge's metrics on reg. Per-channel subscriber
// gauges exist only for labelChannels, so that clients cannot grow the
// label set.
func NewEdge(reg prometheus.Registerer, src EdgeSources, labelChannels []string) *Edge {
	m := &Edge{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgrelay_edge_requests_refused_total",
			Help: "Client requests refused before the stream started, by reason (bad_request, unauthorized, draining, full, unavailable).",
		}, []string{"reason"}),
		connected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgrelay_edge_connections_total",
			Help: "Clients that got their stream, by transport (ws, sse).",
		}, []string{"transport"}),
		disconnected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgrelay_edge_disconnections_total",
			Help: "Clients gone, by transport and reason (client, slow, going_away, write_error, ping_timeout, history_unavailable, policy, token_expired).",
		}, []string{"transport", "reason"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgrelay_edge_messages_delivered_total",
			Help: "Messages written to clients, one per client per message (handed to the socket, or queued for it when it is full).",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgrelay_edge_delivery_latency_seconds",
			Help:    "Time from the relay publishing a message to the end of its fan-out: the edge has handed it to every client (written, or queued where a socket is full or a client is still catching up). One observation per live message.",
			Buckets: latencyBuckets,
		}),
	}
	reg.MustRegister(m.refused, m.connected, m.disconnected, m.delivered, m.latency)

	gaugeFunc(reg, "pgrelay_edge_clients", "Connected clients (WebSocket and SSE).",
		func() float64 { return float64(src.Clients()) })
	gaugeFunc(reg, "pgrelay_edge_redis_subscription_up", "1 while the Redis subscription is connected and answering.",
		func() float64 { return boolGauge(src.SubscriptionLive()) })
	gaugeFunc(reg, "pgrelay_edge_redis_channels", "Channels subscribed in Redis (those local clients want).",
		func() float64 { return float64(src.RedisChannels()) })
	counterFunc(reg, "pgrelay_edge_messages_received_total", "Valid messages read from Redis, before dropping duplicates.", src.Received)
	counterFunc(reg, "pgrelay_edge_messages_malformed_total", "Messages on Redis that were not valid envelopes; skipped.", src.Malformed)
	counterFunc(reg, "pgrelay_edge_messages_duplicate_total", "Messages dropped because their id was already delivered.", src.Duplicates)
	counterFunc(reg, "pgrelay_edge_resets_total", "Gaps the history could not fill, each sent to clients as a reset frame.", src.Resets)
	counterFunc(reg, "pgrelay_edge_redis_reconnects_total", "Redis subscription connections lost and retried.", src.RedisReconnects)
	counterFunc(reg, "pgrelay_edge_slow_clients_total", "Clients cut off because their queue was full.", src.Kicks)
	counterFunc(reg, "pgrelay_edge_incomplete_requests_total", "Connections closed before a complete request: slowloris cut off by EDGE_HEADER_TIMEOUT, or unused preconnects.", src.Incomplete)

	subs := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pgrelay_edge_channel_subscribers",
		Help: "Local subscribers per channel, for the channels in EDGE_METRICS_CHANNELS only.",
	}, []string{"channel"})
	reg.MustRegister(&channelGauges{vec: subs, channels: labelChannels, count: src.ChannelSubscribers})
	return m
}

// Refused implements wsconn.Observer.
func (m *Edge) Refused(reason string) { m.refused.WithLabelValues(reason).Inc() }

// Connected implements wsconn.Observer.
func (m *Edge) Connected(transport string) { m.connected.WithLabelValues(transport).Inc() }

// Disconnected implements wsconn.Observer.
func (m *Edge) Disconnected(transport, reason string) {
	m.disconnected.WithLabelValues(transport, reason).Inc()
}

// Delivered implements wsconn.Observer: one message written to one client
// (a replay, a position frame, an SSE event, a message held during
// catch-up).
func (m *Edge) Delivered() {
	m.delivered.Inc()
}

// Written counts n messages written to clients by the hub's fan-out
// (hub.Options.Written): once per shard per batch, not once per client.
// Counting per delivery cost ~3% of the edge's CPU, most of it the two
// fan-out shards updating the same counter.
func (m *Edge) Written(n int) { m.delivered.Add(float64(n)) }

// FannedOut times a batch of live messages whose fan-out ended at at,
// having reached delivered clients in all: one observation per message.
func (m *Edge) FannedOut(ms []*hub.Message, delivered int, at time.Time) {
	if delivered == 0 {
		return
	}
	for _, msg := range ms {
		if msg.Published > 0 {
			m.latency.Observe(at.Sub(time.UnixMicro(msg.Published)).Seconds())
		}
	}
}

// channelGauges fills a gauge vector from a count function at scrape time.
type channelGauges struct {
	vec      *prometheus.GaugeVec
	channels []string
	count    func(string) int
}

func (c *channelGauges) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

func (c *channelGauges) Collect(ch chan<- prometheus.Metric) {
	for _, name := range c.channels {
		c.vec.WithLabelValues(name).Set(float64(c.count(name)))
	}
	c.vec.Collect(ch)
}
