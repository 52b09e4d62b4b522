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
// Watch tells of every change to a namespace, whoever makes it; with
// WithLocalCache, reads are answered from process memory that the server
// keeps fresh: a process always reads its own writes, and another
// process's within half a second at most (docs/cache.md of the repository
// says exactly what holds).
//
// Each round trip to the server ends by the Memory's timeout (WithTimeout,
// 500ms by default), the client's waits and retries included: most
// operations are one round trip, while Keys, Walk, Clear and Dump take one
// per page of keys, and the timeout does not bound decoding what was read.
// On a client of one's own (WithClient), the timeout holds only with the
// client's ContextTimeoutEnabled set.
//
// A write that returned nil is applied on the server exactly once, while
// the process lives: when the server cannot be reached, or does not reply
// in time, writes are queued and delivered once it is back (see Flush and
// Close), and list, map and counter changes carry identities that the
// server records, so that one sent again is never applied twice. The file
// docs/guarantees.md of the repository says exactly what holds.
//
// When the server cannot be reached, errors wrap ErrUnavailable; a name
// with no value gives ErrNotFound; stored data that cannot be read gives a
// *DecodeError, and a value JSON cannot carry an *EncodeError.
package memory

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"strconv"
	"sync"
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
	writer       *conn    // conn, but for writes through the pipeline: those of replace and edit
	link         *link    // shared with every Memory over client
	acct         *account // the queue's count of this Memory's entries
	ttl          time.Duration
	queue        bool // writes to an unreachable server are queued
	closeTimeout time.Duration
	log          *slog.Logger
	cache        *localCache // nil when off
	closed       atomic.Bool
	done         chan struct{} // closed by Close

	watchMu  sync.Mutex     // orders starting watchers before Close waits for them
	watchers sync.WaitGroup // the Memory's watchers, which Close ends
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
		done:         make(chan struct{}),
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
	var first bool
	s.link, first = linkFor(s.client)
	if first && !s.ownsClient && !contextTimeoutEnabled(s.client) {
		s.log.Warn("memory: the client does not hold to its contexts' deadlines (ContextTimeoutEnabled is false): a server that does not answer holds an operation until the client's ReadTimeout, not the Memory's timeout")
	}
	if c.autoPipeline {
		if s.conn.pipe, err = s.link.pipeline(c.timeout); err != nil {
			s.link.release()(0)
			if s.ownsClient {
				s.client.Close()
			}
			return nil, err
		}
	}
	s.writer = s.conn
	if s.conn.pipe != nil && s.queue {
		s.writer = &conn{client: s.client, clock: s.conn.clock, pipe: s.conn.pipe, pipeWrites: true, puts: s.conn.pipe.puts}
	}
	if c.cache > 0 {
		s.link.store.allowFresh(c.cache)
		s.cache = &localCache{store: s.link.store, tracker: s.link.tracker, prefix: c.prefix, log: s.log}
	}
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

// contextTimeoutEnabled reports whether client takes its socket deadlines
// from the contexts of commands, as far as its type tells.
func contextTimeoutEnabled(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}

// offline reports whether an operation under ctx met err because the server
// cannot be reached, and not because ctx ended.
func offline(ctx context.Context, err error) bool {
	return ctxErr(ctx) == nil && unreachable(err)
}

// ctxErr returns why ctx ended, nil if it did not: its error, or
// DeadlineExceeded once its deadline passed, which a socket deadline taken
// from it may show before its own timer fires.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
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
// expires after that TTL, and otherwise never. Last writer wins: a value
// whose last_modified is later than the call's, another writer's, is left
// alone, and Set returns nil. While the server cannot be reached, or does
// not reply in time, the write is queued (see Flush), and applies, last
// writer wins, once the server is back.
func (m *Memory) Set(ctx context.Context, name string, value any) error {
	return m.set(ctx, "set", name, value, m.s.ttl)
}

// set is Set with ttl, none when 0.
func (m *Memory) set(ctx context.Context, op, name string, value any, ttl time.Duration) error {
	key, stored, stamp, err := m.encode(op, name, value)
	if err != nil {
		return err
	}
	return m.replace(ctx, op, key, &put{value: stored, stamp: stamp, ttl: cmp.Or(ttl, -1)})
}

// encode checks that m is open and name valid for op, and returns the key
// of name and the envelope of value stamped now, with the stamp.
func (m *Memory) encode(op, name string, value any) (key string, stored []byte, stamp int64, err error) {
	if key, err = m.key(op, name); err != nil {
		return "", nil, 0, err
	}
	stamp = m.s.link.store.stamp()
	stored, err = encode(name, value, stamp)
	return key, stored, stamp, err
}

// setArgs returns the SET command of stored at key, expiring after ttl
// when not 0, followed by extra options.
func setArgs(key string, stored []byte, ttl time.Duration, extra ...any) []any {
	args := append([]any{"set", key, stored}, extra...)
	if ttl > 0 {
		args = append(args, "px", max(ttl.Milliseconds(), 1))
	}
	return args
}

