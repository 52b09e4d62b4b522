package memory

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// storeShards is how many locks the store of a client is split over,
	// so that operations on different keys seldom wait for each other.
	storeShards = 64

	// maxKnown is how many keys' last values a client's store keeps;
	// beyond it, the value of a key with nothing queued or unsettled is
	// forgotten.
	maxKnown = 10_000
)

// A store holds what this process knows of keys, for every Memory over one
// client: the last value it read or wrote of each, for reads while the
// server cannot be reached and for the local cache, and the operations on
// each whose outcome it does not know yet, so that the server can forget
// the others.
//
// A value is fresh, and the local cache answers reads with it, only while
// the server tells the process of the key's changes: a read through the
// cache reserves the slot before it asks the server (reserve), and its reply
// makes the value fresh (fill) only if nothing changed the key, and tracking
// did not break, while it was on its way. Any other change of a slot, by a
// write of this process above all, makes the value not fresh.
type store struct {
	seed   maphash.Seed
	shards [storeShards]storeShard

	epoch    atomic.Uint64 // counts the times tracking broke: values read before are not fresh
	fresh    atomic.Int64  // fresh values now
	maxFresh atomic.Int64  // the local cache's bound on them
	capacity atomic.Int64  // how many keys the store keeps
	last     atomic.Int64  // the last stamp given
}

// stamp returns a last_modified for a write of this process: the time, in
// Unix nanoseconds, or one more than the last stamp given if the clock
// stepped back, so that a write of this process never loses to an earlier
// one.
func (s *store) stamp() int64 {
	for {
		last := s.last.Load()
		next := max(time.Now().UnixNano(), last+1)
		if s.last.CompareAndSwap(last, next) {
			return next
		}
	}
}

type storeShard struct {
	mu    sync.Mutex       // guards slots
	slots map[string]*slot // by key
}

// A slot is what the store holds of one key.
type slot struct {
	known   bool      // stored and expires are the key's, as far as this process knows
	current bool      // stored is what the server held when last heard of, as a compare-and-set expects it
	stored  []byte    // nil: absent
	expires time.Time // zero: no expiry known
	open    []uint64  // seqs of this process's operations on the key not yet settled
	queued  int       // entries of the key waiting in the queue

	fresh   bool   // the local cache may answer with stored and expires
	filled  bool   // stored is what a read through the cache found, since the last change
	decoded any    // stored's value decoded, of a type without pointers, while fresh; nil: none
	changes uint64 // changes of the slot, for the reads in flight to tell
	reads   int    // reads in flight that reserved the slot
}

// A ticket is what a read saw of its key as it began: the slot's changes,
// the tracking epoch, and whether writes of this process to the key waited
// in the queue, which the read may miss if they are delivered while it is
// on its way.
type ticket struct {
	changes, epoch uint64
	queued         bool
}

// A known value is a key's string and expiry as this process knows them.
type known struct {
	stored  []byte    // nil: absent
	expires time.Time // zero: none known
}

func newStore() *store {
	s := &store{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].slots = map[string]*slot{}
	}
	s.capacity.Store(maxKnown)
	return s
}

// allowFresh lets the store keep up to n fresh values, and as many keys,
// unless it allows more already.
func (s *store) allowFresh(n int) {
	for _, bound := range []*atomic.Int64{&s.maxFresh, &s.capacity} {
		for old := bound.Load(); int64(n) > old && !bound.CompareAndSwap(old, int64(n)); old = bound.Load() {
		}
	}
}

func (s *store) shard(key string) *storeShard {
	return &s.shards[maphash.String(s.seed, key)%storeShards]
}

// with calls fn with the slot of key, made if need be, under its shard's
// lock, and forgets the slot afterwards if it holds nothing. The value is
// not fresh afterwards.
func (s *store) with(key string, fn func(sl *slot)) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := s.slot(sh, key)
	fn(sl)
	s.change(sl)
	sh.drop(key, sl)
}

// slot returns the slot of key in sh, made if need be. sh.mu must be held.
func (s *store) slot(sh *storeShard, key string) *slot {
	sl := sh.slots[key]
	if sl == nil {
		sl = &slot{}
		if int64(len(sh.slots)) >= s.capacity.Load()/storeShards {
			s.evict(sh)
		}
		sh.slots[key] = sl
	}
	return sl
}

