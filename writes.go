package memory

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A put is a last-writer-wins write of a whole value, or a delete, with an
// expiry that an Expire queued after it merged in.
type put struct {
	value  []byte        // the string to store; nil deletes the key
	stamp  int64         // its last_modified: a newer one on the server wins
	ttl    time.Duration // > 0: expire after it; 0: keep the key's TTL; < 0: none
	expiry *expiry
}

// send writes p on the server, once, unless the key holds a newer
// last_modified: its outcome is conflicted then, and duplicate when the key
// held p's value already.
func (p *put) send(ctx context.Context, c *conn, key string) (opReply, error) {
	o := op{name: "put", stamp: p.stamp, ttl: p.ttl, args: []any{p.value}}
	if c.puts != nil {
		return c.puts.put(ctx, c, key, &o)
	}
	return o.run(ctx, c, key)
}

// deliver reports held when the server holds p's value: it applied, or had,
// and so did the expiry merged in, if any.
func (p *put) deliver(ctx context.Context, c *conn, key string, _ bool) (bool, error) {
	reply, err := p.send(ctx, c, key)
	if err != nil {
		return false, err
	}
	held := reply.outcome != conflicted
	if p.expiry != nil {
		reply, err = p.expiry.run(ctx, c, key)
		held = held && reply.outcome == applied
	}
	return held, err
}

func (p *put) apply(k known, ok bool) (known, bool) {
	k = known{p.value, k.expires}
	switch {
	case p.value == nil || p.ttl < 0:
		k.expires = time.Time{}
	case p.ttl > 0:
		k.expires = time.Now().Add(p.ttl)
	case !ok:
		return k, false // the TTL it keeps is not known
	}
	if p.expiry != nil {
		return p.expiry.apply(k, true)
	}
	return k, true
}

func (p *put) settled() {}

// An expiry is a last-writer-wins Expire, or Persist: it applies unless the
// server holds a value newer than the call.
type expiry struct {
	deadline time.Time // zero: none, as Persist makes it
	stamp    int64
}

// deliver never reports held: what the key holds then is the value the
// expiry found.
func (x *expiry) deliver(ctx context.Context, c *conn, key string, _ bool) (bool, error) {
	_, err := x.run(ctx, c, key)
	return false, err
}

// run sends x on key, once.
func (x *expiry) run(ctx context.Context, c *conn, key string) (opReply, error) {
	o := op{name: "persist", stamp: x.stamp}
	if !x.deadline.IsZero() {
		o = op{name: "expire", stamp: x.stamp, args: []any{time.Until(x.deadline).Milliseconds()}}
	}
	return o.run(ctx, c, key)
}

func (x *expiry) apply(k known, ok bool) (known, bool) {
	if ok && (k.stored == nil || !x.deadline.IsZero() && !x.deadline.After(time.Now())) {
		return known{}, true
	}
	return known{k.stored, x.deadline}, ok
}

func (x *expiry) settled() {}

// mergeWrites returns the one write that does what last and then next do,
// when both are last-writer-wins: a put replaces whatever came before it,
// and an expiry after a put joins it.
func mergeWrites(last, next write) (write, bool) {
	switch n := next.(type) {
	case *put:
		switch last.(type) {
		case *put, *expiry:
			return n, true
		}
	case *expiry:
		switch l := last.(type) {
		case *put:
			merged := *l
			merged.expiry = n
			return &merged, true
		case *expiry:
			return n, true
		}
	}
	return nil, false
}

// A localChange is what a server-side operation does to a value's JSON
// text (nil when absent), computed here for a value this process knows: the
// new text, and the operation's result.
type localChange func(value []byte) (next, result []byte, err error)

// An opWrite is a change the server applies to its own value of the key,
// whatever it is then: a list, map or counter operation, with its identity.
type opWrite struct {
	op    op
	store *store
	key   string
	local localChange // nil when it cannot be computed here
}

