// Package event defines the message that travels from the relay through Redis
// to the edges and on to clients, and its two encodings: the envelope the relay
// publishes on Redis and the frame the edge writes to a WebSocket.
//
// The package is stdlib only and every function is safe for concurrent use.
package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// MaxChannelLen is PostgreSQL's identifier limit (NAMEDATALEN-1). A longer
// channel name could never be LISTENed to, so it is refused everywhere.
const MaxChannelLen = 63

// Event is one notification.
type Event struct {
	// Channel is the PostgreSQL channel the notification was sent on.
	Channel string `json:"channel"`
	// ID is given by the relay when it publishes; it only grows within a
	// channel. Clients treat it as opaque.
	ID string `json:"id"`
	// Payload is the NOTIFY payload, untouched.
	Payload string `json:"payload"`
	// Encoding is "base64" when Payload holds the base64 (standard, padded)
	// of a payload that was not valid UTF-8 (a SQL_ASCII database can send
	// one), so that no byte is lost; empty otherwise.
	Encoding string `json:"encoding,omitempty"`
	// TS is when the relay published the event, in Unix microseconds; zero
	// if unknown. It travels in the Redis envelope for latency metrics and is
	// not part of the client frame.
	TS int64 `json:"ts,omitempty"`
}

// Errors returned by Decode and ValidateChannel.
var (
	ErrEmptyChannel   = errors.New("event: empty channel name")
	ErrLongChannel    = fmt.Errorf("event: channel name longer than %d bytes", MaxChannelLen)
	ErrMissingID      = errors.New("event: missing id")
	ErrMalformedID    = errors.New("event: id is not a decimal number")
	ErrMalformedFrame = errors.New("event: malformed envelope")
)

// ValidateChannel reports whether name can be a channel: not empty and within
// PostgreSQL's identifier limit. Any other byte is allowed; the relay quotes
// names when it LISTENs.
func ValidateChannel(name string) error {
	switch {
	case name == "":
		return ErrEmptyChannel
	case len(name) > MaxChannelLen:
		return ErrLongChannel
	}
	return nil
}

// Decode parses an envelope read from Redis and checks it. Anything a foreign
// writer could put on the wire is either a valid Event or an error.
func Decode(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformedFrame, err)
	}
	if err := ValidateChannel(e.Channel); err != nil {
		return Event{}, err
	}
	if e.ID == "" {
		return Event{}, ErrMissingID
	}
	if _, err := strconv.ParseUint(e.ID, 10, 64); err != nil {
		return Event{}, ErrMalformedID
	}
	if e.Encoding != "" && e.Encoding != "base64" {
		return Event{}, fmt.Errorf("%w: unknown encoding %q", ErrMalformedFrame, e.Encoding)
	}
	return e, nil
}

// Frame encodes e as the JSON text frame clients receive:
// {"channel":"data","id":"17","payload":"green"}.
// The edge calls it once per message, never once per client.
func (e Event) Frame() []byte {
	// Marshal of a struct of strings cannot fail.
	b, _ := json.Marshal(struct {
		Channel  string `json:"channel"`
		ID       string `json:"id"`
		Payload  string `json:"payload"`
		Encoding string `json:"encoding,omitempty"`
	}{e.Channel, e.ID, e.Payload, e.Encoding})
	return b
}
