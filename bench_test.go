package memory_test

import (
	"encoding/json"
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
// noisy machine out of the ratios.
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
		for b.Loop() {
			for i, v := range variants {
				start := time.Now()
				if err := v.op(); err != nil {
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

func benchSetup(b *testing.B) (*memory.Memory, *redis.Client) {
	b.Helper()
	srv := redisserver.Start(b)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
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

func BenchmarkSet(b *testing.B) {
	m, client := benchSetup(b)
	envelope, err := json.Marshal(rawEnvelope{benchValue, time.Now().UnixNano()})
	if err != nil {
		b.Fatal(err)
	}
	compare(b,
		variant{"memory", func() error { return m.Set(ctx, "bench", benchValue) }},
		variant{"raw", func() error { return client.Set(ctx, "memory:bench", envelope, 0).Err() }},
		variant{"raw+json", func() error {
			data, err := json.Marshal(rawEnvelope{benchValue, time.Now().UnixNano()})
			if err != nil {
				return err
			}
			return client.Set(ctx, "memory:bench", data, 0).Err()
		}},
	)
}

func BenchmarkGet(b *testing.B) {
	m, client := benchSetup(b)
	compare(b,
		variant{"memory", func() error {
			var v settings
			return m.Get(ctx, "bench", &v)
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
