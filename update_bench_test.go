package memory_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
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

// BenchmarkIncrContended increments one counter from 8 goroutines at once,
// with Incr and with Update, in paired rounds of 100 increments per
// goroutine: Incr runs on the server and never conflicts, Update is a
// compare-and-set that retries.
func BenchmarkIncrContended(b *testing.B) {
	m, _ := benchSetup(b)
	const goroutines, each = 8, 100
	round := func(inc func() error) (time.Duration, error) {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for range goroutines {
			wg.Go(func() {
				for range each {
					if err := inc(); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return time.Since(start), <-errs
	}
	var incr, update time.Duration
	for b.Loop() {
		d, err := round(func() error { _, err := m.Incr(ctx, "incrs", 1); return err })
		if err != nil {
			b.Fatal(err)
		}
		incr += d
		if d, err = round(func() error { return memory.Update(ctx, m, "updates", increment) }); err != nil {
			b.Fatal(err)
		}
		update += d
	}
	ops := float64(b.N * goroutines * each)
	b.ReportMetric(ops/incr.Seconds(), "incr-ops/s")
	b.ReportMetric(ops/update.Seconds(), "update-ops/s")
	b.ReportMetric(float64(update)/float64(incr), "incr-throughput/update")
}
