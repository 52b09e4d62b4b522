package memory_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// cachedMemory returns a Memory of prefix "test:" with a local cache of
// 1,000 entries over client, and opts, closed when the test ends.
func cachedMemory(t *testing.T, client redis.UniversalClient, opts ...memory.Option) *memory.Memory {
	t.Helper()
	m, err := memory.New(ctx, append([]memory.Option{memory.WithClient(client), memory.WithPrefix("test:"), memory.WithLocalCache(1000)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// untilHit reads with read until the read is a hit of m's cache that says
// want, so that the cache holds want: another client's write is seen once
// the server's word of it comes in.
func untilHit(t *testing.T, m *memory.Memory, read func() string, want string) {
	t.Helper()
	for deadline := time.Now().Add(watchFor); time.Now().Before(deadline); {
		hits := m.Stats().CacheHits
		got := read()
		if got == want && m.Stats().CacheHits > hits {
			return
		}
	}
	t.Fatalf("the cache never answered %s: %s, %+v", want, read(), m.Stats())
}

// A cacheCase is a kind of write, and how a reader sees the name it writes.
type cacheCase struct {
	name   string
	key    string             // written before each trial by another client
	before func(i int) string // the JSON value it then holds
	write  func(m *memory.Memory, i int) error
	read   func(m *memory.Memory) string
	want   func(i int) string // what read says after write
}

func cacheCases() []cacheCase {
	getInt := func(name string) func(m *memory.Memory) string {
		return func(m *memory.Memory) string {
			n, err := memory.GetAs[int](ctx, m, name)
			if errors.Is(err, memory.ErrNotFound) {
				return "absent"
			}
			if err != nil {
				return err.Error()
			}
			return strconv.Itoa(n)
		}
	}
	itoa := strconv.Itoa
	next := func(i int) string { return itoa(i + 1) }
	absent := func(int) string { return "absent" }
	type saved struct {
		N int `memory:"saved"`
	}
	return []cacheCase{
		{"Set", "test:n", itoa, func(m *memory.Memory, i int) error { return m.Set(ctx, "n", i+1) }, getInt("n"), next},
		{"Delete", "test:n", itoa, func(m *memory.Memory, i int) error { return m.Delete(ctx, "n") }, getInt("n"), absent},
		{"Update", "test:n", itoa, func(m *memory.Memory, i int) error {
			return memory.Update(ctx, m, "n", func(n *int) error { *n++; return nil })
		}, getInt("n"), next},
		{"Save", "test:saved", itoa, func(m *memory.Memory, i int) error { return m.Save(ctx, &saved{N: i + 1}) },
			func(m *memory.Memory) string {
				var s saved
				if err := m.Load(ctx, &s); err != nil {
					return err.Error()
				}
				return itoa(s.N)
			}, next},
		{"List", "test:list", func(i int) string { return fmt.Sprintf("[%d]", i) },
			func(m *memory.Memory, i int) error { return memory.ListOf[int](m, "list").Append(ctx, i+1) },
			func(m *memory.Memory) string {
				all, err := memory.ListOf[int](m, "list").All(ctx)
				if err != nil {
					return err.Error()
				}
				return fmt.Sprint(all)
			}, func(i int) string { return fmt.Sprintf("[%d %d]", i, i+1) }},
		{"Map", "test:map", func(i int) string { return fmt.Sprintf(`{"a": %d}`, i) },
			func(m *memory.Memory, i int) error { return memory.MapOf[int](m, "map").Set(ctx, "b", i+1) },
			func(m *memory.Memory) string {
				all, err := memory.MapOf[int](m, "map").All(ctx)
				if err != nil {
					return err.Error()
				}
				return fmt.Sprint(all)
			}, func(i int) string { return fmt.Sprintf("map[a:%d b:%d]", i, i+1) }},
		{"Incr", "test:n", itoa, func(m *memory.Memory, i int) error { _, err := m.Incr(ctx, "n", 1); return err }, getInt("n"), next},
		{"SetTTL", "test:n", itoa, func(m *memory.Memory, i int) error { return m.SetTTL(ctx, "n", i+1, time.Hour) }, getInt("n"), next},
		{"Restore", "test:n", itoa, func(m *memory.Memory, i int) error {
			_, err := m.Restore(ctx, map[string]memory.Record{"n": {Value: json.RawMessage(next(i)), LastModified: time.Now().UnixNano()}}, true)
			return err
		}, getInt("n"), next},
		{"Clear", "test:n", itoa, func(m *memory.Memory, i int) error { _, err := m.Clear(ctx); return err }, getInt("n"), absent},
	}
}

// TestLocalCacheReadsYourWrites writes each kind of write while the cache
// holds the value before it, through the reading Memory and through another
// one over the same client, and reads at once: never the value before.
func TestLocalCacheReadsYourWrites(t *testing.T) {
	const trials = 300
	srv := redisserver.Start(t)
	client := rawClient(t, srv.Addr)
	other := rawClient(t, srv.Addr)
	plain := newMemory(t, srv.Addr) // no cache: what the server holds
	reader := cachedMemory(t, client)
	writers := map[string]*memory.Memory{"same Memory": reader, "other Memory": cachedMemory(t, client)}
	for _, tc := range cacheCases() {
		for via, writer := range writers {
			t.Run(tc.name+"/"+via, func(t *testing.T) {
				stale := 0
				for i := range trials {
					require.NoError(t, other.Set(ctx, tc.key, envelope(tc.before(i), time.Now().UnixNano()), 0).Err())
					untilHit(t, reader, func() string { return tc.read(reader) }, tc.read(plain))
					require.NoError(t, tc.write(writer, i))
					if got := tc.read(reader); got != tc.want(i) {
						stale++
						t.Logf("trial %d: read %s, want %s", i, got, tc.want(i))
					}
				}
				require.Zero(t, stale, "stale reads in %d trials", trials)
			})
		}
	}
}

// TestLocalCacheHotLoop reads one name 1,000 times: the first read asks
// the server, the others do not.
func TestLocalCacheHotLoop(t *testing.T) {
	srv := redisserver.Start(t)
	m, hook := countedMemory(t, srv.Addr, memory.WithLocalCache(100))
	t.Cleanup(func() { m.Close() })
	require.NoError(t, m.Set(ctx, "hot", "value"))
	hook.reset()
	for range 1000 {
		v, err := memory.GetAs[string](ctx, m, "hot")
		require.NoError(t, err)
		require.Equal(t, "value", v)
	}
	require.LessOrEqual(t, hook.commands(), 10, "commands sent for 1,000 reads")
	require.GreaterOrEqual(t, m.Stats().CacheHits, uint64(990))
}

// TestLocalCacheOtherWriter has another client write 200 times: each write
// is seen by the cached reads, which never go back to an older value once
// they saw it. BenchmarkCacheStaleness measures how soon.
func TestLocalCacheOtherWriter(t *testing.T) {
	srv := redisserver.Start(t)
	m := cachedMemory(t, rawClient(t, srv.Addr))
	other := rawClient(t, srv.Addr)
	for i := range 200 {
		require.NoError(t, other.Set(ctx, "test:n", envelope(strconv.Itoa(i), time.Now().UnixNano()), 0).Err())
		untilHit(t, m, func() string {
			n, err := memory.GetAs[int](ctx, m, "n")
			require.NoError(t, err)
			require.GreaterOrEqual(t, n, i-1, "an older value came back")
			return strconv.Itoa(n)
		}, strconv.Itoa(i))
	}
}

// TestLocalCacheKill kills the cache's tracking connection, then another
// client writes: once the tracker saw the connection go, which it logs, no
// read answers the value from before, and the cache serves again once
// tracking is back.
func TestLocalCacheKill(t *testing.T) {
	srv := redisserver.Start(t)
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	m := cachedMemory(t, rawClient(t, srv.Addr), memory.WithLogger(logger))
	other := rawClient(t, srv.Addr)
	read := func() string {
		v, err := memory.GetAs[string](ctx, m, "k")
		require.NoError(t, err)
		return v
	}
	for round := range 3 {
		before, after := fmt.Sprintf("before %d", round), fmt.Sprintf("after %d", round)
		require.NoError(t, other.Set(ctx, "test:k", envelope(strconv.Quote(before), time.Now().UnixNano()), 0).Err())
		untilHit(t, m, read, before)
		seen := strings.Count(logs.String(), "tracking of changes interrupted")

		killed, err := other.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		require.NoError(t, err)
		require.Equal(t, int64(1), killed, "the fault: the tracking connection killed")
		require.NoError(t, other.Set(ctx, "test:k", envelope(strconv.Quote(after), time.Now().UnixNano()), 0).Err())
		require.Eventually(t, func() bool { return strings.Count(logs.String(), "tracking of changes interrupted") > seen },
			watchFor, time.Millisecond, "the tracker saw the connection go")
		for range 100 {
			require.Equal(t, after, read(), "a stale read after the tracker saw the connection go")
		}
		untilHit(t, m, read, after)
	}
}

// TestLocalCacheCopies reads values of a type without pointers, cached
// decoded, and of one with a slice, cached as bytes: a caller changing what
// it got changes nothing for the next.
func TestLocalCacheCopies(t *testing.T) {
	srv := redisserver.Start(t)
	m := cachedMemory(t, rawClient(t, srv.Addr))
	type point struct {
		X, Y int
		Name string
		Tags [2]string
	}
	require.NoError(t, m.Set(ctx, "p", point{1, 2, "a", [2]string{"x", "y"}}))
	require.NoError(t, m.Set(ctx, "s", []int{1, 2, 3}))
	for range 3 {
		p, err := memory.GetAs[point](ctx, m, "p")
		require.NoError(t, err)
		require.Equal(t, point{1, 2, "a", [2]string{"x", "y"}}, p)
		p.X, p.Tags[0] = 100, "changed"

		s, err := memory.GetAs[[]int](ctx, m, "s")
		require.NoError(t, err)
		require.Equal(t, []int{1, 2, 3}, s)
		s[0] = 100
	}
	// Get decodes into what dst holds, as json.Unmarshal does: a field
	// the value does not name keeps its value.
	require.NoError(t, m.Set(ctx, "partial", map[string]int{"X": 5}))
	for range 3 {
		p := point{Y: 7}
		require.NoError(t, m.Get(ctx, "partial", &p))
		require.Equal(t, point{X: 5, Y: 7}, p)
	}
	require.Positive(t, m.Stats().CacheHits)
}

// TestLocalCacheBound reads 100 names through a cache of 10 entries: at
// most 10 are answered from it on a second pass, and every read is right.
func TestLocalCacheBound(t *testing.T) {
	srv := redisserver.Start(t)
	m := cachedMemory(t, rawClient(t, srv.Addr), memory.WithLocalCache(10))
	for i := range 100 {
		require.NoError(t, m.Set(ctx, fmt.Sprint("n", i), i))
	}
	pass := func() uint64 {
		hits := m.Stats().CacheHits
		for i := range 100 {
			n, err := memory.GetAs[int](ctx, m, fmt.Sprint("n", i))
			require.NoError(t, err)
			require.Equal(t, i, n)
		}
		return m.Stats().CacheHits - hits
	}
	pass()
	require.LessOrEqual(t, pass(), uint64(10))
}

// TestLocalCacheExpiry reads a value another client wrote with a TTL: the
// cache answers it until it expires, and not after.
func TestLocalCacheExpiry(t *testing.T) {
	srv := redisserver.Start(t)
	m := cachedMemory(t, rawClient(t, srv.Addr))
	other := rawClient(t, srv.Addr)
	require.NoError(t, other.Set(ctx, "test:k", envelope(`"soon gone"`, 1), 300*time.Millisecond).Err())
	read := func() string {
		v, err := memory.GetAs[string](ctx, m, "k")
		if errors.Is(err, memory.ErrNotFound) {
			return "absent"
		}
		require.NoError(t, err)
		return v
	}
	untilHit(t, m, read, "soon gone")
	require.Eventually(t, func() bool { return read() == "absent" }, watchFor, time.Millisecond)
	require.Equal(t, "absent", read())
	exists, err := other.Exists(ctx, "test:k").Result()
	require.NoError(t, err)
	require.Zero(t, exists)
}

// TestLocalCacheRefused runs with a cache on miniredis, which refuses
// tracking: reads go to the server, and the warning says why.
func TestLocalCacheRefused(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	m := newMemory(t, miniredis.RunT(t).Addr(), memory.WithLocalCache(100), memory.WithLogger(logger))
	require.NoError(t, m.Set(ctx, "a", 1))
	for range 10 {
		n, err := memory.GetAs[int](ctx, m, "a")
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}
	require.Zero(t, m.Stats().CacheHits)
	require.Equal(t, 1, strings.Count(logs.String(), "local cache unused"), logs.String())
	require.Contains(t, logs.String(), "CLIENT TRACKING")
}

// TestLocalCacheCluster caches keys on every master of a cluster: another
// client's writes on each are seen, and this process's at once.
func TestLocalCacheCluster(t *testing.T) {
	cluster := redisserver.StartCluster(t, 3)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs})
	t.Cleanup(func() { client.Close() })
	other := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs})
	t.Cleanup(func() { other.Close() })
	m := cachedMemory(t, client)
	requireCacheFollows(t, m, other, 30)
	requireSpread(t, client, "test:")
}

