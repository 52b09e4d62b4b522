package memory_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// throughputOps is how many operations each variant runs per round of
// BenchmarkThroughput, spread over its goroutines.
const throughputOps = 20_000

// BenchmarkThroughput runs Set and Get from 1, 64 and 256 goroutines at
// once, in paired rounds: a Memory without auto-pipelining, one with it,
// and raw go-redis doing the same JSON work over the same pipeliner. It
// reports each variant's operations per second, and how many times the
// pipelined Memory's throughput is the plain one's and raw's.
func BenchmarkThroughput(b *testing.B) {
	srv := redisserver.Start(b)
	url := "redis://" + srv.Addr
	plain := benchNew(b, memory.WithURL(url), memory.WithPrefix("memory:"))
	pipelined := benchNew(b, memory.WithURL(url), memory.WithPrefix("memory:"), memory.WithAutoPipeline(true))
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { client.Close() })
	ap, err := client.AsyncAutoPipeline()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ap.Close() })
	if err := plain.Set(ctx, "bench", benchValue); err != nil {
		b.Fatal(err)
	}
	rawSet := func() error {
		data, err := json.Marshal(rawEnvelope{benchValue, time.Now().UnixNano()})
		if err != nil {
			return err
		}
		return ap.Set(ctx, "memory:bench", data, 0).Err()
	}
	rawGet := func() error {
		data, err := ap.Get(ctx, "memory:bench").Bytes()
		if err != nil {
			return err
		}
		var e rawEnvelope
		return json.Unmarshal(data, &e)
	}
	set := func(m *memory.Memory) func() error { return func() error { return m.Set(ctx, "bench", benchValue) } }
	get := func(m *memory.Memory) func() error {
		return func() error { _, err := memory.GetAs[settings](ctx, m, "bench"); return err }
	}
	for _, op := range []struct {
		name             string
		plain, pipe, raw func() error
	}{
		{"set", set(plain), set(pipelined), rawSet},
		{"get", get(plain), get(pipelined), rawGet},
	} {
		for _, goroutines := range []int{1, 64, 256} {
			b.Run(fmt.Sprintf("op=%s/goroutines=%d", op.name, goroutines), func(b *testing.B) {
				var spent [3]time.Duration
				for b.Loop() {
					for i, fn := range []func() error{op.plain, op.pipe, op.raw} {
						spent[i] += runConcurrently(b, goroutines, fn)
					}
				}
				rounds := float64(b.N) * throughputOps
				b.ReportMetric(rounds/spent[0].Seconds(), "plain-ops/s")
				b.ReportMetric(rounds/spent[1].Seconds(), "pipelined-ops/s")
				b.ReportMetric(rounds/spent[2].Seconds(), "raw-pipelined-ops/s")
				b.ReportMetric(float64(spent[0])/float64(spent[1]), "pipelined/plain-speedup")
				b.ReportMetric(float64(spent[1])/float64(spent[2]), "pipelined/raw-time")
			})
		}
	}
}

// runConcurrently runs fn throughputOps times from goroutines goroutines,
// and returns how long it took.
func runConcurrently(b *testing.B, goroutines int, fn func() error) time.Duration {
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	start := time.Now()
	for g := range goroutines {
		wg.Go(func() {
			for i := g; i < throughputOps; i += goroutines {
				if err := fn(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return elapsed
}

// benchNew returns a Memory of opts, closed when the benchmark ends.
func benchNew(b *testing.B, opts ...memory.Option) *memory.Memory {
	b.Helper()
	m, err := memory.New(ctx, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// BenchmarkServerCeiling measures the most the server answers on this
// machine, whatever the client: redis-benchmark's SET and GET from 64
// connections, 16 commands in flight on each.
func BenchmarkServerCeiling(b *testing.B) {
	srv := redisserver.Start(b)
	host, port, _ := strings.Cut(srv.Addr, ":")
	for b.Loop() {
		out, err := exec.Command("redis-benchmark", "-h", host, "-p", port, "-c", "64", "-P", "16", "-n", "500000", "-t", "set,get", "-q").CombinedOutput()
		if err != nil {
			b.Fatalf("redis-benchmark: %v: %s", err, out)
		}
		for _, m := range regexp.MustCompile(`(SET|GET): ([0-9.]+) requests per second`).FindAllStringSubmatch(string(out), -1) {
			rps, _ := strconv.ParseFloat(m[2], 64)
			b.ReportMetric(rps, strings.ToLower(m[1])+"-ops/s")
		}
	}
}
