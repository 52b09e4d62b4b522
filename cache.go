package memory

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds the local cache: reads answered from the store, whose
// values the tracker keeps fresh. The store says which values are fresh;
// the cache decides when it may answer from them: while the tracking of its
// prefix is on, and has heard from every server within liveFor.

// cacheRetry is how long a cache whose tracking could not start leaves
// reads to the server before it tries again.
const cacheRetry = 10 * time.Second

// A localCache answers the reads of a Memory and its scopes from the store
// of their client, while the tracker tells of changes under their prefix.
type localCache struct {
	store   *store
	tracker *tracker
	prefix  string
	log     *slog.Logger

	hits, misses atomic.Uint64

	ready    atomic.Bool // the tracker follows prefix; set with mu held
	mu       sync.Mutex  // guards the fields below
	unfollow func()      // nil while not following
	retry    time.Time   // when to try following again, after a failure
	closed   bool
}

// changed makes the values of keys, changed on the server, not fresh.
func (c *localCache) changed(keys []string) { c.store.invalidate(keys) }

// lost makes every value not fresh: changes may have gone untold.
func (c *localCache) lost() { c.store.stale() }

// following reports whether the tracker follows the cache's prefix, and
// starts it following, within ctx, if it does not. While it starts, and
// for cacheRetry after it failed, reads go to the server.
func (c *localCache) following(ctx context.Context) bool {
	if c.ready.Load() {
		return true
	}
	if !c.mu.TryLock() {
		return false
	}
	defer c.mu.Unlock()
	if c.ready.Load() || c.closed || time.Now().Before(c.retry) {
		return c.ready.Load()
	}
	unfollow, err := c.tracker.follow(ctx, c.prefix, c, c.log)
	if err != nil {
		c.retry = time.Now().Add(cacheRetry)
		c.log.Warn("memory: local cache unused: reads go to the server until tracking starts", "prefix", c.prefix, "retry_in", cacheRetry, "err", err)
		return false
	}
	c.unfollow = unfollow
	c.ready.Store(true)
	return true
}

// close stops the tracking of the cache's prefix: from then on, no value
// may be trusted fresh.
func (c *localCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.unfollow != nil {
		c.ready.Store(false)
		c.unfollow()
		c.unfollow = nil
		c.store.stale()
	}
}

// get returns the string stored at key, nil when there is none, and its
// decoded value if the cache keeps one: from the cache when fresh, and
// otherwise from the server, which the cache keeps.
func (c *localCache) get(ctx context.Context, cn *conn, key string) ([]byte, any, error) {
	if c.tracker.live() {
		if stored, decoded, ok := c.store.cached(key); ok {
			c.hits.Add(1)
			return stored, decoded, nil
		}
	}
	c.misses.Add(1)
	t := c.store.reserve(key)
	sent := time.Now()
	stored, ttl, err := cn.getExpiring(ctx, key)
	if err != nil {
		c.store.unreserve(key)
		return nil, nil, err
	}
	c.store.fill(key, stored, expiresAt(sent, ttl), t)
	return stored, nil, nil
}

// getAll returns what keys hold, as get does, and each key's error: from the
// cache when every one is fresh, and otherwise from the server in one round
// trip.
func (c *localCache) getAll(ctx context.Context, cn *conn, keys []string) ([][]byte, []error, error) {
	stored, errs := make([][]byte, len(keys)), make([]error, len(keys))
	if c.tracker.live() {
		hit := true
		for i, key := range keys {
			if stored[i], _, hit = c.store.cached(key); !hit {
				break
			}
		}
		if hit {
			c.hits.Add(1)
			return stored, errs, nil
		}
	}
	c.misses.Add(1)
	tickets := make([]ticket, len(keys))
	for i, key := range keys {
		tickets[i] = c.store.reserve(key)
	}
	sent := time.Now()
	gets, ttls, err := cn.getAll(ctx, keys, true)
	if err != nil && !isReply(err) {
		for _, key := range keys {
			c.store.unreserve(key)
		}
		return nil, nil, err
	}
	for i, key := range keys {
		s, err := gets[i].Bytes()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			errs[i] = err
			c.store.unreserve(key)
			continue
		}
		stored[i] = s
		c.store.fill(key, s, expiresAt(sent, ttls[i].Val()), tickets[i])
	}
	return stored, errs, nil
}

// expiresAt returns when a key expires whose PTTL, read in a round trip
// sent at sent, is ttl: zero for one with no expiry, or none.
func expiresAt(sent time.Time, ttl time.Duration) time.Time {
	if ttl < 0 { // -1: no expiry; -2: no key
		return time.Time{}
	}
	return sent.Add(ttl)
}

// cacheFor returns the Memory's local cache if it may answer reads of keys
// now: it is on, tracking follows its prefix, and no write of this process
// to keys waits in the queue. It returns nil otherwise.
func (m *Memory) cacheFor(ctx context.Context, keys ...string) *localCache {
	c := m.s.cache
	if c == nil || !c.ready.Load() && !c.following(m.s.conn.clock.bound(ctx)) {
		return nil
	}
	for _, key := range keys {
		if m.s.link.queue.has(key) {
			return nil
		}
	}
	return c
}

// assign sets *dst, a pointer, to decoded, the cache's decoded value, if
// it is of dst's type and *dst holds the zero value, so that decoding into
// it would give the same; it reports whether it did.
func assign(dst, decoded any) bool {
	v := reflect.ValueOf(dst).Elem()
	if v.Type() != reflect.TypeOf(decoded) || !v.IsZero() {
		return false
	}
	v.Set(reflect.ValueOf(decoded))
	return true
}

// decodable reports whether a decoded value of *dst's type, were *dst
// zero, may be kept by the cache: *dst is zero and its type is flat, so
// that a copy of the value shares nothing with it.
func decodable(dst any) bool {
	v := reflect.ValueOf(dst).Elem()
	return flat(v.Type()) && v.IsZero()
}

var flatTypes sync.Map // reflect.Type → bool, flat's answers

// flat reports whether values of t hold no pointer, slice, map, interface,
// channel or function, so that copies share nothing: booleans, numbers,
// strings, which are immutable, and arrays and structs of those.
func flat(t reflect.Type) bool {
	if ok, found := flatTypes.Load(t); found {
		return ok.(bool)
	}
	ok := true
	switch t.Kind() {
	case reflect.Array:
		ok = flat(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			ok = ok && flat(t.Field(i).Type)
		}
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		ok = false
	}
	flatTypes.Store(t, ok)
	return ok
}
