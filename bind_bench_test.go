package memory_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// wide is a 20-field struct, for the binding benchmarks.
type wide struct {
	F01, F02, F03, F04, F05 string
	F06, F07, F08, F09, F10 int
	F11, F12, F13           float64
	F14, F15                bool
	F16                     []string
	F17                     map[string]int
	F18                     time.Time
	F19                     settings
	F20                     *int
}

func wideValue() *wide {
	n := 7
	return &wide{
		"alpha", "beta", "gamma", "delta", "epsilon",
		1, 2, 3, 4, 5,
		1.5, 2.5, 3.5,
		true, false,
		[]string{"a", "b"},
		map[string]int{"x": 1},
		time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC),
		settings{"dark", 0.75},
		&n,
	}
}

// wideFields returns the names and values of w's fields, as hand-written
// code would list them.
func wideFields(w *wide) ([]string, []any) {
	v := reflect.ValueOf(w).Elem()
	names, values := make([]string, v.NumField()), make([]any, v.NumField())
	for i := range v.NumField() {
		names[i], values[i] = "memory:"+v.Type().Field(i).Name, v.Field(i).Interface()
	}
	return names, values
}

type anyEnvelope struct {
	Value        any   `json:"value"`
	LastModified int64 `json:"last_modified"`
}

// eachLink runs bench as link=loopback, over loopback to the server, and as
// link=slow, over a link that holds each direction for a millisecond or more,
// as a network between hosts does; it logs that link's round trip.
func eachLink(b *testing.B, bench func(b *testing.B, m *memory.Memory, client *redis.Client)) {
	addr := redisserver.Start(b).Addr
	b.Run("link=loopback", func(b *testing.B) {
		m, client := benchClient(b, addr)
		bench(b, m, client)
	})
	b.Run("link=slow", func(b *testing.B) {
		m, client := benchClient(b, slowLink(b, addr, time.Millisecond))
		start := time.Now()
		for range 10 {
			if err := client.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
		b.Logf("round trip: %v", time.Since(start)/10)
		bench(b, m, client)
	})
}

func BenchmarkSave(b *testing.B) { eachLink(b, benchmarkSave) }

func BenchmarkLoad(b *testing.B) { eachLink(b, benchmarkLoad) }

func benchmarkSave(b *testing.B, m *memory.Memory, client *redis.Client) {
	src := wideValue()
	keys, values := wideFields(src)
	envelopes := make([][]byte, len(values))
	var pairs []any // for MSET
	for i, v := range values {
		envelopes[i], _ = json.Marshal(anyEnvelope{v, time.Now().UnixNano()})
		pairs = append(pairs, keys[i], envelopes[i])
	}
	compare(b,
		variant{"memory", func() error { return m.Save(ctx, src) }},
		variant{"sequential-set", func() error {
			for i, v := range values {
				if err := m.Set(ctx, keys[i][len("memory:"):], v); err != nil {
					return err
				}
			}
			return nil
		}},
		variant{"sequential-raw", func() error {
			for i, key := range keys {
				if err := client.Set(ctx, key, envelopes[i], 0).Err(); err != nil {
					return err
				}
			}
			return nil
		}},
		variant{"raw", func() error {
			_, err := client.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for i, key := range keys {
					p.Set(ctx, key, envelopes[i], 0)
				}
				return nil
			})
			return err
		}},
		variant{"raw-mset", func() error { return client.MSet(ctx, pairs...).Err() }},
		variant{"raw+json", func() error {
			now := time.Now().UnixNano()
			_, err := client.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for i, key := range keys {
					data, err := json.Marshal(anyEnvelope{values[i], now})
					if err != nil {
						return err
					}
					p.Set(ctx, key, data, 0)
				}
				return nil
			})
			return err
		}},
	)
}

func benchmarkLoad(b *testing.B, m *memory.Memory, client *redis.Client) {
	if err := m.Save(ctx, wideValue()); err != nil {
		b.Fatal(err)
	}
	keys, _ := wideFields(wideValue())
	compare(b,
		variant{"memory", func() error {
			var dst wide
			return m.Load(ctx, &dst)
		}},
		variant{"sequential-get", func() error {
			var dst wide
			v := reflect.ValueOf(&dst).Elem()
			for i, key := range keys {
				if err := m.Get(ctx, key[len("memory:"):], v.Field(i).Addr().Interface()); err != nil {
					return err
				}
			}
			return nil
		}},
		variant{"sequential-raw", func() error {
			for _, key := range keys {
				if err := client.Get(ctx, key).Err(); err != nil {
					return err
				}
			}
			return nil
		}},
		variant{"raw", func() error { return client.MGet(ctx, keys...).Err() }},
		variant{"raw+json", func() error {
			values, err := client.MGet(ctx, keys...).Result()
			if err != nil {
				return err
			}
			var dst wide
			v := reflect.ValueOf(&dst).Elem()
			for i, value := range values {
				env := anyEnvelope{Value: v.Field(i).Addr().Interface()}
				if err := json.Unmarshal([]byte(value.(string)), &env); err != nil {
					return err
				}
			}
			return nil
		}},
	)
}
