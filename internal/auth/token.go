package auth

import (
	"net/http"
	"strings"
)

// Subprotocol is the WebSocket subprotocol a browser offers next to its
// token ("bearer.<token>"); the edge selects it, never the token.
const Subprotocol = "pgrelay"

// TokenSources says where Token may look.
type TokenSources struct {
	// Cookie is the cookie name; empty disables cookies.
	Cookie string
	// Query allows a token query parameter. Unsafe: URLs end up in proxy
	// and access logs.
	Query bool
}

// Token returns the token r carries and where it was found ("header",
// "subprotocol", "cookie", "query"), or "" if none.
func Token(r *http.Request, src TokenSources) (token, from string) {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := cutPrefixFold(h, "Bearer "); ok {
			return strings.TrimSpace(t), "header"
		}
	}
	for _, offered := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(offered, ",") {
			if t, ok := strings.CutPrefix(strings.TrimSpace(p), "bearer."); ok {
				return t, "subprotocol"
			}
		}
	}
	if src.Cookie != "" {
		if c, err := r.Cookie(src.Cookie); err == nil && c.Value != "" {
			return c.Value, "cookie"
		}
	}
	if src.Query {
		if t := r.URL.Query().Get("token"); t != "" {
			return t, "query"
		}
	}
	return "", ""
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
