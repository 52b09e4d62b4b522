package memory_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// TestAutoPipeline runs 64 goroutines that write and read names of their
// own through a Memory with auto-pipelining, on a server and on a cluster:
// every read sees its goroutine's last write, and Close stops the
// pipeliner's goroutines.
func TestAutoPipeline(t *testing.T) {
	for name, client := range map[string]func(t *testing.T) redis.UniversalClient{
		"redis-server": func(t *testing.T) redis.UniversalClient {
			return rawClient(t, redisserver.Start(t).Addr)
		},
		"cluster": func(t *testing.T) redis.UniversalClient {
			c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redisserver.StartCluster(t, 3).Addrs})
			t.Cleanup(func() { c.Close() })
			return c
		},
	} {
		t.Run(name, func(t *testing.T) {
			client := client(t)
			require.NoError(t, client.Ping(ctx).Err())
			before := goroutines()
			m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix("{pipe}:"), memory.WithAutoPipeline(true))
			require.NoError(t, err)
			concurrently(t, 64, func(g int) error {
				name := fmt.Sprint("g", g)
				for i := range 50 {
					if err := m.Set(ctx, name, i); err != nil {
						return err
					}
					got, err := memory.GetAs[int](ctx, m, name)
					if err == nil && got != i {
						err = fmt.Errorf("%s: read %d after writing %d", name, got, i)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
			type pair struct{ A, B int }
			require.NoError(t, m.Save(ctx, &pair{1, 2}))
			var got pair
			require.NoError(t, m.Load(ctx, &got))
			require.Equal(t, pair{1, 2}, got)
			n, err := m.Incr(ctx, "n", 5)
			require.NoError(t, err)
			require.Equal(t, int64(5), n)

			require.NoError(t, m.Close())
			requireGoroutines(t, before)
		})
	}
}

// TestAutoPipelineRing asks for auto-pipelining over a client go-redis has
// no pipeliner for: New says so.
func TestAutoPipelineRing(t *testing.T) {
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": miniredisAddr(t)}})
	t.Cleanup(func() { ring.Close() })
	_, err := memory.New(ctx, memory.WithClient(ring), memory.WithAutoPipeline(true))
	require.ErrorContains(t, err, "WithAutoPipeline")
	require.ErrorContains(t, err, "*redis.Ring")
}

// TestBatchedPuts runs 64 goroutines of Sets and Deletes through a Memory
// with auto-pipelining and a default TTL, whose concurrent puts go to the
// server in batches: each name holds its goroutine's last write, with the
// TTL; a name first held by a hash is replaced; a name holding a value newer
// than every Set keeps it; and Close stops the batches' goroutines.
func TestBatchedPuts(t *testing.T) {
	srv := redisserver.Start(t)
	client := rawClient(t, srv.Addr)
	require.NoError(t, client.HSet(ctx, "batch:g0", "f", "v").Err())
	future := fmt.Sprintf(`{"value": "future", "last_modified": %d}`, time.Now().Add(time.Hour).UnixNano())
	require.NoError(t, client.Set(ctx, "batch:newer", future, 0).Err())
	before := goroutines()
	m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix("batch:"),
		memory.WithAutoPipeline(true), memory.WithDefaultTTL(time.Hour))
	require.NoError(t, err)
	batches := &batchCounter{}
	memory.PipelineHook(m, batches)

	const n = 50
	concurrently(t, 64, func(g int) error {
		name := fmt.Sprint("g", g)
		for i := range n {
			if err := m.Set(ctx, name, i); err != nil {
				return err
			}
			if err := m.Set(ctx, "newer", g); err != nil {
				return err
			}
		}
		if g%2 == 1 {
			return m.Delete(ctx, name)
		}
		return nil
	})
	require.NoError(t, m.Close())
	requireGoroutines(t, before)

	t.Logf("batches %d of %d puts", batches.calls.Load(), batches.puts.Load())
	require.Positive(t, batches.calls.Load(), "puts went in batches")
	for g := range 64 {
		key := fmt.Sprint("batch:g", g)
		if g%2 == 1 {
			require.Zero(t, client.Exists(ctx, key).Val(), "%s: deleted last", key)
			continue
		}
		require.JSONEq(t, fmt.Sprint(n-1), storedValue(t, client, key), "%s: its last Set", key)
		ttl := client.PTTL(ctx, key).Val()
		require.True(t, ttl > 0 && ttl <= time.Hour, "%s: PTTL %v, the default TTL", key, ttl)
	}
	require.Equal(t, future, client.Get(ctx, "batch:newer").Val(), "no Set was newer")
}

// TestBatchedTenants runs 64 goroutines of Sets through 16 tenants over one
// client with auto-pipelining: the tenants' puts share batches. Once half
// of the tenants are closed, the others' puts still go in batches, and
// closing the last one stops the batches' goroutines. Each name holds its
// goroutine's last write.
func TestBatchedTenants(t *testing.T) {
	srv := redisserver.Start(t)
	client := rawClient(t, srv.Addr)
	before := goroutines()
	tenants := make([]*memory.Memory, 16)
	for i := range tenants {
		m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix(fmt.Sprintf("t%d:", i)), memory.WithAutoPipeline(true))
		require.NoError(t, err)
		tenants[i] = m
	}
	batches := &batchCounter{}
	memory.PipelineHook(tenants[0], batches)
	// sets runs 64 goroutines of n Sets each, of i, to the name of the
	// goroutine in each of tenants in turn.
	const n = 50
	sets := func(tenants []*memory.Memory) {
		concurrently(t, 64, func(g int) error {
			for i := range n {
				if err := tenants[(g+i)%len(tenants)].Set(ctx, fmt.Sprint("g", g), i); err != nil {
					return err
				}
			}
			return nil
		})
	}

	sets(tenants)
	t.Logf("batches %d of %d puts, %d of more than one tenant", batches.calls.Load(), batches.puts.Load(), batches.mixed.Load())
	require.Positive(t, batches.mixed.Load(), "the tenants' puts shared batches")
	for _, m := range tenants[:8] {
		require.NoError(t, m.Close())
	}
	calls := batches.calls.Load()
	sets(tenants[8:])
	require.Greater(t, batches.calls.Load(), calls, "the tenants left still batch")
	for _, m := range tenants[8:] {
		require.NoError(t, m.Close())
	}
	requireGoroutines(t, before)

	for g := range 64 {
		last := n - 1 // the last Set of g, to tenants[8:] in turn
		tenant := 8 + (g+last)%8
		key := fmt.Sprintf("t%d:g%d", tenant, g)
		require.JSONEq(t, fmt.Sprint(last), storedValue(t, client, key), "%s: its last Set", key)
	}
}
