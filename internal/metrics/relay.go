package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// OutboxCounts are the outbox drainer's counters.
type OutboxCounts struct{ Published, Duplicates, Rejected uint64 }

// Relay holds the relay's metrics. Its methods are safe for concurrent use.
type Relay struct {
	leader       prometheus.Gauge
	leaderships  prometheus.Counter
	sessionsLost prometheus.Counter
	received     prometheus.Counter
	published    prometheus.Counter
	failed       prometheus.Counter
	latency      prometheus.Histogram
}

// NewRelay registers the relay's metrics on reg. outbox, if set, exports the
// outbox drainer's counters.
func NewRelay(reg prometheus.Registerer, outbox func() OutboxCounts) *Relay {
	m := &Relay{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgrelay_relay_leader",
			Help: "1 while this relay holds the leader lock and listens.",
		}),
		leaderships: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgrelay_relay_leadership_acquired_total",
			Help: "Times this relay became the leader.",
		}),
		sessionsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgrelay_relay_postgres_sessions_lost_total",
			Help: "PostgreSQL sessions that ended after the relay was standby or leader (errors, and the final shutdown).",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgrelay_relay_notifications_received_total",
			Help: "Notifications received on the LISTEN connection (notify source).",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgrelay_relay_messages_published_total",
			Help: "Messages published to Redis (notify source; the outbox counts its own).",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgrelay_relay_publish_failures_total",
			Help: "Publishes to Redis that failed; with the notify source the notification is lost.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgrelay_relay_publish_latency_seconds",
			Help:    "Time from a notification being read off the LISTEN connection to its publish to Redis completing.",
			Buckets: latencyBuckets,
		}),
	}
	reg.MustRegister(m.leader, m.leaderships, m.sessionsLost, m.received, m.published, m.failed, m.latency)
	if outbox != nil {
		counterFunc(reg, "pgrelay_relay_outbox_published_total", "Outbox rows published and deleted.",
			func() uint64 { return outbox().Published })
		counterFunc(reg, "pgrelay_relay_outbox_duplicates_total", "Outbox rows a previous leader had published; deleted without publishing again.",
			func() uint64 { return outbox().Duplicates })
		counterFunc(reg, "pgrelay_relay_outbox_rejected_total", "Outbox rows refused (too large, bad channel) and moved to the rejected table.",
			func() uint64 { return outbox().Rejected })
	}
	return m
}

// Role records a role change: "leader", "standby" or "connecting"; from
// says what the relay was before.
func (m *Relay) Role(from, to string) {
	if to == "leader" {
		m.leader.Set(1)
		m.leaderships.Inc()
	} else {
		m.leader.Set(0)
	}
	if to == "connecting" && from != "connecting" {
		m.sessionsLost.Inc()
	}
}

// Received counts a notification read off the LISTEN connection.
func (m *Relay) Received() { m.received.Inc() }

// Published records a publish that took d since the notification arrived.
func (m *Relay) Published(d time.Duration) {
	m.published.Inc()
	m.latency.Observe(d.Seconds())
}

// PublishFailed counts a failed publish.
func (m *Relay) PublishFailed() { m.failed.Inc() }
