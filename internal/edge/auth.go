package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/pgrelay/pgrelay/internal/auth"
	"github.com/pgrelay/pgrelay/internal/wsconn"
)

// newAuthorizer builds the request check for cfg.Auth, and a function that
// keeps key files fresh until its context ends. With EDGE_AUTH=none there is
// no check.
func newAuthorizer(cfg Config, log *slog.Logger) (wsconn.Authorize, func(context.Context), error) {
	if cfg.Auth != "jwt" {
		log.Warn("EDGE_AUTH=none: any client may read any channel; use it for public data only")
		return nil, func(context.Context) {}, nil
	}
	v, err := auth.New(auth.Options{
		Secret:        []byte(cfg.JWTSecret),
		PublicKeyFile: cfg.JWTPublicKeyFile,
		JWKSFile:      cfg.JWTJwksFile,
		Algorithms:    cfg.JWTAlgorithms,
		Issuer:        cfg.JWTIssuer,
		Audience:      cfg.JWTAudience,
		Leeway:        cfg.JWTLeeway,
		Logger:        log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("EDGE_JWT_*: %w", err)
	}
	if cfg.JWTQueryToken {
		log.Warn("EDGE_JWT_QUERY_TOKEN=true: tokens in URLs end up in proxy and access logs")
	}
	log.Info("jwt auth on", "algorithms", v.Algorithms())
	src := auth.TokenSources{Cookie: cfg.JWTCookie, Query: cfg.JWTQueryToken}
	authorize := func(r *http.Request, channels []string) (time.Time, error) {
		tok, _ := auth.Token(r, src)
		c, err := v.Authorize(tok, channels)
		if errors.Is(err, auth.ErrForbidden) {
			return time.Time{}, &wsconn.AuthError{Status: http.StatusForbidden, Err: err}
		}
		if err != nil {
			return time.Time{}, &wsconn.AuthError{Status: http.StatusUnauthorized, Err: err}
		}
		return c.Expiry(), nil
	}
	return authorize, func(ctx context.Context) { v.Watch(ctx, 5*time.Second) }, nil
}
