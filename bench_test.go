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
	b.Run("impl=memory", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := m.Set(ctx, "bench", benchValue); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := client.Set(ctx, "memory:bench", envelope, 0).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=raw+json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := json.Marshal(rawEnvelope{benchValue, time.Now().UnixNano()})
			if err != nil {
				b.Fatal(err)
			}
			if err := client.Set(ctx, "memory:bench", data, 0).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkGet(b *testing.B) {
	m, client := benchSetup(b)
	b.Run("impl=memory", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v settings
			if err := m.Get(ctx, "bench", &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := client.Get(ctx, "memory:bench").Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=raw+json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := client.Get(ctx, "memory:bench").Bytes()
			if err != nil {
				b.Fatal(err)
			}
			var env rawEnvelope
			if err := json.Unmarshal(data, &env); err != nil {
				b.Fatal(err)
			}
		}
	})
}
