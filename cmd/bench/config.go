package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Config is one benchmark run. parseFlags fills it; tests build it directly.
type Config struct {
	Edges        []*url.URL // ws:// or wss:// URLs of /ws, without the query
	DatabaseURL  string
	Channel      string
	Clients      int
	Rate         float64 // notifications per second
	Count        int     // notifications; from -count, or -rate × -duration
	Duration     time.Duration
	Payload      int // bytes
	Ramp         float64
	Sources      int
	Senders      int // 0: one per 1,000 notifications/s, at most 16
	EdgePIDs     []int
	Metrics      bool
	JSONFile     string
	SlowFraction float64
	Settle       time.Duration
	Wait         time.Duration
	Token        string
	PGListen     bool
	RedisURL     string // "": no Redis subscriber
	RedisPrefix  string // the relay's RELAY_PREFIX; required with RedisURL
	Quiet        bool
	CPUProfile   string // the tool's own CPU profile, to see what a client costs
	QuickACK     bool   // readers acknowledge each read at once (the kernel's default)
}

const usageHead = `bench: load a pgrelay deployment and measure it.

It opens -clients WebSocket connections to the edges (GET /ws?channel=...),
spread over -edges and -sources, sends -count notifications at -rate with
SELECT pg_notify(channel, payload) on -db (the payload carries a sequence
number and the send time), and reports what the clients received: delivered
/ expected, duplicates, out-of-order and gaps (by the relay's ids), latency
from send to receive (one clock: run it on the edges' machine, or mind the
skew), the same up to the kernel's receive stamp on the client's socket
(arrival: without the client's own delay in reading), connect time, the edges' memory per connection and CPU per delivery
(from -edge-pid or the edges' /metrics), and its own CPU per delivery.

The relay must LISTEN on -channel (RELAY_CHANNELS). A run first checks that a
notification reaches every edge, and stops with an error if none arrives.

Example, with the relay listening on "data" and one edge on :8080:

  bench -edges http://127.0.0.1:8080 -channel data -clients 1000 -rate 10 -duration 20s

Flags:
`

