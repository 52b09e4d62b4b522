package memory_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
)

func TestWalk(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr, memory.WithPrefix("a*:"))
		raw := rawClient(t, addr)
		for _, key := range []string{"a*:x", "a*:conv:topic", "a*:conv:deep:er", "a*:odd name", "ab:x", "a*", "b:a*:x"} {
			require.NoError(t, raw.Set(ctx, key, `1`, 0).Err())
		}
		require.NoError(t, raw.RPush(ctx, "a*:list", "x").Err())
		require.Equal(t, []string{"conv:deep:er", "conv:topic", "list", "odd name", "x"}, walk(t, m),
			"every key under the prefix, key names only, whatever they hold; nothing outside it")

		seen := 0
		for _, err := range m.Walk(ctx) {
			require.NoError(t, err)
			if seen++; seen == 2 {
				break
			}
		}
		require.Equal(t, 2, seen, "a walk stops when asked to")

		conv, err := m.Scope("conv")
		require.NoError(t, err)
		require.Equal(t, []string{"deep:er", "topic"}, walk(t, conv))
	})
}

func TestWalkErrors(t *testing.T) {
	m, err := memory.New(ctx, memory.WithClient(rawClient(t, closedPort(t))), memory.WithOfflineQueue(false))
	require.NoError(t, err)
	requireWalkError(t, m, memory.ErrUnavailable)
	root := newMemory(t, miniredisAddr(t))
	require.NoError(t, root.Close())
	requireWalkError(t, root, memory.ErrClosed)
}

// walk returns the keys m.Walk yields, sorted, without repeats.
func walk(t *testing.T, m *memory.Memory) []string {
	t.Helper()
	var keys []string
	for key, err := range m.Walk(ctx) {
		require.NoError(t, err)
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// requireWalkError requires a walk of m to yield just one error, wrapping
// target.
func requireWalkError(t *testing.T, m *memory.Memory, target error) {
	t.Helper()
	var errs []error
	for key, err := range m.Walk(ctx) {
		require.Empty(t, key)
		errs = append(errs, err)
	}
	require.Len(t, errs, 1)
	require.ErrorIs(t, errs[0], target)
}

func TestScopes(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		for _, key := range []string{"test:name", "test:conv_1:topic", "test:conv_1:deep:x", "test:conv_2:a", "test:odd part:x", "tests:x:y", "test:conv_3:"} {
			require.NoError(t, raw.Set(ctx, key, "1", 0).Err())
		}
		scopes, err := m.Scopes(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"conv_1", "conv_2", "conv_3"}, scopes, "direct children with keys; parts that break the name rules left out")
		conv1, err := m.Scope("conv_1")
		require.NoError(t, err)
		scopes, err = conv1.Scopes(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"deep"}, scopes)
		empty, err := m.Scope("none")
		require.NoError(t, err)
		scopes, err = empty.Scopes(ctx)
		require.NoError(t, err)
		require.Empty(t, scopes)
		require.NotNil(t, scopes)
	})
}
