package memory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/faultproxy"
	"github.com/redis-memory/memory/internal/redisserver"
)

// watchFor bounds the wait for a change: generous, as the machine may be
// slow; it never measures how fast changes come.
const watchFor = 10 * time.Second

// nextChange returns the next change of ch, failing the test if none comes
// within watchFor or ch closes.
func nextChange(t *testing.T, ch <-chan memory.Change) memory.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		require.True(t, ok, "the channel closed")
		return c
	case <-time.After(watchFor):
		require.FailNow(t, "no change within "+watchFor.String())
	}
	return memory.Change{}
}

// untilChange receives changes of ch until one satisfies ok, and returns it.
func untilChange(t *testing.T, ch <-chan memory.Change, ok func(memory.Change) bool) memory.Change {
	t.Helper()
	deadline := time.After(watchFor)
	for {
		select {
		case c, open := <-ch:
			require.True(t, open, "the channel closed")
			if ok(c) {
				return c
			}
		case <-deadline:
			require.FailNow(t, "no such change within "+watchFor.String())
		}
	}
}

// holds reports whether c says that its name holds the JSON value want.
func holds(c memory.Change, name, want string) bool {
	return c.Name == name && !c.Deleted && string(c.Value) == want
}

// requireClosed fails unless ch closes within watchFor; a change sent as
// the watch ended may come before.
func requireClosed(t *testing.T, ch <-chan memory.Change) {
	t.Helper()
	deadline := time.After(watchFor)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			require.FailNow(t, "the channel did not close")
		}
	}
}

func TestWatch(t *testing.T) {
	srv := redisserver.Start(t)
	m := newMemory(t, srv.Addr)
	raw := rawClient(t, srv.Addr)
	wctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	all, err := m.Watch(wctx)
	require.NoError(t, err)
	named, err := m.Watch(wctx, "status")
	require.NoError(t, err)

	t.Run("this Memory", func(t *testing.T) {
		require.NoError(t, m.Set(ctx, "status", "running"))
		c := nextChange(t, all)
		require.Equal(t, "status", c.Name)
		require.JSONEq(t, `"running"`, string(c.Value))
		require.False(t, c.Deleted)
		require.WithinDuration(t, time.Now(), c.Modified, time.Minute)
		require.Equal(t, c, nextChange(t, named))
	})
	t.Run("a Python writer", func(t *testing.T) {
		const stamp = 1732838400123456789
		require.NoError(t, raw.Set(ctx, "test:status", fmt.Sprintf(`{"value": {"step": 2}, "last_modified": %d}`, stamp), 0).Err())
		c := nextChange(t, named)
		require.JSONEq(t, `{"step": 2}`, string(c.Value))
		require.Equal(t, time.Unix(0, stamp), c.Modified)
		require.Equal(t, c, nextChange(t, all))
	})
	t.Run("DEL", func(t *testing.T) {
		require.NoError(t, raw.Del(ctx, "test:status").Err())
		require.Equal(t, memory.Change{Name: "status", Deleted: true}, nextChange(t, named))
		require.Equal(t, memory.Change{Name: "status", Deleted: true}, nextChange(t, all))
	})
	t.Run("expiry", func(t *testing.T) {
		require.NoError(t, m.SetTTL(ctx, "status", "brief", 50*time.Millisecond))
		require.True(t, holds(nextChange(t, named), "status", `"brief"`))
		require.Equal(t, memory.Change{Name: "status", Deleted: true}, nextChange(t, named))
		// The other watch may read the key once it expired, absent again
		// as the last change it told: it may tell nothing.
	})
	t.Run("other names", func(t *testing.T) {
		require.NoError(t, m.Set(ctx, "other", 1))
		untilChange(t, all, func(c memory.Change) bool { return holds(c, "other", "1") })
		require.NoError(t, m.Set(ctx, "status", "last"))
		require.True(t, holds(nextChange(t, named), "status", `"last"`), "the named watch skips other")
		require.True(t, holds(nextChange(t, all), "status", `"last"`))
	})
	t.Run("scopes", func(t *testing.T) {
		conv, err := m.Scope("conv_42")
		require.NoError(t, err)
		require.NoError(t, conv.Set(ctx, "topic", "go"))
		require.True(t, holds(nextChange(t, all), "conv_42:topic", `"go"`))
		scoped, err := conv.Watch(wctx, "topic")
		require.NoError(t, err)
		require.NoError(t, conv.Set(ctx, "topic", "redis"))
		require.True(t, holds(nextChange(t, scoped), "topic", `"redis"`), "named as in the scope")
		require.True(t, holds(nextChange(t, all), "conv_42:topic", `"redis"`))
	})
	t.Run("a log", func(t *testing.T) {
		log := memory.LogOf[string](m, "history")
		require.NoError(t, log.Append(ctx, "a", "b"))
		require.True(t, holds(nextChange(t, all), "history", `"b"`), "the newest item")
		require.NoError(t, log.Trim(ctx, 1))
		require.True(t, holds(nextChange(t, all), "history", `"b"`), "trimmed: the newest item still")
	})
	t.Run("many writes end with the last", func(t *testing.T) {
		for i := range 1000 {
			require.NoError(t, m.Set(ctx, "status", i))
		}
		c := untilChange(t, named, func(c memory.Change) bool { return string(c.Value) == "999" })
		require.Equal(t, "status", c.Name)
		select {
		case c := <-named:
			require.FailNow(t, "a change after the last", "%+v", c)
		case <-time.After(100 * time.Millisecond):
		}
		untilChange(t, all, func(c memory.Change) bool { return holds(c, "status", "999") })
	})
	t.Run("a flush", func(t *testing.T) {
		require.NoError(t, raw.FlushDB(ctx).Err())
		require.Equal(t, memory.Change{Name: "status", Deleted: true}, nextChange(t, named))
		untilChange(t, all, func(c memory.Change) bool { return c.Name == "status" && c.Deleted })
	})

	cancel()
	requireClosed(t, all)
	requireClosed(t, named)
}

