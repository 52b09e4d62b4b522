// Package memory gives services a shared, persistent, namespaced memory in
// Redis: named values, JSON-encoded under a key prefix, that any number of
// processes, pods and tenants read and write.
//
// It is the Go counterpart of the Python library redis-memory, whose users
// write mem.answer = 42 in one process and read mem.answer in another. Both
// libraries store the value of name n under the key prefix+n ("memory:answer"
// by default, REDIS_PREFIX to change it) as the JSON envelope
//
//	{"value": 42, "last_modified": 1732838400000000000}
//
// so Go and Python services share one memory.
//
// A Memory is safe for concurrent use. Scope derives a child namespace, and
// any number of Memory values, one per tenant say, can share one client.
//
// Every round trip to the server is bounded by the Memory's timeout
// (WithTimeout), the client's waits and retries included. Most operations
// are one round trip; Keys and Clear take one per page of keys, and Update
// one or two per attempt. When the server cannot be reached, errors wrap ErrUnavailable; a name with no value
// gives ErrNotFound; stored data that cannot be read gives a *DecodeError, and
// a value JSON cannot carry an *EncodeError.
package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Memory reads and writes named values under one key prefix.
type Memory struct {
	prefix string
	s      *shared
	root   bool // returned by New, not by Scope: Close closes it
}

// shared is the state a Memory shares with its scopes.
type shared struct {
	client     redis.UniversalClient
	ownsClient bool
	link       *link  // shared with every Memory over client
	clock      *clock // bounds each operation by the timeout
	ttl        time.Duration
	queue      bool // writes to an unreachable server are queued
	maxPending int
	pending    atomic.Int64 // names queued by this Memory and its scopes
	log        *slog.Logger
	closed     atomic.Bool
}

// New returns a Memory configured by opts, the process environment and the
// .env file of WithEnvFile, in that order of precedence; see Option. It reads
// the configuration once: changing the environment later does not move an
// existing Memory.
//
// When New creates the client itself, it pings the server once within the
// timeout: a server that refuses the connection's configuration (a wrong
// password, say) is an error. An unreachable server is only logged, so that a
// service can start before its Redis, unless the offline queue is off
// (WithOfflineQueue(false)): then it is an error wrapping ErrUnavailable.
// With WithClient, New does no I/O.
func New(ctx context.Context, opts ...Option) (*Memory, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	s := &shared{
		client:     c.client,
		clock:      clockFor(c.timeout),
		ttl:        c.ttl,
		queue:      c.queue,
		maxPending: c.maxPending,
		log:        c.logger,
	}
	if s.client == nil {
		s.client, s.ownsClient = c.server.client(), true
		if err := s.probe(ctx, c.server.addr()); err != nil {
			s.client.Close()
			return nil, err
		}
	}
	s.link = linkFor(s.client, s.log, s.clock)
	s.log.Debug("memory: ready", "prefix", c.prefix, "shared_client", !s.ownsClient)
	return &Memory{prefix: c.prefix, s: s, root: true}, nil
}

// probe pings the server at addr, and returns an error if it refused the
// client's configuration, or could not be reached with the queue off. A
// server that drops the connection it accepted, as a TLS port does with a
// plain client, refuses the configuration.
func (s *shared) probe(ctx context.Context, addr string) error {
	err := s.client.Ping(s.clock.bound(ctx)).Err()
	switch {
	case err == nil:
		return nil
	case ctx.Err() == nil && dropped(err):
		return fmt.Errorf("memory: connect to %s: the server closed the connection during the handshake (a TLS port? use rediss://): %w", addr, err)
	case ctx.Err() == nil && unreachable(err) && s.queue:
		s.log.Warn("memory: server unreachable; starting offline", "addr", addr, "err", err)
		return nil
	case ctx.Err() == nil && unreachable(err):
		return fmt.Errorf("%w: connect to %s: %w", ErrUnavailable, addr, err)
	}
	return fmt.Errorf("memory: connect to %s: %w", addr, err)
}

// expiry returns when a value written now expires, zero for never.
func (s *shared) expiry() time.Time {
	if s.ttl > 0 {
		return time.Now().Add(s.ttl)
	}
	return time.Time{}
}

// queueing reports whether writes go straight to the queue: it is on and
// the server known to be lost.
func (m *Memory) queueing() bool {
	return m.s.queue && m.s.link.lost.Load()
}

