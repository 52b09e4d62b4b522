package memory_test

import (
	"context"
	"slices"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// eachServer runs fn as two subtests: on a fresh miniredis and on a fresh
// real redis-server.
func eachServer(t *testing.T, fn func(t *testing.T, addr string)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) { fn(t, miniredis.RunT(t).Addr()) })
	t.Run("redis-server", func(t *testing.T) { fn(t, redisserver.Start(t).Addr) })
}

// newMemory returns a Memory on the server at addr, created by New from a
// URL, with prefix "test:" unless opts say otherwise, closed at cleanup.
func newMemory(t *testing.T, addr string, opts ...memory.Option) *memory.Memory {
	t.Helper()
	opts = append([]memory.Option{memory.WithURL("redis://" + addr), memory.WithPrefix("test:")}, opts...)
	m, err := memory.New(context.Background(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// rawClient returns a plain go-redis client on the server at addr, closed at
// cleanup: the view of another process.
func rawClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// serverKeys returns every key on the server, sorted.
func serverKeys(t *testing.T, c *redis.Client) []string {
	t.Helper()
	var keys []string
	iter := c.Scan(context.Background(), 0, "*", 1000).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	require.NoError(t, iter.Err())
	slices.Sort(keys)
	return slices.Compact(keys)
}

// miniredisAddr returns the address of a fresh miniredis.
func miniredisAddr(t *testing.T) string {
	t.Helper()
	return miniredis.RunT(t).Addr()
}
