package memory_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
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
// and raw go-redis doing the same JSON work over the same pipeliner, for
// Set both with a plain SET and with the Memory's own script. It reports
// each variant's operations per second, and how many times the pipelined
// Memory's throughput is the plain one's and raw's.
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
	// rawPut is a Set's own command: the last-writer-wins script that the
	// Memory runs, run raw over the same pipeliner.
	sha, err := client.ScriptLoad(ctx, memory.OpsLua).Result()
	if err != nil {
		b.Fatal(err)
	}
	rawPut := func() error {
		stamp := time.Now().UnixNano()
		data, err := json.Marshal(rawEnvelope{benchValue, stamp})
		if err != nil {
			return err
		}
		return ap.EvalSha(ctx, sha, []string{"memory:bench"}, "put", "", 0, stamp, -1, data).Err()
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
		rawScript        func() error // nil: raw is the same command
	}{
		{"set", set(plain), set(pipelined), rawSet, rawPut},
		{"get", get(plain), get(pipelined), rawGet, nil},
	} {
		for _, goroutines := range []int{1, 64, 256} {
			b.Run(fmt.Sprintf("op=%s/goroutines=%d", op.name, goroutines), func(b *testing.B) {
				variants := []func() error{op.plain, op.pipe, op.raw}
				if op.rawScript != nil {
					variants = append(variants, op.rawScript)
				}
				spent := runRounds(b, goroutines, variants...)
				rounds := float64(b.N) * throughputOps
				b.ReportMetric(rounds/spent[0].Seconds(), "plain-ops/s")
				b.ReportMetric(rounds/spent[1].Seconds(), "pipelined-ops/s")
				b.ReportMetric(rounds/spent[2].Seconds(), "raw-pipelined-ops/s")
				b.ReportMetric(float64(spent[0])/float64(spent[1]), "pipelined/plain-speedup")
				b.ReportMetric(float64(spent[1])/float64(spent[2]), "pipelined/raw-time")
				if op.rawScript != nil {
					b.ReportMetric(rounds/spent[3].Seconds(), "raw-script-ops/s")
					b.ReportMetric(float64(spent[1])/float64(spent[3]), "pipelined/raw-script-time")
				}
			})
		}
	}
}

// runRounds runs each of fns, as runConcurrently does, once per round until
// b is done, and returns the time each took in all. Each round starts with
// the next one, so that none always runs after the same other one, in its
// garbage.
func runRounds(b *testing.B, goroutines int, fns ...func() error) []time.Duration {
	spent := make([]time.Duration, len(fns))
	for round := 0; b.Loop(); round++ {
		for j := range fns {
			i := (round + j) % len(fns)
			spent[i] += runConcurrently(b, goroutines, fns[i])
		}
	}
	return spent
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
// machine, whatever the client: redis-benchmark's SET and GET, and the
// script's put that every Set runs, from 64 connections, 16 commands in
// flight on each.
func BenchmarkServerCeiling(b *testing.B) {
	srv := redisserver.Start(b)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { admin.Close() })
	sha, err := admin.ScriptLoad(ctx, memory.OpsLua).Result()
	if err != nil {
		b.Fatal(err)
	}
	envelope, err := json.Marshal(rawEnvelope{benchValue, time.Now().UnixNano()})
	if err != nil {
		b.Fatal(err)
	}
	// Each put writes: redis-benchmark gives every call another number, of
	// the same length, so that the key never holds the put's value already.
	changing := fmt.Sprintf(`{"value": __rand_int__, "last_modified": %d}`, time.Now().UnixNano())
	host, port, _ := strings.Cut(srv.Addr, ":")
	bench := func(args ...string) float64 {
		args = append([]string{"-h", host, "-p", port, "-c", "64", "-P", "16", "-n", "500000", "--csv"}, args...)
		out, err := exec.Command("redis-benchmark", args...).CombinedOutput()
		if err != nil {
			b.Fatalf("redis-benchmark: %v: %s", err, out)
		}
		// The last line's last seven fields: rps, then six latencies.
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		fields := strings.Split(lines[len(lines)-1], `","`)
		if len(fields) < 8 {
			b.Fatalf("redis-benchmark: no result in %q", out)
		}
		rps, err := strconv.ParseFloat(fields[len(fields)-7], 64)
		if err != nil {
			b.Fatalf("redis-benchmark: %v in %q", err, out)
		}
		return rps
	}
	for b.Loop() {
		b.ReportMetric(bench("SET", "memory:k", string(envelope)), "set-ops/s")
		b.ReportMetric(bench("GET", "memory:k"), "get-ops/s")
		stamp := strconv.FormatInt(time.Now().UnixNano(), 10)
		b.ReportMetric(bench("EVALSHA", sha, "1", "memory:k", "put", "", "0", stamp, "-1", changing), "script-put-ops/s")
	}
}

// BenchmarkFullDuplex runs raw go-redis GETs from 64 and 256 goroutines
// over the pipeliner's deferred face, half duplex as the Memory uses it
// and full duplex, in paired rounds, and reports how many times full
// duplex's throughput is half duplex's.
func BenchmarkFullDuplex(b *testing.B) {
	srv := redisserver.Start(b)
	pipeliner := func(fullDuplex bool) *redis.AutoPipeliner {
		client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
		b.Cleanup(func() { client.Close() })
		opts := redis.DefaultAutoPipelineOptions()
		opts.FullDuplex = fullDuplex
		ap, err := client.AsyncAutoPipelineWithOptions(opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ap.Close() })
		return ap
	}
	half, full := pipeliner(false), pipeliner(true)
	if err := half.Set(ctx, "memory:bench", "x", 0).Err(); err != nil {
		b.Fatal(err)
	}
	get := func(ap *redis.AutoPipeliner) func() error {
		return func() error { return ap.Get(ctx, "memory:bench").Err() }
	}
	for _, goroutines := range []int{64, 256} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			spent := runRounds(b, goroutines, get(half), get(full))
			rounds := float64(b.N) * throughputOps
			b.ReportMetric(rounds/spent[0].Seconds(), "half-duplex-ops/s")
			b.ReportMetric(rounds/spent[1].Seconds(), "full-duplex-ops/s")
			b.ReportMetric(float64(spent[0])/float64(spent[1]), "full/half-speedup")
		})
	}
}
