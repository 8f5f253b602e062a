package redisbus

import (
	"errors"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ParseURL parses a redis:// or rediss:// URL (TLS, ACL user and password
// as go-redis reads them). Its errors never contain the password: go-redis
// quotes the whole URL when it cannot parse it.
func ParseURL(raw string) (*redis.Options, error) {
	opts, err := redis.ParseURL(raw)
	if err == nil {
		return opts, nil
	}
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	} else if i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@"); i >= 0 && j > i {
		// Unparseable: blank out everything between scheme and host.
		msg = strings.ReplaceAll(msg, raw[i+3:j], "xxxxx")
	}
	return nil, errors.New(msg)
}

// NewClient returns a client for a URL that ParseURL accepts.
func NewClient(raw string) (*redis.Client, error) {
	opts, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opts), nil
}
