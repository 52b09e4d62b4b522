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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
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
	client       redis.UniversalClient
	ownsClient   bool
	conn         *conn    // every round trip, bounded by the timeout
	link         *link    // shared with every Memory over client
	acct         *account // the queue's count of this Memory's entries
	ttl          time.Duration
	queue        bool // writes to an unreachable server are queued
	closeTimeout time.Duration
	log          *slog.Logger
	closed       atomic.Bool
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
		client:       c.client,
		ttl:          c.ttl,
		queue:        c.queue,
		closeTimeout: c.closeTimeout,
		log:          c.logger,
	}
	if s.client == nil {
		s.client, s.ownsClient = c.server.client(), true
	}
	s.conn = &conn{client: s.client, clock: clockFor(c.timeout)}
	if s.ownsClient {
		if err := s.probe(ctx, c.server.addr()); err != nil {
			s.client.Close()
			return nil, err
		}
	}
	s.link = linkFor(s.client)
	s.acct = &account{conn: s.conn, log: s.log, maxPending: c.maxPending}
	s.log.Debug("memory: ready", "prefix", c.prefix, "shared_client", !s.ownsClient)
	return &Memory{prefix: c.prefix, s: s, root: true}, nil
}

// probe pings the server at addr, and returns an error if it refused the
// client's configuration, or could not be reached with the queue off. A
// server that drops the connection it accepted, as a TLS port does with a
// plain client, refuses the configuration.
func (s *shared) probe(ctx context.Context, addr string) error {
	err := s.conn.ping(ctx)
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

// ttlArg returns the TTL a whole write gives its key: the default TTL, or
// none (-1).
func (s *shared) ttlArg() time.Duration {
	if s.ttl > 0 {
		return s.ttl
	}
	return -1
}

// offline reports whether an operation under ctx met err because the server
// cannot be reached, and not because ctx ended.
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
// expires after that TTL. While the server cannot be reached, or does not
// reply in time, the write is queued (see Flush), and applies, last writer
// wins, once the server is back.
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
	p := &put{value: stored, stamp: now, ttl: m.s.ttlArg()}
	return m.replace(ctx, "set", key, p, func(ctx context.Context) error {
		if m.s.ttl > 0 {
			return m.s.conn.write(ctx, "set", key, stored, "px", m.s.ttl.Milliseconds()).Err()
		}
		return m.s.conn.write(ctx, "set", key, stored).Err()
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
	stored, err := m.lookup(ctx, "get", key)
	switch {
	case err != nil:
		return err
	case stored == nil:
		return fmt.Errorf("%w: get %q", ErrNotFound, key)
	}
	if _, err := decode(stored, dst); err != nil {
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
	stored, err := m.lookup(ctx, "has", key)
	return stored != nil, err
}

// Delete removes name and its value. Deleting an absent name is not an error.
// While the server cannot be reached, the delete is queued, last writer
// wins.
func (m *Memory) Delete(ctx context.Context, name string) error {
	key, err := m.key("delete", name)
	if err != nil {
		return err
	}
	p := &put{stamp: time.Now().UnixNano()}
	return m.replace(ctx, "delete", key, p, func(ctx context.Context) error {
		return m.s.conn.write(ctx, "del", key).Err()
	})
}

// Expire makes name expire after ttl, as PEXPIRE does: a ttl of zero or less
// removes it at once. It returns an error wrapping ErrNotFound when name has
// no value. While the server cannot be reached, the expiry is queued, and
// applied once the server is back if name then has a value no newer than
// the call: a value another writer set since is left alone.
func (m *Memory) Expire(ctx context.Context, name string, ttl time.Duration) error {
	key, err := m.key("expire", name)
	if err != nil {
		return err
	}
	x := &expiry{deadline: time.Now().Add(ttl), stamp: time.Now().UnixNano()}
	if m.direct(key) {
		n, err := m.s.conn.write(ctx, "pexpire", key, ttl.Milliseconds()).Int()
		switch {
		case err == nil && n == 0:
			return fmt.Errorf("%w: expire %q", ErrNotFound, key)
		case err == nil:
			m.s.link.store.expire(key, x.deadline)
			return nil
		case !m.unknown(ctx, err):
			return opError(ctx, "expire", key, err)
		}
		m.s.link.failed(m.s.acct, err)
	} else if k, ok, _ := m.s.link.store.recall(key); ok && k.stored == nil {
		return fmt.Errorf("%w: expire %q", ErrNotFound, key)
	}
	return m.enqueue(key, x, true)
}

// Incr adds delta to the integer stored under name, atomically on the
// server, in one round trip, and returns the sum. An absent name counts as
// 0; a value that is not a JSON integer is a *DecodeError, and a sum beyond
// int64 an error, both leaving the value as it was. The value stays one the
// Python library reads as an int. With WithDefaultTTL the key gets that
// TTL; otherwise it keeps its own.
//
// Incr is applied exactly once, even when its reply is lost and it is sent
// again. While the server cannot be reached, the increment is queued and
// the sum computed from the value this process knows; without one, Incr
// returns an error wrapping ErrUnavailable.
func (m *Memory) Incr(ctx context.Context, name string, delta int64) (int64, error) {
	key, err := m.key("incr", name)
	if err != nil {
		return 0, err
	}
	d := strconv.FormatInt(delta, 10)
	result, err := m.edit(ctx, "incr", key, op{name: "incr", args: []any{d}}, func(value []byte) ([]byte, []byte, error) {
		n := int64(0)
		if value != nil {
			if err := json.Unmarshal(value, &n); err != nil {
				return nil, nil, &DecodeError{Key: key, Err: err}
			}
		}
		if delta > 0 && n > math.MaxInt64-delta || delta < 0 && n < math.MinInt64-delta {
			return nil, nil, fmt.Errorf("%d + %d overflows a 64-bit integer", n, delta)
		}
		sum := strconv.AppendInt(nil, n+delta, 10)
		return sum, sum, nil
	}, true)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(result), 10, 64)
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

// Pending returns how many entries the Memory and its scopes have in the
// queue: one per name for Set, Delete and Expire, whose queued writes to a
// name merge, and one per queued operation otherwise.
func (m *Memory) Pending() int {
	return int(m.s.acct.pending.Load())
}

// Stats are counts of a Memory's queue and cache, its scopes' included.
type Stats struct {
	Pending     int    // entries queued now
	Offline     bool   // the server is known to be lost
	Delivered   uint64 // queued entries delivered since New
	Dropped     uint64 // queued entries the server refused at delivery
	CacheHits   uint64 // reads answered by the local cache
	CacheMisses uint64 // reads the local cache could not answer
}

// Stats returns the counts of the Memory and its scopes.
func (m *Memory) Stats() Stats {
	a := m.s.acct
	return Stats{
		Pending:   int(a.pending.Load()),
		Offline:   m.s.link.lost.Load(),
		Delivered: a.delivered.Load(),
		Dropped:   a.dropped.Load(),
	}
}

// Flush delivers the queued writes of the Memory and its scopes now, without
// waiting for their next attempt, and returns once they are all delivered,
// or ctx ends, whichever comes first, even while another flush runs. It
// returns an error saying how many are still queued, wrapping ErrUnavailable
// if the server cannot be reached; and an error wrapping ErrDropped that
// names the queued writes the server refused since the last Flush.
//
// Queued writes are delivered without Flush too, by a background loop: at
// once, then, for a name whose write keeps failing, after a pause that
// doubles from 100ms up to 30s, while the other names go on. While the
// server is lost, the loop probes it after 1s, then twice as long each time
// up to 30s.
func (m *Memory) Flush(ctx context.Context) error {
	if err := m.open("flush"); err != nil {
		return err
	}
	err := m.flush(ctx, "flush")
	return errors.Join(err, m.s.acct.reportDrops())
}

// flush delivers the Memory's queued writes within ctx, for op, and says
// how many are left.
func (m *Memory) flush(ctx context.Context, op string) error {
	q := m.s.link.queue
	q.hurry()
	err := q.wait(ctx, m.s.acct, m.s.link.lost.Load)
	if err == nil {
		err = q.failure()
	}
	n := m.s.acct.pending.Load()
	switch {
	case n == 0:
		return nil
	case m.s.link.lost.Load():
		return fmt.Errorf("%w: %s %q: %d queued writes not delivered: %w", ErrUnavailable, op, m.prefix, n, err)
	}
	return fmt.Errorf("memory: %s %q: %d queued writes not delivered: %w", op, m.prefix, n, err)
}

// Close tries to deliver the queue again after closeRetryMin, then after
// twice as long each time up to closeRetryMax, within its budget.
const (
	closeRetryMin = 50 * time.Millisecond
	closeRetryMax = time.Second
)

// closeLinger is how long Close waits, past its budget, for deliveries
// under way on a client it does not close: any that go on end with their
// attempt.
const closeLinger = 100 * time.Millisecond

// sleepCtx waits for d, and reports false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Close releases the Memory returned by New and every scope of it: later
// operations return ErrClosed, and so does a second Close. It first delivers
// the queued writes, within WithCloseTimeout, and returns an error saying
// how many it could not deliver, wrapping ErrUnavailable if the server could
// not be reached; and one wrapping ErrDropped for queued writes the server
// refused. Check it: it is the last word on writes that returned nil while
// queued. Close stops the background loop when no other Memory uses the
// client, and closes the client only if New created it. Close on a scope
// does nothing.
func (m *Memory) Close() error {
	if !m.root {
		return nil
	}
	if !m.s.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: close %q", ErrClosed, m.prefix)
	}
	var err error
	if m.Pending() > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), m.s.closeTimeout)
		// Until the budget is spent, for a server that comes back.
		for pause := closeRetryMin; ; pause = min(2*pause, closeRetryMax) {
			if err = m.flush(ctx, "close"); err == nil || !sleepCtx(ctx, pause) {
				break
			}
		}
		cancel()
		if err != nil {
			m.s.link.queue.dropMatching(func(e *entry) bool { return e.acct == m.s.acct })
			m.s.log.Error("memory: queued writes lost at close", "prefix", m.prefix, "err", err)
		}
	}
	err = errors.Join(err, m.s.acct.reportDrops())
	wait := m.s.link.release()
	if m.s.ownsClient {
		err = errors.Join(err, m.s.client.Close())
	}
	wait(closeLinger)
	return err
}
