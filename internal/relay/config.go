package relay

import (
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgrelay/pgrelay/internal/event"
	"github.com/pgrelay/pgrelay/internal/logconf"
	"github.com/pgrelay/pgrelay/internal/outbox"
	"github.com/pgrelay/pgrelay/internal/redisbus"
)

// Config is the relay's configuration. cmd/relay fills it from RELAY_*
// variables; tests start from DefaultConfig.
type Config struct {
	DatabaseURL          string        `split_words:"true" required:"true" desc:"PostgreSQL to LISTEN on, as a URL or key=value string; must be a direct (or session-pooled) connection"`
	RedisURL             string        `split_words:"true" default:"redis://127.0.0.1:6379/0" desc:"Redis to publish to (redis:// or rediss://)"`
	Source               string        `default:"notify" desc:"notify: publish each NOTIFY on RELAY_CHANNELS (at most once); outbox: publish the rows of RELAY_OUTBOX_TABLE (nothing lost across a leader change)"`
	Channels             []string      `default:"data" desc:"comma-separated PostgreSQL channels to LISTEN on (quoted: any name up to 63 bytes); notify source only, ignored with outbox (channels come from the rows)"`
	OutboxTable          string        `split_words:"true" default:"pgrelay_outbox" desc:"outbox source: the table to drain, name or schema.name (letters, digits, underscores; used as written, so case matters)"`
	OutboxWakeChannel    string        `split_words:"true" default:"pgrelay_outbox" desc:"outbox source: the channel the outbox trigger NOTIFYs to wake the relay"`
	OutboxPollInterval   time.Duration `split_words:"true" default:"1s" desc:"outbox source: the leader also drains after this long without a wake, in case one was missed"`
	OutboxMigrate        bool          `split_words:"true" default:"false" desc:"outbox source: create or update the outbox table and trigger (migrations/001_outbox.sql for these settings) when taking the lead"`
	MaxPayload           int           `split_words:"true" default:"1048576" desc:"outbox source: largest payload in bytes, at most 64 MiB; enforced by the table's CHECK (with RELAY_OUTBOX_MIGRATE) and by the relay, which moves larger rows to <table>_rejected"`
	Prefix               string        `default:"pgrelay" desc:"prefix of every Redis key and channel; several installations can share one Redis"`
	LockKey              int64         `split_words:"true" desc:"advisory lock key that elects the leader; 0 derives it from RELAY_PREFIX"`
	HistorySize          int           `split_words:"true" default:"1000" desc:"recent messages kept per channel in Redis, for clients that resume and edges that heal a gap"`
	HistoryTTL           time.Duration `split_words:"true" default:"24h" desc:"a channel's history is dropped after this long without a message; negative keeps it. Also how long a published outbox row is remembered, so a new leader does not publish it twice (24h when negative)"`
	HTTPAddr             string        `split_words:"true" default:":8081" desc:"address serving /healthz, /readyz and /metrics"`
	LockRetryInterval    time.Duration `split_words:"true" default:"250ms" desc:"how often a standby polls pg_try_advisory_lock: a takeover waits up to this long. 0 waits in pg_advisory_lock instead and takes over at once, but a session waiting in a lock holds back VACUUM's horizon for the database as long as the leader lives"`
	PingInterval         time.Duration `split_words:"true" default:"5s" desc:"idle time after which the leader pings PostgreSQL to check its connection (with outbox, each poll checks it instead)"`
	PingTimeout          time.Duration `split_words:"true" default:"3s" desc:"a ping (or lock attempt, or LISTEN) unanswered this long drops the connection: a leader notices a dead one within RELAY_PING_INTERVAL + RELAY_PING_TIMEOUT"`
	TCPKeepaliveIdle     time.Duration `split_words:"true" default:"5s" desc:"TCP keepalive on the PostgreSQL connection, set on both ends (tcp_keepalives_idle on the server unless the URL sets it): idle time before the first probe; 0 leaves the default"`
	TCPKeepaliveInterval time.Duration `split_words:"true" default:"2s" desc:"time between keepalive probes, both ends (tcp_keepalives_interval); 0 leaves the default"`
	TCPKeepaliveCount    int           `split_words:"true" default:"3" desc:"unanswered probes before the connection is dropped, both ends (tcp_keepalives_count; on Linux RELAY_TCP_USER_TIMEOUT replaces it when set); 0 leaves the default"`
	TCPUserTimeout       time.Duration `split_words:"true" default:"10s" desc:"data or probes unacknowledged this long drop the connection, both ends (tcp_user_timeout): with the keepalives, bounds how long PostgreSQL keeps the lock of a leader that vanished without closing its connection; 0 leaves the default"`
	PublishTimeout       time.Duration `split_words:"true" default:"5s" desc:"bound on one publish to Redis, and on each outbox query; on failure the leader steps down and reconnects"`
	PprofAddr            string        `split_words:"true" desc:"address (e.g. 127.0.0.1:6060) serving Go's profiler at /debug/pprof/; empty: off. Keep it private"`
	LogLevel             string        `split_words:"true" default:"info" desc:"debug, info, warn or error"`
	LogFormat            string        `split_words:"true" default:"json" desc:"json or text"`

	// Listener, if set, is used instead of listening on HTTPAddr (tests).
	Listener net.Listener `ignored:"true"`
	// Logger; nil means slog.Default().
	Logger *slog.Logger `ignored:"true"`
}