// drop forgets the slot of key if it holds nothing. sh.mu must be held.
func (sh *storeShard) drop(key string, sl *slot) {
	if !sl.known && sl.idle() {
		delete(sh.slots, key)
	}
}

// idle reports whether nothing but its value holds the slot.
func (sl *slot) idle() bool {
	return len(sl.open) == 0 && sl.queued == 0 && sl.reads == 0
}

// change records a change of sl, which makes its value not fresh. The
// slot's shard must be locked.
func (s *store) change(sl *slot) {
	sl.changes++
	sl.filled = false
	if sl.fresh {
		sl.fresh = false
		s.fresh.Add(-1)
	}
	sl.decoded = nil
}

// evict forgets the value of one key of sh that is idle, an arbitrary one.
// sh.mu must be held.
func (s *store) evict(sh *storeShard) {
	for key, sl := range sh.slots {
		if sl.idle() {
			s.change(sl)
			delete(sh.slots, key)
			return
		}
	}
}

// remember records stored (nil: absent) as the value of key, expiring at
// expires; current says it is what the server holds.
func (s *store) remember(key string, stored []byte, expires time.Time, current bool) {
	s.with(key, func(sl *slot) {
		sl.known, sl.current, sl.stored, sl.expires = true, current, stored, expires
	})
}

// rememberPut records what key holds once p, a whole value or a delete,
// applied on the server.
func (s *store) rememberPut(key string, p *put) {
	k, _ := p.apply(known{}, true)
	s.remember(key, k.stored, k.expires, true)
}

// forget drops what is known of the value of key.
func (s *store) forget(key string) {
	s.with(key, func(sl *slot) { sl.known, sl.current, sl.stored = false, false, nil })
}

// forgetPrefix drops what is known of the values of the keys under prefix.
func (s *store) forgetPrefix(prefix string) {
	s.each(func(sh *storeShard, key string, sl *slot) {
		if strings.HasPrefix(key, prefix) {
			sl.known, sl.current, sl.stored = false, false, nil
			s.change(sl)
			sh.drop(key, sl)
		}
	})
}

// each calls fn with every slot, under its shard's lock.
func (s *store) each(fn func(sh *storeShard, key string, sl *slot)) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for key, sl := range sh.slots {
			fn(sh, key, sl)
		}
		sh.mu.Unlock()
	}
}

// reserve records a read of key from the server, through the local cache
// or not, and returns its ticket, for fill, found or unreserve once the
// reply is in.
func (s *store) reserve(key string) ticket {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := s.slot(sh, key)
	sl.reads++
	return ticket{sl.changes, s.epoch.Load(), sl.queued > 0}
}

// unreserve ends a read of key that reserve recorded, which learnt
// nothing.
func (s *store) unreserve(key string) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := sh.slots[key]
	sl.reads--
	sh.drop(key, sl)
}

// found ends the read of key that t reserved, which found stored (nil:
// absent) on the server, not through the local cache. Unless the key
// changed here while the read was on its way, or writes of this process to
// it wait in the queue, stored is its known value, as the server holds it,
// keeping the expiry known if the value is unchanged. It reports whether
// writes to key wait in the queue now, which apply on top of stored, and
// whether the read crossed a change of the key while writes to it waited
// when it began: one of them may have been delivered after the read reached
// the server, so that stored may be older than what this process wrote.
func (s *store) found(key string, stored []byte, t ticket) (queued, crossed bool) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := sh.slots[key]
	sl.reads--
	changed := sl.changes != t.changes
	if !changed && sl.queued == 0 {
		if !sl.known || !equalBytes(sl.stored, stored) {
			sl.expires = time.Time{}
			s.change(sl)
		}
		sl.known, sl.current, sl.stored = true, true, stored
	}
	queued, crossed = sl.queued > 0, changed && t.queued
	sh.drop(key, sl)
	return queued, crossed
}