// deliver never reports held: the server applies w to its own value.
func (w *opWrite) deliver(ctx context.Context, c *conn, key string, resent bool) (bool, error) {
	w.op.low = w.store.lowest(key, w.op.id.seq)
	send := w.op.run
	if resent {
		send = w.op.resend
	}
	_, err := send(ctx, c, key)
	return false, err
}

func (w *opWrite) apply(k known, ok bool) (known, bool) {
	if !ok || w.local == nil {
		return k, false
	}
	value, err := valueOf(k.stored)
	if err != nil {
		return k, false
	}
	next, _, err := w.local(value)
	if err != nil {
		return k, true // refused here: it changes nothing
	}
	return known{envelope(next, w.op.stamp), expiresAfter(k.expires, w.op.ttl)}, true
}

func (w *opWrite) settled() { w.store.settle(w.key, w.op.id.seq) }

// expiresAfter returns when a key that expired at expires does once a write
// gives it ttl: 0 keeps it.
func expiresAfter(expires time.Time, ttl time.Duration) time.Time {
	if ttl > 0 {
		return time.Now().Add(ttl)
	}
	return expires
}

// An updateWrite is an Update replayed on the server's value: a
// compare-and-set of what fn makes of it, with the Update's identity.
type updateWrite struct {
	id    opID
	store *store
	key   string
	ttl   time.Duration
	fn    localChange
}

// deliver never reports held: fn applies to the server's value.
func (w *updateWrite) deliver(ctx context.Context, c *conn, key string, _ bool) (bool, error) {
	for range updateAttempts {
		stored, err := c.get(ctx, key)
		if err != nil {
			return false, err
		}
		reply, _, err := w.cas(ctx, c, stored)
		if errors.Is(err, errUnchanged) {
			return false, nil
		}
		if err != nil || reply.outcome != conflicted {
			return false, err
		}
	}
	return false, fmt.Errorf("%w: %d attempts", ErrConflict, updateAttempts)
}

// cas applies fn to stored and writes the result, which it returns, if the
// key still holds stored. An unchanged value writes nothing: it returns
// errUnchanged.
func (w *updateWrite) cas(ctx context.Context, c *conn, stored []byte) (opReply, []byte, error) {
	value, err := valueOf(stored)
	if err != nil {
		return opReply{}, nil, &DecodeError{Key: w.key, Err: err}
	}
	next, _, err := w.fn(value)
	if err != nil {
		return opReply{}, nil, err
	}
	o := op{name: "cas", id: w.id, low: w.store.lowest(w.key, w.id.seq), stamp: w.store.stamp(), ttl: w.ttl, args: []any{casToken(stored), next}}
	reply, err := o.run(ctx, c, w.key)
	return reply, next, err
}

func (w *updateWrite) apply(k known, ok bool) (known, bool) {
	if !ok {
		return k, false
	}
	value, err := valueOf(k.stored)
	if err != nil {
		return k, false
	}
	next, _, err := w.fn(value)
	switch {
	case err == errUnchanged:
		return k, true
	case err != nil:
		return k, false
	}
	return known{envelope(next, w.store.stamp()), expiresAfter(k.expires, w.ttl)}, true
}

func (w *updateWrite) settled() { w.store.settle(w.key, w.id.seq) }

// A hold changes nothing. Queued with the pipeliner's hold of a send of a
// write whose caller was told it failed, it keeps the later writes to its
// key behind that send, which the pipeliner may make yet, until the
// pipeliner is done with it. settle, if not nil, ends what the write keeps
// meanwhile.
type hold struct{ settle func() }

func (hold) deliver(context.Context, *conn, string, bool) (bool, error) { return false, nil }

// apply changes nothing: the send held may apply or not, as reads of the
// server's value tell.
func (hold) apply(k known, ok bool) (known, bool) { return k, ok }

func (h hold) settled() {
	if h.settle != nil {
		h.settle()
	}
}
