package memory_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// BenchmarkThroughput runs Set and Get from 1, 64 and 256 goroutines at
// once, in paired rounds: a Memory without auto-pipelining, one with it,
// and raw go-redis doing the same JSON work over the same pipeliner, for
// Set both with a plain SET and with the Memory's own script. It reports
// each variant's operations per second, and how many times the pipelined
// Memory's throughput is the plain one's and raw's; and, of the Memory's
// variants, the CPU time of each operation, the client's and the server's,
// and the operations per second that it bounds the machine's cores to.
func BenchmarkThroughput(b *testing.B) {
	srv := redisserver.Start(b)
	url := "redis://" + srv.Addr
	plain := benchNew(b, memory.WithURL(url), memory.WithPrefix("memory:"))
	pipelined := benchNew(b, memory.WithURL(url), memory.WithPrefix("memory:"), memory.WithAutoPipeline(true))
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { client.Close() })
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { admin.Close() })
	ap, err := client.AsyncAutoPipeline()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ap.Close() })
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
	set := func(m *memory.Memory) func() error { return func() error { return benchSet(m) } }
	get := func(m *memory.Memory) func() error { return func() error { return benchGet(m) } }
	for _, op := range []struct {
		name             string
		plain, pipe, raw func() error
		rawScript        func() error // nil: raw is the same command
	}{
		{"set", set(plain), set(pipelined), rawSet, rawPut(b, ap)},
		{"get", get(plain), get(pipelined), rawGet, nil},
	} {
		for _, goroutines := range []int{1, 64, 256} {
			b.Run(fmt.Sprintf("op=%s/goroutines=%d", op.name, goroutines), func(b *testing.B) {
				// Every round reads the value in the Memory's layout,
				// whatever the raw Sets before it left.
				if err := benchSet(plain); err != nil {
					b.Fatal(err)
				}
				variants := []func() error{op.plain, op.pipe, op.raw}
				if op.rawScript != nil {
					variants = append(variants, op.rawScript)
				}
				t := runRounds(b, admin, goroutines, variants...)
				t[0].report(b, "plain")
				t[1].report(b, "pipelined")
				b.ReportMetric(t[2].perSecond, "raw-pipelined-ops/s")
				b.ReportMetric(t[1].perSecond/t[0].perSecond, "pipelined/plain-speedup")
				b.ReportMetric(t[2].perSecond/t[1].perSecond, "pipelined/raw-time")
				if op.rawScript != nil {
					b.ReportMetric(t[3].perSecond, "raw-script-ops/s")
					b.ReportMetric(t[3].perSecond/t[1].perSecond, "pipelined/raw-script-time")
				}
			})
		}
	}
}

// benchSet and benchGet are the operations of the throughput benchmarks:
// a Set, and a Get into the value's type, of the name "bench".
func benchSet(m *memory.Memory) error { return m.Set(ctx, "bench", benchValue) }

func benchGet(m *memory.Memory) error {
	_, err := memory.GetAs[settings](ctx, m, "bench")
	return err
}

// BenchmarkThroughputTenants runs Set and Get from 64 and 256 goroutines
// through 64 tenants, Memory values of prefixes of their own over one
// client, each call through the next tenant in turn, in paired rounds: over
// a client without auto-pipelining and over one with it. It reports each
// variant's operations per second, and how many times the pipelined
// throughput is the plain one's.
func BenchmarkThroughputTenants(b *testing.B) {
	srv := redisserver.Start(b)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { admin.Close() })
	tenants := func(pipelined bool) []*memory.Memory {
		client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
		b.Cleanup(func() { client.Close() })
		ms := make([]*memory.Memory, 64)
		for i := range ms {
			ms[i] = benchNew(b, memory.WithClient(client), memory.WithPrefix(fmt.Sprintf("tenant%d:", i)), memory.WithAutoPipeline(pipelined))
			if err := benchSet(ms[i]); err != nil {
				b.Fatal(err)
			}
		}
		return ms
	}
	plain, pipelined := tenants(false), tenants(true)
	// each returns fn, which calls op through the next of ms in turn.
	each := func(ms []*memory.Memory, op func(*memory.Memory) error) func() error {
		var next atomic.Uint64
		return func() error { return op(ms[next.Add(1)%uint64(len(ms))]) }
	}
	for _, op := range []struct {
		name string
		fn   func(*memory.Memory) error
	}{
		{"set", benchSet},
		{"get", benchGet},
	} {
		for _, goroutines := range []int{64, 256} {
			b.Run(fmt.Sprintf("op=%s/goroutines=%d", op.name, goroutines), func(b *testing.B) {
				t := runRounds(b, admin, goroutines, each(plain, op.fn), each(pipelined, op.fn))
				t[0].report(b, "plain")
				t[1].report(b, "pipelined")
				b.ReportMetric(t[1].perSecond/t[0].perSecond, "pipelined/plain-speedup")
			})
		}
	}
}

// runRounds runs each of fns, as runConcurrently does, once per round until
// b is done, and returns what each did over all rounds. Each variant runs
// after a collection, so that none runs in another's garbage; rounds go in
// turn forward and backward, each pair starting with the next variant, so
// that none always runs after the same other one.
func runRounds(b *testing.B, server *redis.Client, goroutines int, fns ...func() error) []throughput {
	n := len(fns)
	calls := make([]int64, n)
	cpu := make([]time.Duration, n)
	var spent time.Duration
	stolenBefore, steals := stolen()
	for round := 0; b.Loop(); round++ {
		step := 1 - 2*(round%2) // forward, then backward
		for j := range n {
			i := ((round/2+step*j)%n + n) % n
			runtime.GC()
			before := cpuTime(b, server)
			calls[i] += runConcurrently(b, goroutines, fns[i])
			cpu[i] += cpuTime(b, server) - before
		}
		spent += roundTime
	}
	if stolenAfter, ok := stolen(); steals && ok {
		b.ReportMetric(100*float64(stolenAfter-stolenBefore)/float64(time.Duration(n*runtime.NumCPU())*spent), "stolen-%")
	}
	t := make([]throughput, n)
	for i := range t {
		t[i] = throughput{float64(calls[i]) / spent.Seconds(), cpu[i] / time.Duration(max(calls[i], 1))}
	}
	return t
}