// fill ends the read of key that t reserved, which found stored (nil:
// absent), expiring at expires. Unless the key changed, or tracking broke,
// since the read began, or another read in flight with it found another
// value, stored is the key's known value, and it is fresh if the cache has
// room. A read that cannot fill spoils the others in flight with it.
func (s *store) fill(key string, stored []byte, expires time.Time, t ticket) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := sh.slots[key]
	sl.reads--
	crossed := sl.changes != t.changes || s.epoch.Load() != t.epoch || sl.queued > 0
	switch {
	case !crossed && !(sl.filled && !equalBytes(sl.stored, stored)):
		sl.known, sl.current, sl.stored, sl.expires, sl.filled = true, true, stored, expires, true
		if !sl.fresh && s.room(sh) {
			sl.fresh = true
			s.fresh.Add(1)
		}
	case sl.fresh && equalBytes(sl.stored, stored):
		// Crossed, but what it read is what the cache holds.
	default:
		// This read, or another one in flight with it, read a change
		// that the server has not told of yet, and which of the reads
		// reached the server last is not known: the other reads in
		// flight may have read a value older than this one's, which the
		// caller now holds, so none of them may fill.
		s.change(sl)
	}
	sh.drop(key, sl)
}

// room reports whether one more value may be fresh, making another one of
// sh not fresh if need be. sh.mu must be held.
func (s *store) room(sh *storeShard) bool {
	if s.fresh.Load() < s.maxFresh.Load() {
		return true
	}
	for _, sl := range sh.slots {
		if sl.fresh {
			s.change(sl)
			return true
		}
	}
	return false
}

// cached returns the value of key, and its decoded value if kept, when it
// is fresh and has not expired.
func (s *store) cached(key string) (stored []byte, decoded any, ok bool) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := sh.slots[key]
	if sl == nil || !sl.fresh || !sl.expires.IsZero() && !time.Now().Before(sl.expires) {
		return nil, nil, false
	}
	return sl.stored, sl.decoded, true
}

// keepDecoded keeps v as the decoded value of key, if stored, which v was
// decoded from, is still its fresh value.
func (s *store) keepDecoded(key string, stored []byte, v any) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sl := sh.slots[key]; sl != nil && sl.fresh && len(stored) > 0 && len(sl.stored) == len(stored) && &sl.stored[0] == &stored[0] {
		sl.decoded = v
	}
}

// invalidate records that keys changed on the server: their values are no
// longer fresh. Keys the store does not hold stay out of it.
func (s *store) invalidate(keys []string) {
	for _, key := range keys {
		sh := s.shard(key)
		sh.mu.Lock()
		if sl := sh.slots[key]; sl != nil {
			s.change(sl)
		}
		sh.mu.Unlock()
	}
}

// stale makes every value not fresh, for tracking broke: changes may have
// gone untold, and reads on their way when it broke fill nothing.
func (s *store) stale() {
	s.epoch.Add(1)
	s.each(func(_ *storeShard, _ string, sl *slot) {
		if sl.fresh {
			s.change(sl)
		}
	})
}

// recall returns the value of key as this process knows it, whether it
// knows it, and whether it is what the server held when last heard of. An
// expiry past makes it known to be absent.
func (s *store) recall(key string) (k known, ok, current bool) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := sh.slots[key]
	if sl == nil || !sl.known {
		return known{}, false, false
	}
	if !sl.expires.IsZero() && !time.Now().Before(sl.expires) {
		return known{}, true, false
	}
	return known{sl.stored, sl.expires}, true, sl.current
}

// expire records the deadline of key, if its value is known.
func (s *store) expire(key string, deadline time.Time) {
	s.with(key, func(sl *slot) {
		if sl.known {
			sl.expires = deadline
		}
	})
}

// begin records a new operation on key, with the seq next returns, as one
// whose outcome is not known yet, and returns the seq and the lowest of those
// on key: the server may forget the others of this process. The seq is taken
// under the key's lock, so that no operation on key can take a lower one
// and be pruned by one that did not see it.
func (s *store) begin(key string, next func() uint64) (seq, low uint64) {
	s.with(key, func(sl *slot) {
		seq = next()
		sl.open = append(sl.open, seq)
		low = min(seq, slices.Min(sl.open))
	})
	return seq, low
}

// lowest returns the lowest seq of the operations on key whose outcome is
// not known yet, seq itself being one of them.
func (s *store) lowest(key string, seq uint64) (low uint64) {
	s.with(key, func(sl *slot) {
		low = seq
		if len(sl.open) > 0 {
			low = min(seq, slices.Min(sl.open))
		}
	})
	return low
}

// settle records that the outcome of the operation seq on key is known.
func (s *store) settle(key string, seq uint64) {
	s.with(key, func(sl *slot) {
		if i := slices.Index(sl.open, seq); i >= 0 {
			sl.open = slices.Delete(sl.open, i, i+1)
		}
	})
}

func equalBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && string(a) == string(b)
}
