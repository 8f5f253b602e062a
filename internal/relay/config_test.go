package relay

import (
	"strings"
	"testing"
	"time"
)

// Each bad setting is refused with an error that names its variable.
func TestValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"unknown source", func(c *Config) { c.Source = "wal" }, "RELAY_SOURCE"},
		{"empty source", func(c *Config) { c.Source = "" }, "RELAY_SOURCE"},
		{"bad table", func(c *Config) { c.Source = SourceOutbox; c.OutboxTable = "my-outbox" }, "RELAY_OUTBOX_TABLE"},
		{"three-part table", func(c *Config) { c.Source = SourceOutbox; c.OutboxTable = "a.b.c" }, "RELAY_OUTBOX_TABLE"},
		{"long table", func(c *Config) { c.Source = SourceOutbox; c.OutboxTable = strings.Repeat("t", 55) }, "RELAY_OUTBOX_TABLE"},
		{"empty wake channel", func(c *Config) { c.Source = SourceOutbox; c.OutboxWakeChannel = "" }, "RELAY_OUTBOX_WAKE_CHANNEL"},
		{"quote in wake channel", func(c *Config) { c.Source = SourceOutbox; c.OutboxWakeChannel = "a'b" }, "RELAY_OUTBOX_WAKE_CHANNEL"},
		{"zero poll", func(c *Config) { c.Source = SourceOutbox; c.OutboxPollInterval = 0 }, "RELAY_OUTBOX_POLL_INTERVAL"},
		{"zero max payload", func(c *Config) { c.MaxPayload = 0 }, "RELAY_MAX_PAYLOAD"},
		{"max payload over 64 MiB", func(c *Config) { c.Source = SourceOutbox; c.MaxPayload = 64<<20 + 1 }, "RELAY_MAX_PAYLOAD"},
		{"no channels with notify", func(c *Config) { c.Channels = nil }, "RELAY_CHANNELS"},
		{"negative lock retry", func(c *Config) { c.LockRetryInterval = -time.Second }, "RELAY_LOCK_RETRY_INTERVAL"},
		{"zero ping timeout", func(c *Config) { c.PingTimeout = 0 }, "RELAY_PING_TIMEOUT"},
		{"sub-second keepalive idle", func(c *Config) { c.TCPKeepaliveIdle = 500 * time.Millisecond }, "RELAY_TCP_KEEPALIVE_IDLE"},
		{"sub-second keepalive interval", func(c *Config) { c.TCPKeepaliveInterval = time.Millisecond }, "RELAY_TCP_KEEPALIVE_INTERVAL"},
		{"negative keepalive count", func(c *Config) { c.TCPKeepaliveCount = -1 }, "RELAY_TCP_KEEPALIVE_COUNT"},
		{"sub-millisecond user timeout", func(c *Config) { c.TCPUserTimeout = time.Microsecond }, "RELAY_TCP_USER_TIMEOUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.DatabaseURL = "postgres://127.0.0.1:1/x"
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want+":") {
				t.Fatalf("Validate = %v, want an error starting %s:", err, tc.want)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"defaults", func(*Config) {}},
		{"outbox defaults", func(c *Config) { c.Source = SourceOutbox }},
		{"polling standby", func(c *Config) { c.LockRetryInterval = 250 * time.Millisecond }},
		{"system TCP defaults", func(c *Config) {
			c.TCPKeepaliveIdle, c.TCPKeepaliveInterval, c.TCPKeepaliveCount, c.TCPUserTimeout = 0, 0, 0, 0
		}},
		// Channels are ignored with the outbox source: they come from the rows.
		{"outbox ignores channels", func(c *Config) { c.Source = SourceOutbox; c.Channels = []string{strings.Repeat("x", 64)} }},
		{"schema-qualified table", func(c *Config) { c.Source = SourceOutbox; c.OutboxTable = "app.Outbox_1" }},
		{"64 MiB", func(c *Config) {
			c.Source = SourceOutbox
			c.MaxPayload = 64 << 20
			c.OutboxPollInterval = time.Millisecond
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.DatabaseURL = "postgres://127.0.0.1:1/x"
			tc.mod(&c)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
