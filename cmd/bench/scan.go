package main

import (
	"errors"
	"math"
)

// fields are the string members of one frame object that the benchmark
// reads, as raw JSON string contents (escapes left as they are: ids are
// digits and the benchmark's payloads are plain ASCII).
type fields struct {
	typ, channel, id, payload []byte
}

var errFrame = errors.New("malformed frame")

// scanFrames calls fn for each object in a text message: one object (the
// frame format today), an array of objects, or objects one after another
// (a batched format would be one of these). It reads without allocating;
// fn must not keep the slices. f is scratch space, so that nothing is
// allocated.
func scanFrames(b []byte, f *fields, fn func(*fields)) error {
	i := skipSpace(b, 0)
	if i < len(b) && b[i] == '[' {
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return nil
		}
		for {
			var err error
			if i, err = scanObject(b, i, f); err != nil {
				return err
			}
			fn(f)
			i = skipSpace(b, i)
			if i >= len(b) {
				return errFrame
			}
			if b[i] == ']' {
				return nil
			}
			if b[i] != ',' {
				return errFrame
			}
			i = skipSpace(b, i+1)
		}
	}
	for i < len(b) {
		var err error
		if i, err = scanObject(b, i, f); err != nil {
			return err
		}
		fn(f)
		i = skipSpace(b, i)
	}
	return nil
}

// scanObject reads the object at b[i:] into f and returns the index after it.
func scanObject(b []byte, i int, f *fields) (int, error) {
	*f = fields{}
	if i >= len(b) || b[i] != '{' {
		return 0, errFrame
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, errFrame
		}
		kEnd, err := stringEnd(b, i+1)
		if err != nil {
			return 0, err
		}
		key := b[i+1 : kEnd]
		i = skipSpace(b, kEnd+1)
		if i >= len(b) || b[i] != ':' {
			return 0, errFrame
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '"' {
			vEnd, err := stringEnd(b, i+1)
			if err != nil {
				return 0, err
			}
			val := b[i+1 : vEnd]
			switch string(key) { // no allocation: the compiler compares in place
			case "type":
				f.typ = val
			case "channel":
				f.channel = val
			case "id":
				f.id = val
			case "payload":
				f.payload = val
			}
			i = vEnd + 1
		} else if i, err = skipValue(b, i); err != nil {
			return 0, err
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, errFrame
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, errFrame
		}
	}
}

// stringEnd returns the index of the quote closing the string that starts
// at b[i:] (just after its opening quote).
func stringEnd(b []byte, i int) (int, error) {
	for ; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i, nil
		}
	}
	return 0, errFrame
}

// skipValue returns the index after the non-string value at b[i:]: a
// number, true, false, null, or a nested object or array.
func skipValue(b []byte, i int) (int, error) {
	depth := 0
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			end, err := stringEnd(b, i+1)
			if err != nil {
				return 0, err
			}
			i = end
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i, nil
			}
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		case ',':
			if depth == 0 {
				return i, nil
			}
		case ' ', '\t', '\r', '\n':
			if depth == 0 {
				return i, nil
			}
		}
	}
	if depth != 0 {
		return 0, errFrame
	}
	return i, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// parseUint reads a decimal uint64; ok is false for anything else.
func parseUint(b []byte) (n uint64, ok bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
