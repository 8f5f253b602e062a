package edge

import (
	"fmt"
	"log/slog"
	"net"
	"path"
	"time"

	"github.com/pgrelay/pgrelay/internal/logconf"
	"github.com/pgrelay/pgrelay/internal/redisbus"
)

// Config is the edge's configuration. cmd/edge fills it from EDGE_*
// variables; tests start from DefaultConfig.
type Config struct {
	RedisURL         string        `split_words:"true" default:"redis://127.0.0.1:6379/0" desc:"Redis to subscribe to (redis:// or rediss://)"`
	Prefix           string        `default:"pgrelay" desc:"prefix of every Redis key and channel; must match the relays'"`
	HTTPAddr         string        `split_words:"true" default:":8080" desc:"address serving /, /ws, /events, /healthz, /readyz and /metrics"`
	AllowedOrigins   []string      `split_words:"true" desc:"extra origins (host patterns such as app.example.com or *.example.com) allowed to open sockets; empty means same origin only"`
	Auth             string        `default:"none" desc:"none: any client may read any channel (only for public data); jwt: a client needs a token whose channels claim grants what it asks for"`
	JWTSecret        string        `split_words:"true" desc:"HS256 shared secret (EDGE_AUTH=jwt)"`
	JWTPublicKeyFile string        `split_words:"true" desc:"PEM file of RSA/EC public keys for RS256/ES256, re-read when it changes"`
	JWTJwksFile      string        `split_words:"true" desc:"JSON Web Key Set file for RS256/ES256 (keys by kid), re-read when it changes"`
	JWTAlgorithms    []string      `split_words:"true" desc:"allowed algorithms; empty: HS256 with a secret, RS256 and ES256 with keys; none is never allowed"`
	JWTIssuer        string        `split_words:"true" desc:"required iss claim, if set"`
	JWTAudience      string        `split_words:"true" desc:"required aud claim, if set"`
	JWTLeeway        time.Duration `split_words:"true" default:"5s" desc:"clock skew tolerated on exp, nbf and iat"`
	JWTCookie        string        `split_words:"true" default:"pgrelay_token" desc:"cookie that may carry the token; empty disables cookies"`
	JWTQueryToken    bool          `split_words:"true" default:"false" desc:"UNSAFE: also accept ?token=; URLs end up in proxy and access logs"`
	MaxConnections   int           `split_words:"true" default:"10000" desc:"most clients at once; beyond it requests get 503 with Retry-After before the upgrade"`
	MaxChannels      int           `split_words:"true" default:"32" desc:"most channels one connection may ask for"`
	QueueSize        int           `split_words:"true" default:"256" desc:"messages that may wait for one client; a client whose queue is full is closed with 1013"`
	QueueBytes       int           `split_words:"true" default:"4194304" desc:"frame bytes that may wait for one client (4 MiB); beyond it the client is closed with 1013, as with a full queue"`
	SendBuffer       int           `split_words:"true" default:"262144" desc:"kernel send buffer per client socket in bytes (SO_SNDBUF; Linux doubles it); 0: the kernel's autotuning, which lets a client that stops reading hold up to tcp_wmem's max (often 4 MiB) before EDGE_QUEUE_SIZE/BYTES see it"`
	WriteTimeout     time.Duration `split_words:"true" default:"10s" desc:"bound on each write to a client"`
	HeaderTimeout    time.Duration `split_words:"true" default:"5s" desc:"time a client has to send its request headers (slowloris)"`
	MaxHeaderBytes   int           `split_words:"true" default:"16384" desc:"largest request line and headers accepted (URL, cookies, token)"`
	PingInterval     time.Duration `split_words:"true" default:"25s" desc:"how often clients are pinged; one that does not answer within it is dropped"`
	DrainTimeout     time.Duration `split_words:"true" default:"10s" desc:"on SIGTERM, clients are closed (1001) at random moments within this window"`
	MetricsChannels  []string      `split_words:"true" desc:"channels that get their own label in /metrics (subscribers per channel); others are not labelled, so clients cannot grow the label set"`
	PprofAddr        string        `split_words:"true" desc:"address (e.g. 127.0.0.1:6060) serving Go's profiler at /debug/pprof/; empty: off. Keep it private"`
	LogLevel         string        `split_words:"true" default:"info" desc:"debug, info, warn or error"`
	LogFormat        string        `split_words:"true" default:"json" desc:"json or text"`

	// Listener, if set, is used instead of listening on HTTPAddr (tests).
	// The edge writes to WebSocket clients' sockets by descriptor and owns
	// their closing: its connections must not be closed by anyone else.
	Listener net.Listener `ignored:"true"`
	// Logger; nil means slog.Default().
	Logger *slog.Logger `ignored:"true"`
}

