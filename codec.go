package memory

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
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
//
// A value changed by a server-side operation (ops.lua) also records the
// identities of recent operations, before the stamp:
//
//	{"value": <value>, "ops": "<record>", "last_modified": <stamp>}
const (
	envelopeHead = `{"value": `
	envelopeOps  = `, "ops": "`
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

// encodeValues returns the JSON of each of vs, as the envelopes hold them,
// or an *EncodeError naming name.
func encodeValues[T any](name string, vs []T) ([][]byte, error) {
	e := newEncoder()
	defer e.release()
	for _, v := range vs {
		if err := e.enc.Encode(v); err != nil {
			return nil, &EncodeError{Name: name, Type: reflect.TypeOf(v), Err: err}
		}
		e.buf.Truncate(e.buf.Len() - 1) // the newline Encode appends
		e.ends = append(e.ends, e.buf.Len())
	}
	return e.envelopes(), nil
}

// envelopes returns copies of what was added, each envelope or value, in
// one allocation.
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
	return envelopeWith(value, "", lastModified)
}

// envelopeWith is envelope with the record of operations, when not empty,
// as the server-side operations lay it out.
func envelopeWith(value []byte, record string, lastModified int64) []byte {
	b := make([]byte, 0, len(envelopeHead)+len(value)+len(envelopeOps)+len(record)+1+len(envelopeMid)+20+len(envelopeTail))
	b = append(b, envelopeHead...)
	b = append(b, value...)
	if record != "" {
		b = append(b, envelopeOps...)
		b = append(b, record...)
		b = append(b, '"')
	}
	return appendStamp(b, lastModified)
}

// appendStamp appends to b the end of an envelope stamped with lastModified.
func appendStamp(b []byte, lastModified int64) []byte {
	b = append(b, envelopeMid...)
	b = strconv.AppendInt(b, lastModified, 10)
	return append(b, envelopeTail...)
}

// parts returns the value, the record of operations and the stamp of a
// stored string: an envelope of any layout, or a bare JSON value with no
// record and the stamp 0.
func parts(stored []byte) (value []byte, record string, lastModified int64, err error) {
	if value, record, ts, ok := splitEnvelope(stored); ok && json.Valid(value) {
		return value, record, ts, nil
	}
	return parseEnvelope(stored)
}

// valueOf returns the value of a stored string, nil when stored is nil.
func valueOf(stored []byte) ([]byte, error) {
	if stored == nil {
		return nil, nil
	}
	value, _, _, err := parts(stored)
	return value, err
}

// casToken returns what the compare-and-set of ops.lua expects to find for
// a key that holds stored: nothing for no value, the record of operations
// of a value that has one, which changes with each of them, and otherwise
// the SHA-1 of the string.
func casToken(stored []byte) string {
	if stored == nil {
		return ""
	}
	if _, record, _, err := parts(stored); err == nil && record != "" {
		return "r:" + record
	}
	sum := sha1.Sum(stored)
	return "h:" + hex.EncodeToString(sum[:])
}

// decode stores in dst the value held by data, a stored string, and returns
// its last_modified stamp (0 for a bare value). A string in the envelope
// layout is parsed once; any other JSON object with both "value" and
// "last_modified" members is an envelope too, and any other JSON is a bare
// value.
func decode(data []byte, dst any) (lastModified int64, err error) {
	if value, _, ts, ok := splitEnvelope(data); ok {
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
	value, _, ts, err := parseEnvelope(data)
	if err != nil {
		return 0, err
	}
	return ts, json.Unmarshal(value, dst)
}

// An envelopeLayout is the text around the parts of an envelope, as one
// writer lays it out.
type envelopeLayout struct{ head, ops, mid, tail string }

// envelopeLayouts are the layouts that splitEnvelope reads: the envelope
// layout, this library's and the Python library's, and encoding/json's
// compact one, which Go code that writes the envelope itself makes.
var envelopeLayouts = [...]envelopeLayout{
	{envelopeHead, envelopeOps, envelopeMid, envelopeTail},
	{`{"value":`, `,"ops":"`, `,"last_modified":`, `}`},
}

// splitEnvelope cuts data in one of envelopeLayouts into its value,
// unchecked, its record of operations and its stamp. It reports false for
// any other layout. It reads from the end, so that its cost does not grow
// with the value.
func splitEnvelope(data []byte) (value []byte, record string, lastModified int64, ok bool) {
	for _, l := range &envelopeLayouts {
		if value, record, lastModified, ok = l.split(data); ok {
			return value, record, lastModified, true
		}
	}
	return nil, "", 0, false
}

// split is splitEnvelope for the layout l.
func (l *envelopeLayout) split(data []byte) (value []byte, record string, lastModified int64, ok bool) {
	rest, ok := bytes.CutPrefix(data, []byte(l.head))
	if !ok {
		return nil, "", 0, false
	}
	rest, ok = bytes.CutSuffix(rest, []byte(l.tail))
	if !ok {
		return nil, "", 0, false
	}
	digits := len(rest)
	for digits > 0 && rest[digits-1] >= '0' && rest[digits-1] <= '9' {
		digits--
	}
	ts, ok := parseStamp(rest[digits:])
	if !ok {
		return nil, "", 0, false
	}
	value, ok = bytes.CutSuffix(rest[:digits], []byte(l.mid))
	if !ok {
		return nil, "", 0, false
	}
	// A value that ends with a quote may be followed by the record: no
	// JSON value holds an unescaped `, "ops": "`.
	if r, ok := bytes.CutSuffix(value, []byte(`"`)); ok {
		if i := bytes.LastIndex(r, []byte(l.ops)); i >= 0 && isRecord(r[i+len(l.ops):]) {
			return r[:i], string(r[i+len(l.ops):]), ts, true
		}
	}
	return value, "", ts, true
}

// isRecord reports whether b holds only what records of operations hold:
// letters, digits, '.', ' ' and '!'.
func isRecord(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == ' ' || c == '!') {
			return false
		}
	}
	return true
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
func parseEnvelope(data []byte) (value []byte, record string, lastModified int64, err error) {
	var env map[string]json.RawMessage
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		if err := json.Unmarshal(data, &env); err != nil {
			return nil, "", 0, err
		}
	} else if !json.Valid(data) {
		return nil, "", 0, errors.New("not JSON")
	}
	value, hasValue := env["value"]
	stamp, hasStamp := env["last_modified"]
	if !hasValue || !hasStamp {
		return data, "", 0, nil
	}
	var ts json.Number
	if err := json.Unmarshal(stamp, &ts); err != nil {
		return nil, "", 0, fmt.Errorf("last_modified %s is not a number", stamp)
	}
	if lastModified, err = ts.Int64(); err != nil {
		return nil, "", 0, fmt.Errorf("last_modified %s is not an integer", stamp)
	}
	if json.Unmarshal(env["ops"], &record) != nil || !isRecord([]byte(record)) {
		record = "" // as ops.lua reads it
	}
	return value, record, lastModified, nil
}

// checkDestination returns a *json.InvalidUnmarshalError unless dst is a
// non-nil pointer, so that Get fails before any I/O.
func checkDestination(dst any) error {
	if v := reflect.ValueOf(dst); v.Kind() != reflect.Pointer || v.IsNil() {
		return &json.InvalidUnmarshalError{Type: reflect.TypeOf(dst)}
	}
	return nil
}