// parseFlags reads args into a Config, or returns an error naming the flag
// (flag.ErrHelp for -h).
func parseFlags(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	var (
		c        Config
		edges    string
		pids     string
		count    int
		duration time.Duration
	)
	fs.StringVar(&edges, "edges", "http://127.0.0.1:8080", "comma-separated edge base `URLs` (http, https, ws or wss); clients are spread over them in turn")
	fs.StringVar(&c.DatabaseURL, "db", "postgres://127.0.0.1:5432/test?sslmode=disable", "PostgreSQL `URL` to send the notifications from")
	fs.StringVar(&c.Channel, "channel", "", "channel to notify and subscribe to; the relay must LISTEN on it (default: bench_ and 8 random hex digits, for a relay started with that name)")
	fs.IntVar(&c.Clients, "clients", 1000, "WebSocket connections to open")
	fs.Float64Var(&c.Rate, "rate", 10, "notifications per second")
	fs.IntVar(&count, "count", 0, "notifications to send (default: -rate × -duration)")
	fs.DurationVar(&duration, "duration", 0, "how long to send, if -count is not given (default 10s)")
	fs.IntVar(&c.Payload, "payload", 128, fmt.Sprintf("payload `bytes` (%d to %d): sequence number, send time, padding", minPayload, maxPayload))
	fs.Float64Var(&c.Ramp, "ramp", 1000, "connections opened per second; 0: as fast as 64 handshakes in flight allow")
	fs.IntVar(&c.Sources, "sources", 0, "bind clients to this many loopback source addresses, 127.0.0.2 and up, in turn: each holds ~28k ports per edge address; 0: let the kernel choose (loopback edges only when set)")
	fs.IntVar(&c.Senders, "senders", 0, "PostgreSQL connections sending, taking turns; 0: one per 1,000 notifications/s (at most 16)")
	fs.StringVar(&pids, "edge-pid", "", "comma-separated `PIDs` of the edge processes (this machine), to read RSS and CPU time from /proc")
	fs.BoolVar(&c.Metrics, "metrics", true, "read each edge's /metrics: RSS and CPU when -edge-pid is not given, deliveries, slow-client cut-offs, Go heap and stacks")
	fs.StringVar(&c.JSONFile, "json", "", "also write the results as JSON to this `file` (- for stdout)")
	fs.Float64Var(&c.SlowFraction, "slow-fraction", 0, "share of clients (0 to 0.9) that never read, to test isolation; they are reported apart")
	fs.DurationVar(&c.Settle, "settle", 2*time.Second, "idle time after connecting before the idle memory is read")
	fs.DurationVar(&c.Wait, "wait", 5*time.Second, "how long to wait for late deliveries after the last notification")
	fs.StringVar(&c.Token, "token", "", "bearer token sent as Authorization (edges with EDGE_AUTH=jwt)")
	fs.BoolVar(&c.PGListen, "pg-listen", false, "also LISTEN on -channel with a raw PostgreSQL connection and report its latency: the floor without relay and edge")
	fs.StringVar(&c.RedisURL, "redis", "", "also subscribe to the relay's Redis channel PREFIX:ch:CHANNEL at this `URL` and report its latency: the relay and Redis, without edge")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", "pgrelay", "the relay's key `prefix` (RELAY_PREFIX), for -redis")
	fs.BoolVar(&c.Quiet, "q", false, "no progress lines on stderr")
	fs.BoolVar(&c.QuickACK, "quickack", false, "readers acknowledge what they read at once, the kernel's default for a socket that only reads; by default they delay their TCP ACKs (TCP_QUICKACK off before each read), so that the ACKs, which a remote client's machine would send, leave the window in which the server is measured (epoll readers: plain TCP on Linux)")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write this tool's own CPU profile to `file` (go tool pprof), for the send window")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (flags only; -h lists them)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var err error
	if c.Edges, err = parseEdges(edges); err != nil {
		return Config{}, err
	}
	if c.EdgePIDs, err = parsePIDs(pids); err != nil {
		return Config{}, err
	}
	switch {
	case set["count"] && set["duration"]:
		return Config{}, errors.New("-count and -duration: give one, not both")
	case set["redis-prefix"] && c.RedisURL == "":
		return Config{}, errors.New("-redis-prefix: only with -redis")
	case set["count"]:
		c.Count = count
	default:
		if !set["duration"] {
			duration = 10 * time.Second
		}
		if duration <= 0 {
			return Config{}, fmt.Errorf("-duration: must be positive, got %s", duration)
		}
		c.Duration = duration
		c.Count = int(math.Round(c.Rate * duration.Seconds()))
	}
	if c.Channel == "" {
		c.Channel = "bench_" + randomHex(4)
	}
	return c, c.Validate()
}

