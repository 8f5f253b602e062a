package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pgrelay/pgrelay/internal/event"
)

// core is what of e reaches clients: its channel, id and payload. The
// envelope may carry more (metadata for the edge), which frames leave out.
func core(e event.Event) event.Event {
	return event.Event{Channel: e.Channel, ID: e.ID, Payload: e.Payload}
}

func TestValidateChannel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		channel string
		want    error
	}{
		{"simple", "orders", nil},
		{"one byte", "a", nil},
		{"mixed case", "Orders", nil},
		{"punctuation and spaces", `my-channel a b with"quote`, nil},
		{"emoji", "🚀", nil},
		{"63 bytes", strings.Repeat("x", 63), nil},
		{"63 bytes of multibyte runes", strings.Repeat("é", 31) + "x", nil},
		{"empty", "", event.ErrEmptyChannel},
		{"64 bytes", strings.Repeat("x", 64), event.ErrLongChannel},
		{"64 bytes of multibyte runes", strings.Repeat("é", 32), event.ErrLongChannel},
		{"very long", strings.Repeat("x", 1000), event.ErrLongChannel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := event.ValidateChannel(tc.channel); !errors.Is(got, tc.want) || (tc.want == nil) != (got == nil) {
				t.Errorf("ValidateChannel(%q) = %v, want %v", tc.channel, got, tc.want)
			}
		})
	}
	if event.MaxChannelLen != 63 {
		t.Errorf("MaxChannelLen = %d, want PostgreSQL's 63", event.MaxChannelLen)
	}
}

