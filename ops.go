package memory

import (
	"context"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// opsLua holds the server-side operations: list, map and counter changes,
// compare-and-set, and the last-writer-wins writes of the offline queue.
//
//go:embed ops.lua
var opsLua string

var opsScript = newScript(opsLua)

// An opID names one operation of one writer, so that the server recognises
// it when it is sent again: the writer's identity, one per link, and a
// sequence number, unique within the writer.
type opID struct {
	writer string
	seq    uint64
}

func (id opID) String() string {
	if id.writer == "" {
		return ""
	}
	return id.writer + "." + strconv.FormatUint(id.seq, 10)
}

// An op is one call of the script: an operation on a key, with its
// identity, and its own arguments.
type op struct {
	name  string        // "append", "incr", "cas", "put", ...
	id    opID          // zero for put and expire
	low   uint64        // the lowest seq of the writer's unsettled operations on the key
	stamp int64         // last_modified
	ttl   time.Duration // > 0: give the key this TTL; 0: keep the key's; < 0: none
	args  []any
	// resent says that an earlier send of the operation may have applied:
	// the server then keeps its record a while, for a copy of that send
	// still on its way.
	resent bool
}

// Outcomes of an op, as the script replies.
const (
	conflicted = 0 // a compare-and-set found another value; put or expire skipped
	applied    = 1
	duplicate  = 2 // applied before: its identity is recorded; a put's value is held already
)

// An opReply is what the script replied to an op.
type opReply struct {
	outcome int
	result  []byte // the operation's result: an element, a number
	before  string // the record before the operation
	prior   string // the last_modified before it, as digits; "" when the key was absent
	record  string // the record after it
	stamp   int64  // the last_modified after it
	current []byte // a conflict's current string; nil when the key is absent
}

// errResultLost is the result of an operation that applied before its reply
// was lost, when its result was too large for the server to keep.
var errResultLost = errors.New("it applied, but its result was too large to keep after its reply was lost")

// run sends o on key, once, and reads the reply. A refusal of the script's
// is returned as the error it stands for: a *DecodeError naming the key, an
// error wrapping ErrNotFound for an empty list, the reason for an index out
// of range.
func (o *op) run(ctx context.Context, c *conn, key string) (opReply, error) {
	v, err := c.run(ctx, opsScript, []string{key}, o.argv()...).Result()
	return o.reply(key, v, err)
}

// resend is run for a send after one whose outcome is not known.
func (o *op) resend(ctx context.Context, c *conn, key string) (opReply, error) {
	again := *o
	again.resent = true
	return again.run(ctx, c, key)
}

func (o *op) argv() []any {
	id := o.id.String()
	if o.resent {
		id += "!"
	}
	return append([]any{o.name, id, strconv.FormatUint(o.low, 10),
		strconv.FormatInt(o.stamp, 10), o.ttlArg()}, o.args...)
}

// ttlArg returns o's TTL as the script takes it: milliseconds, "0" to keep
// the key's, "-1" for none.
func (o *op) ttlArg() string {
	if o.ttl < 0 {
		return "-1"
	}
	return strconv.FormatInt(max(o.ttl.Milliseconds(), min(int64(o.ttl), 1)), 10)
}

// reply returns the outcome of o, on key, from the script's reply v or its
// error.
func (o *op) reply(key string, v any, err error) (opReply, error) {
	if err != nil {
		return opReply{}, refusal(key, err)
	}
	switch v := v.(type) {
	case int64: // put and expire
		return opReply{outcome: int(v)}, nil
	case []any:
		r, err := parseReply(v)
		if err != nil {
			err = fmt.Errorf("memory: %s %q: %w", o.name, key, err)
		}
		return r, err
	}
	return opReply{}, fmt.Errorf("memory: %s %q: unexpected reply %v", o.name, key, v)
}

func parseReply(v []any) (opReply, error) {
	var r opReply
	outcome, _ := v[0].(int64)
	r.outcome = int(outcome)
	text := func(i int) string {
		if i < len(v) {
			s, _ := v[i].(string)
			return s
		}
		return ""
	}
	switch r.outcome {
	case conflicted:
		if s, ok := v[1].(string); ok {
			r.current = []byte(s)
		}
	case applied:
		r.result = []byte(text(1))
		r.before, r.record = text(2), text(3)
		r.stamp, _ = strconv.ParseInt(text(4), 10, 64)
		r.prior = text(5)
	case duplicate:
		result := text(1)
		if result == "z" {
			return r, errResultLost
		}
		decoded, err := hex.DecodeString(result)
		if err != nil {
			return r, fmt.Errorf("the result the server recorded, %q, is not hex: %w", result, err)
		}
		r.result = decoded
	}
	return r, nil
}

// refusal translates an error reply of the script.
func refusal(key string, err error) error {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return err
	}
	kind, msg, _ := strings.Cut(reply.Error(), " ")
	switch kind {
	case "DECODE":
		return &DecodeError{Key: key, Err: errors.New(msg)}
	case "EMPTY":
		return fmt.Errorf("%w: %s", ErrNotFound, msg)
	case "RANGE":
		return err // the index or the number out of range, as the script says
	case "WRONGTYPE":
		return &DecodeError{Key: key, Err: err}
	}
	return err
}
