package memory

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// DefaultMaxPending is how many names a Memory may have queued while
	// its server is unreachable, unless WithMaxPending says otherwise.
	DefaultMaxPending = 10_000

	// maxCached is how many last known values a link keeps for reads while
	// the server is unreachable; beyond it, a value that is not queued is
	// forgotten.
	maxCached = 10_000

	// The flusher probes a lost server after flushBackoffMin, then after
	// twice as long each time, up to flushBackoffMax.
	flushBackoffMin = time.Second
	flushBackoffMax = 30 * time.Second
)

// A link is the state every Memory over one client shares: whether its
// server is known to be lost, the last known values of keys, and the queue of
// writes waiting for the server, with the one loop that flushes it.
type link struct {
	client redis.UniversalClient
	log    *slog.Logger
	clock  *clock // bounds each command the flusher sends

	flushing sync.Mutex // held by whoever flushes the queue

	// lost says that writes go to the queue without trying the server. It
	// changes under mu, and is read without it on every operation.
	lost atomic.Bool

	mu      sync.Mutex
	refs    int                      // Memory values returned by New over client
	cache   map[string]known         // key → last known value
	queue   list.List                // of *entry, in the order of their last write
	pending map[string]*list.Element // key → its entry in queue
	stop    context.CancelFunc       // stops the flusher
	done    chan struct{}            // closed when the flusher has stopped; nil when none runs
}

// known is the last value of a key this process knows.
type known struct {
	stored  []byte    // nil: known to be absent
	expires time.Time // zero: no expiry known
}

var links = struct {
	sync.Mutex
	m map[redis.UniversalClient]*link
}{m: map[redis.UniversalClient]*link{}}

// linkFor returns the link of client, made on its first use, and counts one
// more user of it.
func linkFor(client redis.UniversalClient, log *slog.Logger, clock *clock) *link {
	links.Lock()
	defer links.Unlock()
	l := links.m[client]
	if l == nil {
		l = &link{
			client:  client,
			log:     log,
			clock:   clock,
			cache:   map[string]known{},
			pending: map[string]*list.Element{},
		}
		links.m[client] = l
	}
	l.mu.Lock()
	l.refs++
	l.mu.Unlock()
	return l
}

// release counts one user of l less; the last one stops the flusher and
// forgets l.
func (l *link) release() {
	links.Lock()
	l.mu.Lock()
	l.refs--
	last := l.refs == 0
	done := l.done
	if last {
		delete(links.m, l.client)
		if done != nil {
			l.stop()
		}
	}
	l.mu.Unlock()
	links.Unlock()
	if last && done != nil {
		<-done
	}
}

// markLost records that err showed the server unreachable, and starts the
// flusher, which probes the server until it answers.
func (l *link) markLost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lost.Swap(true) {
		l.log.Warn("memory: server lost; queueing writes", "err", err)
	}
	l.startFlusher()
}