// TestLocalCacheSentinel caches over a Sentinel failover client while the
// master fails: after the failover, another client's writes to the new
// master are seen, and this process's at once.
func TestLocalCacheSentinel(t *testing.T) {
	s, m := sentinelMemory(t, memory.WithLocalCache(100))
	requireCacheFollows(t, m, rawClient(t, s.Master.Addr), 5)
	s.Master.Stop()
	promoted := rawClient(t, s.Replica.Addr)
	require.NoError(t, promoted.Do(ctx, "replicaof", "no", "one").Err())
	requireCacheFollows(t, m, promoted, 5)
}

// requireCacheFollows writes n names with m and reads each from its cache,
// then has other write them all: each is seen, and a write of m right
// after is read at once.
func requireCacheFollows(t *testing.T, m *memory.Memory, other redis.Cmdable, n int) {
	t.Helper()
	read := func(name string) func() string {
		return func() string {
			v, err := memory.GetAs[string](ctx, m, name)
			if err != nil {
				return err.Error()
			}
			return v
		}
	}
	for i := range n {
		name := fmt.Sprintf("k%02d", i)
		require.Eventually(t, func() bool { return m.Set(ctx, name, "mine") == nil }, watchFor, 10*time.Millisecond)
		untilHit(t, m, read(name), "mine")
		require.NoError(t, other.Set(ctx, "test:"+name, envelope(`"theirs"`, time.Now().UnixNano()), 0).Err())
		untilHit(t, m, read(name), "theirs")
		require.NoError(t, m.Set(ctx, name, "mine again"))
		require.Equal(t, "mine again", read(name)())
	}
}

