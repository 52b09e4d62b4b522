package memory

import (
	"context"
	"fmt"
	"strconv"
)

// A Log is a history of T stored under one name as a Redis list, one
// envelope per item,
//
//	{"value": <item as JSON>, "ops": "<the append's identity>", "last_modified": <stamp>}
//
// for conversations and other histories that grow without bound: appending
// and reading the newest items cost the same whatever the length. A List,
// by contrast, is one JSON value, which the Python library reads, and which
// every read returns whole.
//
// Appends are atomic, applied exactly once, and queued while the server
// cannot be reached, as every write is. Reads need the server: they return
// what it holds, without the appends still queued here.
type Log[T any] struct {
	m    *Memory
	name string
}

// LogOf returns the log stored under name in m. The name is checked when
// the log is used.
func LogOf[T any](m *Memory, name string) *Log[T] {
	return &Log[T]{m: m, name: name}
}

// Append adds items at the end of the log, all of them in one atomic step
// (one RPUSH), whatever the log's length. With WithDefaultTTL the log gets
// that TTL again.
func (l *Log[T]) Append(ctx context.Context, items ...T) error {
	key, err := l.m.key("log append", l.name)
	if err != nil || len(items) == 0 {
		return err
	}
	values, err := encodeValues(l.name, items)
	if err != nil {
		return err
	}
	o := op{name: "logappend", args: make([]any, len(values))}
	for i, v := range values {
		o.args[i] = v
	}
	_, err = l.m.edit(ctx, "log append", key, o, nil, false)
	return err
}

// Trim keeps the newest keep items of the log and removes the others; a
// keep of 0 removes the log. A negative keep is an error.
func (l *Log[T]) Trim(ctx context.Context, keep int) error {
	key, err := l.m.key("log trim", l.name)
	if err != nil {
		return err
	}
	if keep < 0 {
		return fmt.Errorf("memory: log trim %q: keep %d: want 0 or more", key, keep)
	}
	_, err = l.m.edit(ctx, "log trim", key, op{name: "logtrim", args: []any{keep}}, nil, false)
	return err
}

// Clear removes every item of the log.
func (l *Log[T]) Clear(ctx context.Context) error {
	return l.Trim(ctx, 0)
}

// Last returns the newest n items of the log, oldest first: all of them
// when the log holds fewer. An absent log is empty.
func (l *Log[T]) Last(ctx context.Context, n int) ([]T, error) {
	if n <= 0 {
		_, err := l.m.key("log last", l.name)
		return []T{}, err
	}
	return l.items(ctx, "log last", -int64(n))
}

// All returns every item of the log, oldest first.
func (l *Log[T]) All(ctx context.Context) ([]T, error) {
	return l.items(ctx, "log all", 0)
}

// items returns the items of the log from index from to its end.
func (l *Log[T]) items(ctx context.Context, op string, from int64) ([]T, error) {
	key, err := l.m.key(op, l.name)
	if err == nil {
		err = l.m.reachable(op, key)
	}
	if err != nil {
		return nil, err
	}
	elements, err := l.m.s.conn.read(ctx, "lrange", key, from, -1).StringSlice()
	if err != nil {
		return nil, readError(ctx, op, key, refusal(key, err))
	}
	items := make([]T, len(elements))
	for i, e := range elements {
		if _, err := decode([]byte(e), &items[i]); err != nil {
			return nil, &DecodeError{Key: key, Err: fmt.Errorf("item %d: %w", i, err)}
		}
	}
	return items, nil
}

// Len returns how many items the log holds.
func (l *Log[T]) Len(ctx context.Context) (int, error) {
	key, err := l.m.key("log len", l.name)
	if err == nil {
		err = l.m.reachable("log len", key)
	}
	if err != nil {
		return 0, err
	}
	n, err := l.m.s.conn.read(ctx, "llen", key).Int()
	if err != nil {
		return 0, readError(ctx, "log len", key, refusal(key, err))
	}
	return n, nil
}

// logRecords returns the records of the elements of a log.
func logRecords(elements []string) ([]Record, error) {
	records := make([]Record, len(elements))
	for i, e := range elements {
		r, err := RecordOf([]byte(e))
		if err != nil {
			return nil, fmt.Errorf("item %s: %w", strconv.Itoa(i), err)
		}
		records[i] = r
	}
	return records, nil
}
