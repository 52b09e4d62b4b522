package memorytest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/memorytest"
)

func TestNew(t *testing.T) {
	ctx := context.Background()
	var client redis.UniversalClient
	t.Run("use", func(t *testing.T) {
		m := memorytest.New(t, memory.WithPrefix("app:"))
		require.Equal(t, "app:", m.Prefix())
		require.NoError(t, m.Set(ctx, "answer", 42))
		got, err := memory.GetAs[int](ctx, m, "answer")
		require.NoError(t, err)
		require.Equal(t, 42, got)
		client = m.Client()
	})
	require.ErrorIs(t, client.Ping(ctx).Err(), redis.ErrClosed, "cleanup closed the Memory and its client")

	t.Run("fresh server each time", func(t *testing.T) {
		m := memorytest.New(t, memory.WithPrefix("app:"))
		err := m.Get(ctx, "answer", new(int))
		require.True(t, errors.Is(err, memory.ErrNotFound), "%v", err)
	})
}
