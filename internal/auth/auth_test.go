package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _  = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	secret    = []byte("a shared secret of enough length!")
)

func pemFile(t *testing.T, keys ...any) string {
	t.Helper()
	var out []byte
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	f := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(f, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwks(t *testing.T, path string, rsaKid string, rk *rsa.PublicKey, ecKid string, ek *ecdsa.PublicKey) {
	t.Helper()
	var keys []map[string]string
	if rk != nil {
		keys = append(keys, map[string]string{"kty": "RSA", "kid": rsaKid, "use": "sig",
			"n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())})
	}
	if ek != nil {
		keys = append(keys, map[string]string{"kty": "EC", "kid": ecKid, "crv": "P-256",
			"x": b64(ek.X.FillBytes(make([]byte, 32))), "y": b64(ek.Y.FillBytes(make([]byte, 32)))})
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(exp time.Duration, channels ...string) jwt.MapClaims {
	return jwt.MapClaims{"exp": time.Now().Add(exp).Unix(), "channels": channels}
}

// The table of tokens a hostile or broken client may present.
func TestVerify(t *testing.T) {
	pemPath := pemFile(t, &rsaKey.PublicKey, &ecKey.PublicKey)
	pemBytes, _ := os.ReadFile(pemPath)
	jwksPath := filepath.Join(t.TempDir(), "jwks.json")
	jwks(t, jwksPath, "r1", &rsaKey.PublicKey, "e1", &ecKey.PublicKey)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)

	hs, err := New(Options{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	pk, err := New(Options{PublicKeyFile: pemPath})
	if err != nil {
		t.Fatal(err)
	}
	js, err := New(Options{JWKSFile: jwksPath})
	if err != nil {
		t.Fatal(err)
	}
	both, err := New(Options{Secret: secret, PublicKeyFile: pemPath})
	if err != nil {
		t.Fatal(err)
	}
	noneTok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(time.Hour, "a"), "")

	cases := []struct {
		name string
		v    *Verifier
		tok  string
		want error // nil: accepted
	}{
		{"HS256 good", hs, sign(t, jwt.SigningMethodHS256, secret, claims(time.Hour, "a"), ""), nil},
		{"RS256 from PEM", pk, sign(t, jwt.SigningMethodRS256, rsaKey, claims(time.Hour, "a"), ""), nil},
		{"ES256 from PEM", pk, sign(t, jwt.SigningMethodES256, ecKey, claims(time.Hour, "a"), ""), nil},
		{"RS256 from JWKS by kid", js, sign(t, jwt.SigningMethodRS256, rsaKey, claims(time.Hour, "a"), "r1"), nil},
		{"ES256 from JWKS by kid", js, sign(t, jwt.SigningMethodES256, ecKey, claims(time.Hour, "a"), "e1"), nil},
		{"ES256 from JWKS, no kid", js, sign(t, jwt.SigningMethodES256, ecKey, claims(time.Hour, "a"), ""), nil},
		{"no token", hs, "", ErrNoToken},
		{"garbage", hs, "not.a.token", ErrBadToken},
		{"expired", hs, sign(t, jwt.SigningMethodHS256, secret, claims(-time.Minute, "a"), ""), ErrBadToken},
		{"no exp", hs, sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"channels": []string{"a"}}, ""), ErrBadToken},
		{"issued in the future", hs, sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Add(time.Hour).Unix()}, ""), ErrBadToken},
		{"wrong secret", hs, sign(t, jwt.SigningMethodHS256, []byte("another secret, equally long!!!"), claims(time.Hour, "a"), ""), ErrBadToken},
		{"wrong RSA key", pk, sign(t, jwt.SigningMethodRS256, otherRSA, claims(time.Hour, "a"), ""), ErrBadToken},
		{"alg none", hs, noneTok, ErrBadToken},
		{"alg none, key verifier", pk, noneTok, ErrBadToken},
		{"HS256 signed with the RSA public key (confusion)", pk, sign(t, jwt.SigningMethodHS256, pemBytes, claims(time.Hour, "a"), ""), ErrBadToken},
		{"HS256 signed with the public key, verifier with both", both, sign(t, jwt.SigningMethodHS256, pemBytes, claims(time.Hour, "a"), ""), ErrBadToken},
		{"RS256 on a secret-only verifier", hs, sign(t, jwt.SigningMethodRS256, rsaKey, claims(time.Hour, "a"), ""), ErrBadToken},
		{"HS512 not allowed", hs, sign(t, jwt.SigningMethodHS512, secret, claims(time.Hour, "a"), ""), ErrBadToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.v.Verify(tc.tok)
			if tc.want == nil {
				if err != nil || !c.Allows("a") {
					t.Fatalf("Verify: %v, claims %+v; want accepted with channel a", err, c)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAuthorizeChannels(t *testing.T) {
	v, _ := New(Options{Secret: secret})
	tok := sign(t, jwt.SigningMethodHS256, secret, claims(time.Hour, "a", "orders.*", "x*"), "")
	for _, tc := range []struct {
		channels []string
		ok       bool
	}{
		{[]string{"a"}, true},
		{[]string{"orders.1", "orders.", "a"}, true},
		{[]string{"xyz", "x"}, true},
		{[]string{"b"}, false},
		{[]string{"a", "b"}, false},
		{[]string{"orders"}, false},
		{[]string{"A"}, false},
	} {
		_, err := v.Authorize(tok, tc.channels)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrForbidden)) {
			t.Errorf("Authorize(%q) = %v, want ok=%v", tc.channels, err, tc.ok)
		}
	}
	noChannels := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}, "")
	if _, err := v.Authorize(noChannels, []string{"a"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("a token without channels grants nothing; got %v", err)
	}
}

// Keys rotate without a restart: a new JWKS file is picked up by Watch.
func TestJWKSReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	jwks(t, path, "old", &rsaKey.PublicKey, "", nil)
	v, err := New(Options{JWKSFile: path})
	if err != nil {
		t.Fatal(err)
	}
	newKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	tok := sign(t, jwt.SigningMethodRS256, newKey, claims(time.Hour, "a"), "new")
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("a token signed with a key not yet published was accepted")
	}
	jwks(t, path, "new", &newKey.PublicKey, "", nil)
	future := time.Now().Add(time.Second)
	os.Chtimes(path, future, future) // a distinct mtime even on coarse clocks
	ctx := t.Context()
	go v.Watch(ctx, 10*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := v.Verify(tok); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the rotated key was not picked up within 5s")
}

func TestNewRefusesBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no key":              {},
		"none algorithm":      {Secret: secret, Algorithms: []string{"none"}},
		"HS without secret":   {PublicKeyFile: "x", Algorithms: []string{"HS256"}},
		"RS without key file": {Secret: secret, Algorithms: []string{"RS256"}},
		"missing key file":    {PublicKeyFile: "/nonexistent/keys.pem"},
		"unknown algorithm":   {Secret: secret, Algorithms: []string{"XS256"}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
}

func TestToken(t *testing.T) {
	for _, tc := range []struct {
		name       string
		header     map[string]string
		url        string
		src        TokenSources
		want, from string
	}{
		{"bearer header", map[string]string{"Authorization": "Bearer abc"}, "/ws", TokenSources{}, "abc", "header"},
		{"bearer lower case", map[string]string{"Authorization": "bearer abc"}, "/ws", TokenSources{}, "abc", "header"},
		{"subprotocol", map[string]string{"Sec-WebSocket-Protocol": "pgrelay, bearer.x.y.z"}, "/ws", TokenSources{}, "x.y.z", "subprotocol"},
		{"cookie", map[string]string{"Cookie": "pgrelay_token=c1"}, "/ws", TokenSources{Cookie: "pgrelay_token"}, "c1", "cookie"},
		{"cookie disabled", map[string]string{"Cookie": "pgrelay_token=c1"}, "/ws", TokenSources{}, "", ""},
		{"query disabled", nil, "/ws?token=q", TokenSources{}, "", ""},
		{"query enabled", nil, "/ws?token=q", TokenSources{Query: true}, "q", "query"},
		{"basic auth is not a token", map[string]string{"Authorization": "Basic Zm9vOmJhcg=="}, "/ws", TokenSources{}, "", ""},
	} {
		r := httptest.NewRequest("GET", tc.url, nil)
		for k, v := range tc.header {
			r.Header.Set(k, v)
		}
		if got, from := Token(r, tc.src); got != tc.want || from != tc.from {
			t.Errorf("%s: Token = %q from %q, want %q from %q", tc.name, got, from, tc.want, tc.from)
		}
	}
}

// FuzzVerify: no input makes Verify panic or accept an unsigned token.
func FuzzVerify(f *testing.F) {
	v, _ := New(Options{Secret: secret})
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTl9.")
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjk5OTk5OTk5OTksImNoYW5uZWxzIjpbImEiXX0.sig")
	f.Fuzz(func(t *testing.T, tok string) {
		if c, err := v.Verify(tok); err == nil {
			// Only a token carrying a valid HMAC can pass; random input cannot.
			t.Fatalf("fuzzed token accepted: %q → %+v", tok, c)
		}
	})
}
