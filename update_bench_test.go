package memory_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-memory/memory"
)

func increment(n *int) error {
	*n++
	return nil
}

// watchIncrement is the hand-written go-redis equivalent of Update with
// increment: WATCH, GET, then MULTI/SET/EXEC, retried on conflict.
func watchIncrement(client *redis.Client, key string) error {
	for {
		err := client.Watch(ctx, func(tx *redis.Tx) error {
			var env struct {
				Value int `json:"value"`
			}
			switch data, err := tx.Get(ctx, key).Bytes(); {
			case err == nil:
				if err := json.Unmarshal(data, &env); err != nil {
					return err
				}
			case !errors.Is(err, redis.Nil):
				return err
			}
			data, err := json.Marshal(anyEnvelope{env.Value + 1, time.Now().UnixNano()})
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				return p.Set(ctx, key, data, 0).Err()
			})
			return err
		}, key)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
}

func BenchmarkUpdate(b *testing.B) {
	m, client := benchSetup(b)
	envelope, _ := json.Marshal(anyEnvelope{1, time.Now().UnixNano()})
	compare(b,
		variant{"memory", func() error { return memory.Update(ctx, m, "counter", increment) }},
		variant{"raw-set", func() error { return client.Set(ctx, "memory:other", envelope, 0).Err() }},
		variant{"raw-get-set", func() error { // two plain round trips, not atomic
			if err := client.Get(ctx, "memory:other").Err(); err != nil {
				return err
			}
			return client.Set(ctx, "memory:other", envelope, 0).Err()
		}},
		variant{"raw-watch", func() error { return watchIncrement(client, "memory:watched") }},
	)
}

// BenchmarkAppend appends to a list of up to 100 strings, which is cleared
// every 100 appends (the clearing is part of the time, one op in a hundred).
func BenchmarkAppend(b *testing.B) {
	m, client := benchSetup(b)
	list := memory.ListOf[string](m, "log")
	envelope, _ := json.Marshal(anyEnvelope{[]string{"message"}, time.Now().UnixNano()})
	appends := 0
	compare(b,
		variant{"memory", func() error {
			if appends++; appends%100 == 0 {
				if err := list.Clear(ctx); err != nil {
					return err
				}
			}
			return list.Append(ctx, "message")
		}},
		variant{"raw-set", func() error { return client.Set(ctx, "memory:other", envelope, 0).Err() }},
	)
}

// BenchmarkUpdateContended increments one counter from 8 and from 64
// goroutines at once; ns/op is the inverse of the total throughput.
func BenchmarkUpdateContended(b *testing.B) {
	m, client := benchSetup(b)
	for _, goroutines := range []int{8, 64} {
		parallelism := max(1, goroutines/runtime.GOMAXPROCS(0))
		b.Run(fmt.Sprintf("goroutines=%d/impl=memory", goroutines), func(b *testing.B) {
			b.SetParallelism(parallelism)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := memory.Update(ctx, m, "counter", increment); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run(fmt.Sprintf("goroutines=%d/impl=raw-watch", goroutines), func(b *testing.B) {
			b.SetParallelism(parallelism)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := watchIncrement(client, "memory:counter"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
