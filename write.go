package memory

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// This file holds the one place that chooses between the server and the
// queue for writes, direct, and the one that chooses between the server and
// what the process knows for reads, lookup.

// direct reports whether a write to key goes to the server now. It goes to
// the queue instead while the server is known to be lost, and while writes
// of this process to the key wait in the queue, behind them, so that the
// writes to a key keep their order. With the queue off, every write goes to
// the server.
func (m *Memory) direct(key string) bool {
	return !m.s.queue || !m.lost() && !m.s.link.queue.has(key)
}

// enqueue queues w for key. sendErr is the error of a send of w that may
// have applied, nil if none was made; as a *sendingError, it says that the
// pipeliner may make that send yet, and the queue waits until it is done
// before it delivers w.
func (m *Memory) enqueue(key string, w write, sendErr error) error {
	e := &entry{key: key, acct: m.s.acct, w: w, sent: sendErr != nil}
	errors.As(sendErr, &e.sending)
	return m.s.link.enqueue(e)
}

// hold queues a hold of key when err, met by a send of a write to key
// whose caller is told it failed, shows that the pipeliner may make the
// send yet, so that the later writes to key wait until it is done; settle,
// if not nil, is then the hold's to call. It reports whether it queued one.
func (m *Memory) hold(key string, err error, settle func()) bool {
	var sending *sendingError
	return errors.As(err, &sending) && m.enqueue(key, hold{settle}, err) == nil
}

// unknown reports whether err, met by a write under ctx, leaves its outcome
// unknown for want of the server, so that it is to be queued: the queue is
// on, and ctx, the caller's, did not end.
func (m *Memory) unknown(ctx context.Context, err error) bool {
	return m.s.queue && offline(ctx, err)
}

// replace writes p, a whole value or a delete, to key, last writer wins: on
// the server, or in the queue. A plain SET or DEL sent late, after a resend
// and a newer write, would undo that write: p goes as the script, which
// leaves a newer value alone.
func (m *Memory) replace(ctx context.Context, op, key string, p *put) error {
	if m.direct(key) {
		reply, err := p.send(ctx, m.s.writer, key)
		switch {
		case err == nil && reply.outcome != conflicted:
			m.s.link.store.rememberPut(key, p)
			return nil
		case err == nil:
			m.s.link.store.forget(key) // a newer value, not known here
			return nil
		case !m.unknown(ctx, err):
			m.s.link.store.forget(key) // it may have applied
			m.hold(key, err, nil)
			return opError(ctx, op, key, err)
		}
		m.s.link.failed(m.s.acct, err)
		return m.enqueue(key, p, err)
	}
	return m.enqueue(key, p, nil)
}

// errOutcomeUnknown is the error of an operation whose result the caller
// needs, sent to a server that did not reply, of a value this process does
// not know: queued, it applies once the server is back, but its result is
// lost.
var errOutcomeUnknown = errors.New("the server did not reply, and the value is not known here: the operation is queued and applies once the server is back, but its result is lost")

// edit applies o, a server-side operation, to key: on the server, or, while
// that cannot be, in the queue, applied with local to what this process
// knows for the result and for later reads. needKnown says that the caller
// needs the result, so that an edit of a value this process does not know
// fails instead of being queued.
func (m *Memory) edit(ctx context.Context, opName, key string, o op, local localChange, needKnown bool) ([]byte, error) {
	o.id, o.low = m.s.link.begin(key)
	o.stamp, o.ttl = m.s.link.store.stamp(), m.s.ttl
	w := &opWrite{op: o, store: m.s.link.store, key: key, local: local}
	var sendErr error // of the send made, if any
	if m.direct(key) {
		reply, err := again(ctx,
			func() (opReply, error) { return w.op.run(ctx, m.s.writer, key) },
			func() (opReply, error) { return w.op.resend(ctx, m.s.writer, key) })
		if err == nil || !m.unknown(ctx, err) {
			if err == nil || !m.hold(key, err, w.settled) {
				w.settled()
			}
			if err != nil {
				if unreachable(err) {
					m.s.link.store.forget(key) // it may have applied, or may yet
				}
				return nil, readError(ctx, opName, key, err)
			}
			m.learn(key, w, reply)
			return reply.result, nil
		}
		m.s.link.failed(m.s.acct, err)
		sendErr = err
	}
	sent := sendErr != nil
	var result []byte
	var localErr error
	k, ok, _ := m.s.link.store.recall(key)
	if ok && local != nil {
		value, err := valueOf(k.stored)
		if err == nil {
			_, result, err = local(value)
		}
		localErr = err
	}
	switch {
	case localErr != nil && !sent:
		w.settled()
		return nil, fmt.Errorf("memory: %s %q: %w", opName, key, localErr)
	case needKnown && !sent && (!ok || local == nil):
		w.settled()
		return nil, errOffline(opName, key, nil)
	}
	if err := m.enqueue(key, w, sendErr); err != nil {
		w.settled()
		return nil, fmt.Errorf("memory: %s %q: %w", opName, key, err)
	}
	if needKnown && (!ok || local == nil || localErr != nil) {
		return nil, fmt.Errorf("%w: %s %q: %w", ErrUnavailable, opName, key, errOutcomeUnknown)
	}
	return result, nil
}

