package memory_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// TestTenThousandTenants keeps a Memory per tenant for 10,000 tenants over
// one client: each costs a few hundred bytes and no goroutine, and using them
// all at once keeps the connections within the client's pool.
func TestTenThousandTenants(t *testing.T) {
	const tenants, workers, poolSize = 10_000, 64, 10
	t.Setenv("MEMORY_AUTOPIPELINE", "") // it starts goroutines, once per client
	srv := redisserver.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: poolSize})
	t.Cleanup(func() { client.Close() })
	goroutines := runtime.NumGoroutine()
	before := heapInUse()
	ms := make([]*memory.Memory, tenants)
	for i := range ms {
		m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix(fmt.Sprintf("tenant_%d:", i)))
		require.NoError(t, err)
		ms[i] = m
	}
	perTenant := (heapInUse() - before) / tenants // less than 0 when an earlier test's garbage went meanwhile
	t.Logf("one Memory per tenant: %d bytes of heap, %d goroutines more for %d tenants",
		perTenant, runtime.NumGoroutine()-goroutines, tenants)
	require.Less(t, perTenant, int64(2048))
	require.LessOrEqual(t, runtime.NumGoroutine(), goroutines, "a Memory starts no goroutine (one of an earlier test may end meanwhile)")
	require.Zero(t, client.PoolStats().TotalConns, "and opens no connection")

	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < tenants; i += workers {
				if err := ms[i].Set(ctx, "data", i); err != nil {
					errs[w] = err
					return
				}
				if _, err := memory.GetAs[int](ctx, ms[i], "data"); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	stats := client.PoolStats()
	t.Logf("connections after %d tenants wrote and read from %d goroutines: %d (pool size %d)", tenants, workers, stats.TotalConns, poolSize)
	require.LessOrEqual(t, stats.TotalConns, uint32(poolSize))
	requireValue(t, ms[tenants-1], "data", tenants-1)
	for _, m := range ms {
		require.NoError(t, m.Close())
	}
}

// heapInUse returns the bytes of live heap, after a collection.
func heapInUse() int64 {
	runtime.GC()
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	return int64(stats.HeapAlloc)
}

// BenchmarkNewTenant measures the cost of a Memory for one more tenant over
// a shared client.
func BenchmarkNewTenant(b *testing.B) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer client.Close()
	b.ReportAllocs()
	for b.Loop() {
		m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix("tenant_1:"))
		if err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
}
