package memory_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
)

func TestSetTTLAndTTL(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)

		require.NoError(t, m.SetTTL(ctx, "session", "abc", time.Hour))
		requireValue(t, m, "session", "abc")
		pttl := raw.PTTL(ctx, "test:session").Val()
		require.Greater(t, pttl, 59*time.Minute)
		ttl, err := m.TTL(ctx, "session")
		require.NoError(t, err)
		require.InDelta(t, pttl, ttl, float64(time.Second), "TTL reads PTTL")

		require.NoError(t, m.Set(ctx, "session", "def"))
		ttl, err = m.TTL(ctx, "session")
		require.NoError(t, err)
		require.Zero(t, ttl, "Set keeps a value for ever: no TTL")
		require.Equal(t, time.Duration(-1), raw.TTL(ctx, "test:session").Val())

		_, err = m.TTL(ctx, "absent")
		require.ErrorIs(t, err, memory.ErrNotFound)
		require.ErrorContains(t, err, `"test:absent"`)

		for _, bad := range []time.Duration{0, -time.Second} {
			err := m.SetTTL(ctx, "x", 1, bad)
			require.ErrorContains(t, err, bad.String())
			require.ErrorContains(t, err, "must be positive")
		}
		require.Zero(t, raw.Exists(ctx, "test:x").Val(), "nothing written")
		require.ErrorIs(t, m.SetTTL(ctx, "a b", 1, time.Hour), memory.ErrInvalidName)
	})
}

func TestPersist(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		require.NoError(t, m.SetTTL(ctx, "k", 1, time.Hour))
		require.NoError(t, m.Persist(ctx, "k"))
		require.Equal(t, time.Duration(-1), raw.TTL(ctx, "test:k").Val())
		require.NoError(t, m.Persist(ctx, "k"), "a value without a TTL")
		ttl, err := m.TTL(ctx, "k")
		require.NoError(t, err)
		require.Zero(t, ttl)
		err = m.Persist(ctx, "absent")
		require.ErrorIs(t, err, memory.ErrNotFound)
		require.ErrorContains(t, err, `"test:absent"`)
	})
}

func TestSetIfAbsent(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		ok, err := m.SetIfAbsent(ctx, "lock", "first")
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = m.SetIfAbsent(ctx, "lock", "second")
		require.NoError(t, err)
		require.False(t, ok)
		requireValue(t, m, "lock", "first")

		_, err = m.SetIfAbsent(ctx, "bad", func() {})
		require.ErrorAs(t, err, new(*memory.EncodeError))

		// Create if absent, then update: the pattern Update alone cannot
		// express, as it sees the zero value of an absent name.
		type settings struct{ Theme string }
		_, err = m.SetIfAbsent(ctx, "settings", settings{"light"})
		require.NoError(t, err)
		require.NoError(t, memory.Update(ctx, m, "settings", func(s *settings) error { s.Theme += "-contrast"; return nil }))
		requireValue(t, m, "settings", settings{"light-contrast"})

		// Racing: exactly one caller wins, each with its own client.
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			other := newMemory(t, addr)
			wg.Go(func() {
				ok, err := other.SetIfAbsent(ctx, "race", i)
				require.NoError(t, err)
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		require.Equal(t, int32(1), wins.Load())
	})
}

func TestSetIfAbsentDefaultTTL(t *testing.T) {
	m := newMemory(t, miniredisAddr(t), memory.WithDefaultTTL(time.Minute))
	ok, err := m.SetIfAbsent(ctx, "k", 1)
	require.NoError(t, err)
	require.True(t, ok)
	ttl, err := m.TTL(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, time.Minute, ttl)
}

func TestTTLOffline(t *testing.T) {
	srv, m, _ := offlineMemory(t)
	require.NoError(t, m.SetTTL(ctx, "k", 1, time.Hour))
	require.NoError(t, m.Set(ctx, "forever", 1))
	srv.Close()
	require.NoError(t, m.Delete(ctx, "gone"))
	requireOffline(t, m)
	ttl, err := m.TTL(ctx, "k")
	require.NoError(t, err, "known from the write")
	require.InDelta(t, time.Hour, ttl, float64(time.Minute))
	_, err = m.TTL(ctx, "gone")
	require.ErrorIs(t, err, memory.ErrNotFound, "deleted here")
	_, err = m.TTL(ctx, "never")
	require.ErrorIs(t, err, memory.ErrUnavailable)

	require.NoError(t, m.Persist(ctx, "k"), "queued")
	_, err = m.SetIfAbsent(ctx, "new", 1)
	require.ErrorIs(t, err, memory.ErrUnavailable, "needs the server")
	require.NoError(t, srv.Restart())
	require.NoError(t, m.Flush(ctx))
	ttl, err = m.TTL(ctx, "k")
	require.NoError(t, err)
	require.Zero(t, ttl, "the queued Persist applied")
}
