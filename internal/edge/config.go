package edge

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pgrelay/pgrelay/internal/logconf"
	"github.com/redis/go-redis/v9"
)

// Config is the edge's configuration. cmd/edge fills it from EDGE_*
// variables; tests start from DefaultConfig.
type Config struct {
	RedisURL        string        `split_words:"true" default:"redis://127.0.0.1:6379/0" desc:"Redis to subscribe to (redis:// or rediss://)"`
	Prefix          string        `default:"pgrelay" desc:"prefix of every Redis key and channel; must match the relays'"`
	HTTPAddr        string        `split_words:"true" default:":8080" desc:"address serving /, /ws, /events, /healthz, /readyz and /metrics"`
	AllowedOrigins  []string      `split_words:"true" desc:"extra origins (host patterns such as app.example.com or *.example.com) allowed to open sockets; empty means same origin only"`
	MaxChannels     int           `split_words:"true" default:"32" desc:"most channels one connection may ask for"`
	QueueSize       int           `split_words:"true" default:"256" desc:"messages that may wait for one client; a client whose queue is full is closed with 1013"`
	WriteTimeout    time.Duration `split_words:"true" default:"10s" desc:"bound on each write to a client"`
	PingInterval    time.Duration `split_words:"true" default:"25s" desc:"how often clients are pinged; one that does not answer within it is dropped"`
	DrainTimeout    time.Duration `split_words:"true" default:"10s" desc:"on SIGTERM, clients are closed (1001) at random moments within this window"`
	MetricsChannels []string      `split_words:"true" desc:"channels that get their own label in /metrics (subscribers per channel); others are not labelled, so clients cannot grow the label set"`
	LogLevel        string        `split_words:"true" default:"info" desc:"debug, info, warn or error"`
	LogFormat       string        `split_words:"true" default:"json" desc:"json or text"`

	// Listener, if set, is used instead of listening on HTTPAddr (tests).
	Listener net.Listener `ignored:"true"`
	// Logger; nil means slog.Default().
	Logger *slog.Logger `ignored:"true"`
}

// DefaultConfig returns the defaults documented in the struct tags.
func DefaultConfig() Config {
	return Config{
		RedisURL:     "redis://127.0.0.1:6379/0",
		Prefix:       "pgrelay",
		HTTPAddr:     ":8080",
		MaxChannels:  32,
		QueueSize:    256,
		WriteTimeout: 10 * time.Second,
		PingInterval: 25 * time.Second,
		DrainTimeout: 10 * time.Second,
		LogLevel:     "info",
		LogFormat:    "json",
	}
}

// Validate reports the first bad setting, naming its variable.
func (c Config) Validate() error {
	if _, err := redis.ParseURL(c.RedisURL); err != nil {
		return fmt.Errorf("EDGE_REDIS_URL: %w", err)
	}
	if err := logconf.CheckLevel(c.LogLevel); err != nil {
		return fmt.Errorf("EDGE_LOG_LEVEL: %w", err)
	}
	if err := logconf.CheckFormat(c.LogFormat); err != nil {
		return fmt.Errorf("EDGE_LOG_FORMAT: %w", err)
	}
	switch {
	case c.Prefix == "":
		return fmt.Errorf("EDGE_PREFIX: must not be empty")
	case c.MaxChannels < 1:
		return fmt.Errorf("EDGE_MAX_CHANNELS: must be at least 1, got %d", c.MaxChannels)
	case c.QueueSize < 1:
		return fmt.Errorf("EDGE_QUEUE_SIZE: must be at least 1, got %d", c.QueueSize)
	case c.WriteTimeout <= 0:
		return fmt.Errorf("EDGE_WRITE_TIMEOUT: must be positive, got %s", c.WriteTimeout)
	case c.PingInterval <= 0:
		return fmt.Errorf("EDGE_PING_INTERVAL: must be positive, got %s", c.PingInterval)
	case c.DrainTimeout < 0:
		return fmt.Errorf("EDGE_DRAIN_TIMEOUT: must not be negative, got %s", c.DrainTimeout)
	}
	return nil
}
