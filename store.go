package memory

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
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
// server cannot be reached, and the operations on each whose outcome it
// does not know yet, so that the server can forget the others.
type store struct {
	seed   maphash.Seed
	shards [storeShards]storeShard
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
	return s
}

func (s *store) shard(key string) *storeShard {
	return &s.shards[maphash.String(s.seed, key)%storeShards]
}

// with calls fn with the slot of key, made if need be, under its shard's
// lock, and forgets the slot afterwards if it holds nothing.
func (s *store) with(key string, fn func(sl *slot)) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := sh.slots[key]
	if sl == nil {
		sl = &slot{}
		if len(sh.slots) >= maxKnown/storeShards {
			sh.evict()
		}
		sh.slots[key] = sl
	}
	fn(sl)
	if !sl.known && len(sl.open) == 0 && sl.queued == 0 {
		delete(sh.slots, key)
	}
}

// evict forgets the value of one key that has nothing queued or unsettled,
// an arbitrary one. sh.mu must be held.
func (sh *storeShard) evict() {
	for key, sl := range sh.slots {
		if len(sl.open) == 0 && sl.queued == 0 {
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

// rememberRead records stored, just read from the server (nil: absent),
// keeping the expiry known for key if the value is unchanged. A key with
// writes in the queue keeps the value they make locally.
func (s *store) rememberRead(key string, stored []byte) {
	s.with(key, func(sl *slot) {
		if sl.queued > 0 {
			return
		}
		if !sl.known || !equalBytes(sl.stored, stored) {
			sl.expires = time.Time{}
		}
		sl.known, sl.current, sl.stored = true, true, stored
	})
}

// forget drops what is known of the value of key.
func (s *store) forget(key string) {
	s.with(key, func(sl *slot) { sl.known, sl.current, sl.stored = false, false, nil })
}

// forgetPrefix drops what is known of the values of the keys under prefix.
func (s *store) forgetPrefix(prefix string) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for key, sl := range sh.slots {
			if strings.HasPrefix(key, prefix) {
				sl.known, sl.current, sl.stored = false, false, nil
				if len(sl.open) == 0 && sl.queued == 0 {
					delete(sh.slots, key)
				}
			}
		}
		sh.mu.Unlock()
	}
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
