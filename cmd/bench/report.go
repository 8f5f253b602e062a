package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"
)

// Result is a run's figures; its JSON form is what -json writes.
type Result struct {
	Config    configJSON     `json:"config"`
	Machine   machine        `json:"machine"`
	Clients   clientsJSON    `json:"clients"`
	Messages  messagesJSON   `json:"messages"`
	Latency   latencyJSON    `json:"latency_ms"` // read time − SENT
	Arrival   latencyJSON    `json:"arrival_ms"` // kernel receive stamp − SENT
	PGListen  *listenJSON    `json:"pg_listen,omitempty"`
	Redis     *listenJSON    `json:"redis,omitempty"`
	RelayAdds *relayAddsJSON `json:"relay_adds_ms,omitempty"` // with both
	Slow      *slowJSON      `json:"slow,omitempty"`
	Edge      edgeJSON       `json:"edge"`
	Bench     benchJSON      `json:"bench"`
	Warnings  []string       `json:"warnings,omitempty"`
}

type configJSON struct {
	Edges        []string `json:"edges"`
	Channel      string   `json:"channel"`
	Clients      int      `json:"clients"`
	Rate         float64  `json:"rate"`
	Count        int      `json:"count"`
	Payload      int      `json:"payload"`
	Ramp         float64  `json:"ramp"`
	Sources      int      `json:"sources"`
	Senders      int      `json:"senders"`
	SlowFraction float64  `json:"slow_fraction"`
	QuickACK     bool     `json:"quickack"`
	EdgePIDs     []int    `json:"edge_pids,omitempty"`
}

func configOf(c Config) configJSON {
	out := configJSON{Channel: c.Channel, Clients: c.Clients, Rate: c.Rate, Count: c.Count,
		Payload: c.Payload, Ramp: c.Ramp, Sources: c.Sources, Senders: c.Senders,
		SlowFraction: c.SlowFraction, QuickACK: c.QuickACK, EdgePIDs: c.EdgePIDs}
	for _, u := range c.Edges {
		out.Edges = append(out.Edges, u.Redacted())
	}
	return out
}

type quantiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type clientsJSON struct {
	Requested      int            `json:"requested"`
	Connected      int            `json:"connected"`
	Readers        int            `json:"readers"`
	EpollReaders   int            `json:"epoll_readers"` // read by an epoll set; with ACKs delayed unless -quickack
	Slow           int            `json:"slow"`
	Failed         int            `json:"failed"`
	Errors         map[string]int `json:"errors,omitempty"`
	ConnectSeconds float64        `json:"connect_seconds"`
	ConnectMS      quantiles      `json:"connect_ms"`
}

type messagesJSON struct {
	Sent                uint64         `json:"sent"`
	SendError           string         `json:"send_error,omitempty"`
	SendSeconds         float64        `json:"send_seconds"`
	SendRate            float64        `json:"send_rate"`
	SendMaxLateMS       float64        `json:"send_max_late_ms"`
	NotifyExecMS        quantiles      `json:"notify_exec_ms"`
	Expected            uint64         `json:"expected"`
	Delivered           uint64         `json:"delivered"`
	DeliveredRatio      float64        `json:"delivered_ratio"`
	DeliveredFrames     uint64         `json:"delivered_frames"`
	Missing             uint64         `json:"missing"`
	Duplicates          uint64         `json:"duplicates"`
	OutOfOrder          uint64         `json:"out_of_order"`
	Gaps                uint64         `json:"gaps"`
	Resets              uint64         `json:"resets"`
	Foreign             uint64         `json:"foreign"`
	Malformed           uint64         `json:"malformed"`
	ReadersComplete     int            `json:"readers_complete"`
	ReadersCut          int            `json:"readers_disconnected"`
	ReadersCutWhy       map[string]int `json:"readers_disconnected_by,omitempty"`
	WindowSeconds       float64        `json:"window_seconds"`
	DeliveriesPerSecond float64        `json:"deliveries_per_second"`
}

type latencyJSON struct {
	Samples uint64  `json:"samples"`
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p999"`
	Max     float64 `json:"max"`
	Mean    float64 `json:"mean"`
}

// listenJSON is what a listener beside the clients received (-pg-listen,
// -redis).
type listenJSON struct {
	Received   uint64      `json:"received"` // repeats included
	Delivered  uint64      `json:"delivered"`
	Duplicates uint64      `json:"duplicates"`
	Missing    uint64      `json:"missing"`
	Rate       float64     `json:"rate"` // notifications per second, first to last
	Latency    latencyJSON `json:"latency_ms"`
}