// lostWith reports whether err, met by a write under ctx, means the write is
// to be queued: the queue is on and err shows the server unreachable. It then
// marks the server lost.
func (m *Memory) lostWith(ctx context.Context, err error) bool {
	if !m.s.queue || !offline(ctx, err) {
		return false
	}
	m.s.link.markLost(err)
	return true
}

// offline reports whether a read met err because the server cannot be
// reached, so that it is to be answered from what this process knows.
func offline(ctx context.Context, err error) bool {
	return ctx.Err() == nil && unreachable(err)
}

// open returns ErrClosed, naming op, once the Memory is closed.
func (m *Memory) open(op string) error {
	if m.s.closed.Load() {
		return fmt.Errorf("%w: %s %q", ErrClosed, op, m.prefix)
	}
	return nil
}

// key checks that m is open and name is valid, and returns name's key.
func (m *Memory) key(op, name string) (string, error) {
	if err := m.open(op); err != nil {
		return "", err
	}
	if err := checkName(name); err != nil {
		return "", err
	}
	return m.prefix + name, nil
}

// Prefix returns the key prefix, the Memory's namespace.
func (m *Memory) Prefix() string { return m.prefix }

// Client returns the client the Memory uses.
func (m *Memory) Client() redis.UniversalClient { return m.s.client }

// Set stores value, encoded as JSON, under name. With WithDefaultTTL the key
// expires after that TTL. While the server cannot be reached, the write is
// queued (see Flush).
func (m *Memory) Set(ctx context.Context, name string, value any) error {
	key, err := m.key("set", name)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	stored, err := encode(name, value, now)
	if err != nil {
		return err
	}
	if !m.queueing() {
		err := m.s.client.Set(m.s.clock.bound(ctx), key, stored, m.s.ttl).Err()
		if err == nil {
			m.s.link.remember(key, stored, m.s.expiry())
			return nil
		}
		if !m.lostWith(ctx, err) {
			return opError(ctx, "set", key, err)
		}
	}
	return m.s.link.enqueue(m.s, &entry{
		key: key, name: name, owner: m.s,
		base: baseValue, value: stored, stamp: now,
		local: &known{stored, m.s.expiry()},
	})
}

// Get decodes the value of name into dst, a non-nil pointer, as
// json.Unmarshal would. It returns an error wrapping ErrNotFound when name
// has no value, and a *DecodeError when the key holds something else than a
// JSON string. Values written by the Python library, or bare JSON written by
// any client, read the same way. While the server cannot be reached, Get
// returns the last value this process knows, its queued writes included, and
// otherwise an error wrapping ErrUnavailable.
func (m *Memory) Get(ctx context.Context, name string, dst any) error {
	key, err := m.key("get", name)
	if err != nil {
		return err
	}
	if err := checkDestination(dst); err != nil {
		return fmt.Errorf("memory: get %q: %w", key, err)
	}
	var cause error
	if !m.queueing() {
		data, err := m.s.client.Get(m.s.clock.bound(ctx), key).Bytes()
		switch {
		case err == nil:
			m.s.link.rememberRead(key, data)
			if _, err := decode(data, dst); err != nil {
				return &DecodeError{Key: key, Err: err}
			}
			return nil
		case errors.Is(err, redis.Nil):
			m.s.link.rememberRead(key, nil)
			return opError(ctx, "get", key, err)
		case redis.HasErrorPrefix(err, "WRONGTYPE"):
			return &DecodeError{Key: key, Err: err}
		case !offline(ctx, err):
			return opError(ctx, "get", key, err)
		}
		cause = err
	}
	k, ok := m.s.link.recall(key)
	if !ok || k.stored == nil {
		return errOffline("get", key, cause)
	}
	if _, err := decode(k.stored, dst); err != nil {
		return &DecodeError{Key: key, Err: err}
	}
	return nil
}

// GetAs returns the value of name as a T. It fails as Get does.
func GetAs[T any](ctx context.Context, m *Memory, name string) (T, error) {
	var v T
	err := m.Get(ctx, name, &v)
	return v, err
}

// Has reports whether name has a value. While the server cannot be reached,
// it answers from what this process knows, else with an error wrapping
// ErrUnavailable.
func (m *Memory) Has(ctx context.Context, name string) (bool, error) {
	key, err := m.key("has", name)
	if err != nil {
		return false, err
	}
	var cause error
	if !m.queueing() {
		n, err := m.s.client.Exists(m.s.clock.bound(ctx), key).Result()
		if err == nil || !offline(ctx, err) {
			return n > 0, opError(ctx, "has", key, err)
		}
		cause = err
	}
	k, ok := m.s.link.recall(key)
	if !ok {
		return false, errOffline("has", key, cause)
	}
	return k.stored != nil, nil
}

