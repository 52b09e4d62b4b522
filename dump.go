package memory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Record is a stored value and the stamp its writer gave it, as Dump
// returns them and Restore takes them: the envelope, unwrapped. A bare value
// has the stamp 0. The record of a Log holds the records of its items in
// Log, oldest first, and the stamp of the newest one.
type Record struct {
	Value        json.RawMessage `json:"value,omitempty"`
	LastModified int64           `json:"last_modified"`
	Log          []Record        `json:"log,omitempty"`
}

// Dump returns every value under the prefix, its scopes' included, keyed by
// the key less the prefix ("conv_1:topic" for the name topic of the scope
// conv_1). Values keep their bytes; logs come with their items. It scans in
// batches, on every master of a cluster, and reads each batch in one round
// trip, and a second for the logs in it. A key it cannot read (neither a
// string nor a log, or not JSON) is left out and reported in the returned
// error, a *DecodeError joined with the others, while the rest is returned.
func (m *Memory) Dump(ctx context.Context) (map[string]Record, error) {
	var mu sync.Mutex
	records := map[string]Record{}
	var bad []error
	err := m.scan(ctx, "dump", func(node redis.Cmdable, keys []string) error {
		bctx := m.s.conn.clock.bound(ctx)
		cmds, err := node.Pipelined(bctx, func(p redis.Pipeliner) error {
			for _, key := range keys {
				p.Get(bctx, key)
			}
			return nil
		})
		if err != nil && !isReply(err) {
			return err
		}
		page := map[string]Record{}
		var pageBad []error
		var lists []string
		for i, cmd := range cmds {
			stored, err := cmd.(*redis.StringCmd).Bytes()
			switch {
			case errors.Is(err, redis.Nil):
				continue // removed since the scan saw it
			case redis.HasErrorPrefix(err, "WRONGTYPE"):
				lists = append(lists, keys[i])
				continue
			}
			var r Record
			if err == nil {
				r.Value, _, r.LastModified, err = parts(stored)
			}
			if err != nil {
				pageBad = append(pageBad, &DecodeError{Key: keys[i], Err: err})
				continue
			}
			page[keys[i]] = r
		}
		if len(lists) > 0 {
			logs, logsBad, err := m.dumpLogs(ctx, node, lists)
			if err != nil {
				return err
			}
			maps.Copy(page, logs)
			pageBad = append(pageBad, logsBad...)
		}
		mu.Lock()
		defer mu.Unlock()
		for key, r := range page {
			records[key[len(m.prefix):]] = r
		}
		bad = append(bad, pageBad...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return records, errors.Join(bad...)
}

// dumpLogs reads the keys of node that are not strings, in one round trip,
// and returns the records of those that are logs, and the errors of the
// others.
func (m *Memory) dumpLogs(ctx context.Context, node redis.Cmdable, keys []string) (map[string]Record, []error, error) {
	bctx := m.s.conn.clock.bound(ctx)
	cmds, err := node.Pipelined(bctx, func(p redis.Pipeliner) error {
		for _, key := range keys {
			p.LRange(bctx, key, 0, -1)
		}
		return nil
	})
	if err != nil && !isReply(err) {
		return nil, nil, err
	}
	records := map[string]Record{}
	var bad []error
	for i, cmd := range cmds {
		elements, err := cmd.(*redis.StringSliceCmd).Result()
		var items []Record
		if err == nil {
			items, err = logRecords(elements)
		}
		switch {
		case err != nil:
			bad = append(bad, &DecodeError{Key: keys[i], Err: err})
		case len(items) > 0:
			records[keys[i]] = Record{Log: items, LastModified: items[len(items)-1].LastModified}
		}
	}
	return records, bad, nil
}

// RecordOf returns the record of a string stored by this library, the
// Python library or any other writer: the envelope unwrapped, or a bare JSON
// value with the stamp 0.
func RecordOf(stored []byte) (Record, error) {
	value, _, ts, err := parts(stored)
	return Record{Value: value, LastModified: ts}, err
}

// Restore writes records, as Dump returns them, under the prefix, and returns
// how many it changed; a log's record replaces the key with the log. The
// last writer wins, as when the offline queue is flushed: a record is
// skipped when the server holds a strictly newer last_modified for its key,
// unless force is true. Each record is checked and written in one atomic
// step, and the records go to the server in pipelines of a thousand. A key
// must be a name, or names joined by ':' (a scope's "conv_42:topic"), and a
// value JSON; otherwise Restore writes nothing and returns an error naming
// it. On error, the count is of the records changed until then.
func (m *Memory) Restore(ctx context.Context, records map[string]Record, force bool) (int, error) {
	if err := m.open("restore"); err != nil {
		return 0, err
	}
	keys := make([]string, 0, len(records))
	for key, r := range records {
		if err := checkPath(key); err != nil {
			return 0, fmt.Errorf("memory: restore under %q: %w", m.prefix, err)
		}
		if err := r.check(); err != nil {
			return 0, &DecodeError{Key: m.prefix + key, Err: err}
		}
		keys = append(keys, key)
	}
	slices.Sort(keys)
	stamp := func(r Record) int64 { return r.LastModified }
	if force {
		stamp = func(Record) int64 { return math.MaxInt64 }
	}
	written := 0
	for batch := range slices.Chunk(keys, scanBatch) {
		calls := make([]scriptCall, len(batch))
		for i, key := range batch {
			o := records[key].put(stamp(records[key]), m.s.ttl)
			calls[i] = scriptCall{keys: []string{m.prefix + key}, args: o.argv()}
		}
		cmds, err := m.s.conn.runAll(ctx, opsScript, calls)
		for i, cmd := range cmds {
			n, cmdErr := cmd.Int()
			switch {
			case cmdErr == nil && n == 1:
				written++
				m.s.link.store.forget(m.prefix + batch[i])
			case cmdErr != nil && err == nil && isReply(cmdErr):
				err = refusal(m.prefix+batch[i], cmdErr)
			}
		}
		if err != nil {
			for _, key := range batch { // some may have applied
				m.s.link.store.forget(m.prefix + key)
			}
			return written, readError(ctx, "restore", m.prefix, err)
		}
	}
	return written, nil
}

// check returns an error unless r's values are JSON.
func (r Record) check() error {
	if r.Log == nil {
		if !json.Valid(r.Value) {
			return errors.New("the value is not JSON")
		}
		return nil
	}
	for i, item := range r.Log {
		if !json.Valid(item.Value) {
			return fmt.Errorf("item %d of the log: the value is not JSON", i)
		}
	}
	return nil
}

// put returns the operation that writes r last-writer-wins, stamped with
// stamp, with ttl.
func (r Record) put(stamp int64, ttl time.Duration) op {
	if r.Log == nil {
		return op{name: "put", stamp: stamp, ttl: ttl, args: []any{envelope(r.Value, r.LastModified)}}
	}
	elements := make([]any, len(r.Log))
	for i, item := range r.Log {
		elements[i] = envelope(item.Value, item.LastModified)
	}
	return op{name: "logput", stamp: stamp, ttl: ttl, args: elements}
}
