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

// casScript writes ARGV[2] to KEYS[1] if the key still holds what was read:
// a string whose SHA-1 is ARGV[1], or nothing when ARGV[1] is empty. ARGV[3]
// is the TTL in milliseconds, 0 to keep the key's own. It returns {1} when it
// wrote, and {0, the current string} on a conflict, so that a retry needs no
// read of its own.
var casScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if (cur and redis.sha1hex(cur) or '') ~= ARGV[1] then
	return {0, cur}
end
if ARGV[3] == '0' then
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
// writer changed the value meanwhile (a compare-and-set, two round trips when
// uncontended). On a first conflict it retries at once from the value the
// compare-and-set found, in one round trip; on later ones it pauses for a
// short random time that grows with each conflict, reads again and retries,
// and gives up with an error wrapping
// ErrConflict after 64 attempts or when ctx ends.
//
// fn may therefore run more than once, each time on a fresh value: it must
// depend on its argument alone, with no side effects. An error from fn
// writes nothing and is returned, wrapped. With WithDefaultTTL the value
// gets that TTL; otherwise it keeps the TTL it had.
func Update[T any](ctx context.Context, m *Memory, name string, fn func(v *T) error) error {
	return update(ctx, m, "update", name, fn)
}

// update is Update for the operation op.
func update[T any](ctx context.Context, m *Memory, op, name string, fn func(v *T) error) error {
	key, err := m.key(op, name)
	if err != nil {
		return err
	}
	stored, err := m.read(ctx, op, key)
	if err != nil {
		return err
	}
	backoff := updateBackoffMin
	for attempt := 1; ; attempt++ {
		var v T
		if stored != nil {
			if _, err := decode(stored, &v); err != nil {
				return &DecodeError{Key: key, Err: err}
			}
		}
		switch err := fn(&v); {
		case errors.Is(err, errUnchanged):
			return nil
		case err != nil:
			return fmt.Errorf("memory: %s %q: %w", op, key, err)
		}
		wrote, current, err := m.compareAndSet(ctx, op, key, name, stored, &v)
		switch {
		case err != nil || wrote:
			return err
		case attempt == updateAttempts:
			return fmt.Errorf("%w: %s %q: %d attempts", ErrConflict, op, key, attempt)
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
			return fmt.Errorf("%w: %s %q: %w", ErrConflict, op, key, ctx.Err())
		case <-pause.C:
		}
		if stored, err = m.read(ctx, op, key); err != nil {
			return err
		}
	}
}

// read returns the string stored at key, nil when there is none.
func (m *Memory) read(ctx context.Context, op, key string) ([]byte, error) {
	stored, err := m.s.client.Get(m.s.bound(ctx), key).Bytes()
	switch {
	case err == nil:
		return stored, nil
	case errors.Is(err, redis.Nil):
		return nil, nil
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return nil, &DecodeError{Key: key, Err: err}
	}
	return nil, opError(ctx, op, key, err)
}

// compareAndSet writes value under key, the key of name, if key still holds
// stored (nil for nothing). It reports whether it wrote, and if not, what key
// holds now.
func (m *Memory) compareAndSet(ctx context.Context, op, key, name string, stored []byte, value any) (wrote bool, current []byte, err error) {
	e, err := encode(name, value, time.Now().UnixNano())
	if err != nil {
		return false, nil, err
	}
	defer e.free()
	digest := ""
	if stored != nil {
		sum := sha1.Sum(stored)
		digest = hex.EncodeToString(sum[:])
	}
	ttl := strconv.FormatInt(m.s.ttl.Milliseconds(), 10)
	reply, err := casScript.Run(m.s.bound(ctx), m.s.client, []string{key}, digest, e.bytes(), ttl).Slice()
	if err != nil {
		return false, nil, opError(ctx, op, key, err)
	}
	if reply[0] == int64(1) {
		return true, nil, nil
	}
	if s, ok := reply[1].(string); ok {
		current = []byte(s)
	}
	return false, current, nil
}
