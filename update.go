package memory

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The retry policy of Update: a first conflict is retried at once; later
// ones after a random pause ("full jitter") of up to updateBackoffMin, a
// bound that doubles on each conflict up to updateBackoffMax; at most
// updateAttempts attempts in all.
const (
	updateAttempts   = 64
	updateBackoffMin = 200 * time.Microsecond
	updateBackoffMax = 50 * time.Millisecond
)

// casScript writes ARGV[2] to KEYS[1], or deletes the key when ARGV[2] is
// empty, if the key still holds what was read: a string whose SHA-1 is
// ARGV[1], or nothing when ARGV[1] is empty. ARGV[3] is the TTL in
// milliseconds, 0 to keep the key's own. It returns {1} when it wrote, and
// {0, the current string} on a conflict, so that a retry needs no read of
// its own.
var casScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if (cur and redis.sha1hex(cur) or '') ~= ARGV[1] then
	return {0, cur}
end
if ARGV[2] == '' then
	redis.call('DEL', KEYS[1])
elseif ARGV[3] == '0' then
	redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
else
	redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return {1}
`)

// errUnchanged, returned by the fn of update, ends it without a write.
var errUnchanged = errors.New("memory: unchanged")

// Update changes the value of name atomically with fn, which sees the
// current value, or the zero T when name has none, and changes it in place:
//
//	err := memory.Update(ctx, m, "visits", func(n *int) error { *n++; return nil })
//
// Update reads the value, applies fn and writes the result only if no other
// writer changed the value meanwhile: a compare-and-set, after a read unless
// this process knows the value from its last read or write, so one or two
// round trips when uncontended. On a first conflict it retries at once from
// the value the compare-and-set found, in one round trip; on later ones it
// pauses for a short random time that grows with each conflict, reads again
// and retries, and gives up with an error wrapping ErrConflict after 64
// attempts or when ctx ends.
//
// While the server cannot be reached, fn runs on the value this process
// knows, if it knows one, and the change is queued, to be replayed at flush
// on the server's value then, so that other writers' changes survive.
//
// fn may therefore run more than once, each time on a fresh value, and after
// Update has returned: it must depend on its argument alone, with no side
// effects. An error from fn writes nothing and is returned, wrapped. With
// WithDefaultTTL the value gets that TTL; otherwise it keeps the TTL it had.
func Update[T any](ctx context.Context, m *Memory, name string, fn func(v *T) error) error {
	return mutate(ctx, m, "update", name, fn)
}

// mutate is update for an fn with no result.
func mutate[T any](ctx context.Context, m *Memory, op, name string, fn func(v *T) error) error {
	_, err := update(ctx, m, op, name, false, func(v *T) (struct{}, error) {
		return struct{}{}, fn(v)
	})
	return err
}

// A change maps the string stored at a key (nil: none) to the string to
// store, with a result for the caller.
type change[R any] func(stored []byte) (next []byte, result R, err error)

// update is Update for the operation op, where fn also returns a result.
// needKnown says that the caller needs that result, so that while the server
// cannot be reached, an update of a value this process does not know fails
// instead of being queued.
func update[T, R any](ctx context.Context, m *Memory, op, name string, needKnown bool, fn func(v *T) (R, error)) (R, error) {
	var zero R
	key, err := m.key(op, name)
	if err != nil {
		return zero, err
	}
	apply := change[R](func(stored []byte) ([]byte, R, error) {
		var v T
		if stored != nil {
			if _, err := decode(stored, &v); err != nil {
				return nil, zero, &DecodeError{Key: key, Err: err}
			}
		}
		result, err := fn(&v)
		if err != nil {
			return nil, result, fmt.Errorf("memory: %s %q: %w", op, key, err)
		}
		next, err := encode(name, &v, time.Now().UnixNano())
		return next, result, err
	})
	if m.queueing() {
		return queueUpdate(m, op, key, name, needKnown, apply, nil)
	}
	// Start from the value this process last read or wrote, if it knows
	// one: when no one else wrote since, the update takes one round trip,
	// and when someone did, the compare-and-set returns their value, as a
	// read would have.
	k, ok := m.s.link.recall(key)
	stored := k.stored
	if !ok {
		var err error
		if stored, err = m.read(ctx, key); err != nil {
			if m.lostWith(ctx, err) {
				return queueUpdate(m, op, key, name, needKnown, apply, nil)
			}
			return zero, readError(ctx, op, key, err)
		}
	}
	backoff := updateBackoffMin
	for attempt := 1; ; attempt++ {
		next, result, err := apply(stored)
		switch {
		case errors.Is(err, errUnchanged):
			return result, nil
		case err != nil:
			return zero, err
		}
		wrote, current, err := compareAndSet(ctx, m.s.client, m.s.clock, key, stored, next, m.s.ttl)
		switch {
		case err != nil && m.lostWith(ctx, err):
			// The write may have reached the server before it was lost.
			return queueUpdate(m, op, key, name, needKnown, apply, next)
		case err != nil && attempt > 1 && ctx.Err() != nil:
			return zero, fmt.Errorf("%w: %s %q: %w", ErrConflict, op, key, ctx.Err())
		case err != nil:
			return zero, opError(ctx, op, key, err)
		case wrote:
			m.s.link.rememberWrite(key, next, m.s.ttl)
			return result, nil
		case attempt == updateAttempts:
			return zero, fmt.Errorf("%w: %s %q: %d attempts", ErrConflict, op, key, attempt)
		}
		if attempt == 1 {
			stored = current // fresh: retry at once
			continue
		}
		// Contended: pause, then read again, as the value found before
		// the pause is likely stale after it.
		pause := time.NewTimer(rand.N(backoff))
		backoff = min(2*backoff, updateBackoffMax)
		select {
		case <-ctx.Done():
			pause.Stop()
			return zero, fmt.Errorf("%w: %s %q: %w", ErrConflict, op, key, ctx.Err())
		case <-pause.C:
		}
		if stored, err = m.read(ctx, key); err != nil {
			if ctx.Err() != nil {
				return zero, fmt.Errorf("%w: %s %q: %w", ErrConflict, op, key, ctx.Err())
			}
			return zero, readError(ctx, op, key, err)
		}
	}
}

// queueUpdate queues the update apply of key, first applying it to the value
// this process knows, if any, for the caller's result and for later reads.
// attempted is what a compare-and-set of it may have written before the
// server was lost.
func queueUpdate[R any](m *Memory, op, key, name string, needKnown bool, apply change[R], attempted []byte) (R, error) {
	var result R
	e := &entry{key: key, name: name, owner: m.s, replays: []replay{{
		change: func(stored []byte) ([]byte, error) {
			next, _, err := apply(stored)
			if errors.Is(err, errUnchanged) {
				return stored, nil
			}
			return next, err
		},
		attempted: attempted,
	}}}
	k, ok := m.s.link.recall(key)
	switch {
	case ok:
		next, r, err := apply(k.stored)
		switch {
		case errors.Is(err, errUnchanged):
			return r, nil
		case err != nil:
			return r, err
		}
		result = r
		if m.s.ttl > 0 {
			k.expires = m.s.expiry()
		}
		e.local = &known{next, k.expires}
	case needKnown:
		return result, errOffline(op, key, nil)
	}
	return result, m.s.link.enqueue(m.s, e)
}

// read returns the string stored at key, nil when there is none, and
// remembers it. A key that is not a string gives a *DecodeError.
func (m *Memory) read(ctx context.Context, key string) ([]byte, error) {
	stored, err := read(ctx, m.s.client, m.s.clock, key)
	if err == nil {
		m.s.link.rememberRead(key, stored)
	}
	return stored, err
}

func read(ctx context.Context, client redis.UniversalClient, clock *clock, key string) ([]byte, error) {
	stored, err := client.Get(clock.bound(ctx), key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return nil, &DecodeError{Key: key, Err: err}
	}
	return stored, err
}

// readError describes an error of read.
func readError(ctx context.Context, op, key string, err error) error {
	if isDecodeError(err) {
		return err
	}
	return opError(ctx, op, key, err)
}

func isDecodeError(err error) bool {
	var de *DecodeError
	return errors.As(err, &de)
}

// compareAndSet stores next at key (nil: deletes key) if key still holds
// current (nil: nothing), with ttl (0: keeping the key's TTL). It reports
// whether it wrote, and if not, what key holds now.
func compareAndSet(ctx context.Context, client redis.UniversalClient, clock *clock, key string, current, next []byte, ttl time.Duration) (wrote bool, found []byte, err error) {
	digest := ""
	if current != nil {
		sum := sha1.Sum(current)
		digest = hex.EncodeToString(sum[:])
	}
	ms := strconv.FormatInt(ttl.Milliseconds(), 10)
	reply, err := casScript.Run(clock.bound(ctx), client, []string{key}, digest, next, ms).Slice()
	if err != nil {
		return false, nil, err
	}
	if reply[0] == int64(1) {
		return true, nil, nil
	}
	if s, ok := reply[1].(string); ok {
		found = []byte(s)
	}
	return false, found, nil
}
