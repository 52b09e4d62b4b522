package memory

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStoreFreshness follows a read through the cache from its reservation
// to its reply: the reply makes the value fresh only if nothing crossed it.
func TestStoreFreshness(t *testing.T) {
	value := []byte(`{"value": 1, "last_modified": 1}`)
	tests := []struct {
		name  string
		cross func(s *store) // what happens while the read is on its way
		fresh bool
	}{
		{"nothing", func(*store) {}, true},
		{"the server tells of a change", func(s *store) { s.invalidate([]string{"k"}) }, false},
		{"a change of another key", func(s *store) { s.invalidate([]string{"other"}) }, true},
		{"tracking breaks", func(s *store) { s.stale() }, false},
		{"a write of this process", func(s *store) { s.forget("k") }, false},
		{"a write queued", func(s *store) { s.with("k", func(sl *slot) { sl.queued++ }) }, false},
		{"a read of the same value", func(s *store) { s.fill("k", value, time.Time{}, s.reserve("k")) }, true},
		{"a read of another value", func(s *store) { s.fill("k", []byte(`2`), time.Time{}, s.reserve("k")) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore()
			s.allowFresh(10)
			ticket := s.reserve("k")
			tt.cross(s)
			s.fill("k", value, time.Time{}, ticket)
			_, _, ok := s.cached("k")
			require.Equal(t, tt.fresh, ok)
			require.Equal(t, int64(map[bool]int{true: 1}[tt.fresh]), s.fresh.Load())
		})
	}
}

// TestStoreCrossedReads has a read that crossed a change fill while
// another read, which began after the change, is in flight: the earlier
// read may have reached the server last, with a value newer than the later
// one's, so the later one must not fill.
func TestStoreCrossedReads(t *testing.T) {
	s := newStore()
	s.allowFresh(10)
	early := s.reserve("k")
	s.invalidate([]string{"k"})
	late := s.reserve("k")
	s.fill("k", []byte(`2`), time.Time{}, early) // crossed the change: its caller holds 2
	s.fill("k", []byte(`1`), time.Time{}, late)  // older, reached the server first
	_, _, ok := s.cached("k")
	require.False(t, ok)

	s.fill("k", []byte(`2`), time.Time{}, s.reserve("k"))
	stored, _, ok := s.cached("k")
	require.True(t, ok, "a read alone fills")
	require.Equal(t, []byte(`2`), stored)
}

// TestStoreFound follows a read that is not through the cache from its
// reservation to its reply: the reply is the key's known value only if
// nothing crossed it and no write to the key is queued, and the read
// crossed when the key changed while writes to it waited in the queue as
// it began, one of which may have been delivered after the read reached
// the server.
func TestStoreFound(t *testing.T) {
	value := []byte(`{"value": 1, "last_modified": 1}`)
	nothing := func(*store) {}
	queue := func(s *store) { s.with("k", func(sl *slot) { sl.queued++ }) }
	deliver := func(s *store) { s.with("k", func(sl *slot) { sl.queued-- }) }
	tests := []struct {
		name                string
		before, cross       func(s *store) // what happens before the read, and while it is on its way
		queued, crossed, is bool           // is: the value read is known, as current
	}{
		{"nothing", nothing, nothing, false, false, true},
		{"a write of this process", nothing, func(s *store) { s.forget("k") }, false, false, false},
		{"a write queued", nothing, queue, true, false, false},
		{"writes queued", queue, nothing, true, false, false},
		{"a queued write delivered", queue, deliver, false, true, false},
		{"a change told while writes are queued", queue, func(s *store) { s.invalidate([]string{"k"}) }, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore()
			tt.before(s)
			ticket := s.reserve("k")
			tt.cross(s)
			queued, crossed := s.found("k", value, ticket)
			require.Equal(t, tt.queued, queued)
			require.Equal(t, tt.crossed, crossed)
			k, ok, current := s.recall("k")
			require.Equal(t, tt.is, ok && current && equalBytes(k.stored, value))
		})
	}
}

// TestStoreFreshAfter checks what ends a fresh value: a change told, a
// write, tracking breaking, an expiry; and that a decoded value is kept
// only for the bytes it was decoded from.
func TestStoreFreshAfter(t *testing.T) {
	value := []byte(`{"value": 1, "last_modified": 1}`)
	fresh := func(expires time.Time) *store {
		s := newStore()
		s.allowFresh(10)
		s.fill("k", value, expires, s.reserve("k"))
		return s
	}
	for name, end := range map[string]func(s *store){
		"a change told": func(s *store) { s.invalidate([]string{"k"}) },
		"a write":       func(s *store) { s.rememberPut("k", &put{value: []byte(`2`)}) },
		"a clear":       func(s *store) { s.forgetPrefix("") },
		"broken":        func(s *store) { s.stale() },
	} {
		t.Run(name, func(t *testing.T) {
			s := fresh(time.Time{})
			s.keepDecoded("k", value, 1)
			_, decoded, ok := s.cached("k")
			require.True(t, ok)
			require.Equal(t, 1, decoded)
			end(s)
			_, _, ok = s.cached("k")
			require.False(t, ok)
			require.Zero(t, s.fresh.Load())
		})
	}
	t.Run("expired", func(t *testing.T) {
		s := fresh(time.Now().Add(-time.Millisecond))
		_, _, ok := s.cached("k")
		require.False(t, ok)
	})
	t.Run("decoded from other bytes", func(t *testing.T) {
		s := fresh(time.Time{})
		s.keepDecoded("k", []byte(string(value)), 1)
		_, decoded, ok := s.cached("k")
		require.True(t, ok)
		require.Nil(t, decoded)
	})
}

// TestStoreFreshBound fills more values than the cache may keep fresh: it
// never holds more, and every read still learns its value.
func TestStoreFreshBound(t *testing.T) {
	s := newStore()
	s.allowFresh(5)
	s.allowFresh(3) // a smaller bound does not shrink it
	for i := range 200 {
		key := string(rune('a'+i%26)) + string(rune('a'+i/26))
		s.fill(key, []byte(`1`), time.Time{}, s.reserve(key))
		require.LessOrEqual(t, s.fresh.Load(), int64(5))
		k, ok, _ := s.recall(key)
		require.True(t, ok)
		require.Equal(t, []byte(`1`), k.stored)
	}
	n := 0
	s.each(func(_ *storeShard, _ string, sl *slot) {
		if sl.fresh {
			n++
		}
	})
	require.Equal(t, int(s.fresh.Load()), n)
}

// TestStoreStamps takes stamps from 8 goroutines at once, and from a store
// whose last stamp is ahead of the clock, as after the clock stepped back:
// every stamp is later than the one before it.
func TestStoreStamps(t *testing.T) {
	s := newStore()
	ahead := time.Now().Add(time.Hour).UnixNano()
	s.last.Store(ahead)
	require.Equal(t, ahead+1, s.stamp(), "one more than the last, not the clock's")

	stamps := make([][]int64, 8)
	var wg sync.WaitGroup
	for g := range stamps {
		wg.Go(func() {
			for range 1000 {
				stamps[g] = append(stamps[g], s.stamp())
			}
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, own := range stamps {
		require.IsIncreasing(t, own)
		for _, stamp := range own {
			require.False(t, seen[stamp], "stamp %d given twice", stamp)
			seen[stamp] = true
		}
	}
}
