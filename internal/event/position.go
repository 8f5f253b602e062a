package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// ResetFrame encodes the frame that tells a client that messages of channel
// up to and including id are lost to it (the history no longer holds them):
// {"type":"reset","channel":"data","id":"41"}. The client should reload its
// state; the stream goes on with the messages after id.
func ResetFrame(channel string, id uint64) []byte { return controlFrame("reset", channel, id) }

// PositionFrame encodes the frame that tells a client, when it connects, the
// newest id of a channel it did not resume: {"type":"position","channel":
// "data","id":"41"}. Messages after 41 will reach it; after a reconnect it
// resumes from there (since=data:41) even if no message came meanwhile.
func PositionFrame(channel string, id uint64) []byte { return controlFrame("position", channel, id) }

// controlFrame encodes {"type":kind,"channel":channel,"id":"<id>"}.
func controlFrame(kind, channel string, id uint64) []byte {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Channel string `json:"channel"`
		ID      string `json:"id"`
	}{kind, channel, strconv.FormatUint(id, 10)})
	return b
}

// ParseSince reads the resume positions of a /ws request: each since value is
// CHANNEL:ID (split at the last colon, so channel names may hold colons), or
// a bare ID when exactly one channel is asked for. Every position must name
// one of channels. It returns channel → last id seen.
func ParseSince(channels, since []string) (map[string]uint64, error) {
	if len(since) == 0 {
		return nil, nil
	}
	asked := make(map[string]bool, len(channels))
	for _, ch := range channels {
		asked[ch] = true
	}
	pos := make(map[string]uint64, len(since))
	for _, s := range since {
		ch, idText := "", s
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			ch, idText = s[:i], s[i+1:]
		} else if len(asked) == 1 {
			ch = channels[0]
		} else {
			return nil, fmt.Errorf("since %q: with several channels, write since=CHANNEL:ID", s)
		}
		id, err := strconv.ParseUint(idText, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("since %q: id is not a decimal number", s)
		}
		if !asked[ch] {
			return nil, fmt.Errorf("since %q: channel %q is not asked for", s, ch)
		}
		if _, dup := pos[ch]; dup {
			return nil, fmt.Errorf("since %q: channel %q has two positions", s, ch)
		}
		pos[ch] = id
	}
	return pos, nil
}

// FormatCursor encodes positions as one string, for an SSE id field:
// URL-query form, channel=id&..., sorted by channel.
func FormatCursor(pos map[string]uint64) string {
	keys := make([]string, 0, len(pos))
	for k := range pos {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(k))
		b.WriteByte('=')
		b.WriteString(strconv.FormatUint(pos[k], 10))
	}
	return b.String()
}

// ErrBadCursor is returned by ParseCursor.
var ErrBadCursor = errors.New("event: malformed cursor")

// ParseCursor decodes FormatCursor's output. Positions of channels not in
// channels are dropped: a client may resume with fewer channels.
func ParseCursor(channels []string, cursor string) (map[string]uint64, error) {
	if cursor == "" {
		return nil, nil
	}
	q, err := url.ParseQuery(cursor)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCursor, err)
	}
	pos := make(map[string]uint64)
	for _, ch := range channels {
		v, ok := q[ch]
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil || len(v) != 1 {
			return nil, fmt.Errorf("%w: position of %q", ErrBadCursor, ch)
		}
		pos[ch] = id
	}
	return pos, nil
}
