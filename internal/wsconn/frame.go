package wsconn

import (
	"encoding/binary"

	"github.com/pgrelay/pgrelay/internal/hub"
)

// Encode sets m.Wire to m.Frame as a WebSocket text frame, header included,
// and makes m.Frame a view of the payload inside it. A message is encoded
// once, in the goroutine that receives it, and every client is sent the
// same bytes: no per-client encoding, no library call per delivery. It
// returns m.
func Encode(m *hub.Message) *hub.Message {
	n := len(m.Frame)
	b := appendFrame(make([]byte, 0, 10+n), m.Frame)
	m.Wire, m.Frame = b, b[len(b)-n:]
	return m
}

// appendFrame appends payload to b as a text frame (RFC 6455 §5.2: FIN,
// opcode 1, no mask, as a server sends).
func appendFrame(b, payload []byte) []byte {
	n := len(payload)
	const fin, text = 0x80, 0x1
	switch {
	case n < 126:
		b = append(b, fin|text, byte(n))
	case n <= 0xffff:
		b = append(b, fin|text, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, fin|text, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}
