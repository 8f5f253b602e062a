package metrics

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/hub"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func zero() uint64 { return 0 }

func edgeSources() EdgeSources {
	return EdgeSources{
		Clients: func() int { return 3 }, SubscriptionLive: func() bool { return true },
		RedisChannels: func() int { return 2 }, Received: func() uint64 { return 7 },
		Malformed: zero, Duplicates: zero, Resets: zero, RedisReconnects: zero, Kicks: zero, Incomplete: zero,
		ChannelSubscribers: func(ch string) int { return len(ch) },
	}
}

// gatherAll returns every metric family the binaries export.
func gatherAll(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := NewEdge(reg, edgeSources(), []string{"data"})
	NewRelay(reg, func() OutboxCounts { return OutboxCounts{} })
	// Vectors only show once they have a child.
	m.Refused("bad_request")
	m.Connected("ws")
	m.Disconnected("ws", "client")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) < 25 {
		t.Fatalf("gathered only %d metric families", len(families))
	}
	return families
}

// Every metric the binaries export is documented in docs/metrics.md.
func TestEveryMetricIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range gatherAll(t) {
		if !strings.Contains(string(doc), "| `"+f.GetName()+"` |") {
			t.Errorf("docs/metrics.md has no row for %s", f.GetName())
		}
	}
}

func TestEdgeObserverCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewEdge(reg, edgeSources(), []string{"data", "orders"})
	now := time.Now()
	m.Delivered() // a replay: counted, not timed
	m.Written(5)  // what the fan-out wrote
	// A batch of two live messages that reached clients: the one without
	// a timestamp is not timed; nor is a batch no client had.
	m.FannedOut([]*hub.Message{{Published: now.Add(-3 * time.Millisecond).UnixMicro()}, {}}, 5, now)
	m.FannedOut([]*hub.Message{{Published: now.Add(-time.Second).UnixMicro()}}, 0, now)
	got := gather(t, reg)
	if got["pgrelay_edge_messages_delivered_total"] != 6 {
		t.Errorf("delivered = %v, want 6", got["pgrelay_edge_messages_delivered_total"])
	}
	if got["pgrelay_edge_delivery_latency_seconds_count"] != 1 {
		t.Errorf("latency count = %v, want 1", got["pgrelay_edge_delivery_latency_seconds_count"])
	}
	if s := got["pgrelay_edge_delivery_latency_seconds_sum"]; s < 0.002 || s > 0.004 {
		t.Errorf("latency sum = %v, want about 0.003", s)
	}
	if got[`pgrelay_edge_channel_subscribers{channel="orders"}`] != 6 || got["pgrelay_edge_clients"] != 3 {
		t.Errorf("gauges: %v", got)
	}
}

// gather flattens reg into name{labels} → value (histograms: _count, _sum).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[name] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[name+"_count"] = float64(m.Histogram.GetSampleCount())
				out[name+"_sum"] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

func TestRelayRoles(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewRelay(reg, nil)
	m.Role("connecting", "standby")
	m.Role("standby", "leader")
	m.Received()
	m.Published(2 * time.Millisecond)
	m.Role("leader", "connecting")
	m.Role("connecting", "leader")
	got := gather(t, reg)
	for name, want := range map[string]float64{
		"pgrelay_relay_leader":                        1,
		"pgrelay_relay_leadership_acquired_total":     2,
		"pgrelay_relay_postgres_sessions_lost_total":  1,
		"pgrelay_relay_messages_published_total":      1,
		"pgrelay_relay_publish_latency_seconds_count": 1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