// relayAddsJSON is the Redis listener's latency percentiles minus the raw
// LISTEN's: what the relay and Redis add. A difference of percentiles, not
// a percentile of differences.
type relayAddsJSON struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

type slowJSON struct {
	Clients        int            `json:"clients"`
	CutOff         int            `json:"cut_off"`
	StillConnected int            `json:"still_connected"`
	CloseCodes     map[string]int `json:"close_codes,omitempty"`
	Frames         uint64         `json:"frames_received"`
	EdgeSlowKicked float64        `json:"edge_slow_clients_total_delta"`
}

type edgeJSON struct {
	Source            string   `json:"source"` // proc, metrics or none
	RSSBefore         float64  `json:"rss_before_bytes"`
	RSSConnected      float64  `json:"rss_connected_bytes"`
	RSSIdle           float64  `json:"rss_idle_bytes"`
	RSSEnd            float64  `json:"rss_end_bytes"`
	RSSPerConnConnect float64  `json:"rss_per_conn_connect_bytes"`
	RSSPerConnIdle    float64  `json:"rss_per_conn_idle_bytes"`
	RSSPerConnEnd     float64  `json:"rss_per_conn_end_bytes"`
	HeapPerConnIdle   float64  `json:"heap_inuse_per_conn_idle_bytes"`
	StackPerConnIdle  float64  `json:"stack_inuse_per_conn_idle_bytes"`
	GoroutinesPerConn float64  `json:"goroutines_per_conn"`
	ClientsGauge      float64  `json:"clients_gauge"`
	CPUSeconds        float64  `json:"cpu_seconds"`
	CPUUtil           float64  `json:"cpu_util"`
	Deliveries        float64  `json:"deliveries"`
	DeliveriesSource  string   `json:"deliveries_source"`
	CPUPerDeliveryUS  float64  `json:"cpu_per_delivery_us"`
	SlowKicked        float64  `json:"slow_clients_total_delta"`
	Errors            []string `json:"errors,omitempty"`
}

type benchJSON struct {
	CPUSeconds       float64 `json:"cpu_seconds"`
	CPUUtil          float64 `json:"cpu_util"`
	CPUPerDeliveryUS float64 `json:"cpu_per_delivery_us"`
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func quantilesMS(h *hist) quantiles {
	return quantiles{P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)), Max: ms(h.Max())}
}

func latencyOf(h *hist) latencyJSON {
	return latencyJSON{Samples: h.Count(), P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)),
		P99: ms(h.Quantile(0.99)), P999: ms(h.Quantile(0.999)), Max: ms(h.Max()), Mean: ms(h.Mean())}
}

