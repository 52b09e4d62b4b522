package memory

import (
	"cmp"
	"context"
	"errors"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// scanBatch is the COUNT hint of each SCAN, and so about the most keys one
// UNLINK of Clear removes.
const scanBatch = 1000

// Keys returns the sorted names that have a value. It lists only this
// Memory's own names: not its scopes' keys, nor keys under the prefix that
// are not valid names. On a cluster it scans every master. While the server
// cannot be reached, it returns an error wrapping ErrUnavailable.
func (m *Memory) Keys(ctx context.Context) ([]string, error) {
	return m.collect(ctx, "keys", func(rest string) (string, bool) {
		return rest, nameFault(rest) == ""
	})
}

// Scopes returns the sorted parts p of the direct child scopes, Scope(p),
// that hold keys, at any depth below them. It reads key names only, as Keys
// does.
func (m *Memory) Scopes(ctx context.Context) ([]string, error) {
	return m.collect(ctx, "scopes", func(rest string) (string, bool) {
		part, _, nested := strings.Cut(rest, string(separator))
		return part, nested && nameFault(part) == ""
	})
}

// collect scans the keys under the prefix, and returns, sorted and without
// repeats, what pick makes of each key less the prefix, when it keeps it.
func (m *Memory) collect(ctx context.Context, op string, pick func(rest string) (string, bool)) ([]string, error) {
	var mu sync.Mutex
	picked := []string{}
	err := m.scan(ctx, op, func(_ redis.Cmdable, keys []string) error {
		mu.Lock()
		defer mu.Unlock()
		for _, key := range keys {
			if p, ok := pick(key[len(m.prefix):]); ok {
				picked = append(picked, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(picked)
	return slices.Compact(picked), nil // SCAN may return a key twice
}

// Walk returns an iterator over every key under the prefix, less the
// prefix: the Memory's names, the keys of its scopes ("conv_42:topic"), and
// any other key that starts with the prefix. It reads key names only, with
// SCAN, master after master on a cluster, so a namespace of any size walks
// in constant memory. Keys come in no order, and a key written or removed
// during the walk may come twice or not at all. An error ends the walk: it
// is yielded with an empty key.
func (m *Memory) Walk(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		nodes, err := m.nodes(ctx, "walk")
		for _, node := range nodes {
			err = m.scanNode(ctx, node, func(_ redis.Cmdable, keys []string) error {
				for _, key := range keys {
					if !yield(key[len(m.prefix):], nil) {
						return errStopped
					}
				}
				return nil
			})
			if err != nil {
				break
			}
		}
		if err != nil && !errors.Is(err, errStopped) {
			yield("", opError(ctx, "walk", m.prefix, err))
		}
	}
}

// errStopped ends a scan whose caller wants no more keys.
var errStopped = errors.New("memory: walk stopped")

// Clear removes every key under the prefix, its scopes' included, and
// returns how many it removed. It scans in batches, on every master of a
// cluster, and unlinks each batch in one round trip, never blocking the
// server as KEYS would; on error, the count is of the keys removed until
// then. Writes of this process under the prefix still queued are dropped as
// it starts, once it knows the server can be reached: they would put keys
// back. While the server cannot be reached, it returns an error wrapping
// ErrUnavailable.
//
// A prefix owns every prefix under it: Clear on "myapp:" also removes the
// keys of "myapp:dev:" and "myapp:prod:user_123:", whether they were
// written as scopes or as Memory values of their own.
func (m *Memory) Clear(ctx context.Context) (int, error) {
	if err := cmp.Or(m.open("clear"), m.reachable("clear", m.prefix)); err != nil {
		return 0, err
	}
	// What is queued would put keys back once removed: drop it first.
	m.s.link.queue.dropPrefix(m.prefix)
	var removed atomic.Int64
	err := m.scan(ctx, "clear", func(node redis.Cmdable, keys []string) error {
		bctx := m.s.conn.clock.bound(ctx)
		// One UNLINK per key: a cluster refuses one across slots.
		cmds, err := node.Pipelined(bctx, func(p redis.Pipeliner) error {
			for _, key := range keys {
				p.Unlink(bctx, key)
			}
			return nil
		})
		for _, cmd := range cmds {
			removed.Add(cmd.(*redis.IntCmd).Val())
		}
		return err
	})
	n := int(removed.Load())
	m.s.link.store.forgetPrefix(m.prefix)
	if err != nil {
		m.s.log.Warn("memory: clear failed", "prefix", m.prefix, "removed", n, "err", err)
		return n, err
	}
	m.s.log.Info("memory: cleared", "prefix", m.prefix, "removed", n)
	return n, nil
}

// scan calls fn with each page of keys under the prefix and the node that
// holds them: on a cluster, the pages of every master, concurrently.
func (m *Memory) scan(ctx context.Context, op string, fn func(node redis.Cmdable, keys []string) error) error {
	nodes, err := m.nodes(ctx, op)
	if err != nil {
		return err
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Go(func() { errs[i] = m.scanNode(ctx, node, fn) })
	}
	wg.Wait()
	return opError(ctx, op, m.prefix, errors.Join(errs...))
}

// nodes returns the servers that hold the keys: the client itself, or each
// master of a cluster.
func (m *Memory) nodes(ctx context.Context, op string) ([]redis.Cmdable, error) {
	if err := cmp.Or(m.open(op), m.reachable(op, m.prefix)); err != nil {
		return nil, err
	}
	nodes, err := m.s.conn.nodes(ctx)
	return nodes, opError(ctx, op, m.prefix, err)
}

// scanNode calls fn with each page of keys under the prefix on node. The
// SCAN pattern only narrows the scan; every key is checked against the
// prefix before fn sees it.
func (m *Memory) scanNode(ctx context.Context, node redis.Cmdable, fn func(node redis.Cmdable, keys []string) error) error {
	pattern := scanPattern(m.prefix)
	var cursor uint64
	for {
		keys, next, err := node.Scan(m.s.conn.clock.bound(ctx), cursor, pattern, scanBatch).Result()
		if err != nil {
			return err
		}
		keys = slices.DeleteFunc(keys, func(key string) bool {
			return !strings.HasPrefix(key, m.prefix)
		})
		if len(keys) > 0 {
			if err := fn(node, keys); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}