// startFlusher starts the flusher unless it runs. l.mu must be held.
func (l *link) startFlusher() {
	if l.done != nil || l.refs == 0 {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	l.stop, l.done = stop, make(chan struct{})
	go l.flusher(ctx, l.done)
}

// flusher probes the lost server with PING at growing pauses, and flushes
// the queue once it answers, until the queue is empty, or ctx ends.
func (l *link) flusher(ctx context.Context, done chan struct{}) {
	defer close(done)
	pause := flushBackoffMin
	for {
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		if l.client.Ping(l.clock.bound(ctx)).Err() == nil && l.flush(ctx) == nil {
			l.mu.Lock()
			drained := !l.lost.Load()
			if drained {
				l.done = nil
			}
			l.mu.Unlock()
			if drained {
				return
			}
		}
		pause = min(2*pause, flushBackoffMax)
	}
}

// remember records stored as the value of key, expiring at expires (zero for
// never), for reads while the server is unreachable.
func (l *link) remember(key string, stored []byte, expires time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rememberLocked(key, stored, expires)
}

func (l *link) rememberLocked(key string, stored []byte, expires time.Time) {
	if _, ok := l.cache[key]; !ok && len(l.cache) >= maxCached {
		for k := range l.cache { // an arbitrary value that is not queued
			if _, queued := l.pending[k]; !queued {
				delete(l.cache, k)
				break
			}
		}
	}
	l.cache[key] = known{stored, expires}
}

// rememberRead records stored, read from the server (nil: absent), as the
// value of key, keeping the expiry known for it if the value is unchanged.
func (l *link) rememberRead(key string, stored []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var expires time.Time
	if k, ok := l.cache[key]; ok && bytes.Equal(k.stored, stored) {
		expires = k.expires
	}
	l.rememberLocked(key, stored, expires)
}

// rememberWrite records stored as the value of key, written with ttl: 0
// keeps the expiry known for key, as the key keeps its TTL.
func (l *link) rememberWrite(key string, stored []byte, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rememberWriteLocked(key, stored, ttl)
}

func (l *link) rememberWriteLocked(key string, stored []byte, ttl time.Duration) {
	expires := l.cache[key].expires
	if ttl > 0 {
		expires = time.Now().Add(ttl)
	}
	l.rememberLocked(key, stored, expires)
}

// expire records the deadline of key, if its value is known.
func (l *link) expire(key string, deadline time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if k, ok := l.cache[key]; ok {
		l.cache[key] = known{k.stored, deadline}
	}
}

// recall returns the last known value of key, and whether it is known.
func (l *link) recall(key string) (known, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k, ok := l.cache[key]
	if ok && !k.expires.IsZero() && !time.Now().Before(k.expires) {
		return known{}, true // expired: known to be absent
	}
	return k, ok
}

// forget drops what is known and queued of the keys under prefix, as Clear
// removed them from the server.
func (l *link) forget(prefix string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for key := range l.cache {
		if strings.HasPrefix(key, prefix) {
			delete(l.cache, key)
		}
	}
	l.dropLocked(func(e *entry) bool { return strings.HasPrefix(e.key, prefix) })
}

// An entry is what waits in the queue for one key: the writes made to it
// while the server was unreachable, merged into one.
type entry struct {
	key, name string
	owner     *shared // the Memory whose Pending counts it
	base      base
	value     []byte    // with base == baseValue, the string to store
	stamp     int64     // the last_modified of value, or the time of the delete
	replays   []replay  // after base, in order
	expires   time.Time // non-zero: the deadline an Expire set

	// local is what key holds locally once the write is applied, for reads
	// while the server is unreachable; nil when that is not known.
	local *known
}

// base is what an entry does first.
type base int

const (
	baseKeep   base = iota // start from the server's value
	baseValue              // store value
	baseAbsent             // delete the key
)

// A replay is an Update made while the server was unreachable, replayed on
// the server's value at flush.
type replay struct {
	change func(stored []byte) ([]byte, error) // the stored string (nil: absent) to the new one
	// attempted is what a compare-and-set of this Update may have written
	// before the server was lost, its reply unseen; nil if none was sent.
	attempted []byte
}

// merge returns the entry of e followed by later, a later write to the same
// key: a new value or a delete replaces everything before it, while
// replays and expiries add to it.
func (e *entry) merge(later *entry) *entry {
	if later.base != baseKeep {
		return later
	}
	merged := *e
	merged.replays = append(e.replays[:len(e.replays):len(e.replays)], later.replays...)
	if !later.expires.IsZero() {
		merged.expires = later.expires
	}
	merged.local = later.local
	return &merged
}

// enqueue queues each entry, merged into what its key already has queued,
// and moved to the end of the queue. It returns an error wrapping
// ErrQueueFull, and queues nothing, when the entries would be more names
// than their owner may queue.
func (l *link) enqueue(owner *shared, entries ...*entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := 0
	for _, e := range entries {
		if _, ok := l.pending[e.key]; !ok {
			names++
		}
	}
	if queued := owner.pending.Load(); queued+int64(names) > int64(owner.maxPending) {
		return fmt.Errorf("%w: %d of %d names queued; %d more not queued", ErrQueueFull, queued, owner.maxPending, names)
	}
	for _, e := range entries {
		if el, ok := l.pending[e.key]; ok {
			merged := el.Value.(*entry).merge(e)
			l.queue.Remove(el)
			e = merged
		} else {
			owner.pending.Add(1)
		}
		l.pending[e.key] = l.queue.PushBack(e)
		if e.local != nil {
			l.rememberLocked(e.key, e.local.stored, e.local.expires)
		} else {
			delete(l.cache, e.key)
		}
	}
	l.log.Debug("memory: writes queued", "queued", l.queue.Len())
	l.startFlusher()
	return nil
}

// flush sends the queue to the server, oldest entry first. It stops at the
// first entry the server cannot be reached for (or that met a conflict on
// every attempt), which stays queued, and returns that error. An entry the
// server refuses is dropped and logged. Once the queue is empty, the server
// is no longer lost.
func (l *link) flush(ctx context.Context) error {
	l.flushing.Lock()
	defer l.flushing.Unlock()
	flushed := 0
	defer func() {
		if flushed > 0 {
			l.log.Info("memory: flushed queued writes", "writes", flushed)
		}
	}()
	for {
		l.mu.Lock()
		front := l.queue.Front()
		if front == nil {
			if l.lost.Swap(false) {
				l.log.Info("memory: server back; queue flushed")
			}
			l.mu.Unlock()
			return nil
		}
		e := l.queue.Remove(front).(*entry)
		delete(l.pending, e.key)
		l.mu.Unlock()

		_, err := l.deliver(ctx, e)
		if err != nil && (unreachable(err) || ctx.Err() != nil || errors.Is(err, ErrConflict)) {
			l.requeue(e)
			return err
		}
		e.owner.pending.Add(-1)
		if err != nil {
			l.log.Error("memory: queued write dropped", "key", e.key, "err", err)
			continue
		}
		flushed++
	}
}

// delivered records stored, written with ttl (0: kept), as the value of key,
// unless a later write to key is queued and known locally.
func (l *link) delivered(key string, stored []byte, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, queued := l.pending[key]; !queued {
		l.rememberWriteLocked(key, stored, ttl)
	}
}

// requeue puts e back at the front of the queue, before any write to its
// key made while it was out.
func (l *link) requeue(e *entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.pending[e.key]; ok {
		later := l.queue.Remove(el).(*entry)
		e = e.merge(later)
		later.owner.pending.Add(-1)
	}
	l.pending[e.key] = l.queue.PushFront(e)
}

// deliver writes e to the server with a compare-and-set, so that the check
// of the server's value and the write are one atomic step, and reports
// whether it changed the server's value.
func (l *link) deliver(ctx context.Context, e *entry) (bool, error) {
	current, err := read(ctx, l.client, l.clock, e.key)
	if err != nil {
		return false, err
	}
	for range updateAttempts {
		next, ttl := e.apply(current, l.log)
		if bytes.Equal(next, current) && (next == nil || e.expires.IsZero()) {
			return false, nil // nothing to change
		}
		wrote, found, err := compareAndSet(ctx, l.client, l.clock, e.key, current, next, ttl)
		if err != nil {
			return false, err
		}
		if wrote {
			l.delivered(e.key, next, ttl)
			return true, nil
		}
		current = found
	}
	return false, fmt.Errorf("%w: flush %q: %d attempts", ErrConflict, e.key, updateAttempts)
}

// apply returns what e makes of current, the server's string for its key
// (nil: absent), and the TTL to store it with, as casScript takes it.
func (e *entry) apply(current []byte, log *slog.Logger) (next []byte, ttl time.Duration) {
	next = current
	// The last writer wins: a queued value or delete is skipped when the
	// server holds a strictly newer one.
	if e.base != baseKeep && stamp(current) <= e.stamp {
		next = e.value // nil for baseAbsent
	}
	for _, r := range e.replays {
		if r.attempted != nil && bytes.Equal(next, r.attempted) {
			continue // it did reach the server
		}
		changed, err := r.change(next)
		if err != nil {
			log.Error("memory: queued update dropped", "key", e.key, "err", err)
			continue
		}
		next = changed
	}
	switch {
	case !e.expires.IsZero():
		ttl = time.Until(e.expires)
		if ttl < time.Millisecond {
			return nil, 0
		}
	case e.base == baseValue || len(e.replays) > 0:
		ttl = e.owner.ttl
	}
	return next, ttl
}

// drop removes the queued entries of owner, and returns how many there were.
func (l *link) drop(owner *shared) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropLocked(func(e *entry) bool { return e.owner == owner })
}

// dropLocked removes the queued entries that match, and returns how many
// there were. l.mu must be held.
func (l *link) dropLocked(match func(*entry) bool) int {
	n := 0
	for el := l.queue.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*entry); match(e) {
			l.queue.Remove(el)
			delete(l.pending, e.key)
			e.owner.pending.Add(-1)
			n++
		}
		el = next
	}
	return n
}

// errOffline is the error of a read, while the server is unreachable, of a
// value this process does not know; cause is the error that showed the
// server unreachable, if the read met one.
func errOffline(op, key string, cause error) error {
	if cause == nil {
		return fmt.Errorf("%w: %s %q: the server is lost and the value not known here", ErrUnavailable, op, key)
	}
	return fmt.Errorf("%w: %s %q: not known here: %w", ErrUnavailable, op, key, cause)
}
