package memory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"sync"
)

// Every value is stored as a JSON envelope laid out the way Python's
// json.dumps writes it, so that Go and Python writers produce the same bytes
// around the value:
//
//	{"value": <value as JSON>, "last_modified": <Unix nanoseconds>}
const (
	envelopeHead = `{"value": `
	envelopeMid  = `, "last_modified": `
	envelopeTail = `}`
)

// maxPooledBuffer is the largest encoding buffer kept for reuse, so that one
// huge value does not pin its memory in the pool.
const maxPooledBuffer = 64 << 10

// An encoder writes envelopes back to back into a reusable buffer.
type encoder struct {
	buf  bytes.Buffer
	enc  *json.Encoder
	ends []int // where each envelope ends in buf
}

var encoders = sync.Pool{New: func() any {
	e := new(encoder)
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

// newEncoder returns an empty encoder from the pool.
func newEncoder() *encoder {
	e := encoders.Get().(*encoder)
	e.buf.Reset()
	e.ends = e.ends[:0]
	return e
}

// release returns e to the pool, unless its buffer grew past
// maxPooledBuffer.
func (e *encoder) release() {
	if e.buf.Cap() <= maxPooledBuffer {
		encoders.Put(e)
	}
}

// add appends the envelope of value stamped with lastModified, or returns
// an *EncodeError naming name.
func (e *encoder) add(name string, value any, lastModified int64) error {
	e.buf.WriteString(envelopeHead)
	if err := e.enc.Encode(value); err != nil {
		return &EncodeError{Name: name, Type: reflect.TypeOf(value), Err: err}
	}
	e.buf.Truncate(e.buf.Len() - 1) // the newline Encode appends
	e.buf.Write(appendStamp(e.buf.AvailableBuffer(), lastModified))
	e.ends = append(e.ends, e.buf.Len())
	return nil
}

// envelopes returns copies of the envelopes added, in one allocation.
func (e *encoder) envelopes() [][]byte {
	all := bytes.Clone(e.buf.Bytes())
	out := make([][]byte, len(e.ends))
	start := 0
	for i, end := range e.ends {
		out[i] = all[start:end:end]
		start = end
	}
	return out
}

// encode returns the envelope of value stamped with lastModified, or an
// *EncodeError naming name.
func encode(name string, value any, lastModified int64) ([]byte, error) {
	e := newEncoder()
	defer e.release()
	if err := e.add(name, value, lastModified); err != nil {
		return nil, err
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

// envelope returns the envelope of value, JSON kept byte for byte, stamped
// with lastModified.
func envelope(value []byte, lastModified int64) []byte {
	b := make([]byte, 0, len(envelopeHead)+len(value)+len(envelopeMid)+20+len(envelopeTail))
	b = append(b, envelopeHead...)
	b = append(b, value...)
	return appendStamp(b, lastModified)
}

// appendStamp appends to b the end of an envelope stamped with lastModified.
func appendStamp(b []byte, lastModified int64) []byte {
	b = append(b, envelopeMid...)
	b = strconv.AppendInt(b, lastModified, 10)
	return append(b, envelopeTail...)
}

// stamp returns the last_modified of a stored string, 0 for a bare value or
// a string that is not JSON.
func stamp(stored []byte) int64 {
	if _, ts, ok := splitEnvelope(stored); ok {
		return ts
	}
	_, ts, _ := parseEnvelope(stored)
	return ts
}

// decode stores in dst the value held by data, a stored string, and returns
// its last_modified stamp (0 for a bare value). A string in the envelope
// layout is parsed once; any other JSON object with both "value" and
// "last_modified" members is an envelope too, and any other JSON is a bare
// value.
func decode(data []byte, dst any) (lastModified int64, err error) {
	if value, ts, ok := splitEnvelope(data); ok {
		// Unmarshal checks the syntax of value before it writes to dst, so
		// a syntax error leaves dst untouched for the general parse.
		err := json.Unmarshal(value, dst)
		if err == nil {
			return ts, nil
		}
		if syntaxErr := (*json.SyntaxError)(nil); !errors.As(err, &syntaxErr) {
			return ts, err
		}
	}
	value, ts, err := parseEnvelope(data)
	if err != nil {
		return 0, err
	}
	return ts, json.Unmarshal(value, dst)
}

// splitEnvelope cuts data in the envelope layout into its value, unchecked,
// and its stamp. It reports false for any other layout. It reads the stamp
// from the end, so that its cost does not grow with the value.
func splitEnvelope(data []byte) (value []byte, lastModified int64, ok bool) {
	rest, ok := bytes.CutPrefix(data, []byte(envelopeHead))
	if !ok {
		return nil, 0, false
	}
	rest, ok = bytes.CutSuffix(rest, []byte(envelopeTail))
	if !ok {
		return nil, 0, false
	}
	digits := len(rest)
	for digits > 0 && rest[digits-1] >= '0' && rest[digits-1] <= '9' {
		digits--
	}
	ts, ok := parseStamp(rest[digits:])
	if !ok {
		return nil, 0, false
	}
	value, ok = bytes.CutSuffix(rest[:digits], []byte(envelopeMid))
	return value, ts, ok
}

// parseStamp parses the decimal digits of a non-negative int64 without
// allocating, unlike strconv on a []byte.
func parseStamp(digits []byte) (int64, bool) {
	if len(digits) == 0 || len(digits) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return int64(n), n <= math.MaxInt64
}

// parseEnvelope is the general form of splitEnvelope: it accepts an envelope
// in any JSON layout, and any other JSON as a bare value.
func parseEnvelope(data []byte) (value []byte, lastModified int64, err error) {
	var env map[string]json.RawMessage
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		if err := json.Unmarshal(data, &env); err != nil {
			return nil, 0, err
		}
	} else if !json.Valid(data) {
		return nil, 0, errors.New("not JSON")
	}
	value, hasValue := env["value"]
	stamp, hasStamp := env["last_modified"]
	if !hasValue || !hasStamp {
		return data, 0, nil
	}
	var ts json.Number
	if err := json.Unmarshal(stamp, &ts); err != nil {
		return nil, 0, fmt.Errorf("last_modified %s is not a number", stamp)
	}
	if lastModified, err = ts.Int64(); err != nil {
		return nil, 0, fmt.Errorf("last_modified %s is not an integer", stamp)
	}
	return value, lastModified, nil
}

// checkDestination returns a *json.InvalidUnmarshalError unless dst is a
// non-nil pointer, so that Get fails before any I/O.
func checkDestination(dst any) error {
	if v := reflect.ValueOf(dst); v.Kind() != reflect.Pointer || v.IsNil() {
		return &json.InvalidUnmarshalError{Type: reflect.TypeOf(dst)}
	}
	return nil
}
