package memory_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
)

type turn struct {
	Role string `json:"role"`
	Text string `json:"text"`
}

func TestLog(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		log := memory.LogOf[turn](m, "conv")

		n, err := log.Len(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "an absent log is empty")
		last, err := log.Last(ctx, 5)
		require.NoError(t, err)
		require.Empty(t, last)
		require.NotNil(t, last)

		require.NoError(t, log.Append(ctx, turn{"user", "hi"}))
		require.NoError(t, log.Append(ctx, turn{"agent", "hello"}, turn{"user", "weather?"}, turn{"agent", "sunny"}))
		require.NoError(t, log.Append(ctx), "nothing to append")

		elements, err := raw.LRange(ctx, "test:conv", 0, -1).Result()
		require.NoError(t, err)
		require.Len(t, elements, 4, "a Redis list, one element per item")
		for _, e := range elements {
			require.Regexp(t, `^\{"value": \{"role":"\w+","text":"[\w?]+"\}, "ops": "\w+\.\d+", "last_modified": \d+\}$`, e, "each an envelope")
		}
		r, err := memory.RecordOf([]byte(elements[1]))
		require.NoError(t, err)
		require.JSONEq(t, `{"role": "agent", "text": "hello"}`, string(r.Value))

		all, err := log.All(ctx)
		require.NoError(t, err)
		require.Equal(t, []turn{{"user", "hi"}, {"agent", "hello"}, {"user", "weather?"}, {"agent", "sunny"}}, all)
		last, err = log.Last(ctx, 2)
		require.NoError(t, err)
		require.Equal(t, []turn{{"user", "weather?"}, {"agent", "sunny"}}, last, "the newest, oldest first")
		last, err = log.Last(ctx, 10)
		require.NoError(t, err)
		require.Len(t, last, 4)
		n, err = log.Len(ctx)
		require.NoError(t, err)
		require.Equal(t, 4, n)

		require.NoError(t, log.Trim(ctx, 3))
		all, err = log.All(ctx)
		require.NoError(t, err)
		require.Equal(t, []turn{{"agent", "hello"}, {"user", "weather?"}, {"agent", "sunny"}}, all, "Trim keeps the newest")
		require.ErrorContains(t, log.Trim(ctx, -1), "keep -1")
		require.NoError(t, log.Clear(ctx))
		require.Zero(t, raw.Exists(ctx, "test:conv").Val())

		names, err := m.Keys(ctx)
		require.NoError(t, err)
		require.Empty(t, names)
		require.NoError(t, log.Append(ctx, turn{"user", "again"}))
		names, err = m.Keys(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"conv"}, names, "Keys lists a log")
		var de *memory.DecodeError
		require.ErrorAs(t, m.Get(ctx, "conv", new(any)), &de, "Get of a log")
		require.Equal(t, "test:conv", de.Key)

		require.NoError(t, raw.Set(ctx, "test:str", `{"value": 1, "last_modified": 1}`, 0).Err())
		require.ErrorAs(t, memory.LogOf[int](m, "str").Append(ctx, 1), &de, "a log of a string")
		_, err = memory.LogOf[int](m, "str").All(ctx)
		require.ErrorAs(t, err, &de)
		require.NoError(t, raw.RPush(ctx, "test:junk", "not json").Err())
		_, err = memory.LogOf[int](m, "junk").All(ctx)
		require.ErrorAs(t, err, &de)
		require.ErrorContains(t, err, "item 0")
		require.ErrorIs(t, memory.LogOf[int](m, "a:b").Append(ctx, 1), memory.ErrInvalidName)
	})
}

func TestLogDefaultTTL(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr, memory.WithDefaultTTL(time.Hour))
		raw := rawClient(t, addr)
		log := memory.LogOf[int](m, "log")
		require.NoError(t, log.Append(ctx, 1))
		require.NoError(t, raw.PExpire(ctx, "test:log", time.Minute).Err())
		require.NoError(t, log.Append(ctx, 2))
		require.Greater(t, raw.PTTL(ctx, "test:log").Val(), 59*time.Minute, "each Append gives the TTL again")
	})
}

// TestLogConcurrentAppends appends from 4 processes, each with its own
// client: every item is there once, each writer's in its order.
func TestLogConcurrentAppends(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		const writers, each = 4, 250
		var wg sync.WaitGroup
		for w := range writers {
			m := newMemory(t, addr)
			log := memory.LogOf[string](m, "log")
			wg.Go(func() {
				for i := range each {
					require.NoError(t, log.Append(ctx, fmt.Sprintf("%d:%d", w, i)))
				}
			})
		}
		wg.Wait()
		all, err := memory.LogOf[string](newMemory(t, addr), "log").All(ctx)
		require.NoError(t, err)
		require.Len(t, all, writers*each)
		next := make([]int, writers)
		for _, item := range all {
			var w, i int
			_, err := fmt.Sscanf(item, "%d:%d", &w, &i)
			require.NoError(t, err)
			require.Equal(t, next[w], i, "writer %d in order, each item once", w)
			next[w]++
		}
	})
}

func TestLogOffline(t *testing.T) {
	srv, m, _ := offlineMemory(t)
	log := memory.LogOf[int](m, "log")
	require.NoError(t, log.Append(ctx, 1))
	srv.Close()
	require.NoError(t, log.Append(ctx, 2), "queued")
	requireOffline(t, m)
	require.NoError(t, log.Append(ctx, 3, 4))
	_, err := log.All(ctx)
	require.ErrorIs(t, err, memory.ErrUnavailable, "reads need the server")
	require.Equal(t, 2, m.Pending())
	require.NoError(t, srv.Restart())
	require.NoError(t, m.Flush(ctx))
	all, err := log.All(ctx)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3, 4}, all)
}

func TestDumpRestoreLog(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		log := memory.LogOf[json.RawMessage](m, "log")
		require.NoError(t, log.Append(ctx, json.RawMessage(`{"a": 1}`), json.RawMessage(`2`)))
		require.NoError(t, m.Set(ctx, "plain", 1))
		records, err := m.Dump(ctx)
		require.NoError(t, err)
		require.Len(t, records["log"].Log, 2)
		require.JSONEq(t, `{"a": 1}`, string(records["log"].Log[0].Value))
		require.Equal(t, records["log"].Log[1].LastModified, records["log"].LastModified, "the newest item's stamp")
		require.Nil(t, records["plain"].Log)

		_, err = m.Clear(ctx)
		require.NoError(t, err)
		n, err := m.Restore(ctx, records, false)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		all, err := log.All(ctx)
		require.NoError(t, err)
		require.Len(t, all, 2)
		require.JSONEq(t, `2`, string(all[1]))

		require.NoError(t, log.Append(ctx, json.RawMessage(`3`)))
		n, err = m.Restore(ctx, records, false)
		require.NoError(t, err)
		require.Zero(t, n, "the log on the server is newer")
		n, err = m.Restore(ctx, records, true)
		require.NoError(t, err)
		require.Equal(t, 1, n, "the log; plain holds the dump's bytes already")
		all, err = log.All(ctx)
		require.NoError(t, err)
		require.Len(t, all, 2, "forced: the dump's log again")

		_, err = m.Restore(ctx, map[string]memory.Record{"bad": {Log: []memory.Record{{Value: json.RawMessage(`{`)}}}}, false)
		require.ErrorAs(t, err, new(*memory.DecodeError))
	})
}