// writeJSON writes r, indented.
func writeJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeTable writes r as a two-column table for people.
func writeTable(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(f, a...)) }
	c, m, l, e := r.Config, r.Messages, r.Latency, r.Edge
	row("run", "%d clients × %g/s, %d notifications of %d B on %q, %d edge(s)", c.Clients, c.Rate, c.Count, c.Payload, c.Channel, len(c.Edges))
	row("machine", "%d CPUs, %s, Linux %s, load %.2f → %.2f", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.LoadAvg1, r.Machine.LoadEnd)
	acks := ackMode(c.QuickACK, r.Clients.Readers, r.Clients.EpollReaders)
	row("connected", "%d of %d (%d reading, ACKs %s; %d slow) in %.1fs; handshake p50 %.2f ms, p99 %.2f ms, max %.2f ms",
		r.Clients.Connected, r.Clients.Requested, r.Clients.Readers, acks, r.Clients.Slow, r.Clients.ConnectSeconds,
		r.Clients.ConnectMS.P50, r.Clients.ConnectMS.P99, r.Clients.ConnectMS.Max)
	for _, k := range sortedKeys(r.Clients.Errors) {
		row("  dial errors", "%d× %s", r.Clients.Errors[k], k)
	}
	row("sent", "%d in %.2fs (%.0f/s, %d sender(s), latest %.1f ms behind its slot; pg_notify p50 %.2f ms)",
		m.Sent, m.SendSeconds, m.SendRate, c.Senders, m.SendMaxLateMS, m.NotifyExecMS.P50)
	if m.SendError != "" {
		row("  send error", "%s", m.SendError)
	}
	row("delivered", "%d of %d (%.4f%%), %d readers complete; %.0f deliveries/s",
		m.Delivered, m.Expected, 100*m.DeliveredRatio, m.ReadersComplete, m.DeliveriesPerSecond)
	if m.ReadersCut > 0 || e.SlowKicked > 0 {
		why := ""
		for _, k := range sortedKeys(m.ReadersCutWhy) {
			why += fmt.Sprintf(" %d× %s;", m.ReadersCutWhy[k], k)
		}
		row("disconnected", "%d readers lost their connection during the run:%s the edge counted %.0f slow-client cut-offs", m.ReadersCut, why, e.SlowKicked)
	}
	row("order", "%d missing, %d duplicates, %d out of order, %d gaps, %d resets, %d foreign, %d malformed",
		m.Missing, m.Duplicates, m.OutOfOrder, m.Gaps, m.Resets, m.Foreign, m.Malformed)
	pcts := func(q latencyJSON) string {
		return fmt.Sprintf("p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms", q.P50, q.P90, q.P99, q.P999, q.Max)
	}
	row("latency", "%s  (send → client receive, %d samples)", pcts(l), l.Samples)
	// The same, up to when the kernel had the data: without the time the
	// client took to read it.
	if a := r.Arrival; a.Samples > 0 {
		row("arrival", "%s  (send → kernel receive on the client's socket, %d samples)", pcts(a), a.Samples)
	} else {
		row("arrival", "no samples: no kernel receive stamps (wss://, or not Linux)")
	}
	listenRow := func(k string, p *listenJSON) {
		row(k, "p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  (%d of %d, %d duplicates, %d missing; %.0f/s)",
			p.Latency.P50, p.Latency.P90, p.Latency.P99, p.Latency.Max, p.Delivered, m.Sent, p.Duplicates, p.Missing, p.Rate)
	}
	if p := r.PGListen; p != nil {
		listenRow("raw LISTEN", p)
	}
	if p := r.Redis; p != nil {
		listenRow("via relay (Redis)", p)
	}
	if a := r.RelayAdds; a != nil {
		row("relay adds", "p50 %.2f ms, p99 %.2f ms over raw LISTEN (relay and Redis)", a.P50, a.P99)
	}
	if s := r.Slow; s != nil {
		codes := ""
		for _, k := range sortedKeys(s.CloseCodes) {
			codes += fmt.Sprintf(" %s×%d", k, s.CloseCodes[k])
		}
		if codes != "" {
			codes = " (close codes:" + codes + ")"
		}
		row("slow clients", "%d never read: %d cut off by the edge%s, %d still connected, %d frames were waiting; edge counted %.0f",
			s.Clients, s.CutOff, codes, s.StillConnected, s.Frames, s.EdgeSlowKicked)
	}
	if e.RSSBefore > 0 {
		row("edge memory", "RSS %.1f → %.1f MiB connected, %.1f MiB idle, %.1f MiB at the end (%s)",
			e.RSSBefore/(1<<20), e.RSSConnected/(1<<20), e.RSSIdle/(1<<20), e.RSSEnd/(1<<20), e.Source)
		row("  per connection", "%.1f KiB after connecting, %.1f KiB idle, %.1f KiB at the end",
			e.RSSPerConnConnect/1024, e.RSSPerConnIdle/1024, e.RSSPerConnEnd/1024)
	}
	if e.HeapPerConnIdle != 0 || e.StackPerConnIdle != 0 {
		row("  of which (idle)", "Go heap %.1f KiB, goroutine stacks %.1f KiB, %.2f goroutines",
			e.HeapPerConnIdle/1024, e.StackPerConnIdle/1024, e.GoroutinesPerConn)
	}
	if e.Deliveries > 0 {
		row("edge CPU", "%.2f s in %.1f s (%.0f%% of a core): %.2f µs per delivery (%.0f deliveries, counted by %s)",
			e.CPUSeconds, m.WindowSeconds, 100*e.CPUUtil, e.CPUPerDeliveryUS, e.Deliveries, e.DeliveriesSource)
	}
	row("bench CPU", "%.2f s (%.0f%% of a core): %.2f µs per delivery", r.Bench.CPUSeconds, 100*r.Bench.CPUUtil, r.Bench.CPUPerDeliveryUS)
	for _, x := range e.Errors {
		row("edge probe error", "%s", x)
	}
	for _, x := range r.Warnings {
		row("warning", "%s", x)
	}
	return tw.Flush()
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ackMode says how the readers acknowledged what they read: the readers
// an epoll set reads delay their ACKs unless -quickack; the others (wss,
// no epoll) acknowledge at once.
func ackMode(quickACK bool, readers, epoll int) string {
	switch {
	case quickACK || epoll == 0:
		return "at once"
	case epoll >= readers:
		return "delayed"
	default:
		return fmt.Sprintf("delayed on %d, at once on %d", epoll, readers-epoll)
	}
}
