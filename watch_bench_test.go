package memory_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-memory/memory"
)

// BenchmarkWatchLatency measures how long a change takes to reach a
// watcher from the reply of the write, and, in the same rounds, a raw GET
// round trip: a watcher learns of a change from the server, then reads the
// value, so that one round trip after the reply is the least any client can
// do. Run it with -benchtime 1000x for the 1,000 writes of the target.
func BenchmarkWatchLatency(b *testing.B) {
	m, client := benchSetup(b)
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes, err := m.Watch(wctx, "watched")
	if err != nil {
		b.Fatal(err)
	}
	var delays, trips []time.Duration
	i := 0
	for b.Loop() {
		i++
		want := strconv.Itoa(i)
		if err := m.Set(ctx, "watched", i); err != nil {
			b.Fatal(err)
		}
		wrote := time.Now()
		for c := range changes {
			if string(c.Value) == want {
				break
			}
		}
		delays = append(delays, time.Since(wrote))

		start := time.Now()
		if err := client.Get(ctx, "memory:bench").Err(); err != nil {
			b.Fatal(err)
		}
		trips = append(trips, time.Since(start))
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(delays, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(delays, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(trips, 50)), "get-p50-ms")
	b.ReportMetric(ms(percentile(trips, 99)), "get-p99-ms")
}

// percentile returns the p-th percentile of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	return s[min(len(s)-1, len(s)*p/100)]
}

// BenchmarkWatchTenants has 1,000 tenants, each a Memory of its own prefix
// over one client, watch their namespaces, then writes one value in each
// and waits for every change: it reports the server connections, the
// goroutines and the heap the watches add, per tenant where it grows with
// them, and how long the watches took to start and the changes to come.
func BenchmarkWatchTenants(b *testing.B) {
	const tenants = 1000
	_, client := benchSetup(b)
	for b.Loop() {
		before := serverClients(b, client)
		goroutines, heap := runtime.NumGoroutine(), heapInUse()
		start := time.Now()
		mems := make([]*memory.Memory, tenants)
		chans := make([]<-chan memory.Change, tenants)
		for i := range mems {
			m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix(fmt.Sprintf("tenant%d:", i)))
			if err != nil {
				b.Fatal(err)
			}
			mems[i] = m
			if chans[i], err = m.Watch(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		started := time.Since(start)
		conns := serverClients(b, client) - before
		addedGoroutines := runtime.NumGoroutine() - goroutines
		addedHeap := heapInUse() - heap

		start = time.Now()
		for _, m := range mems {
			if err := m.Set(ctx, "x", 1); err != nil {
				b.Fatal(err)
			}
		}
		for i, ch := range chans {
			if c := <-ch; c.Name != "x" {
				b.Fatalf("tenant %d: %+v", i, c)
			}
		}
		told := time.Since(start)
		for _, m := range mems {
			m.Close()
		}
		b.ReportMetric(float64(conns), "conns")
		b.ReportMetric(float64(addedGoroutines)/tenants, "goroutines/tenant")
		b.ReportMetric(float64(addedHeap)/tenants, "heap-B/tenant")
		b.ReportMetric(float64(started.Milliseconds()), "start-ms")
		b.ReportMetric(float64(told.Milliseconds()), "write-and-tell-all-ms")
	}
}

// serverClients returns how many clients the server has connected.
func serverClients(b *testing.B, client *redis.Client) int {
	b.Helper()
	info, err := client.Info(ctx, "clients").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	b.Fatal("no connected_clients in INFO clients")
	return 0
}
