package debug

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestServe(t *testing.T) {
	if err := Serve(t.Context(), "", slog.Default()); err != nil {
		t.Fatalf("empty address: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	if err := Serve(ctx, addr, slog.Default()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /debug/pprof/: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := http.Get("http://" + addr + "/debug/pprof/"); err != nil {
			return // closed with its context
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("pprof server still answers after its context ended")
}
