package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifyStream sends pg_notify(ch, "w0:SEQ") at a steady rate from its own
// connection, reconnecting when PostgreSQL goes away, and remembers when
// each one committed. Every attempt takes a new SEQ, so a NOTIFY whose
// commit was not confirmed (the server died under it) can never repeat a
// payload: it is left out of the accounting, arrive or not.
type notifyStream struct {
	url, ch string
	every   time.Duration

	mu        sync.Mutex
	committed []time.Time // by SEQ; zero when the commit was not confirmed
	failed    int
}

func newNotifyStream(url, ch string, perSecond int) *notifyStream {
	return &notifyStream{url: url, ch: ch, every: time.Second / time.Duration(perSecond)}
}

// run sends until ctx ends.
func (s *notifyStream) run(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			c, err := pgx.Connect(cctx, s.url)
			cancel()
			if err != nil {
				continue // PostgreSQL is down: try at the next tick
			}
			conn = c
		}
		s.mu.Lock()
		seq := len(s.committed)
		s.committed = append(s.committed, time.Time{})
		s.mu.Unlock()
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := conn.Exec(qctx, "SELECT pg_notify($1, $2)", s.ch, fmt.Sprintf("w0:%d", seq))
		cancel()
		s.mu.Lock()
		if err == nil {
			s.committed[seq] = time.Now()
		} else {
			s.failed++
		}
		s.mu.Unlock()
		if err != nil {
			conn.Close(context.Background())
			conn = nil
		}
	}
}

// last is the highest SEQ attempted so far (-1 before the first).
func (s *notifyStream) last() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.committed) - 1
}

// lastCommitted is the highest SEQ whose commit was confirmed.
func (s *notifyStream) lastCommitted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.committed) - 1; i >= 0; i-- {
		if !s.committed[i].IsZero() {
			return i
		}
	}
	return -1
}

// inWindow returns the SEQs in (from, to] whose commit was confirmed.
func (s *notifyStream) inWindow(from, to int) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for i := from + 1; i <= to && i < len(s.committed); i++ {
		if !s.committed[i].IsZero() {
			out = append(out, i)
		}
	}
	return out
}

func (s *notifyStream) committedAt(seq int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed[seq]
}

// payload is the payload of SEQ.
func payload(seq int) string { return fmt.Sprintf("w0:%d", seq) }

// maxSeq is the highest SEQ r has received on ch (-1 if none).
func maxSeq(r *resumer, ch string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.order["w0/"+ch]; ok {
		return v
	}
	return -1
}

// loss says what the clients got of the SEQs in (from, to]: how many were
// committed, which none received, and which clients' sets differ from the
// first client's (each should have received every published message).
type loss struct {
	committed int
	lost      []int
	differ    []string
	gap       time.Duration // first lost to the first SEQ received after the last lost, by commit time
}

func (s *notifyStream) account(clients []*resumer, from, to int) loss {
	var l loss
	seqs := s.inWindow(from, to)
	l.committed = len(seqs)
	for _, seq := range seqs {
		if !clients[0].saw(payload(seq)) {
			l.lost = append(l.lost, seq)
		}
	}
	for _, c := range clients[1:] {
		n := 0
		for _, seq := range seqs {
			if c.saw(payload(seq)) != clients[0].saw(payload(seq)) {
				n++
			}
		}
		if n > 0 {
			l.differ = append(l.differ, fmt.Sprintf("%s differs from %s on %d messages", c.name, clients[0].name, n))
		}
	}
	if len(l.lost) > 0 {
		first, last := l.lost[0], l.lost[len(l.lost)-1]
		for _, seq := range seqs {
			if seq > last && clients[0].saw(payload(seq)) {
				l.gap = s.committedAt(seq).Sub(s.committedAt(first))
				break
			}
		}
	}
	return l
}

// stats summarizes durations or counts: median and max.
func medianMax[T int | time.Duration](xs []T) (T, T) {
	if len(xs) == 0 {
		return 0, 0
	}
	s := append([]T(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var med T
	if n := len(s); n%2 == 1 {
		med = s[n/2]
	} else {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[len(s)-1]
}
