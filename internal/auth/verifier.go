package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors from Verify; each wraps the library's reason.
var (
	ErrNoToken   = errors.New("auth: no token")
	ErrBadToken  = errors.New("auth: token rejected")
	ErrForbidden = errors.New("auth: channel not granted")
)

// Options configures a Verifier. At least one of Secret, PublicKeyFile and
// JWKSFile is required.
type Options struct {
	// Secret verifies HS256 tokens. Empty disables HS256.
	Secret []byte
	// PublicKeyFile holds PEM public keys (RSA for RS256, P-256 EC for ES256).
	PublicKeyFile string
	// JWKSFile holds a JSON Web Key Set (RSA and P-256 EC keys, by kid).
	JWKSFile string
	// Algorithms allowed. Empty means those the keys given can verify:
	// HS256 with Secret, RS256 and ES256 with public keys. "none" is never
	// allowed, and an HMAC algorithm is only ever checked against Secret,
	// never against a public key, so HS/RS confusion cannot happen.
	Algorithms []string
	// Issuer and Audience, if set, must match the token's iss and aud.
	Issuer, Audience string
	// Leeway tolerates clock skew on exp, nbf and iat.
	Leeway time.Duration
	// Logger for key reloads; nil means slog.Default().
	Logger *slog.Logger
}

// Claims are what a verified token grants.
type Claims struct {
	// Channels granted: exact names, or prefixes ending in '*'.
	Channels []string `json:"channels"`
	jwt.RegisteredClaims
}

// Allows reports whether c grants channel.
func (c *Claims) Allows(channel string) bool {
	for _, g := range c.Channels {
		if p, ok := strings.CutSuffix(g, "*"); ok {
			if strings.HasPrefix(channel, p) {
				return true
			}
		} else if g == channel {
			return true
		}
	}
	return false
}

// Expiry is when the token expires.
func (c *Claims) Expiry() time.Time { return c.ExpiresAt.Time }

// Verifier verifies tokens.
type Verifier struct {
	opts   Options
	parser *jwt.Parser
	log    *slog.Logger

	mu      sync.RWMutex
	keys    map[string]crypto.PublicKey // JWKS keys by kid
	pemKeys []crypto.PublicKey
	stamps  map[string]time.Time // key file → modification time last loaded
}

// New checks opts, loads the key files and returns a Verifier.
func New(opts Options) (*Verifier, error) {
	if len(opts.Secret) == 0 && opts.PublicKeyFile == "" && opts.JWKSFile == "" {
		return nil, errors.New("no key: set a secret, a public key file or a JWKS file")
	}
	if len(opts.Algorithms) == 0 {
		if len(opts.Secret) > 0 {
			opts.Algorithms = append(opts.Algorithms, "HS256")
		}
		if opts.PublicKeyFile != "" || opts.JWKSFile != "" {
			opts.Algorithms = append(opts.Algorithms, "RS256", "ES256")
		}
	}
	for _, a := range opts.Algorithms {
		switch a {
		case "HS256", "HS384", "HS512":
			if len(opts.Secret) == 0 {
				return nil, fmt.Errorf("algorithm %s needs a secret", a)
			}
		case "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA":
			if opts.PublicKeyFile == "" && opts.JWKSFile == "" {
				return nil, fmt.Errorf("algorithm %s needs a public key or JWKS file", a)
			}
		default:
			return nil, fmt.Errorf("algorithm %q is not allowed", a)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(opts.Algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(opts.Leeway),
		jwt.WithIssuedAt(),
	}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	v := &Verifier{opts: opts, parser: jwt.NewParser(popts...), log: opts.Logger, stamps: map[string]time.Time{}}
	if err := v.reload(); err != nil {
		return nil, err
	}
	return v, nil
}

// Verify checks token and returns its claims.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	var c Claims
	if _, err := v.parser.ParseWithClaims(token, &c, v.key); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return &c, nil
}

// Authorize verifies token and checks it grants every one of channels.
func (v *Verifier) Authorize(token string, channels []string) (*Claims, error) {
	c, err := v.Verify(token)
	if err != nil {
		return nil, err
	}
	for _, ch := range channels {
		if !c.Allows(ch) {
			return nil, fmt.Errorf("%w: %q", ErrForbidden, ch)
		}
	}
	return c, nil
}

// key picks the verification key for a token whose algorithm the parser has
// already checked against the allowlist.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		return v.opts.Secret, nil
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	var candidates []crypto.PublicKey
	if kid, _ := t.Header["kid"].(string); kid != "" && v.keys[kid] != nil {
		candidates = append(candidates, v.keys[kid])
	} else {
		for _, k := range v.keys {
			candidates = append(candidates, k)
		}
		candidates = append(candidates, v.pemKeys...)
	}
	// Offer only keys of the token's family: the library tries each.
	var set jwt.VerificationKeySet
	for _, k := range candidates {
		if keyFits(t.Method, k) {
			set.Keys = append(set.Keys, k)
		}
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no %s key", t.Method.Alg())
	}
	return set, nil
}

// Watch re-reads the key files whenever they change, until ctx ends. A file
// that cannot be read or parsed keeps the keys loaded before, with a log line.
func (v *Verifier) Watch(ctx context.Context, every time.Duration) {
	if v.opts.PublicKeyFile == "" && v.opts.JWKSFile == "" {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if v.changed() {
			if err := v.reload(); err != nil {
				v.log.Error("key reload failed; keeping the previous keys", "err", err)
			} else {
				v.log.Info("keys reloaded")
			}
		}
	}
}

func (v *Verifier) changed() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, f := range []string{v.opts.PublicKeyFile, v.opts.JWKSFile} {
		if f == "" {
			continue
		}
		if st, err := os.Stat(f); err == nil && !st.ModTime().Equal(v.stamps[f]) {
			return true
		}
	}
	return false
}

func (v *Verifier) reload() error {
	stamps := map[string]time.Time{}
	var pemKeys []crypto.PublicKey
	keys := map[string]crypto.PublicKey{}
	if f := v.opts.PublicKeyFile; f != "" {
		st, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("public key file: %w", err)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("public key file: %w", err)
		}
		if pemKeys, err = parsePEM(b); err != nil {
			return fmt.Errorf("public key file %s: %w", f, err)
		}
		stamps[f] = st.ModTime()
	}
	if f := v.opts.JWKSFile; f != "" {
		st, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("JWKS file: %w", err)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("JWKS file: %w", err)
		}
		if keys, err = parseJWKS(b); err != nil {
			return fmt.Errorf("JWKS file %s: %w", f, err)
		}
		stamps[f] = st.ModTime()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pemKeys, v.keys, v.stamps = pemKeys, keys, stamps
	return nil
}

// Algorithms is the allowlist in effect, for logs.
func (v *Verifier) Algorithms() []string { return slices.Clone(v.opts.Algorithms) }
