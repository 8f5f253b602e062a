package event_test

import (
	"encoding/json"
	"errors"
	"maps"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/pgrelay/pgrelay/internal/event"
)

func TestResetFrameFormat(t *testing.T) {
	t.Parallel()
	if got, want := string(event.ResetFrame("data", 41)), `{"type":"reset","channel":"data","id":"41"}`; got != want {
		t.Errorf("ResetFrame = %s, want %s", got, want)
	}
	for _, tc := range []struct {
		channel string
		id      uint64
	}{
		{"data", 0},
		{"c", math.MaxUint64},
		{`with "quotes" and \ backslash`, 1795626204851271},
		{"a:b:17", 17},
		{"🚀 é\n\u2028<&>", 5},
		{strings.Repeat("x", event.MaxChannelLen), 1},
	} {
		frame := event.ResetFrame(tc.channel, tc.id)
		var m map[string]string
		if err := json.Unmarshal(frame, &m); err != nil {
			t.Fatalf("ResetFrame(%q, %d) = %s: not an object of strings: %v", tc.channel, tc.id, frame, err)
		}
		want := map[string]string{"type": "reset", "channel": tc.channel, "id": strconv.FormatUint(tc.id, 10)}
		if !maps.Equal(m, want) {
			t.Errorf("ResetFrame(%q, %d) = %q, want %q", tc.channel, tc.id, m, want)
		}
		if strings.ContainsAny(string(frame), "\n\r") {
			t.Errorf("ResetFrame(%q, %d) contains a raw line break: %q", tc.channel, tc.id, frame)
		}
		// A client that parses every frame as an event must not mistake a
		// reset for one with a payload: it has no payload field.
		if _, ok := m["payload"]; ok {
			t.Errorf("ResetFrame has a payload field: %s", frame)
		}
	}
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	const maxID = "18446744073709551615"
	for _, tc := range []struct {
		name     string
		channels []string
		since    []string
		want     map[string]uint64 // nil with wantErr false: no positions
		wantErr  bool
	}{
		{"no since", []string{"a", "b"}, nil, nil, false},
		{"empty since list", []string{"a"}, []string{}, nil, false},
		{"one channel with name", []string{"a"}, []string{"a:17"}, map[string]uint64{"a": 17}, false},
		{"bare id, one channel", []string{"a"}, []string{"17"}, map[string]uint64{"a": 17}, false},
		{"bare id, channel asked twice", []string{"a", "a"}, []string{"17"}, map[string]uint64{"a": 17}, false},
		{"bare id, one channel with colons", []string{"a:b"}, []string{"17"}, map[string]uint64{"a:b": 17}, false},
		{"bare zero", []string{"a"}, []string{"0"}, map[string]uint64{"a": 0}, false},
		{"several channels", []string{"a", "b", "c"}, []string{"a:1", "c:3"}, map[string]uint64{"a": 1, "c": 3}, false},
		{"colons in channel name", []string{"a:b", "a"}, []string{"a:b:17", "a:5"}, map[string]uint64{"a:b": 17, "a": 5}, false},
		{"channel ending in a colon", []string{"a:"}, []string{"a::9"}, map[string]uint64{"a:": 9}, false},
		{"channel that is a colon", []string{":"}, []string{"::9"}, map[string]uint64{":": 9}, false},
		{"empty channel name", []string{"", "b"}, []string{":4"}, map[string]uint64{"": 4}, false},
		{"emoji and spaces", []string{"🚀 x", "y"}, []string{"🚀 x:3"}, map[string]uint64{"🚀 x": 3}, false},
		{"max id", []string{"a"}, []string{"a:" + maxID}, map[string]uint64{"a": math.MaxUint64}, false},
		{"leading zeros", []string{"a"}, []string{"a:007"}, map[string]uint64{"a": 7}, false},

		{"bare id, two channels", []string{"a", "b"}, []string{"17"}, nil, true},
		{"bare id, no channel", nil, []string{"17"}, nil, true},
		{"unknown channel", []string{"a"}, []string{"b:1"}, nil, true},
		{"unknown channel, split at last colon", []string{"a:b"}, []string{"b:17"}, nil, true},
		{"prefix of a channel with colons", []string{"a:b"}, []string{"a:17"}, nil, true},
		{"duplicate channel", []string{"a", "b"}, []string{"a:1", "a:2"}, nil, true},
		{"duplicate, same id", []string{"a", "b"}, []string{"a:1", "a:1"}, nil, true},
		{"duplicate via bare id", []string{"a"}, []string{"1", "a:2"}, nil, true},
		{"two bare ids", []string{"a"}, []string{"1", "2"}, nil, true},
		{"one bad among good", []string{"a", "b"}, []string{"a:1", "b:x"}, nil, true},
		{"negative", []string{"a"}, []string{"a:-1"}, nil, true},
		{"bare negative", []string{"a"}, []string{"-1"}, nil, true},
		{"plus sign", []string{"a"}, []string{"a:+1"}, nil, true},
		{"overflows uint64", []string{"a"}, []string{"a:18446744073709551616"}, nil, true},
		{"huge", []string{"a"}, []string{"a:" + strings.Repeat("9", 100)}, nil, true},
		{"hex", []string{"a"}, []string{"a:0x1f"}, nil, true},
		{"underscore", []string{"a"}, []string{"a:1_000"}, nil, true},
		{"decimal point", []string{"a"}, []string{"a:1.5"}, nil, true},
		{"exponent", []string{"a"}, []string{"a:1e3"}, nil, true},
		{"space", []string{"a"}, []string{"a: 1"}, nil, true},
		{"trailing space", []string{"a"}, []string{"a:1 "}, nil, true},
		{"full-width digit", []string{"a"}, []string{"a:１"}, nil, true},
		{"empty id", []string{"a"}, []string{"a:"}, nil, true},
		{"empty value", []string{"a"}, []string{""}, nil, true},
		{"only a colon", []string{"a"}, []string{":"}, nil, true},
		{"channel name without id", []string{"a"}, []string{"a"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := event.ParseSince(tc.channels, tc.since)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseSince(%q, %q) = %v, want an error", tc.channels, tc.since, got)
				}
				if got != nil {
					t.Errorf("ParseSince(%q, %q) returned %v with its error", tc.channels, tc.since, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSince(%q, %q) = %v", tc.channels, tc.since, err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("ParseSince(%q, %q) = %v, want %v", tc.channels, tc.since, got, tc.want)
			}
		})
	}
}

