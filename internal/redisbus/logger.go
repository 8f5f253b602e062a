package redisbus

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// go-redis logs its own retries (a dial that fails, five times a second while
// Redis is down) with the standard logger, unstructured, on stderr. Our
// reconnect loops already log each outage once, so its lines go to the
// default slog logger at debug level instead.
func init() { redis.SetLogger(slogLogger{}) }

type slogLogger struct{}

func (slogLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