func TestDecodeAccepts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want event.Event
	}{
		{"plain", `{"channel":"data","id":"17","payload":"green"}`, event.Event{Channel: "data", ID: "17", Payload: "green"}},
		{"relay order (id first)", `{"id":"1","channel":"data","payload":"x"}`, event.Event{Channel: "data", ID: "1", Payload: "x"}},
		{"extra fields ignored", `{"channel":"c","id":"2","payload":"p","time":"2024-01-01T00:00:00Z","n":3,"o":{"a":[1]}}`, event.Event{Channel: "c", ID: "2", Payload: "p"}},
		{"missing payload is empty", `{"channel":"c","id":"3"}`, event.Event{Channel: "c", ID: "3"}},
		{"zero id", `{"channel":"c","id":"0","payload":""}`, event.Event{Channel: "c", ID: "0"}},
		{"max uint64 id", `{"channel":"c","id":"18446744073709551615"}`, event.Event{Channel: "c", ID: "18446744073709551615"}},
		{"whitespace around", " \n{ \"channel\" : \"c\" , \"id\" : \"4\" }\t", event.Event{Channel: "c", ID: "4"}},
		{"63-byte channel", `{"channel":"` + strings.Repeat("x", 63) + `","id":"5"}`, event.Event{Channel: strings.Repeat("x", 63), ID: "5"}},
		{"escaped payload", `{"channel":"c","id":"6","payload":"a\"b\\c\nd\u003c\ud83d\ude80"}`, event.Event{Channel: "c", ID: "6", Payload: "a\"b\\c\nd<🚀"}},
		{"payload that is JSON", `{"channel":"c","id":"7","payload":"{\"k\":[1,2]}"}`, event.Event{Channel: "c", ID: "7", Payload: `{"k":[1,2]}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := event.Decode([]byte(tc.in))
			if err != nil {
				t.Fatalf("Decode(%s) = %v", tc.in, err)
			}
			if core(got) != tc.want {
				t.Errorf("Decode(%s) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"empty input", ``, event.ErrMalformedFrame},
		{"not JSON", `hello`, event.ErrMalformedFrame},
		{"truncated", `{"channel":"c","id":"1"`, event.ErrMalformedFrame},
		{"array", `["c","1","p"]`, event.ErrMalformedFrame},
		{"string", `"c"`, event.ErrMalformedFrame},
		{"trailing garbage", `{"channel":"c","id":"1"}x`, event.ErrMalformedFrame},
		{"numeric id", `{"channel":"c","id":1}`, event.ErrMalformedFrame},
		{"numeric payload", `{"channel":"c","id":"1","payload":5}`, event.ErrMalformedFrame},
		{"null", `null`, event.ErrEmptyChannel},
		{"empty object", `{}`, event.ErrEmptyChannel},
		{"missing channel", `{"id":"1","payload":"p"}`, event.ErrEmptyChannel},
		{"empty channel", `{"channel":"","id":"1"}`, event.ErrEmptyChannel},
		{"64-byte channel", `{"channel":"` + strings.Repeat("x", 64) + `","id":"1"}`, event.ErrLongChannel},
		{"missing id", `{"channel":"c","payload":"p"}`, event.ErrMissingID},
		{"empty id", `{"channel":"c","id":""}`, event.ErrMissingID},
		{"null id", `{"channel":"c","id":null}`, event.ErrMissingID},
		{"word id", `{"channel":"c","id":"abc"}`, event.ErrMalformedID},
		{"hex id", `{"channel":"c","id":"0x1f"}`, event.ErrMalformedID},
		{"decimal point", `{"channel":"c","id":"1.5"}`, event.ErrMalformedID},
		{"exponent", `{"channel":"c","id":"1e3"}`, event.ErrMalformedID},
		{"underscore", `{"channel":"c","id":"1_000"}`, event.ErrMalformedID},
		{"negative", `{"channel":"c","id":"-1"}`, event.ErrMalformedID},
		{"plus sign", `{"channel":"c","id":"+1"}`, event.ErrMalformedID},
		{"leading space", `{"channel":"c","id":" 1"}`, event.ErrMalformedID},
		{"trailing space", `{"channel":"c","id":"1 "}`, event.ErrMalformedID},
		{"trailing newline", `{"channel":"c","id":"1\n"}`, event.ErrMalformedID},
		{"overflows uint64", `{"channel":"c","id":"18446744073709551616"}`, event.ErrMalformedID},
		{"full-width digits", `{"channel":"c","id":"１"}`, event.ErrMalformedID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := event.Decode([]byte(tc.in))
			if err == nil {
				t.Fatalf("Decode(%s) = %+v, want error %v", tc.in, got, tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Decode(%s) error = %v, want %v", tc.in, err, tc.want)
			}
			if got != (event.Event{}) {
				t.Errorf("Decode(%s) returned %+v with its error, want the zero Event", tc.in, got)
			}
		})
	}
}

func TestFrameRoundTrip(t *testing.T) {
	t.Parallel()
	payloads := map[string]string{
		"empty":         "",
		"plain":         "green",
		"quotes":        `say "hi" and 'bye'`,
		"backslashes":   `C:\path\to\n and \u0041 \\`,
		"newlines":      "line1\nline2\r\nline3\ttab",
		"emoji":         "🚀 héllo wörld ✓ 日本語",
		"html":          `<script>alert("x")</script> & <b>bold</b>`,
		"json":          `{"nested":{"id":"9","list":[1,2,3]},"s":"a\"b"}`,
		"controls":      "\x00\x01\x1f\x7f",
		"line seps":     "\u2028\u2029",
		"long":          strings.Repeat("abc\"\\\n🚀", 1000),
		"looks like id": `","id":"999`,
	}
	for name, payload := range payloads {
		t.Run(name, func(t *testing.T) {
			e := event.Event{Channel: `my-"chan" é`, ID: "42", Payload: payload}
			frame := e.Frame()
			if !json.Valid(frame) {
				t.Fatalf("Frame() is not valid JSON: %s", frame)
			}
			got, err := event.Decode(frame)
			if err != nil {
				t.Fatalf("Decode(Frame()) = %v; frame %s", err, frame)
			}
			if got != e {
				t.Errorf("Decode(Frame()) = %+v, want %+v", got, e)
			}
			// Clients parse the frame with any JSON library: check the
			// field names and that nothing else is in it.
			var m map[string]string
			if err := json.Unmarshal(frame, &m); err != nil {
				t.Fatalf("frame is not an object of strings: %v", err)
			}
			if len(m) != 3 || m["channel"] != e.Channel || m["id"] != e.ID || m["payload"] != e.Payload {
				t.Errorf("frame fields = %q, want channel, id and payload of %+v", m, e)
			}
		})
	}
}

func TestFrameFormat(t *testing.T) {
	t.Parallel()
	got := event.Event{Channel: "data", ID: "17", Payload: "green"}.Frame()
	if want := `{"channel":"data","id":"17","payload":"green"}`; string(got) != want {
		t.Errorf("Frame() = %s, want %s", got, want)
	}
	// A frame is one WebSocket text message: it must not contain a raw newline.
	multi := event.Event{Channel: "c", ID: "1", Payload: "a\nb"}.Frame()
	if bytes.ContainsAny(multi, "\n\r") {
		t.Errorf("Frame() contains a raw line break: %q", multi)
	}
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"channel":"data","id":"17","payload":"green"}`,
		`{"id":"1","channel":"c","payload":""}`,
		`{"channel":"c","id":"2","payload":"p","ts":"2024-01-01T00:00:00Z"}`,
		`{"channel":"c","id":"6","payload":"a\"b\\c\nd\u003c\ud83d\ude80"}`,
		`{"channel":"` + strings.Repeat("x", 63) + `","id":"5"}`,
		`{"channel":"` + strings.Repeat("x", 64) + `","id":"5"}`,
		`{"channel":"c","id":"18446744073709551616"}`,
		`{"channel":"c","id":"+1"}`,
		`{"channel":"c","id":" 1"}`,
		`{"channel":"c","id":1}`,
		`{"channel":"c"}`,
		`{"channel":"","id":"1"}`,
		`{"CHANNEL":"c","Id":"1"}`,
		`{"channel":"c","id":"1","channel":"d"}`,
		`{"channel":"\ud800","id":"1","payload":"\xff"}`,
		`null`,
		`{}`,
		`[]`,
		`not json`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := event.Decode(data)
		if err != nil {
			if e != (event.Event{}) {
				t.Fatalf("Decode(%q) returned %+v along with error %v", data, e, err)
			}
			return
		}
		if verr := event.ValidateChannel(e.Channel); verr != nil {
			t.Fatalf("Decode(%q) accepted channel %q: %v", data, e.Channel, verr)
		}
		if e.ID == "" {
			t.Fatalf("Decode(%q) accepted an empty id", data)
		}
		for _, r := range e.ID {
			if r < '0' || r > '9' {
				t.Fatalf("Decode(%q) accepted id %q", data, e.ID)
			}
		}
		frame := e.Frame()
		again, err := event.Decode(frame)
		if err != nil {
			t.Fatalf("Decode(%q) = %+v, but Decode of its Frame %s fails: %v", data, e, frame, err)
		}
		if again != core(e) {
			t.Fatalf("Decode(%q) = %+v, but Decode(Frame()) = %+v", data, e, again)
		}
	})
}