// The error says what is wrong, for the 400 the client gets.
func TestParseSinceErrorMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		channels, since []string
		want            string
	}{
		{[]string{"a", "b"}, []string{"17"}, "CHANNEL:ID"},
		{[]string{"a"}, []string{"b:1"}, `channel "b" is not asked for`},
		{[]string{"a"}, []string{"a:1", "a:2"}, "two positions"},
		{[]string{"a"}, []string{"a:x"}, "not a decimal number"},
	} {
		_, err := event.ParseSince(tc.channels, tc.since)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSince(%q, %q) error = %v, want one mentioning %q", tc.channels, tc.since, err, tc.want)
		}
	}
}

// awkward are channel names that need escaping in a cursor.
var awkward = []string{
	"plain", "with space", "a&b", "a=b", "100%", "%41", "a:b:17", "🚀", "é ü",
	"a+b", "q?x", "#frag", ";semi", "a/b", `"quoted"\`, "tab\there", "new\nline",
	"&=&=", "==", "&", "=", "%", "+", " ", "", "\xff\xfe",
	strings.Repeat("x", event.MaxChannelLen),
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	pos := map[string]uint64{}
	for i, ch := range awkward {
		pos[ch] = uint64(i) * 1_000_000_007
	}
	pos["max"] = math.MaxUint64
	pos["zero"] = 0
	channels := append(slicesOfKeys(pos), "asked but absent")

	cursor := event.FormatCursor(pos)
	if strings.ContainsAny(cursor, "\n\r") {
		t.Fatalf("cursor holds a line break, impossible in an SSE id: %q", cursor)
	}
	got, err := event.ParseCursor(channels, cursor)
	if err != nil {
		t.Fatalf("ParseCursor(FormatCursor(%v)) = %v; cursor %q", pos, err, cursor)
	}
	if !maps.Equal(got, pos) {
		t.Errorf("ParseCursor(FormatCursor(p)) = %v, want %v; cursor %q", got, pos, cursor)
	}
	// The same positions give the same cursor whatever the map order.
	for range 20 {
		if again := event.FormatCursor(maps.Clone(pos)); again != cursor {
			t.Fatalf("FormatCursor is not deterministic: %q then %q", cursor, again)
		}
	}
}

func slicesOfKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func TestFormatCursor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pos  map[string]uint64
		want string
	}{
		{nil, ""},
		{map[string]uint64{}, ""},
		{map[string]uint64{"a": 17}, "a=17"},
		{map[string]uint64{"b": 2, "a": 1, "c": 3}, "a=1&b=2&c=3"}, // sorted by channel
		{map[string]uint64{"a b": 1, "a&b": 2, "a=b": 3, "a:b": 4}, "a+b=1&a%26b=2&a%3Ab=4&a%3Db=3"},
		{map[string]uint64{"100%": 5}, "100%25=5"},
	} {
		if got := event.FormatCursor(tc.pos); got != tc.want {
			t.Errorf("FormatCursor(%v) = %q, want %q", tc.pos, got, tc.want)
		}
	}
}

func TestParseCursor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		channels []string
		cursor   string
		want     map[string]uint64
		wantErr  bool
	}{
		{"empty", []string{"a"}, "", nil, false},
		{"one", []string{"a"}, "a=17", map[string]uint64{"a": 17}, false},
		{"unasked channels dropped", []string{"a", "c"}, "a=1&b=2&c=3", map[string]uint64{"a": 1, "c": 3}, false},
		{"nothing asked for", nil, "a=1", map[string]uint64{}, false},
		{"none of the asked", []string{"z"}, "a=1&b=2", map[string]uint64{}, false},
		{"unsorted input", []string{"a", "b"}, "b=2&a=1", map[string]uint64{"a": 1, "b": 2}, false},
		{"escaped names", []string{"a b", "a&b", "a:b"}, "a+b=1&a%26b=2&a%3Ab=4", map[string]uint64{"a b": 1, "a&b": 2, "a:b": 4}, false},
		{"percent-encoded space", []string{"a b"}, "a%20b=1", map[string]uint64{"a b": 1}, false},
		{"max id", []string{"a"}, "a=18446744073709551615", map[string]uint64{"a": math.MaxUint64}, false},
		{"bad value of an unasked channel", []string{"a"}, "a=1&b=x", map[string]uint64{"a": 1}, false},
		// Text that is no cursor reads as names of unasked channels: no
		// positions, so the client starts live (as with no cursor).
		{"plain id", []string{"a"}, "17", map[string]uint64{}, false},
		{"colon form", []string{"a"}, "a:17", map[string]uint64{}, false},

		{"not a number", []string{"a"}, "a=x", nil, true},
		{"negative", []string{"a"}, "a=-1", nil, true},
		{"overflows uint64", []string{"a"}, "a=18446744073709551616", nil, true},
		{"empty id", []string{"a"}, "a=", nil, true},
		{"no equals sign", []string{"a"}, "a", nil, true},
		{"two positions", []string{"a"}, "a=1&a=2", nil, true},
		{"two equal positions", []string{"a"}, "a=1&a=1", nil, true},
		{"bad escape", []string{"a"}, "a%zz=1", nil, true},
		{"bad escape in a value", []string{"a"}, "a=%zz", nil, true},
		{"bad escape elsewhere", []string{"a"}, "a=1&b%=2", nil, true},
		{"semicolon separator", []string{"a", "b"}, "a=1;b=2", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := event.ParseCursor(tc.channels, tc.cursor)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseCursor(%q, %q) = %v, want an error", tc.channels, tc.cursor, got)
				}
				if !errors.Is(err, event.ErrBadCursor) {
					t.Errorf("ParseCursor(%q, %q) error = %v, want ErrBadCursor", tc.channels, tc.cursor, err)
				}
				if got != nil {
					t.Errorf("ParseCursor(%q, %q) returned %v with its error", tc.channels, tc.cursor, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCursor(%q, %q) = %v", tc.channels, tc.cursor, err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("ParseCursor(%q, %q) = %v, want %v", tc.channels, tc.cursor, got, tc.want)
			}
		})
	}
}

// splitList turns a fuzzer string into a list: elements separated by NUL.
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

func FuzzParseSince(f *testing.F) {
	for _, seed := range [][2]string{
		{"a", "a:17"},
		{"a", "17"},
		{"a\x00b", "17"},
		{"a:b\x00a", "a:b:17\x00a:5"},
		{"a", "a:1\x00a:2"},
		{"a", "b:1"},
		{"a", "a:-1"},
		{"a", "a:18446744073709551615"},
		{"a", "a:18446744073709551616"},
		{"a", "a:1e3"},
		{"", "1"},
		{"\x00", ":1"},
		{"🚀", "🚀:1\x00"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, chans, since string) {
		channels, sinceList := splitList(chans), splitList(since)
		pos, err := event.ParseSince(channels, sinceList)
		if err != nil {
			if pos != nil {
				t.Fatalf("ParseSince(%q, %q) returned %v with error %v", channels, sinceList, pos, err)
			}
			return
		}
		if len(sinceList) == 0 {
			if pos != nil {
				t.Fatalf("ParseSince(%q, none) = %v, want nil", channels, pos)
			}
			return
		}
		// One position per since value, each for an asked channel.
		if len(pos) != len(sinceList) {
			t.Fatalf("ParseSince(%q, %q) = %v: %d positions for %d values", channels, sinceList, pos, len(pos), len(sinceList))
		}
		asked := setOf(channels)
		var again []string
		for ch, id := range pos {
			if !asked[ch] {
				t.Fatalf("ParseSince(%q, %q) = %v: channel %q not asked for", channels, sinceList, pos, ch)
			}
			again = append(again, ch+":"+strconv.FormatUint(id, 10))
		}
		// The canonical CHANNEL:ID form parses back to the same positions.
		back, err := event.ParseSince(channels, again)
		if err != nil || !maps.Equal(back, pos) {
			t.Fatalf("ParseSince(%q, %q) = %v, but its canonical form %q parses to %v, %v", channels, sinceList, pos, again, back, err)
		}
	})
}

func FuzzParseCursor(f *testing.F) {
	for _, seed := range []struct{ chans, cursor string }{
		{"a", "a=17"},
		{"a\x00b", "a=1&b=2"},
		{"a b\x00a&b", "a+b=1&a%26b=2"},
		{"a", "a=1&a=2"},
		{"a", "a=%zz"},
		{"a", "a=1;b=2"},
		{"a", "a=-1"},
		{"a", "a=18446744073709551616"},
		{"🚀\x00a:b:17", "%F0%9F%9A%80=5&a%3Ab%3A17=6"},
		{"", "=1"},
	} {
		f.Add(seed.chans, seed.cursor, uint64(1795626204851271))
	}
	f.Fuzz(func(t *testing.T, chans, cursor string, id uint64) {
		channels := splitList(chans)
		asked := setOf(channels)
		pos, err := event.ParseCursor(channels, cursor)
		if err != nil {
			if pos != nil {
				t.Fatalf("ParseCursor(%q, %q) returned %v with error %v", channels, cursor, pos, err)
			}
			if !errors.Is(err, event.ErrBadCursor) {
				t.Fatalf("ParseCursor(%q, %q) error %v is not ErrBadCursor", channels, cursor, err)
			}
		}
		for ch := range pos {
			if !asked[ch] {
				t.Fatalf("ParseCursor(%q, %q) = %v: channel %q not asked for", channels, cursor, pos, ch)
			}
		}
		if err == nil && len(pos) > 0 {
			// What parsed formats back to a cursor that parses the same.
			if back, err := event.ParseCursor(channels, event.FormatCursor(pos)); err != nil || !maps.Equal(back, pos) {
				t.Fatalf("ParseCursor(%q, %q) = %v, but again from its FormatCursor: %v, %v", channels, cursor, pos, back, err)
			}
		}

		// Round trip: positions for the fuzzed channels (and for names the
		// cursor text makes up, some unasked) come back for asked channels.
		p := map[string]uint64{}
		for i, ch := range channels {
			p[ch] = id + uint64(i)
		}
		p[cursor] = id // a name that is not asked for, unless it is
		want := map[string]uint64{}
		for ch, v := range p {
			if asked[ch] {
				want[ch] = v
			}
		}
		c := event.FormatCursor(p)
		got, err := event.ParseCursor(channels, c)
		if err != nil {
			t.Fatalf("ParseCursor(%q, FormatCursor(%v) = %q) = %v", channels, p, c, err)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("ParseCursor(%q, FormatCursor(%v) = %q) = %v, want %v", channels, p, c, got, want)
		}
	})
}

func setOf(list []string) map[string]bool {
	set := make(map[string]bool, len(list))
	for _, x := range list {
		set[x] = true
	}
	return set
}