// TestLocalCacheConcurrent has 8 goroutines each write and read back a
// name of their own through one cached Memory, while another client keeps
// writing a name they all read: each reads its own writes, and no one sees
// the shared name go back to an older value.
func TestLocalCacheConcurrent(t *testing.T) {
	const workers, rounds = 8, 300
	srv := redisserver.Start(t)
	m := cachedMemory(t, rawClient(t, srv.Addr))
	other := rawClient(t, srv.Addr)
	done := make(chan struct{})
	var wrote atomic.Int64
	go func() {
		for i := 1; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if other.Set(ctx, "test:shared", envelope(strconv.Itoa(i), time.Now().UnixNano()), 0).Err() == nil {
				wrote.Store(int64(i))
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			name, last := fmt.Sprint("own", w), 0
			for i := range rounds {
				if err := m.Set(ctx, name, i); err != nil {
					errs <- err
					return
				}
				got, err := memory.GetAs[int](ctx, m, name)
				if err != nil || got != i {
					errs <- fmt.Errorf("%s: read %d (%v) after writing %d", name, got, err, i)
					return
				}
				shared, err := memory.GetAs[int](ctx, m, "shared")
				if err != nil && !errors.Is(err, memory.ErrNotFound) || shared < last {
					errs <- fmt.Errorf("shared: read %d (%v) after %d", shared, err, last)
					return
				}
				last = shared
			}
		})
	}
	wg.Wait()
	close(done)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Positive(t, wrote.Load(), "the other writer wrote")
	require.Positive(t, m.Stats().CacheHits)
}