// Delete removes name and its value. Deleting an absent name is not an error.
// While the server cannot be reached, the delete is queued.
func (m *Memory) Delete(ctx context.Context, name string) error {
	key, err := m.key("delete", name)
	if err != nil {
		return err
	}
	if !m.queueing() {
		err := m.s.client.Del(m.s.clock.bound(ctx), key).Err()
		if err == nil {
			m.s.link.remember(key, nil, time.Time{})
			return nil
		}
		if !m.lostWith(ctx, err) {
			return opError(ctx, "delete", key, err)
		}
	}
	return m.s.link.enqueue(m.s, &entry{
		key: key, name: name, owner: m.s,
		base: baseAbsent, stamp: time.Now().UnixNano(),
		local: &known{},
	})
}

// Expire makes name expire after ttl, as PEXPIRE does: a ttl of zero or less
// removes it at once. It returns an error wrapping ErrNotFound when name has
// no value. While the server cannot be reached, the expiry is queued, and
// applied at flush if name then has a value.
func (m *Memory) Expire(ctx context.Context, name string, ttl time.Duration) error {
	key, err := m.key("expire", name)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(ttl)
	if !m.queueing() {
		ok, err := m.s.client.PExpire(m.s.clock.bound(ctx), key, ttl).Result()
		switch {
		case err == nil && !ok:
			return opError(ctx, "expire", key, redis.Nil)
		case err == nil:
			m.s.link.expire(key, deadline)
			return nil
		case !m.lostWith(ctx, err):
			return opError(ctx, "expire", key, err)
		}
	}
	e := &entry{key: key, name: name, owner: m.s, expires: deadline}
	if k, ok := m.s.link.recall(key); ok {
		e.local = &known{k.stored, deadline}
	}
	return m.s.link.enqueue(m.s, e)
}

// Scope returns the child Memory whose prefix is m's prefix, part and ':',
// the keys of the Python library's ConversationMemory. A scope shares m's
// client; closing it does nothing, and closing m closes its scopes too.
//
// part follows the name rules, which makes Scope the safe way to build a
// tenant's namespace from an identifier that comes from outside: "acme:evil"
// is refused with ErrInvalidName, and so can never reach into the
// namespace of tenant "acme", as a prefix joined from strings could.
func (m *Memory) Scope(part string) (*Memory, error) {
	if err := checkName(part); err != nil {
		return nil, fmt.Errorf("memory: scope of prefix %q: %w", m.prefix, err)
	}
	return &Memory{prefix: m.prefix + part + string(separator), s: m.s}, nil
}

// Pending returns how many names the Memory and its scopes have queued,
// waiting for an unreachable server.
func (m *Memory) Pending() int {
	return int(m.s.pending.Load())
}

// Flush sends the queued writes to the server now, in order, and returns an
// error wrapping ErrUnavailable, naming how many are still queued, if the
// server cannot be reached. Queued writes are also flushed without Flush, by
// a background loop that probes the server after 1s, then twice as long each
// time up to 30s, and stops once the queue is empty.
func (m *Memory) Flush(ctx context.Context) error {
	if err := m.open("flush"); err != nil {
		return err
	}
	if err := m.s.link.flush(ctx); err != nil {
		return fmt.Errorf("%w: flush: %d names still queued: %w", ErrUnavailable, m.Pending(), err)
	}
	return nil
}

// Close releases the Memory returned by New and every scope of it: later
// operations return ErrClosed, and so does a second Close. It first flushes
// the queued writes, within the Memory's timeout, and returns an error
// wrapping ErrUnavailable that says how many were not delivered. It stops the
// background loop when no other Memory uses the client, and closes the client
// only if New created it. Close on a scope does nothing.
func (m *Memory) Close() error {
	if !m.root {
		return nil
	}
	if !m.s.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: close %q", ErrClosed, m.prefix)
	}
	var err error
	if m.Pending() > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), m.s.clock.timeout)
		flushErr := m.s.link.flush(ctx)
		cancel()
		if n := m.s.link.drop(m.s); n > 0 {
			err = fmt.Errorf("%w: close %q: %d queued names not delivered: %w", ErrUnavailable, m.prefix, n, flushErr)
			m.s.log.Error("memory: queued writes lost at close", "prefix", m.prefix, "names", n)
		}
	}
	m.s.link.release()
	if m.s.ownsClient {
		err = errors.Join(err, m.s.client.Close())
	}
	return err
}
