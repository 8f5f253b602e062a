// Package e2e holds end-to-end tests: relays and edges run in-process (or, in
// procs_test.go, as built binaries killed for real) against
// a real PostgreSQL and Redis, with real WebSocket clients and a real headless
// Chromium. It has no non-test code.
package e2e
