// Package probe serves /healthz and /readyz from check functions.
//
// Liveness (/healthz) answers 200 while the process can serve HTTP at all: it
// never depends on PostgreSQL or Redis, so a database outage cannot make
// Kubernetes restart the whole fleet. Readiness (/readyz) runs the Ready
// function and answers 200 with its status text, or 503 with the reason.
package probe

import (
	"net/http"
)

// ReadyFunc reports readiness: a short status word or sentence for the body,
// and whether the process is ready. It must be quick and must not block.
type ReadyFunc func() (status string, ok bool)

// Register adds /healthz and /readyz to mux.
func Register(mux *http.ServeMux, ready ReadyFunc) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		write(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		status, ok := ready()
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		write(w, code, status)
	})
}

func write(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body + "\n"))
}
