package main

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// errProtocol marks a frame the server should not have sent.
var errProtocol = errors.New("websocket protocol error")

// frameParser decodes a server's frames from a byte stream fed to it in
// whatever pieces the socket gives: the least a client that only listens
// needs (RFC 6455 §5). No extension is ever negotiated, so frames are not
// compressed; server frames are not masked. Both readers use it: wsConn
// (a connection read by its own goroutine) and the epoll reactor.
type frameParser struct {
	rest       []byte // the start of a frame not yet complete
	msg        []byte // fragments being joined
	joining    bool
	opcode     byte // of the message being joined
	maxMessage int
	frames     int // frames decoded, for tests
}

// feed decodes what data completes and calls fn with each text or binary
// message and each control frame, in order. The slices passed to fn are
// valid only during the call. fn's error stops feed and is returned.
func (p *frameParser) feed(data []byte, fn func(op byte, payload []byte) error) error {
	if len(p.rest) > 0 {
		p.rest = append(p.rest, data...)
		data = p.rest
	}
	i := 0
	for {
		n, op, payload, err := p.frame(data[i:])
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		i += n
		p.frames++
		if err := p.deliver(op, payload, fn); err != nil {
			p.keep(data[i:])
			return err
		}
	}
	p.keep(data[i:])
	return nil
}

// keep saves the bytes of an incomplete frame for the next feed.
func (p *frameParser) keep(b []byte) {
	if len(b) == 0 {
		p.rest = p.rest[:0]
		return
	}
	// b may lie within p.rest: copy moves it down safely.
	p.rest = append(p.rest[:0], b...)
}

// frame decodes the frame at the start of b. n is 0 when b does not hold a
// whole frame yet.
func (p *frameParser) frame(b []byte) (n int, op byte, payload []byte, err error) {
	if len(b) < 2 {
		return 0, 0, nil, nil
	}
	b0, b1 := b[0], b[1]
	fin := b0&0x80 != 0
	op = b0 & 0x0f
	switch {
	case b0&0x70 != 0:
		return 0, 0, nil, fmt.Errorf("%w: reserved bits set (no extension was agreed)", errProtocol)
	case b1&0x80 != 0:
		return 0, 0, nil, fmt.Errorf("%w: masked frame from the server", errProtocol)
	}
	hdr, size := 2, uint64(b1&0x7f)
	switch size {
	case 126:
		if len(b) < 4 {
			return 0, 0, nil, nil
		}
		hdr, size = 4, uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		if len(b) < 10 {
			return 0, 0, nil, nil
		}
		hdr, size = 10, binary.BigEndian.Uint64(b[2:10])
	}
	if op&0x8 != 0 && (!fin || size > 125) {
		return 0, 0, nil, fmt.Errorf("%w: fragmented or long control frame", errProtocol)
	}
	if size > uint64(p.maxMessage) {
		return 0, 0, nil, fmt.Errorf("frame of %d bytes, over the %d-byte message limit", size, p.maxMessage)
	}
	if uint64(len(b)-hdr) < size {
		return 0, 0, nil, nil
	}
	n = hdr + int(size)
	payload = b[hdr:n]
	if op&0x8 != 0 {
		return n, op, payload, nil
	}
	switch {
	case op == opContinuation && !p.joining:
		return 0, 0, nil, fmt.Errorf("%w: continuation frame outside a message", errProtocol)
	case op != opContinuation && p.joining:
		return 0, 0, nil, fmt.Errorf("%w: new message inside a fragmented one", errProtocol)
	case op != opContinuation && op != opText && op != opBinary:
		return 0, 0, nil, fmt.Errorf("%w: unknown opcode %#x", errProtocol, op)
	}
	if fin && !p.joining {
		return n, op, payload, nil // the usual case: one frame, no copy
	}
	if !p.joining {
		p.joining, p.opcode, p.msg = true, op, p.msg[:0]
	}
	if len(p.msg)+len(payload) > p.maxMessage {
		return 0, 0, nil, fmt.Errorf("message over the %d-byte limit", p.maxMessage)
	}
	p.msg = append(p.msg, payload...)
	if !fin {
		return n, opContinuation, nil, nil
	}
	p.joining = false
	return n, p.opcode, p.msg, nil
}

// deliver passes a decoded frame on; fragments not yet complete are not.
func (p *frameParser) deliver(op byte, payload []byte, fn func(byte, []byte) error) error {
	if op == opContinuation {
		return nil
	}
	return fn(op, payload)
}

// CloseError is the server's close frame.
type CloseError struct {
	Code   int // 1005 when the frame had no code
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("closed by server: %d %s", e.Code, e.Reason)
}

func closeError(payload []byte) *CloseError {
	ce := &CloseError{Code: 1005}
	if len(payload) >= 2 {
		ce.Code = int(binary.BigEndian.Uint16(payload))
		ce.Reason = string(payload[2:])
	}
	return ce
}

// controlFrame returns a masked control frame with payload p (at most 125
// bytes), as a client must send it. mask is the masking key.
func controlFrame(dst []byte, op byte, p []byte, mask uint32) []byte {
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], mask)
	dst = append(dst, 0x80|op, 0x80|byte(len(p)))
	dst = append(dst, key[:]...)
	for i, b := range p {
		dst = append(dst, b^key[i%4])
	}
	return dst
}
