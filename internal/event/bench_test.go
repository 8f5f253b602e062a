package event

import (
	"strings"
	"testing"
)

// BenchmarkDecodeAndFrame is the edge's per-message work on a message read
// from Redis: decode the envelope, encode the client frame once.
//
//	go test -run '^$' -bench . -benchmem ./internal/event/
func BenchmarkDecodeAndFrame(b *testing.B) {
	env := []byte(`{"id":"1795625760855649","channel":"data","payload":"` + strings.Repeat("x", 128) + `","ts":1795625760855649}`)
	b.ReportAllocs()
	for b.Loop() {
		e, err := Decode(env)
		if err != nil {
			b.Fatal(err)
		}
		_ = e.Frame()
	}
}