func TestWatchRefused(t *testing.T) {
	m := newMemory(t, miniredis.RunT(t).Addr())
	_, err := m.Watch(ctx)
	require.ErrorContains(t, err, "CLIENT TRACKING")
	var reply redis.Error
	require.ErrorAs(t, err, &reply, "the server's refusal")

	_, err = m.Watch(ctx, "a:b")
	require.ErrorIs(t, err, memory.ErrInvalidName)
}

func TestWatchClose(t *testing.T) {
	srv := redisserver.Start(t)
	client := rawClient(t, srv.Addr)
	require.NoError(t, client.Ping(ctx).Err())
	before := goroutines()
	m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix("test:"))
	require.NoError(t, err)
	ch, err := m.Watch(ctx)
	require.NoError(t, err)
	require.NoError(t, m.Close())
	requireClosed(t, ch)
	requireGoroutines(t, before)
	_, err = m.Watch(ctx)
	require.ErrorIs(t, err, memory.ErrClosed)
}

// TestWatchReconnects kills the watcher's connection and writes while it
// connects again: the watch still ends with the final values.
func TestWatchReconnects(t *testing.T) {
	srv := redisserver.Start(t)
	m := newMemory(t, srv.Addr)
	admin := rawClient(t, srv.Addr)
	ch, err := m.Watch(t.Context(), "a", "b")
	require.NoError(t, err)
	require.NoError(t, m.Set(ctx, "a", 0))
	require.True(t, holds(nextChange(t, ch), "a", "0"))

	for round := range 3 {
		killed, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		require.NoError(t, err)
		require.Equal(t, int64(1), killed, "the fault: the tracking connection killed")
		for i := range 50 {
			require.NoError(t, m.Set(ctx, "a", round*100+i))
			require.NoError(t, admin.Set(ctx, "test:b", strconv.Itoa(round*100+i), 0).Err())
		}
		lastA, lastB := strconv.Itoa(round*100+49), strconv.Itoa(round*100+49)
		gotA, gotB := false, false
		untilChange(t, ch, func(c memory.Change) bool {
			gotA = gotA || holds(c, "a", lastA)
			gotB = gotB || c.Name == "b" && json.Valid(c.Value) && string(c.Value) == lastB
			return gotA && gotB
		})
	}
}

// untilStates receives changes of ch until the last one of each name of
// want says what want does: its JSON value, or "" for none.
func untilStates(t *testing.T, ch <-chan memory.Change, want map[string]string) {
	t.Helper()
	last := map[string]string{}
	matches := func() bool {
		for name, v := range want {
			if got, ok := last[name]; !ok && v != "" || got != v {
				return false
			}
		}
		return true
	}
	deadline := time.After(watchFor)
	for !matches() {
		select {
		case c, open := <-ch:
			require.True(t, open, "the channel closed")
			last[c.Name] = string(c.Value)
		case <-deadline:
			require.FailNow(t, "not all final states within "+watchFor.String(), "last %v, want %v", last, want)
		}
	}
}

