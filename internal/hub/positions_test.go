package hub_test

import (
	"math"
	"testing"

	"github.com/pgrelay/pgrelay/internal/hub"
)

// step is one message offered to Positions.Pass and the answer expected.
type step struct {
	channel string
	id      uint64
	reset   bool
	pass    bool
}

func runSteps(t *testing.T, p hub.Positions, steps []step) {
	t.Helper()
	for i, s := range steps {
		m := &hub.Message{Channel: s.channel, ID: s.id, Reset: s.reset, Frame: []byte("f")}
		if got := p.Pass(m); got != s.pass {
			t.Errorf("step %d: Pass(%+v) = %v, want %v (positions %v)", i, *m, got, s.pass, p)
		}
	}
}

func TestPositionsUntrackedChannelsPass(t *testing.T) {
	t.Parallel()
	p := hub.Positions{"tracked": 10}
	runSteps(t, p, []step{
		{"other", 1, false, true},
		{"other", 1, false, true}, // untracked: not checked, so repeats pass too
		{"other", 0, false, true},
		{"other", 5, true, true},
		{"", 3, false, true},
		{"tracked:x", 1, false, true}, // a name that merely shares a prefix
	})
	// Untracked channels are not recorded.
	if len(p) != 1 || p["tracked"] != 10 {
		t.Errorf("positions = %v after untracked messages, want only tracked:10", p)
	}
	// A nil Positions (a client that resumed nothing) lets everything pass.
	var none hub.Positions
	runSteps(t, none, []step{{"a", 1, false, true}, {"a", 1, false, true}})
}

func TestPositionsTrackedDropOldAndAdvance(t *testing.T) {
	t.Parallel()
	p := hub.Positions{"c": 10, "d": 100}
	runSteps(t, p, []step{
		{"c", 9, false, false},   // replayed before: below the position
		{"c", 10, false, false},  // equal to the position: already written
		{"c", 0, false, false},   // far below
		{"c", 11, false, true},   // next
		{"c", 11, false, false},  // the live copy of what the replay wrote
		{"c", 10, false, false},  // older still
		{"c", 15, false, true},   // a jump forward passes (gaps are the history's business)
		{"c", 12, false, false},  // a late message below the new position
		{"d", 100, false, false}, // channels are independent
		{"d", 101, false, true},
		{"c", 16, false, true},
	})
	if p["c"] != 16 || p["d"] != 101 || len(p) != 2 {
		t.Errorf("positions = %v, want c:16 d:101", p)
	}
}

// A client that resumed with position 0 gets every message of the channel.
func TestPositionsZero(t *testing.T) {
	t.Parallel()
	p := hub.Positions{"c": 0}
	runSteps(t, p, []step{
		{"c", 0, false, false},
		{"c", 1, false, true},
		{"c", 1, false, false},
	})
}

func TestPositionsMaxID(t *testing.T) {
	t.Parallel()
	p := hub.Positions{"c": math.MaxUint64 - 1}
	runSteps(t, p, []step{
		{"c", math.MaxUint64 - 1, false, false},
		{"c", math.MaxUint64, false, true},
		{"c", math.MaxUint64, false, false},
	})
}

// A reset message carries the last id lost: it is new to a client that had
// not reached that id, and moves its position there, so that the messages
// after the gap pass and a second copy of the reset does not.
func TestPositionsResetMessages(t *testing.T) {
	t.Parallel()
	p := hub.Positions{"c": 10}
	runSteps(t, p, []step{
		{"c", 20, true, true},   // lost 11..20: tell the client
		{"c", 20, true, false},  // the same reset again (replay and live)
		{"c", 15, false, false}, // lost messages that show up late
		{"c", 20, false, false},
		{"c", 21, false, true}, // the stream goes on after the gap
		{"c", 21, true, false}, // a reset for what the client already has
		{"c", 5, true, false},
		{"c", 22, false, true},
	})
	if p["c"] != 22 {
		t.Errorf("position of c = %d, want 22", p["c"])
	}
	// A reset on an untracked channel passes and is not recorded.
	q := hub.Positions{}
	runSteps(t, q, []step{{"c", 7, true, true}, {"c", 7, true, true}})
	if len(q) != 0 {
		t.Errorf("positions = %v after a reset on an untracked channel, want none", q)
	}
}

// The hub queues reset messages like any other, in publish order.
func TestPublishResetMessage(t *testing.T) {
	t.Parallel()
	h := hub.New(hub.Options{})
	s := h.Subscribe([]string{"c"}, nil)
	first := &hub.Message{Channel: "c", ID: 9, Frame: []byte("nine")}
	reset := &hub.Message{Channel: "c", ID: 20, Frame: []byte("reset"), Reset: true}
	after := &hub.Message{Channel: "c", ID: 21, Frame: []byte("twenty-one")}
	for _, m := range []*hub.Message{first, reset, after} {
		if n := h.Publish(m); n != 1 {
			t.Fatalf("Publish(%+v) delivered to %d, want 1", *m, n)
		}
	}
	for _, want := range []*hub.Message{first, reset, after} {
		select {
		case got := <-s.Queue():
			if got != want {
				t.Fatalf("queued %+v, want %+v", *got, *want)
			}
		default:
			t.Fatalf("queue empty, want %+v", *want)
		}
	}
}

// Live drops what a channel's position covers, like Pass, until one message
// passes it; the channel is then forgotten, and later messages pass unchecked
// (live delivery is in id order). Other channels keep their positions.
func TestPositionsLive(t *testing.T) {
	t.Parallel()
	p := hub.Positions{"c": 10, "d": 100}
	steps := []step{
		{"c", 9, false, false},
		{"c", 10, false, false}, // the live copy of what the replay wrote
		{"c", 11, false, true},  // beyond the position: c is forgotten
		{"c", 12, false, true},
		{"d", 100, false, false},
		{"x", 1, false, true}, // untracked
	}
	for i, s := range steps {
		m := &hub.Message{Channel: s.channel, ID: s.id, Reset: s.reset, Frame: []byte("f")}
		if got := p.Live(m); got != s.pass {
			t.Errorf("step %d: Live(%+v) = %v, want %v (positions %v)", i, *m, got, s.pass, p)
		}
	}
	if _, tracked := p["c"]; tracked || p["d"] != 100 || len(p) != 1 {
		t.Errorf("positions = %v, want only d:100", p)
	}
	// A reset beyond the position passes and ends the tracking too.
	q := hub.Positions{"c": 10}
	if !q.Live(&hub.Message{Channel: "c", ID: 20, Reset: true}) || len(q) != 0 {
		t.Errorf("reset 20 over position 10: positions %v, want it passed and none left", q)
	}
}