// again calls first, and when that met a connection that broke, after which
// the server may or may not have applied the write, calls retry at once:
// the write's identity, or its bytes, tell the server whether the first
// send applied.
func again[R any](ctx context.Context, first, retry func() (R, error)) (R, error) {
	r, err := first()
	if err != nil && dropped(err) && ctxErr(ctx) == nil {
		return retry()
	}
	return r, err
}

// learn records what key holds after w applied on the server, as reply
// says: the sum an increment returned; or what this process knew, changed
// as w changes it, if it knew the value the server changed; and otherwise
// nothing.
func (m *Memory) learn(key string, w *opWrite, reply opReply) {
	m.s.link.store.with(key, func(sl *slot) {
		if reply.outcome == applied && w.op.name == "incr" {
			sl.known, sl.current, sl.stored = true, true, envelopeWith(reply.result, reply.record, reply.stamp)
			sl.expires = expiresAfter(sl.expires, w.op.ttl)
			return
		}
		if reply.outcome == applied && sl.known && sl.current && w.local != nil && changed(sl.stored, reply) {
			if value, err := valueOf(sl.stored); err == nil {
				if next, _, err := w.local(value); err == nil {
					sl.stored = envelopeWith(next, reply.record, reply.stamp)
					sl.expires = expiresAfter(sl.expires, w.op.ttl)
					return
				}
			}
		}
		sl.known, sl.current, sl.stored = false, false, nil
	})
}

// changed reports whether stored, known here, is the string the server
// changed, as its reply tells: both absent, or both with the same record and
// stamp. A bare value, stamped 0, is never known to be the same.
func changed(stored []byte, reply opReply) bool {
	if stored == nil || reply.prior == "" {
		return stored == nil && reply.prior == ""
	}
	_, record, stamp, err := parts(stored)
	return err == nil && stamp != 0 && record == reply.before && strconv.FormatInt(stamp, 10) == reply.prior
}

// lookup returns the string stored at key, nil when there is none: from the
// server, or from what this process knows while the server cannot be
// reached, and while writes of this process to key wait in the queue, which
// the server does not hold yet.
func (m *Memory) lookup(ctx context.Context, op, key string) ([]byte, error) {
	stored, _, err := m.read(ctx, op, key)
	return stored, err
}

// read returns what lookup does, from the local cache when it can answer,
// and the decoded value the cache keeps of it, if any.
func (m *Memory) read(ctx context.Context, op, key string) ([]byte, any, error) {
	var cause error
	if !m.lost() {
		var stored []byte
		var decoded any
		var err error
		ok := true
		c := m.cacheFor(ctx, key)
		if c != nil {
			stored, decoded, err = c.get(ctx, m.s.conn, key)
		} else {
			stored, ok, err = m.fetch(ctx, key)
		}
		switch {
		case err == nil && ok:
			return stored, decoded, nil
		case err == nil:
			// What this process's writes made of it is not known here.
		case isDecodeError(err) || !offline(ctx, err):
			return nil, nil, readError(ctx, op, key, err)
		default:
			cause = err
		}
	}
	if k, ok, _ := m.s.link.store.recall(key); ok {
		return k.stored, nil, nil
	}
	return nil, nil, errOffline(op, key, cause)
}

// fetchAttempts bounds how many times a key is read while each read
// crosses the delivery of a queued write to it.
const fetchAttempts = 3

// fetch returns the string stored at key, nil when there is none, as far
// as this process knows, from the server: what it read, or what the
// queued writes to key make of it. It reports false when that cannot be
// known. A read that crossed the delivery of a queued write may hold what
// the key held before: it is read again, and after fetchAttempts of them,
// what the process knows answers.
func (m *Memory) fetch(ctx context.Context, key string) ([]byte, bool, error) {
	for range fetchAttempts {
		t := m.s.link.store.reserve(key)
		stored, err := m.s.conn.get(ctx, key)
		if err != nil {
			m.s.link.store.unreserve(key)
			return nil, false, err
		}
		if k, ok, crossed := m.s.link.queue.found(key, stored, t); !crossed {
			return k.stored, ok, nil
		}
	}
	k, ok, _ := m.s.link.store.recall(key)
	return k.stored, ok, nil
}

// errOffline is the error of a read, while the server cannot be reached, of
// a value this process does not know; cause is the error that showed the
// server unreachable, if the read met one.
func errOffline(op, key string, cause error) error {
	if cause == nil {
		return fmt.Errorf("%w: %s %q: the server is lost and the value not known here", ErrUnavailable, op, key)
	}
	return fmt.Errorf("%w: %s %q: not known here: %w", ErrUnavailable, op, key, cause)
}

// reachable returns an error wrapping ErrUnavailable, for a read by op of
// key that needs the server, while the server is known to be lost: only the
// flusher tries it then.
func (m *Memory) reachable(op, key string) error {
	if m.lost() {
		return errOffline(op, key, nil)
	}
	return nil
}

// lost reports whether reads and writes are to skip the server, which is
// known to be lost while writes are queued: until the flusher finds it
// again, only what this process knows answers reads.
func (m *Memory) lost() bool {
	return m.s.queue && m.s.link.lost.Load()
}