func TestWatchCluster(t *testing.T) {
	cluster := redisserver.StartCluster(t, 3)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs})
	t.Cleanup(func() { client.Close() })
	m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix("watch:"))
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	ch, err := m.Watch(t.Context())
	require.NoError(t, err)

	write := func(base int) map[string]string {
		want := map[string]string{}
		for i := range 30 {
			name := fmt.Sprintf("k%02d", i)
			require.NoError(t, m.Set(ctx, name, base+i))
			want[name] = strconv.Itoa(base + i)
		}
		return want
	}
	untilStates(t, ch, write(0))
	requireSpread(t, client, "watch:")

	var killed atomic.Int64
	require.NoError(t, client.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		n, err := node.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		killed.Add(n)
		return err
	}))
	require.Equal(t, int64(3), killed.Load(), "the fault: one tracking connection per master killed")
	want := write(100)
	require.NoError(t, client.Set(ctx, "watch:k00", `{"value": "raw", "last_modified": 1}`, 0).Err())
	want["k00"] = `"raw"`
	untilStates(t, ch, want)
}

func TestWatchSentinelFailover(t *testing.T) {
	s, m := sentinelMemory(t)
	ch, err := m.Watch(t.Context(), "a")
	require.NoError(t, err)
	require.NoError(t, m.Set(ctx, "a", 1))
	untilStates(t, ch, map[string]string{"a": "1"})

	s.Master.Stop()
	promoted := rawClient(t, s.Replica.Addr)
	requireEventually(t, 30*time.Second, func() bool {
		role, err := promoted.Do(ctx, "ROLE").Slice()
		return err == nil && role[0] == "master"
	}, "the replica is promoted")
	require.NoError(t, promoted.Set(ctx, "test:a", `{"value": 2, "last_modified": 2}`, 0).Err())
	untilStates(t, ch, map[string]string{"a": "2"})
	require.NoError(t, m.Set(ctx, "a", 3))
	untilStates(t, ch, map[string]string{"a": "3"})
}

// TestWatchSlowConsumer writes while one watch's consumer does not
// receive: the writes and the other watch go on, and the slow consumer then
// gets the final value after at most one older one.
func TestWatchSlowConsumer(t *testing.T) {
	srv := redisserver.Start(t)
	m := newMemory(t, srv.Addr)
	slow, err := m.Watch(t.Context(), "x")
	require.NoError(t, err)
	fast, err := m.Watch(t.Context(), "x")
	require.NoError(t, err)
	for i := range 500 {
		require.NoError(t, m.Set(ctx, "x", i))
	}
	untilStates(t, fast, map[string]string{"x": "499"})

	received := 0
	untilChange(t, slow, func(c memory.Change) bool {
		received++
		return holds(c, "x", "499")
	})
	require.LessOrEqual(t, received, 2, "the pending changes merged")
}

// TestWatchBlackhole cuts the link of the watch without closing it, while
// another client writes: the watch, whose pings go unanswered, connects
// again, and once the link is back tells the final values.
func TestWatchBlackhole(t *testing.T) {
	srv := redisserver.Start(t)
	proxy := faultproxy.Start(t, srv.Addr)
	m := newMemory(t, proxy.Addr())
	admin := rawClient(t, srv.Addr)
	ch, err := m.Watch(t.Context())
	require.NoError(t, err)
	require.NoError(t, admin.Set(ctx, "test:a", "0", 0).Err())
	untilStates(t, ch, map[string]string{"a": "0"})

	accepted := proxy.Stats().Accepted
	proxy.Blackhole(true)
	for i := range 20 {
		require.NoError(t, admin.Set(ctx, "test:a", strconv.Itoa(i+1), 0).Err())
		require.NoError(t, admin.Set(ctx, fmt.Sprintf("test:k%d", i), "1", 0).Err())
	}
	requireEventually(t, watchFor, func() bool { return proxy.Stats().BlackholedBytes > 0 }, "the fault: changes told into the hole")
	requireEventually(t, watchFor, func() bool { return proxy.Stats().Accepted > accepted }, "the watch connects again")
	proxy.Blackhole(false)
	want := map[string]string{"a": "20"}
	for i := range 20 {
		want[fmt.Sprintf("k%d", i)] = "1"
	}
	untilStates(t, ch, want)
}
