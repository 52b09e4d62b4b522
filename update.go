package memory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"time"
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

// errUnchanged, returned by the fn of an update, ends it without a write.
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
// attempts or when ctx ends. For a counter, Incr never conflicts.
//
// Each Update has an identity that the server records with its write, so
// that it applies once, even when its reply is lost and it is sent again.
// While the server cannot be reached, or does not reply in time, fn runs on
// the value this process knows, if it knows one, for later reads, and the
// change is queued, to be replayed once the server is back on the server's
// value then, so that other writers' changes survive.
//
// fn may therefore run more than once, each time on a fresh value, and after
// Update has returned: it must depend on its argument alone, with no side
// effects, and must not use m, which may run it while holding a lock. An
// error from fn writes nothing and is returned, wrapped. With
// WithDefaultTTL the value gets that TTL; otherwise it keeps the TTL it had.
//
// Update cannot tell an absent name from one holding the zero value. To
// create a value only where there is none, use SetIfAbsent, then Update.
func Update[T any](ctx context.Context, m *Memory, name string, fn func(v *T) error) error {
	key, err := m.key("update", name)
	if err != nil {
		return err
	}
	change := func(value []byte) ([]byte, []byte, error) {
		var v T
		if value != nil {
			if err := json.Unmarshal(value, &v); err != nil {
				return nil, nil, &DecodeError{Key: key, Err: err}
			}
		}
		if err := fn(&v); err != nil {
			if errors.Is(err, errUnchanged) {
				return nil, nil, err
			}
			return nil, nil, fmt.Errorf("memory: update %q: %w", key, err)
		}
		next, err := json.Marshal(&v)
		if err != nil {
			return nil, nil, &EncodeError{Name: name, Type: reflect.TypeFor[T](), Err: err}
		}
		return next, nil, nil
	}
	return m.update(ctx, key, change)
}

// update runs the compare-and-set loop of Update for change on key.
func (m *Memory) update(ctx context.Context, key string, change localChange) error {
	id, _ := m.s.link.begin(key)
	w := &updateWrite{id: id, store: m.s.link.store, key: key, ttl: m.s.ttl, fn: change}
	queued := false
	defer func() {
		if !queued {
			w.settled()
		}
	}()
	// queue queues w after err, if not nil, made the server unreachable;
	// sent says that the error was of a compare-and-set, which may have
	// applied.
	queue := func(err error, sent bool) error {
		var sendErr error
		if err != nil {
			m.s.link.failed(m.s.acct, err)
			if sent {
				sendErr = err
			}
		}
		queued = true
		return m.queueUpdate(key, w, sendErr)
	}
	if !m.direct(key) {
		return queue(nil, false)
	}
	// Start from the value this process last read or wrote, if it knows
	// it as the server holds it: when no one else wrote since, the update
	// takes one round trip, and when someone did, the compare-and-set
	// returns their value, as a read would have.
	k, ok, current := m.s.link.store.recall(key)
	stored := k.stored
	if !ok || !current {
		t := m.s.link.store.reserve(key)
		var err error
		if stored, err = m.s.conn.get(ctx, key); err != nil {
			m.s.link.store.unreserve(key)
			if !isDecodeError(err) && m.unknown(ctx, err) {
				return queue(err, false)
			}
			return readError(ctx, "update", key, err)
		}
		m.s.link.store.found(key, stored, t)
	}
	backoff := updateBackoffMin
	for attempt := 1; ; attempt++ {
		var next []byte
		cas := func() (opReply, error) {
			reply, n, err := w.cas(ctx, m.s.conn, stored)
			next = n
			return reply, err
		}
		reply, err := again(ctx, cas, cas)
		switch {
		case err != nil && !isDecodeError(err) && m.unknown(ctx, err):
			return queue(err, true)
		case err != nil && attempt > 1 && ctxErr(ctx) != nil:
			m.s.link.store.forget(key) // it may have applied
			return fmt.Errorf("%w: update %q: %w", ErrConflict, key, ctxErr(ctx))
		case errors.Is(err, errUnchanged):
			return nil
		case err != nil:
			m.s.link.store.forget(key) // it may have applied
			return readError(ctx, "update", key, err)
		case reply.outcome == applied:
			k, _, _ := m.s.link.store.recall(key)
			m.s.link.store.remember(key, envelopeWith(next, reply.record, reply.stamp), expiresAfter(k.expires, w.ttl), true)
			return nil
		case reply.outcome == duplicate:
			m.s.link.store.forget(key)
			return nil
		case attempt == updateAttempts:
			return fmt.Errorf("%w: update %q: %d attempts", ErrConflict, key, attempt)
		}
		if attempt == 1 {
			stored = reply.current // fresh: retry at once
			continue
		}
		// Contended: pause, then read again, as the value found before
		// the pause is likely stale after it.
		if !sleepCtx(ctx, rand.N(backoff)) {
			return fmt.Errorf("%w: update %q: %w", ErrConflict, key, ctx.Err())
		}
		backoff = min(2*backoff, updateBackoffMax)
		if stored, err = m.s.conn.get(ctx, key); err != nil {
			switch {
			case !isDecodeError(err) && m.unknown(ctx, err):
				return queue(err, true)
			case ctxErr(ctx) != nil:
				return fmt.Errorf("%w: update %q: %w", ErrConflict, key, ctxErr(ctx))
			}
			return readError(ctx, "update", key, err)
		}
	}
}

// queueUpdate queues w, first applying it to the value this process
// knows, if any, for later reads; sendErr, if not nil, is the error of a
// compare-and-set of it that may have applied already. w is settled if it
// is not queued.
func (m *Memory) queueUpdate(key string, w *updateWrite, sendErr error) error {
	if k, ok, _ := m.s.link.store.recall(key); ok && sendErr == nil {
		// The queue applies w to what the store knows: fn's error is
		// the caller's, and an unchanged value needs no write.
		value, err := valueOf(k.stored)
		if err == nil {
			_, _, err = w.fn(value)
		}
		switch {
		case errors.Is(err, errUnchanged):
			w.settled()
			return nil
		case err != nil:
			w.settled()
			return err
		}
	}
	if err := m.enqueue(key, w, sendErr); err != nil {
		w.settled()
		return fmt.Errorf("memory: update %q: %w", key, err)
	}
	return nil
}

// readError describes an error of a read or write of key by op: a
// *DecodeError as it is, any other as opError does.
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
