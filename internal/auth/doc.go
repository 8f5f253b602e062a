// Package auth decides who may listen to what: it verifies a client's JWT
// and says which channels the token grants.
//
// A Verifier checks the signature with a key of an allowed algorithm only
// (HS256 with a shared secret; RS256 and ES256 with public keys from a PEM or
// a JWKS file), requires exp, and reads the channels claim: exact names, or a
// prefix ending in '*'. Key files are re-read when they change (Watch), so
// keys rotate without a restart. It is the only package importing
// golang-jwt; Verifier is safe for concurrent use.
//
// Token returns the token a request carries: the Authorization header
// (Bearer), a cookie, the Sec-WebSocket-Protocol value "bearer.<token>"
// (browsers cannot set headers on a WebSocket), or, only when the operator
// allows it, a token query parameter (which leaks into proxy logs).
package auth
