package memory

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"time"
)

// SetTTL stores value under name, as Set does, expiring after ttl, which
// must be positive: Set keeps a value, Delete removes one.
func (m *Memory) SetTTL(ctx context.Context, name string, value any, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memory: set %q with TTL %v: the TTL must be positive (Set keeps a value, Delete removes it)", m.prefix+name, ttl)
	}
	return m.set(ctx, "set", name, value, ttl)
}

// Expire makes name expire after ttl, as PEXPIRE does: a ttl of zero or less
// removes it at once. It returns an error wrapping ErrNotFound when name has
// no value. While the server cannot be reached, the expiry is queued, and
// applied once the server is back if name then has a value no newer than
// the call: a value another writer set since is left alone.
func (m *Memory) Expire(ctx context.Context, name string, ttl time.Duration) error {
	return m.expire(ctx, "expire", name, &expiry{deadline: time.Now().Add(ttl)}, func(ctx context.Context, key string) (bool, error) {
		n, err := m.s.conn.write(ctx, "pexpire", key, ttl.Milliseconds()).Int()
		return n == 1, err
	})
}

// Persist removes the expiry of name, which then keeps its value until it is
// deleted. It returns an error wrapping ErrNotFound when name has no value.
// While the server cannot be reached, it is queued as Expire is.
func (m *Memory) Persist(ctx context.Context, name string) error {
	return m.expire(ctx, "persist", name, &expiry{}, func(ctx context.Context, key string) (bool, error) {
		o := op{name: "persist", stamp: math.MaxInt64}
		reply, err := o.run(ctx, m.s.conn, key)
		return reply.outcome != conflicted, err
	})
}

// expire gives the key of name the expiry x, with send on the server, which
// reports whether the key exists, or in the queue.
func (m *Memory) expire(ctx context.Context, op, name string, x *expiry, send func(ctx context.Context, key string) (bool, error)) error {
	key, err := m.key(op, name)
	if err != nil {
		return err
	}
	x.stamp = m.s.link.store.stamp()
	if !m.direct(key) {
		if k, ok, _ := m.s.link.store.recall(key); ok && k.stored == nil {
			return fmt.Errorf("%w: %s %q", ErrNotFound, op, key)
		}
		return m.enqueue(key, x, nil)
	}
	found, err := send(ctx, key)
	switch {
	case err == nil && !found:
		return fmt.Errorf("%w: %s %q", ErrNotFound, op, key)
	case err == nil:
		m.s.link.store.expire(key, x.deadline)
		return nil
	case !m.unknown(ctx, err):
		return opError(ctx, op, key, err)
	}
	m.s.link.failed(m.s.acct, err)
	return m.enqueue(key, x, err)
}

// TTL returns how long name has before it expires, 0 when it never does, and
// an error wrapping ErrNotFound when it has no value. While the server
// cannot be reached, it answers from what this process knows of the
// expiry, else with an error wrapping ErrUnavailable.
func (m *Memory) TTL(ctx context.Context, name string) (time.Duration, error) {
	key, err := m.key("ttl", name)
	if err != nil {
		return 0, err
	}
	var cause error
	if !m.s.link.queue.has(key) && !m.lost() {
		ms, err := m.s.conn.read(ctx, "pttl", key).Int64()
		switch {
		case err == nil && ms == -2:
			return 0, fmt.Errorf("%w: ttl %q", ErrNotFound, key)
		case err == nil:
			return time.Duration(max(ms, 0)) * time.Millisecond, nil
		case !offline(ctx, err):
			return 0, opError(ctx, "ttl", key, err)
		}
		cause = err
	}
	switch k, ok, _ := m.s.link.store.recall(key); {
	case ok && k.stored == nil:
		return 0, fmt.Errorf("%w: ttl %q", ErrNotFound, key)
	case ok && !k.expires.IsZero():
		return cmp.Or(time.Until(k.expires), time.Millisecond), nil
	}
	return 0, errOffline("ttl", key, cause)
}
