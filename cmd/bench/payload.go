package main

import (
	"bytes"
	"strconv"
)

// A payload is "RUN.SEQ.SENT." padded with 'x' to the payload size: RUN
// tells this run's notifications from anyone else's on the channel, SEQ
// numbers them from 0 (or is wN for the warm-up notifications), and SENT is
// the send time in Unix nanoseconds, read just before pg_notify is sent.
// Plain ASCII, so the frame's JSON string needs no escapes.

// minPayload is the smallest -payload: an 8-character run, a 20-digit
// sequence number, a 19-digit time and the dots fit with room to spare.
const minPayload = 64

// maxPayload is PostgreSQL's NOTIFY limit (8000 bytes with the terminator).
const maxPayload = 7999

// appendPayload appends a payload of size bytes (or fewer, if size is
// smaller than the fields) to b.
func appendPayload(b []byte, run string, seq string, sent int64, size int) []byte {
	start := len(b)
	b = append(b, run...)
	b = append(b, '.')
	b = append(b, seq...)
	b = append(b, '.')
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, '.')
	for len(b)-start < size {
		b = append(b, 'x')
	}
	return b
}

// parsed is what a payload says.
type parsed struct {
	warm int64 // the warm-up number, or -1
	seq  uint64
	sent int64 // Unix ns
}

// parsePayload reads a payload of run; ok is false for a foreign one.
func parsePayload(p []byte, run string) (parsed, bool) {
	if len(p) < len(run)+1 || string(p[:len(run)]) != run || p[len(run)] != '.' {
		return parsed{}, false
	}
	p = p[len(run)+1:]
	i := bytes.IndexByte(p, '.')
	if i < 1 {
		return parsed{}, false
	}
	out := parsed{warm: -1}
	seq := p[:i]
	if seq[0] == 'w' {
		w, ok := parseUint(seq[1:])
		if !ok {
			return parsed{}, false
		}
		out.warm = int64(w)
	} else {
		var ok bool
		if out.seq, ok = parseUint(seq); !ok {
			return parsed{}, false
		}
	}
	p = p[i+1:]
	j := bytes.IndexByte(p, '.')
	if j < 1 {
		return parsed{}, false
	}
	sent, ok := parseUint(p[:j])
	if !ok {
		return parsed{}, false
	}
	out.sent = int64(sent)
	return out, true
}
