package memory_test

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// The benchmarks compare each operation with raw go-redis doing the same
// work on the same real server in the same run: "raw" sends and fetches the
// envelope bytes alone, "raw+json" also encodes or decodes the envelope with
// encoding/json, as hand-written code would.

// A variant is one way to do the work a benchmark measures.
type variant struct {
	name string
	op   func() error
}

// compare runs each variant as the sub-benchmark impl=NAME, for its time,
// bytes and allocations, and then all of them in turn, one operation each
// per iteration, as impl=paired, which reports each one's time over the
// first's (memory/NAME, or NAME/memory for a slower one, so that every ratio
// reads "times faster or slower than"). Interleaving keeps the drift of a
// noisy machine out of the ratios, and each round starting with the next
// variant keeps out what one variant leaves the next.
func compare(b *testing.B, variants ...variant) {
	b.Helper()
	for _, v := range variants {
		b.Run("impl="+v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.op(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("impl=paired", func(b *testing.B) {
		spent := make([]time.Duration, len(variants))
		for round := 0; b.Loop(); round++ {
			for j := range variants {
				i := (round + j) % len(variants) // each round starts with the next
				start := time.Now()
				if err := variants[i].op(); err != nil {
					b.Fatal(err)
				}
				spent[i] += time.Since(start)
			}
		}
		for i, v := range variants[1:] {
			if ratio := float64(spent[0]) / float64(spent[i+1]); ratio >= 1 {
				b.ReportMetric(ratio, variants[0].name+"/"+v.name)
			} else {
				b.ReportMetric(1/ratio, v.name+"/"+variants[0].name)
			}
		}
	})
}

// benchValue is a typical small value.
var benchValue = settings{Theme: "dark", Volume: 0.75}

// rawEnvelope is how hand-written code would lay out the envelope.
type rawEnvelope struct {
	Value        settings `json:"value"`
	LastModified int64    `json:"last_modified"`
}

// benchSetup starts a server and returns a Memory with the prefix
// "memory:" over a client of it, and the client.
func benchSetup(b *testing.B) (*memory.Memory, *redis.Client) {
	b.Helper()
	return benchClient(b, redisserver.Start(b).Addr)
}

// benchClient is benchSetup for the server at addr.
func benchClient(b *testing.B, addr string) (*memory.Memory, *redis.Client) {
	b.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { client.Close() })
	m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix("memory:"))
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Set(ctx, "bench", benchValue); err != nil {
		b.Fatal(err)
	}
	return m, client
}

// benchPipelined returns a Memory with the prefix "memory:" and
// auto-pipelining over a client of its own on client's server: a lone
// caller's commands go straight to the server all the same.
func benchPipelined(b *testing.B, client *redis.Client) *memory.Memory {
	b.Helper()
	return benchNew(b, memory.WithURL("redis://"+client.Options().Addr), memory.WithPrefix("memory:"), memory.WithAutoPipeline(true))
}

func BenchmarkSet(b *testing.B) {
	m, client := benchSetup(b)
	mp := benchPipelined(b, client)
	envelope, err := json.Marshal(rawEnvelope{benchValue, time.Now().UnixNano()})
	if err != nil {
		b.Fatal(err)
	}
	// A service's context, which can be canceled.
	cancelable, cancel := context.WithCancel(ctx)
	defer cancel()
	compare(b,
		variant{"memory", func() error { return m.Set(ctx, "bench", benchValue) }},
		variant{"memory-cancelable", func() error { return m.Set(cancelable, "bench", benchValue) }},
		variant{"memory-pipelined", func() error { return mp.Set(ctx, "bench", benchValue) }},
		variant{"raw", func() error { return client.Set(ctx, "memory:bench", envelope, 0).Err() }},
		variant{"raw+json", func() error {
			data, err := json.Marshal(rawEnvelope{benchValue, time.Now().UnixNano()})
			if err != nil {
				return err
			}
			return client.Set(ctx, "memory:bench", data, 0).Err()
		}},
		variant{"raw+json+script", rawPut(b, client)},
	)
}

// rawPut returns a Set of benchValue made with go-redis over c as the Memory
// makes it: the envelope encoded, then the last-writer-wins script run.
func rawPut(b *testing.B, c redis.Scripter) func() error {
	sha, err := c.ScriptLoad(ctx, memory.OpsLua).Result()
	if err != nil {
		b.Fatal(err)
	}
	return func() error {
		stamp := time.Now().UnixNano()
		data, err := json.Marshal(rawEnvelope{benchValue, stamp})
		if err != nil {
			return err
		}
		return c.EvalSha(ctx, sha, []string{"memory:bench"}, "put", "", 0, stamp, -1, data).Err()
	}
}

func BenchmarkGet(b *testing.B) {
	m, client := benchSetup(b)
	mp := benchPipelined(b, client)
	compare(b,
		variant{"memory", func() error {
			var v settings
			return m.Get(ctx, "bench", &v)
		}},
		variant{"memory-pipelined", func() error {
			var v settings
			return mp.Get(ctx, "bench", &v)
		}},
		variant{"raw", func() error { return client.Get(ctx, "memory:bench").Err() }},
		variant{"raw+json", func() error {
			data, err := client.Get(ctx, "memory:bench").Bytes()
			if err != nil {
				return err
			}
			var env rawEnvelope
			return json.Unmarshal(data, &env)
		}},
	)
}

// slowLink returns the address of a proxy to addr that holds every chunk of
// bytes, both ways, for at least delay before it passes it on: a network
// whose round trip costs at least twice delay. It stops at the end of the
// benchmark.
func slowLink(b *testing.B, addr string, delay time.Duration) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			near, err := ln.Accept()
			if err != nil {
				return
			}
			far, err := net.Dial("tcp", addr)
			if err != nil {
				near.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, near, far)
			mu.Unlock()
			wg.Go(func() { relay(far, near, delay) })
			wg.Go(func() { relay(near, far, delay) })
		}
	})
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// relay copies src to dst, each chunk delay after it was read, until src
// ends or dst fails.
func relay(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		data []byte
		due  time.Time
	}
	chunks := make(chan chunk, 1024)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{buf[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	dst.Close()
	for range chunks { // until the reader sees its end
	}
}
