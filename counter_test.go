package memory_test

import (
	"math"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
)

func TestIncr(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)

		n, err := m.Incr(ctx, "n", 5)
		require.NoError(t, err)
		require.Equal(t, int64(5), n, "an absent name counts as 0")
		n, err = m.Incr(ctx, "n", -7)
		require.NoError(t, err)
		require.Equal(t, int64(-2), n)
		requireValue(t, m, "n", -2)
		record, err := memory.RecordOf([]byte(raw.Get(ctx, "test:n").Val()))
		require.NoError(t, err)
		require.Equal(t, "-2", string(record.Value), "a JSON integer, as Python reads an int")

		// Beyond a double's precision, where a Lua number would round.
		big := int64(1) << 60
		require.NoError(t, raw.Set(ctx, "test:big", envelope(strconv.FormatInt(big+1, 10), 1), 0).Err())
		n, err = m.Incr(ctx, "big", 2)
		require.NoError(t, err)
		require.Equal(t, big+3, n)
		requireValue(t, m, "big", big+3)

		require.NoError(t, raw.Set(ctx, "test:max", envelope(strconv.FormatInt(math.MaxInt64, 10), 1), 0).Err())
		_, err = m.Incr(ctx, "max", 1)
		require.ErrorContains(t, err, "overflows")
		requireValue(t, m, "max", int64(math.MaxInt64))
		n, err = m.Incr(ctx, "max", math.MinInt64)
		require.NoError(t, err)
		require.Equal(t, int64(-1), n)

		for name, stored := range map[string]string{
			"float":  envelope("1.5", 1),
			"string": envelope(`"7"`, 1),
			"object": envelope(`{"n": 1}`, 1),
			"bare":   `not json`,
		} {
			require.NoError(t, raw.Set(ctx, "test:"+name, stored, 0).Err())
			_, err := m.Incr(ctx, name, 1)
			var de *memory.DecodeError
			require.ErrorAs(t, err, &de, name)
			require.Equal(t, "test:"+name, de.Key)
			require.Equal(t, stored, raw.Get(ctx, "test:"+name).Val(), "nothing written: %s", name)
		}
		require.NoError(t, raw.RPush(ctx, "test:list", "x").Err())
		_, err = m.Incr(ctx, "list", 1)
		require.ErrorAs(t, err, new(*memory.DecodeError))

		_, err = m.Incr(ctx, "a:b", 1)
		require.ErrorIs(t, err, memory.ErrInvalidName)
	})
}

// TestIncrConcurrent increments one counter from 8 goroutines, each with a
// client of its own, as separate processes: the sum is exact, and each
// result was seen by one caller only.
func TestIncrConcurrent(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		const writers, each = 8, 50
		seen := make(chan int64, writers*each)
		var wg sync.WaitGroup
		for range writers {
			m := newMemory(t, addr)
			wg.Go(func() {
				for range each {
					n, err := m.Incr(ctx, "n", 1)
					require.NoError(t, err)
					seen <- n
				}
			})
		}
		wg.Wait()
		close(seen)
		results := map[int64]bool{}
		for n := range seen {
			require.False(t, results[n], "result %d twice", n)
			results[n] = true
		}
		require.Len(t, results, writers*each)
		requireValue(t, newMemory(t, addr), "n", writers*each)
	})
}