// SetIfAbsent stores value under name, as Set does, only if name has no
// value, and reports whether it did: a SET NX, atomic on the server. It
// needs the server: while the server cannot be reached, or this process
// still has writes to name queued, it returns an error wrapping
// ErrUnavailable and writes nothing.
//
// If the connection breaks before the reply, SetIfAbsent asks again at once
// and tells its own write apart from another writer's by its bytes. A call
// that timed out returns an error wrapping ErrUnavailable, and may still
// have written.
//
// Update sees the zero value for an absent name: SetIfAbsent, then Update,
// creates a value only where there is none and changes it atomically.
func (m *Memory) SetIfAbsent(ctx context.Context, name string, value any) (bool, error) {
	key, stored, stamp, err := m.encode("set if absent", name, value)
	if err != nil {
		return false, err
	}
	if !m.direct(key) {
		return false, fmt.Errorf("%w: set if absent %q: it needs the server, and this process's writes to it wait in the queue", ErrUnavailable, key)
	}
	wrote, err := again(ctx,
		func() (bool, error) {
			err := m.s.conn.write(ctx, setArgs(key, stored, m.s.ttl, "nx")...).Err()
			if errors.Is(err, redis.Nil) {
				return false, nil
			}
			return err == nil, err
		},
		func() (bool, error) {
			o := op{name: "setnx", stamp: stamp, ttl: cmp.Or(m.s.ttl, -1), args: []any{stored}}
			reply, err := o.run(ctx, m.s.conn, key)
			return err == nil && reply.outcome != conflicted, err
		})
	if err != nil {
		m.s.link.store.forget(key) // it may have applied
		return false, readError(ctx, "set if absent", key, err)
	}
	if wrote {
		m.s.link.store.rememberPut(key, &put{value: stored, ttl: cmp.Or(m.s.ttl, -1)})
	}
	return wrote, nil
}

// Get decodes the value of name into dst, a non-nil pointer, as
// json.Unmarshal would. It returns an error wrapping ErrNotFound when name
// has no value, and a *DecodeError when the key holds something else than a
// JSON string. Values written by the Python library, or bare JSON written by
// any client, read the same way. While the server cannot be reached, Get
// returns the last value this process knows, its queued writes included, and
// otherwise an error wrapping ErrUnavailable.
func (m *Memory) Get(ctx context.Context, name string, dst any) error {
	return m.get(ctx, name, dst, func(decoded any) bool { return assign(dst, decoded) })
}

// GetAs returns the value of name as a T. It fails as Get does.
func GetAs[T any](ctx context.Context, m *Memory, name string) (T, error) {
	var v T
	err := m.get(ctx, name, &v, func(decoded any) bool {
		d, ok := decoded.(T)
		if ok {
			v = d
		}
		return ok
	})
	return v, err
}

// get decodes the value of name into dst, as Get does, or, when the local
// cache keeps it decoded, has use set dst to the decoded value if it can.
func (m *Memory) get(ctx context.Context, name string, dst any, use func(decoded any) bool) error {
	key, err := m.key("get", name)
	if err != nil {
		return err
	}
	if err := checkDestination(dst); err != nil {
		return fmt.Errorf("memory: get %q: %w", key, err)
	}
	stored, decoded, err := m.read(ctx, "get", key)
	switch {
	case err != nil:
		return err
	case stored == nil:
		return fmt.Errorf("%w: get %q", ErrNotFound, key)
	case decoded != nil && use(decoded):
		return nil
	}
	keep := m.s.cache != nil && decodable(dst)
	if _, err := decode(stored, dst); err != nil {
		return &DecodeError{Key: key, Err: err}
	}
	if keep {
		m.s.link.store.keepDecoded(key, stored, reflect.ValueOf(dst).Elem().Interface())
	}
	return nil
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
// Last writer wins, as for Set: a value stamped later than the call is left
// alone. While the server cannot be reached, the delete is queued.
func (m *Memory) Delete(ctx context.Context, name string) error {
	key, err := m.key("delete", name)
	if err != nil {
		return err
	}
	return m.replace(ctx, "delete", key, &put{stamp: m.s.link.store.stamp()})
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
// name merge, and one per queued operation otherwise. With WithAutoPipeline,
// a write whose caller's context ended while the pipeliner, or a batch of
// Sets, still held it counts too, as a hold that the later writes to its
// name wait behind, until the queue finds it sent; while the server is lost,
// until it is back. Close counts a hold left among the writes it did not
// deliver.
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
	st := Stats{
		Pending:   int(a.pending.Load()),
		Offline:   m.s.link.lost.Load(),
		Delivered: a.delivered.Load(),
		Dropped:   a.dropped.Load(),
	}
	if c := m.s.cache; c != nil {
		st.CacheHits, st.CacheMisses = c.hits.Load(), c.misses.Load()
	}
	return st
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
	if cause := q.failure(); cause != nil {
		err = cause // why the writes did not get through, rather than that time ran out
	}
	n := m.s.acct.pending.Load()
	if err == nil {
		err = errors.New("not delivered yet")
	}
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
	m.s.watchMu.Lock() // no watcher starts after this
	m.s.watchMu.Unlock()
	close(m.s.done)
	m.s.watchers.Wait()
	if m.s.cache != nil {
		m.s.cache.close()
	}
	m.s.link.queue.close(m.s.acct)
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
