package memory_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// message is a typical entry of an agent's conversation: about 225 bytes
// of JSON.
type message struct {
	Role string    `json:"role"`
	Text string    `json:"text"`
	At   time.Time `json:"at"`
	Seq  int       `json:"seq"`
}

func benchMessage(seq int) message {
	return message{Role: "assistant", Text: strings.Repeat("Sunny in Paris, 21°C. ", 7), At: time.Unix(1732838400, 0).UTC(), Seq: seq}
}

// setList stores a list of n messages under key, in the envelope's layout
// that the Python library writes.
func setList(b *testing.B, client *redis.Client, key string, n int) {
	b.Helper()
	list := make([]message, n)
	for i := range list {
		list[i] = benchMessage(i)
	}
	value, err := json.Marshal(list)
	if err != nil {
		b.Fatal(err)
	}
	data := fmt.Sprintf(`{"value": %s, "last_modified": %d}`, value, time.Now().UnixNano())
	if err := client.Set(ctx, key, data, 0).Err(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppend appends one message to a list of 10 messages and to one
// of 4,000 (0.9 MB), in paired rounds, and reports how much longer the
// second takes: Append writes in place, so that its cost does not grow with
// the list. Both lists are set back to their sizes every 100 appends, out
// of the time measured.
func BenchmarkAppend(b *testing.B) {
	m, client := benchSetup(b)
	small, big := memory.ListOf[message](m, "small"), memory.ListOf[message](m, "big")
	msg := benchMessage(0)
	var smallTime, bigTime time.Duration
	i := 0
	for b.Loop() {
		if i%100 == 0 {
			b.StopTimer()
			setList(b, client, "memory:small", 10)
			setList(b, client, "memory:big", 4000)
			b.StartTimer()
		}
		i++
		start := time.Now()
		if err := small.Append(ctx, msg); err != nil {
			b.Fatal(err)
		}
		smallTime += time.Since(start)
		start = time.Now()
		if err := big.Append(ctx, msg); err != nil {
			b.Fatal(err)
		}
		bigTime += time.Since(start)
	}
	b.ReportMetric(float64(smallTime.Microseconds())/float64(b.N), "µs/append-10")
	b.ReportMetric(float64(bigTime.Microseconds())/float64(b.N), "µs/append-4000")
	b.ReportMetric(float64(bigTime)/float64(smallTime), "append-4000/append-10")
}

// BenchmarkPingWhileAppending measures how long another client's PING
// waits for the server while 4 writers, each with its own client, append to
// one list of 4,000 messages, against the same PING on an idle server: each
// append holds the server for a short, constant time.
func BenchmarkPingWhileAppending(b *testing.B) {
	for _, writers := range []int{0, 4} {
		b.Run("writers="+strconv.Itoa(writers), func(b *testing.B) {
			srv := redisserver.Start(b)
			admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
			b.Cleanup(func() { admin.Close() })
			setList(b, admin, "memory:log", 4000)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range writers {
				m, _ := benchClient(b, srv.Addr)
				log := memory.ListOf[message](m, "log")
				wg.Go(func() {
					for seq := 0; ; seq++ {
						select {
						case <-stop:
							return
						default:
						}
						if err := log.Append(ctx, benchMessage(seq)); err != nil {
							b.Error(err)
							return
						}
						if seq%500 == 499 { // keep it at about 4,000
							setList(b, admin, "memory:log", 4000)
						}
					}
				})
			}
			var waits []time.Duration
			for b.Loop() {
				start := time.Now()
				if err := admin.Ping(ctx).Err(); err != nil {
					b.Fatal(err)
				}
				waits = append(waits, time.Since(start))
			}
			close(stop)
			wg.Wait()
			slices.Sort(waits)
			b.ReportMetric(float64(waits[len(waits)/2].Microseconds()), "ping-p50-µs")
			b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "ping-p99-µs")
		})
	}
}

// setLog stores a log of n messages under key.
func setLog(b *testing.B, client *redis.Client, key string, n int) {
	b.Helper()
	elements := make([]any, n)
	for i := range elements {
		value, err := json.Marshal(benchMessage(i))
		if err != nil {
			b.Fatal(err)
		}
		elements[i] = fmt.Sprintf(`{"value": %s, "last_modified": %d}`, value, time.Now().UnixNano())
	}
	pipe := client.TxPipeline()
	pipe.Del(ctx, key)
	pipe.RPush(ctx, key, elements...)
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLog appends one message to a log of 5,000 and to a log of 1, and
// reads the last 20 of a log of 5,000 and of a log of 20, in paired rounds:
// both cost the same whatever the log's length. The logs are set back to
// their sizes every 100 appends, out of the time measured.
func BenchmarkLog(b *testing.B) {
	m, client := benchSetup(b)
	small, big := memory.LogOf[message](m, "small"), memory.LogOf[message](m, "big")
	twenty, long := memory.LogOf[message](m, "twenty"), memory.LogOf[message](m, "long")
	setLog(b, client, "memory:twenty", 20)
	setLog(b, client, "memory:long", 5000)
	msg := benchMessage(0)
	var appendSmall, appendBig, lastTwenty, lastLong time.Duration
	timed := func(d *time.Duration, op func() error) {
		start := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		*d += time.Since(start)
	}
	i := 0
	for b.Loop() {
		if i%100 == 0 {
			b.StopTimer()
			setLog(b, client, "memory:small", 1)
			setLog(b, client, "memory:big", 5000)
			b.StartTimer()
		}
		i++
		timed(&appendSmall, func() error { return small.Append(ctx, msg) })
		timed(&appendBig, func() error { return big.Append(ctx, msg) })
		timed(&lastTwenty, func() error { _, err := twenty.Last(ctx, 20); return err })
		timed(&lastLong, func() error { _, err := long.Last(ctx, 20); return err })
	}
	b.ReportMetric(float64(appendBig)/float64(appendSmall), "append-5000/append-1")
	b.ReportMetric(float64(lastLong)/float64(lastTwenty), "last20-of-5000/last20-of-20")
}
