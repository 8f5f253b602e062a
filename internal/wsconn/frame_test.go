package wsconn

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/pgrelay/pgrelay/internal/hub"
)

// The headers are those of RFC 6455 §5.7's examples (text instead of binary
// for the longer two): 7-bit, 16-bit and 64-bit lengths, at each boundary.
func TestEncodeHeaders(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string // header, hex
	}{
		{5, "8105"},
		{125, "817d"},
		{126, "817e007e"},
		{256, "817e0100"},
		{65535, "817effff"},
		{65536, "817f0000000000010000"},
	} {
		payload := bytes.Repeat([]byte("x"), tc.n)
		m := Encode(&hub.Message{Frame: payload})
		hdr := len(m.Wire) - tc.n
		if got := hex.EncodeToString(m.Wire[:hdr]); got != tc.want {
			t.Errorf("%d bytes: header %s, want %s", tc.n, got, tc.want)
		}
		if !bytes.Equal(m.Frame, payload) || &m.Frame[0] != &m.Wire[hdr] {
			t.Errorf("%d bytes: Frame is not the payload inside Wire", tc.n)
		}
	}
	if m := Encode(&hub.Message{Frame: []byte("Hello")}); hex.EncodeToString(m.Wire) != "810548656c6c6f" {
		t.Errorf("Hello: %x, want the RFC's 810548656c6c6f", m.Wire)
	}
}

// BenchmarkEncode frames one 160-byte message, once per message (never
// per client): one allocation, the frame itself.
//
//	go test -run '^$' -bench Encode -benchmem ./internal/wsconn/
func BenchmarkEncode(b *testing.B) {
	frame := bytes.Repeat([]byte("x"), 160)
	b.ReportAllocs()
	for b.Loop() {
		Encode(&hub.Message{Frame: frame})
	}
}
