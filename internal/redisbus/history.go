package redisbus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/pgrelay/pgrelay/internal/event"
	"github.com/redis/go-redis/v9"
)

// History reads channels' recent events. It is safe for concurrent use.
type History struct {
	rdb    redis.Cmdable
	prefix string
}

// NewHistory returns a History reading under prefix (empty: DefaultPrefix).
func NewHistory(rdb redis.Cmdable, prefix string) *History {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &History{rdb: rdb, prefix: prefix}
}

// Newest returns channel's newest id, 0 if it has none.
func (h *History) Newest(ctx context.Context, channel string) (uint64, error) {
	s, err := h.rdb.Get(ctx, seqKey(h.prefix, channel)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read newest id of %q: %w", channel, err)
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read newest id of %q: %q is not an id", channel, s)
	}
	return id, nil
}

// Page is the answer to History.After.
type Page struct {
	// Events after the position asked for, in id order.
	Events []event.Event
	// Complete is false when events after the position are missing from the
	// history (trimmed, expired, or lost with Redis's data): the reader has
	// a gap that cannot be filled and must be told to reset.
	Complete bool
	// Last is the channel's newest id; 0 if the channel has none.
	Last uint64
	// Through is the id of the last entry read, valid or not (0: none):
	// the next page starts after it.
	Through uint64
	// Malformed counts entries skipped because they were not valid
	// envelopes of the channel; their ids are gaps in Events.
	Malformed int
}

// After returns channel's events with ids greater than after, at most limit
// of them (the oldest first; ask again from the last one for more).
func (h *History) After(ctx context.Context, channel string, after uint64, limit int) (Page, error) {
	if after == math.MaxUint64 {
		// Nothing can come after it (and after+1 would wrap to 0).
		last, err := h.Newest(ctx, channel)
		return Page{Complete: true, Last: last}, err
	}
	var xr *redis.XMessageSliceCmd
	var seq *redis.StringCmd
	// One transaction, so the counter and the history agree: a message
	// published between two separate reads would look like a gap.
	_, err := h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		xr = p.XRangeN(ctx, historyKey(h.prefix, channel), strconv.FormatUint(after+1, 10)+"-0", "+", int64(limit))
		seq = p.Get(ctx, seqKey(h.prefix, channel))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Page{}, fmt.Errorf("read history of %q: %w", channel, err)
	}
	var pg Page
	if s, err := seq.Result(); err == nil {
		pg.Last, _ = strconv.ParseUint(s, 10, 64)
	}
	want := after + 1
	for _, m := range xr.Val() {
		if through, err := strconv.ParseUint(strings.TrimSuffix(m.ID, "-0"), 10, 64); err == nil {
			pg.Through = through
		}
		raw, _ := m.Values["e"].(string)
		e, err := event.Decode([]byte(raw))
		if err != nil || e.Channel != channel || !strings.HasPrefix(m.ID, e.ID+"-") {
			// A foreign writer's entry: skipped, counted, and seen by the
			// reader as a gap, never an error that would stop every reader.
			pg.Malformed++
			continue
		}
		pg.Events = append(pg.Events, e)
	}
	switch {
	case len(pg.Events) > 0:
		first, _ := strconv.ParseUint(pg.Events[0].ID, 10, 64)
		pg.Complete = first == want
	default:
		// Nothing newer is kept: complete only if nothing newer exists.
		pg.Complete = pg.Last == after
	}
	return pg, nil
}

// Reset reports whether a reader that had handled events up to after must be
// told of a gap before this page's events, and the last id lost. There is
// none to tell when the page is complete, and none yet when the history is
// empty and the counter is not ahead of after: Redis lost its data and no
// new event exists; the first one will show as a gap then.
func (pg Page) Reset(after uint64) (at uint64, ok bool) {
	switch {
	case pg.Complete:
		return 0, false
	case len(pg.Events) > 0:
		first, _ := strconv.ParseUint(pg.Events[0].ID, 10, 64)
		return first - 1, true
	case pg.Last > after:
		return pg.Last, true
	}
	return 0, false
}

// Each hands channel's events after id after to onEvent, oldest first,
// reading page entries at a time, and calls onReset(at) before an event if
// the ones up to at are missing: trimmed or expired from the history, or
// skipped as malformed. It stops at the first error of a callback. after 0
// means "from the start of the history": no reset before the first event.
// It returns the number of malformed entries skipped.
func (h *History) Each(ctx context.Context, channel string, after uint64, page int,
	onReset func(at uint64) error, onEvent func(e event.Event, id uint64) error) (malformed int, err error) {
	from := after // where the next page starts; after is the last event handed on
	for {
		pg, err := h.After(ctx, channel, from, page)
		if err != nil {
			return malformed, err
		}
		malformed += pg.Malformed
		if at, ok := pg.Reset(after); ok && after != 0 && len(pg.Events) == 0 && pg.Malformed == 0 {
			if err := onReset(at); err != nil {
				return malformed, err
			}
		}
		for _, e := range pg.Events {
			id, _ := strconv.ParseUint(e.ID, 10, 64) // Decode checked it
			if after != 0 && id > after+1 {
				if err := onReset(id - 1); err != nil {
					return malformed, err
				}
			}
			if err := onEvent(e, id); err != nil {
				return malformed, err
			}
			after = id
		}
		from = max(after, pg.Through)
		if len(pg.Events)+pg.Malformed < page {
			return malformed, nil
		}
	}
}