// DefaultConfig returns the defaults documented in the struct tags, with no database.
func DefaultConfig() Config {
	return Config{
		RedisURL:             "redis://127.0.0.1:6379/0",
		Source:               SourceNotify,
		Channels:             []string{"data"},
		OutboxTable:          outbox.DefaultTable,
		OutboxWakeChannel:    outbox.DefaultWakeChannel,
		OutboxPollInterval:   time.Second,
		MaxPayload:           outbox.DefaultMaxPayload,
		Prefix:               "pgrelay",
		HistorySize:          1000,
		HistoryTTL:           24 * time.Hour,
		HTTPAddr:             ":8081",
		LockRetryInterval:    250 * time.Millisecond,
		PingInterval:         5 * time.Second,
		PingTimeout:          3 * time.Second,
		TCPKeepaliveIdle:     5 * time.Second,
		TCPKeepaliveInterval: 2 * time.Second,
		TCPKeepaliveCount:    3,
		TCPUserTimeout:       10 * time.Second,
		PublishTimeout:       5 * time.Second,
		LogLevel:             "info",
		LogFormat:            "json",
	}
}

// Validate reports the first bad setting, naming its variable.
func (c Config) Validate() error {
	if c.DatabaseURL == "" {
		return fmt.Errorf("RELAY_DATABASE_URL: required")
	}
	if _, err := pgx.ParseConfig(c.DatabaseURL); err != nil {
		// pgx redacts the password in its parse errors.
		return fmt.Errorf("RELAY_DATABASE_URL: %w", err)
	}
	if _, err := redisbus.ParseURL(c.RedisURL); err != nil {
		return fmt.Errorf("RELAY_REDIS_URL: %w", err)
	}
	if c.MaxPayload < 1 || c.MaxPayload > outbox.MaxMaxPayload {
		return fmt.Errorf("RELAY_MAX_PAYLOAD: must be 1 to %d bytes (64 MiB), got %d", outbox.MaxMaxPayload, c.MaxPayload)
	}
	switch c.Source {
	case SourceNotify:
		if len(c.Channels) == 0 {
			return fmt.Errorf("RELAY_CHANNELS: at least one channel is required")
		}
		for _, ch := range c.Channels {
			if err := event.ValidateChannel(ch); err != nil {
				return fmt.Errorf("RELAY_CHANNELS: %q: %w", ch, err)
			}
		}
	case SourceOutbox:
		if _, err := outbox.ParseTable(c.OutboxTable); err != nil {
			return fmt.Errorf("RELAY_OUTBOX_TABLE: %w", err)
		}
		if err := outbox.CheckWakeChannel(c.OutboxWakeChannel); err != nil {
			return fmt.Errorf("RELAY_OUTBOX_WAKE_CHANNEL: %q: %w", c.OutboxWakeChannel, err)
		}
		if c.OutboxPollInterval <= 0 {
			return fmt.Errorf("RELAY_OUTBOX_POLL_INTERVAL: must be positive, got %s", c.OutboxPollInterval)
		}
	default:
		return fmt.Errorf("RELAY_SOURCE: %q: must be %s or %s", c.Source, SourceNotify, SourceOutbox)
	}
	if err := logconf.CheckLevel(c.LogLevel); err != nil {
		return fmt.Errorf("RELAY_LOG_LEVEL: %w", err)
	}
	if err := logconf.CheckFormat(c.LogFormat); err != nil {
		return fmt.Errorf("RELAY_LOG_FORMAT: %w", err)
	}
	switch {
	case c.Prefix == "":
		return fmt.Errorf("RELAY_PREFIX: must not be empty")
	case c.HistorySize < 1:
		return fmt.Errorf("RELAY_HISTORY_SIZE: must be at least 1, got %d", c.HistorySize)
	case c.HistoryTTL == 0:
		return fmt.Errorf("RELAY_HISTORY_TTL: must not be 0 (negative keeps history forever)")
	case c.LockRetryInterval < 0:
		return fmt.Errorf("RELAY_LOCK_RETRY_INTERVAL: must not be negative, got %s", c.LockRetryInterval)
	case c.PingInterval <= 0:
		return fmt.Errorf("RELAY_PING_INTERVAL: must be positive, got %s", c.PingInterval)
	case c.PingTimeout <= 0:
		return fmt.Errorf("RELAY_PING_TIMEOUT: must be positive, got %s", c.PingTimeout)
	case c.TCPKeepaliveIdle != 0 && c.TCPKeepaliveIdle < time.Second:
		return fmt.Errorf("RELAY_TCP_KEEPALIVE_IDLE: must be 0 or at least 1s (PostgreSQL counts whole seconds), got %s", c.TCPKeepaliveIdle)
	case c.TCPKeepaliveInterval != 0 && c.TCPKeepaliveInterval < time.Second:
		return fmt.Errorf("RELAY_TCP_KEEPALIVE_INTERVAL: must be 0 or at least 1s (PostgreSQL counts whole seconds), got %s", c.TCPKeepaliveInterval)
	case c.TCPKeepaliveCount < 0:
		return fmt.Errorf("RELAY_TCP_KEEPALIVE_COUNT: must not be negative, got %d", c.TCPKeepaliveCount)
	case c.TCPUserTimeout != 0 && c.TCPUserTimeout < time.Millisecond:
		return fmt.Errorf("RELAY_TCP_USER_TIMEOUT: must be 0 or at least 1ms, got %s", c.TCPUserTimeout)
	case c.PublishTimeout <= 0:
		return fmt.Errorf("RELAY_PUBLISH_TIMEOUT: must be positive, got %s", c.PublishTimeout)
	}
	return nil
}

// Sources of messages (RELAY_SOURCE).
const (
	SourceNotify = "notify"
	SourceOutbox = "outbox"
)

// outboxSchema is what RELAY_OUTBOX_MIGRATE creates; call after Validate.
func (c Config) outboxSchema() outbox.Schema {
	t, _ := outbox.ParseTable(c.OutboxTable)
	return outbox.Schema{Table: t, WakeChannel: c.OutboxWakeChannel, MaxPayload: c.MaxPayload}
}

// lockKey is LockKey, or a key derived from the prefix: relays sharing a
// prefix share a leader, and installations with different prefixes on one
// database do not block each other.
func (c Config) lockKey() int64 {
	if c.LockKey != 0 {
		return c.LockKey
	}
	h := fnv.New64a()
	h.Write([]byte("pgrelay leader lock:" + c.Prefix))
	return int64(h.Sum64())
}
