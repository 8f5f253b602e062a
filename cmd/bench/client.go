package main

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// client is one benchmark connection. Its reader goroutine owns every
// field but the atomics; the rest is read after the reader has ended.
type client struct {
	idx  int
	slow bool // never reads until the run is over
	conn *wsConn
	lat  *hist // read time − SENT; shared with other clients (a shard)
	arr  *hist // kernel receive stamp − SENT, when there is one; likewise
	run  string

	// Set when a reactor reads the socket instead of conn (reactor_linux.go).
	fd      int
	p       *frameParser
	now     int64 // read time of the data being fed
	arrival int64 // its kernel receive stamp, 0 for none
	frameFn func(op byte, p []byte) error
	scratch fields

	// Counted by the reader, read by the progress poll.
	unique atomic.Uint64 // distinct notifications of this run
	warm   atomic.Int64  // highest warm-up number seen, -1 for none

	frames     uint64 // this run's notifications, duplicates included
	duplicates uint64 // a sequence number seen before
	outOfOrder uint64 // an id at or below one already seen
	gaps       uint64 // an id more than one above the last
	resets     uint64 // reset frames
	foreign    uint64 // messages of other senders on the channel
	malformed  uint64 // messages that were not frames
	lastID     uint64
	count      uint64 // sequence numbers this run sends
	seen       seqSet
	err        error // why reading stopped
}

// newClient records its latencies into lat (by read time) and arr (by
// the kernel's receive stamp).
func newClient(idx int, slow bool, count int, run string, lat, arr *hist) *client {
	c := &client{idx: idx, slow: slow, run: run, lat: lat, arr: arr, count: uint64(count), fd: -1}
	c.frameFn = c.onFrame
	c.warm.Store(-1)
	if !slow {
		c.seen = newSeqSet(count)
	}
	return c
}

// read takes messages until the connection ends, recording each. It has
// no kernel stamps: no arrival.
func (c *client) read() {
	for {
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		c.handle(msg, time.Now().UnixNano(), 0)
	}
}

// feed decodes data a reactor read from the socket at now, which the
// kernel received at arrival (Unix ns; 0 for unknown).
func (c *client) feed(data []byte, now, arrival int64) error {
	c.now, c.arrival = now, arrival
	return c.p.feed(data, c.frameFn)
}

// onFrame is feed's callback: it answers control frames and records
// messages.
func (c *client) onFrame(op byte, p []byte) error {
	switch op {
	case opPing:
		return c.writeRaw(opPong, p)
	case opPong:
		return nil
	case opClose:
		ce := closeError(p)
		_ = c.writeRaw(opClose, p[:min(len(p), 2)])
		return ce
	}
	c.handle(p, c.now, c.arrival)
	return nil
}

// handle records one message read at now, which the kernel received at
// arrival (Unix ns; 0 for unknown: no arrival sample).
func (c *client) handle(msg []byte, now, arrival int64) {
	err := scanFrames(msg, &c.scratch, func(f *fields) {
		id, hasID := parseUint(f.id)
		switch string(f.typ) {
		case "":
		case "reset":
			c.resets++
			if hasID {
				c.lastID = max(c.lastID, id)
			}
			return
		default: // position, and types a later edge may add
			if hasID && c.lastID == 0 {
				c.lastID = id
			}
			return
		}
		if hasID {
			switch {
			case c.lastID == 0:
			case id <= c.lastID:
				c.outOfOrder++
			case id > c.lastID+1:
				c.gaps++
			}
			c.lastID = max(c.lastID, id)
		}
		p, ok := parsePayload(f.payload, c.run)
		if !ok {
			c.foreign++
			return
		}
		if p.warm >= 0 {
			if p.warm > c.warm.Load() {
				c.warm.Store(p.warm)
			}
			return
		}
		if p.seq >= c.count {
			c.foreign++ // a sequence number this run never sends
			return
		}
		c.frames++
		if c.slow {
			return
		}
		if !c.seen.add(p.seq) {
			c.duplicates++
			return
		}
		c.unique.Add(1)
		c.lat.Record(time.Duration(now - p.sent))
		if arrival != 0 {
			c.arr.Record(time.Duration(arrival - p.sent))
		}
	})
	if err != nil {
		c.malformed++
	}
}

// drain reads what a client that never read has waiting, until the server
// closes it or until deadline, and says whether the server had cut it off.
func (c *client) drain(deadline time.Time) (cut bool) {
	if tc, ok := c.conn.nc.(*net.TCPConn); ok {
		// The small buffer it had to stall the edge would make reading
		// what piled up in the edge's send buffer slow.
		tc.SetReadBuffer(4 << 20)
	}
	c.conn.nc.SetReadDeadline(deadline)
	for {
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			c.err = err
			var ce *CloseError
			var ne net.Error
			switch {
			case errors.As(err, &ce):
				return true
			case errors.As(err, &ne) && ne.Timeout():
				return false
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				return true
			}
			return true // reset by the server
		}
		c.handle(msg, time.Now().UnixNano(), 0)
	}
}

// seqSet holds a bit per sequence number of a run, to find duplicates.
type seqSet []uint64

func newSeqSet(count int) seqSet { return make(seqSet, (count+63)/64) }

// add marks seq, and reports whether it was not marked yet.
func (s seqSet) add(seq uint64) bool {
	w, bit := seq/64, uint64(1)<<(seq%64)
	if s[w]&bit != 0 {
		return false
	}
	s[w] |= bit
	return true
}