// DefaultConfig returns the defaults documented in the struct tags.
func DefaultConfig() Config {
	return Config{
		RedisURL:       "redis://127.0.0.1:6379/0",
		Prefix:         "pgrelay",
		HTTPAddr:       ":8080",
		Auth:           "none",
		JWTLeeway:      5 * time.Second,
		JWTCookie:      "pgrelay_token",
		MaxConnections: 10000,
		HeaderTimeout:  5 * time.Second,
		MaxHeaderBytes: 16384,
		MaxChannels:    32,
		QueueSize:      256,
		QueueBytes:     4 << 20,
		SendBuffer:     256 << 10,
		WriteTimeout:   10 * time.Second,
		PingInterval:   25 * time.Second,
		DrainTimeout:   10 * time.Second,
		LogLevel:       "info",
		LogFormat:      "json",
	}
}

// Validate reports the first bad setting, naming its variable.
func (c Config) Validate() error {
	if _, err := redisbus.ParseURL(c.RedisURL); err != nil {
		return fmt.Errorf("EDGE_REDIS_URL: %w", err)
	}
	if err := logconf.CheckLevel(c.LogLevel); err != nil {
		return fmt.Errorf("EDGE_LOG_LEVEL: %w", err)
	}
	if err := logconf.CheckFormat(c.LogFormat); err != nil {
		return fmt.Errorf("EDGE_LOG_FORMAT: %w", err)
	}
	for _, p := range c.AllowedOrigins {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("EDGE_ALLOWED_ORIGINS: pattern %q: %w", p, err)
		}
	}
	switch c.Auth {
	case "none":
	case "jwt":
		if c.JWTSecret == "" && c.JWTPublicKeyFile == "" && c.JWTJwksFile == "" {
			return fmt.Errorf("EDGE_AUTH=jwt needs EDGE_JWT_SECRET, EDGE_JWT_PUBLIC_KEY_FILE or EDGE_JWT_JWKS_FILE")
		}
	default:
		return fmt.Errorf("EDGE_AUTH: %q: want none or jwt", c.Auth)
	}
	switch {
	case c.Prefix == "":
		return fmt.Errorf("EDGE_PREFIX: must not be empty")
	case c.MaxConnections < 1:
		return fmt.Errorf("EDGE_MAX_CONNECTIONS: must be at least 1, got %d", c.MaxConnections)
	case c.HeaderTimeout <= 0:
		return fmt.Errorf("EDGE_HEADER_TIMEOUT: must be positive, got %s", c.HeaderTimeout)
	case c.MaxHeaderBytes < 1024:
		return fmt.Errorf("EDGE_MAX_HEADER_BYTES: must be at least 1024, got %d", c.MaxHeaderBytes)
	case c.JWTLeeway < 0:
		return fmt.Errorf("EDGE_JWT_LEEWAY: must not be negative, got %s", c.JWTLeeway)
	case c.MaxChannels < 1:
		return fmt.Errorf("EDGE_MAX_CHANNELS: must be at least 1, got %d", c.MaxChannels)
	case c.QueueBytes < 1:
		return fmt.Errorf("EDGE_QUEUE_BYTES: must be at least 1, got %d", c.QueueBytes)
	case c.QueueSize < 1:
		return fmt.Errorf("EDGE_QUEUE_SIZE: must be at least 1, got %d", c.QueueSize)
	case c.SendBuffer < 0:
		return fmt.Errorf("EDGE_SEND_BUFFER: must not be negative (0: the kernel's autotuning), got %d", c.SendBuffer)
	case c.WriteTimeout <= 0:
		return fmt.Errorf("EDGE_WRITE_TIMEOUT: must be positive, got %s", c.WriteTimeout)
	case c.PingInterval <= 0:
		return fmt.Errorf("EDGE_PING_INTERVAL: must be positive, got %s", c.PingInterval)
	case c.DrainTimeout < 0:
		return fmt.Errorf("EDGE_DRAIN_TIMEOUT: must not be negative, got %s", c.DrainTimeout)
	}
	return nil
}