// A throughput is what a variant of runRounds did: calls per second, and
// the CPU time each took, this process's and the server's.
type throughput struct {
	perSecond float64
	cpu       time.Duration
}

// report reports t under name: its calls per second, its CPU time per call
// in µs, and how many calls per second the machine's cores would make at
// that cost, were they all busy with them.
func (t throughput) report(b *testing.B, name string) {
	b.ReportMetric(t.perSecond, name+"-ops/s")
	b.ReportMetric(float64(t.cpu)/float64(time.Microsecond), name+"-cpu-µs/op")
	b.ReportMetric(float64(runtime.NumCPU())*float64(time.Second)/float64(t.cpu), name+"-cpu-bound-ops/s")
}

// cpuTime returns the CPU time that this process and the server have used.
func cpuTime(b *testing.B, server *redis.Client) time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		b.Fatal(err)
	}
	info := server.InfoMap(ctx, "cpu")
	if err := info.Err(); err != nil {
		b.Fatal(err)
	}
	total := time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
	for _, field := range []string{"used_cpu_sys", "used_cpu_user"} {
		seconds, err := strconv.ParseFloat(info.Item("CPU", field), 64)
		if err != nil {
			b.Fatalf("INFO cpu: %s: %v", field, err)
		}
		total += time.Duration(seconds * float64(time.Second))
	}
	return total
}

// stolen returns the CPU time that the hypervisor gave to others while this
// machine's cores had work, /proc/stat's steal, and false where there is
// none to read. Other machines on the same host take it at times: a run's
// share of it says how much of the machine the run had.
func stolen() (time.Duration, bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(fields) < 9 {
		return 0, false
	}
	ticks, err := strconv.ParseInt(fields[8], 10, 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(ticks) * time.Second / 100, true // in USER_HZ, 100 on Linux
}

// roundTime is how long each variant runs in each round of runRounds: long
// enough that the start and the end of a round, when not every goroutine
// has a call in flight, weigh little.
const roundTime = 250 * time.Millisecond

// runConcurrently calls fn from goroutines goroutines, each call after the
// last, for roundTime, and returns how many calls it made.
func runConcurrently(b *testing.B, goroutines int, fn func() error) int64 {
	var wg sync.WaitGroup
	var calls atomic.Int64
	errs := make(chan error, goroutines)
	stop := time.Now().Add(roundTime)
	for range goroutines {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if err := fn(); err != nil {
					errs <- err
					return
				}
				calls.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return calls.Load()
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
// machine, whatever the client: redis-benchmark's SET and GET, the
// script's put that every Set runs, and its puts in batches of 25, from 64
// connections, 16 commands in flight on each.
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
	// Each put writes: with -r, redis-benchmark gives every call another
	// number, of the same length, so that the key never holds the put's
	// value already.
	written := strconv.FormatInt(time.Now().UnixNano(), 10)
	changing := `{"value": __rand_int__, "last_modified": ` + written + `}`
	host, port, _ := strings.Cut(srv.Addr, ":")
	bench := func(n int, args ...string) float64 {
		args = append([]string{"-h", host, "-p", port, "-c", "64", "-P", "16", "-n", strconv.Itoa(n), "-r", "1000000000", "--csv"}, args...)
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
	// A batch of puts, as the Sets of many goroutines make them: 25 keys,
	// each with its stamp, TTL and value.
	const batch = 25
	keys := make([]string, batch)
	var puts []string
	for i := range keys {
		keys[i] = fmt.Sprintf("memory:k%d", i)
		puts = append(puts, written, "-1", changing)
	}
	for b.Loop() {
		b.ReportMetric(bench(500_000, "SET", "memory:k", string(envelope)), "set-ops/s")
		b.ReportMetric(bench(500_000, "GET", "memory:k"), "get-ops/s")
		b.ReportMetric(bench(500_000, "EVALSHA", sha, "1", "memory:k", "put", "", "0", written, "-1", changing), "script-put-ops/s")
		args := append(append([]string{"EVALSHA", sha, strconv.Itoa(batch)}, keys...), append([]string{"puts", "", "0", "0", "0"}, puts...)...)
		b.ReportMetric(batch*bench(500_000/batch, args...), "script-batched-put-ops/s")
	}
}

// BenchmarkFullDuplex runs raw go-redis GETs from 64 and 256 goroutines
// over the pipeliner's deferred face, half duplex as the Memory uses it
// and full duplex, in paired rounds, and reports how many times full
// duplex's throughput is half duplex's.
func BenchmarkFullDuplex(b *testing.B) {
	srv := redisserver.Start(b)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { admin.Close() })
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
			t := runRounds(b, admin, goroutines, get(half), get(full))
			b.ReportMetric(t[0].perSecond, "half-duplex-ops/s")
			b.ReportMetric(t[1].perSecond, "full-duplex-ops/s")
			b.ReportMetric(t[1].perSecond/t[0].perSecond, "full/half-speedup")
		})
	}
}
