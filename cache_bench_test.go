package memory_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// BenchmarkCache compares hot reads from the local cache with one raw
// go-redis GET round trip: of a struct without pointers, which the cache
// keeps decoded (GetAs), and of a map, which it keeps as bytes and decodes
// at every read (Get). The paired ratios read "raw-get/NAME": how many
// times faster than the round trip.
func BenchmarkCache(b *testing.B) {
	srv := redisserver.Start(b)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { client.Close() })
	m := benchNew(b, memory.WithClient(client), memory.WithPrefix("memory:"), memory.WithLocalCache(100))
	doc := map[string]any{"theme": "dark", "volume": 0.75, "langs": []any{"en", "fr"}}
	if err := m.Set(ctx, "struct", benchValue); err != nil {
		b.Fatal(err)
	}
	if err := m.Set(ctx, "map", doc); err != nil {
		b.Fatal(err)
	}
	compare(b,
		variant{"raw-get", func() error { return client.Get(ctx, "memory:struct").Err() }},
		variant{"getas-struct", func() error { _, err := memory.GetAs[settings](ctx, m, "struct"); return err }},
		variant{"get-map", func() error { var v map[string]any; return m.Get(ctx, "map", &v) }},
	)
	if hits := m.Stats().CacheHits; hits == 0 {
		b.Fatal("no read was answered by the cache")
	}
}

// BenchmarkCacheStaleness has another client write a value, 200 times, and
// measures how long a process reading it from its cache keeps seeing the
// value before: from the write's reply to the first read of the new one.
func BenchmarkCacheStaleness(b *testing.B) {
	srv := redisserver.Start(b)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { client.Close() })
	other := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { other.Close() })
	m := benchNew(b, memory.WithClient(client), memory.WithPrefix("memory:"), memory.WithLocalCache(100))
	var delays []time.Duration
	i := 0
	for b.Loop() {
		i++
		want := strconv.Itoa(i)
		if err := other.Set(ctx, "memory:n", `{"value": `+want+`, "last_modified": 1}`, 0).Err(); err != nil {
			b.Fatal(err)
		}
		wrote := time.Now()
		for {
			n, err := memory.GetAs[int](ctx, m, "n")
			if err != nil {
				b.Fatal(err)
			}
			if n == i {
				break
			}
			time.Sleep(10 * time.Microsecond)
		}
		delays = append(delays, time.Since(wrote))
		// Read it once more from the cache, as a reader would between
		// writes.
		if _, err := memory.GetAs[int](ctx, m, "n"); err != nil {
			b.Fatal(err)
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(delays, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(delays, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(delays, 100)), "max-ms")
	b.ReportMetric(float64(m.Stats().CacheHits)/float64(i), "hits/write")
}
