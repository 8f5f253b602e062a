package hub

// Positions tracks, for one client, the last id written on each channel it
// resumed, so that the messages a replay and the live queue both hold are
// written once. Channels not in it pass unchecked. Not safe for concurrent
// use: it belongs to the client's writer.
type Positions map[string]uint64

// Pass reports whether m is new to the client, and records it if so.
func (p Positions) Pass(m *Message) bool {
	if len(p) == 0 { // most clients resume nothing: skip the lookup
		return true
	}
	last, tracked := p[m.Channel]
	if !tracked {
		return true
	}
	if m.ID <= last {
		return false
	}
	p[m.Channel] = m.ID
	return true
}

// Live is Pass for live delivery, where each channel's messages come in id
// order. Once a message beyond a channel's position passes, every later one
// is beyond it too: the channel is dropped from p, and the rest of its
// messages pass without a lookup. Catch-up must use Pass: a replay and the
// live messages held meanwhile overlap. Live relies on one goroutine
// publishing to the hub (the edge's fan-out), so that a client gets each
// channel's messages in publish order.
func (p Positions) Live(m *Message) bool {
	if !p.Pass(m) {
		return false
	}
	if len(p) > 0 {
		delete(p, m.Channel)
	}
	return true
}