// Validate reports the first bad setting, naming its flag.
func (c Config) Validate() error {
	switch {
	case len(c.Edges) == 0:
		return errors.New("-edges: give at least one edge URL")
	case c.Clients < 1:
		return fmt.Errorf("-clients: must be at least 1, got %d", c.Clients)
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("-rate: must be a positive number of notifications per second, got %v", c.Rate)
	case c.Rate > 1e6:
		return fmt.Errorf("-rate: at most 1000000 per second, got %v", c.Rate)
	case c.Count < 1:
		return fmt.Errorf("-count: must be at least 1 (or -rate × -duration must be), got %d", c.Count)
	case c.Payload < minPayload || c.Payload > maxPayload:
		return fmt.Errorf("-payload: must be %d to %d bytes (the time and sequence number need room; PostgreSQL allows 7999), got %d", minPayload, maxPayload, c.Payload)
	case c.Ramp < 0:
		return fmt.Errorf("-ramp: must not be negative, got %v", c.Ramp)
	case c.Sources < 0 || c.Sources > 250:
		return fmt.Errorf("-sources: must be 0 to 250, got %d", c.Sources)
	case c.Senders < 0 || c.Senders > 64:
		return fmt.Errorf("-senders: must be 0 to 64, got %d", c.Senders)
	case c.SlowFraction < 0 || c.SlowFraction > 0.9:
		return fmt.Errorf("-slow-fraction: must be 0 to 0.9, got %v", c.SlowFraction)
	case c.Settle < 0:
		return fmt.Errorf("-settle: must not be negative, got %s", c.Settle)
	case c.Wait < 0:
		return fmt.Errorf("-wait: must not be negative, got %s", c.Wait)
	case c.DatabaseURL == "":
		return errors.New("-db: required")
	}
	if err := validChannel(c.Channel); err != nil {
		return fmt.Errorf("-channel: %w", err)
	}
	if _, err := pgx.ParseConfig(c.DatabaseURL); err != nil {
		return fmt.Errorf("-db: %w", err)
	}
	if c.RedisURL != "" {
		if _, err := redisOptions(c.RedisURL); err != nil {
			return fmt.Errorf("-redis: %w", err)
		}
		if c.RedisPrefix == "" {
			return errors.New("-redis-prefix: required with -redis")
		}
	}
	if c.Sources > 0 {
		for _, u := range c.Edges {
			if ip := net.ParseIP(u.Hostname()); (ip == nil || !ip.IsLoopback() || ip.To4() == nil) && u.Hostname() != "localhost" {
				return fmt.Errorf("-sources: binds to 127.0.0.x, so every edge must be on an IPv4 loopback address; %s is not", u.Host)
			}
		}
	}
	if len(c.EdgePIDs) > 0 && len(c.EdgePIDs) != len(c.Edges) {
		return fmt.Errorf("-edge-pid: give one PID per edge (%d edges, %d PIDs)", len(c.Edges), len(c.EdgePIDs))
	}
	// Each reader keeps a bit per notification, to find duplicates.
	if bits := float64(c.Clients) * float64(c.Count); bits/8 > 4<<30 {
		return fmt.Errorf("-count: %d notifications × %d clients needs %.0f MiB to track duplicates; at most 4 GiB", c.Count, c.Clients, bits/8/(1<<20))
	}
	return nil
}

// validChannel is event.ValidateChannel's rule (1 to 63 bytes, no NUL),
// kept here so that the tool imports nothing of the server.
func validChannel(name string) error {
	switch {
	case name == "":
		return errors.New("empty channel name")
	case len(name) > 63:
		return fmt.Errorf("channel name of %d bytes, at most 63", len(name))
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("channel name with a NUL byte")
	}
	return nil
}

// redisOptions parses a redis:// or rediss:// URL. Its errors never show
// the URL's user and password: go-redis quotes the whole URL when it cannot
// parse it (pgx blanks the password itself).
func redisOptions(raw string) (*redis.Options, error) {
	opts, err := redis.ParseURL(raw)
	if err == nil {
		return opts, nil
	}
	msg := err.Error()
	if i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@"); i >= 0 && j > i+3 {
		msg = strings.ReplaceAll(msg, raw[i+3:j], "xxxxx")
	}
	return nil, errors.New(msg)
}

// parseEdges turns base URLs into WebSocket URLs of their /ws endpoint.
func parseEdges(s string) ([]*url.URL, error) {
	var out []*url.URL
	for raw := range strings.SplitSeq(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("-edges: %q: %w", raw, err)
		}
		switch u.Scheme {
		case "http", "ws":
			u.Scheme = "ws"
		case "https", "wss":
			u.Scheme = "wss"
		default:
			return nil, fmt.Errorf("-edges: %q: want an http, https, ws or wss URL", raw)
		}
		if u.Host == "" {
			return nil, fmt.Errorf("-edges: %q: no host", raw)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("-edges: %q: give the base URL, without a query", raw)
		}
		// The base may be a path prefix behind a proxy; /ws is appended.
		u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/ws"), "/") + "/ws"
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, errors.New("-edges: give at least one edge URL")
	}
	return out, nil
}

func parsePIDs(s string) ([]int, error) {
	var out []int
	for raw := range strings.SplitSeq(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		pid, err := strconv.Atoi(raw)
		if err != nil || pid < 1 {
			return nil, fmt.Errorf("-edge-pid: %q is not a process id", raw)
		}
		out = append(out, pid)
	}
	return out, nil
}

// metricsURL is an edge's /metrics, from its /ws URL.
func metricsURL(ws *url.URL) string {
	u := *ws
	u.Scheme = map[string]string{"ws": "http", "wss": "https"}[u.Scheme]
	u.Path = strings.TrimSuffix(u.Path, "/ws") + "/metrics"
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
