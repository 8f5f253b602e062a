package wsconn

import (
	"encoding/binary"

	"github.com/pgrelay/pgrelay/internal/hub"
)

// Encode sets m.Wire to m.Frame as a WebSocket text frame, header included
// (RFC 6455 §5.2: FIN, opcode 1, no mask, as a server sends), and makes
// m.Frame a view of the payload inside it. A message is encoded once, in
// the goroutine that receives it, and every client is sent the same
// bytes: no per-client encoding, no library call per delivery. It returns m.
func Encode(m *hub.Message) *hub.Message {
	n := len(m.Frame)
	var hdr int
	switch {
	case n < 126:
		hdr = 2
	case n <= 0xffff:
		hdr = 4
	default:
		hdr = 10
	}
	b := make([]byte, hdr+n)
	b[0] = 0x80 | 0x1 // FIN, text
	switch hdr {
	case 2:
		b[1] = byte(n)
	case 4:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	copy(b[hdr:], m.Frame)
	m.Wire, m.Frame = b, b[hdr:]
	return m
}
