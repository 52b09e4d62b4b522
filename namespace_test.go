package memory_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
)

// The tests in this file follow the user's namespacing guide, case by case.

func TestDefaultPrefix(t *testing.T) {
	t.Setenv("REDIS_PREFIX", "")
	eachServer(t, func(t *testing.T, addr string) {
		m := newTenant(t, addr)
		require.Equal(t, "memory:", m.Prefix())
		require.NoError(t, m.Set(ctx, "value", "test"))
		require.Equal(t, []string{"memory:value"}, serverKeys(t, rawClient(t, addr)))
	})
}

func TestPrefixFromEnvironmentAtConstruction(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		t.Setenv("REDIS_PREFIX", "myapp:dev:")
		m := newTenant(t, addr)

		os.Setenv("REDIS_PREFIX", "moved:") // restored by t.Setenv's cleanup
		require.Equal(t, "myapp:dev:", m.Prefix())
		require.NoError(t, m.Set(ctx, "value", "test"))
		require.Equal(t, []string{"myapp:dev:value"}, serverKeys(t, rawClient(t, addr)))
	})
}

func TestTenantsIsolated(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		t.Setenv("REDIS_PREFIX", "tenant1:")
		mem1 := newTenant(t, addr)
		t.Setenv("REDIS_PREFIX", "tenant2:")
		mem2 := newTenant(t, addr)

		require.NoError(t, mem1.Set(ctx, "data", "tenant 1 data"))
		require.NoError(t, mem2.Set(ctx, "data", "tenant 2 data"))

		requireValue(t, mem1, "data", "tenant 1 data")
		requireValue(t, mem2, "data", "tenant 2 data")
		require.Equal(t, []string{"tenant1:data", "tenant2:data"}, serverKeys(t, rawClient(t, addr)))

		n, err := mem1.Clear(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		requireValue(t, mem2, "data", "tenant 2 data")
	})
}

func TestEnvironmentBasedPrefixes(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		for _, env := range []string{"development", "staging", "production"} {
			t.Setenv("REDIS_PREFIX", env+":")
			m := newTenant(t, addr)
			require.NoError(t, m.Set(ctx, "config", map[string]string{"env": env}))
		}
		raw := rawClient(t, addr)
		require.Equal(t, []string{"development:config", "production:config", "staging:config"}, serverKeys(t, raw))
		var got struct {
			Value map[string]string `json:"value"`
		}
		require.NoError(t, json.Unmarshal([]byte(raw.Get(ctx, "staging:config").Val()), &got))
		require.Equal(t, map[string]string{"env": "staging"}, got.Value)
	})
}

func TestGuidePrefixPatterns(t *testing.T) {
	m := miniredisAddr(t)
	for _, prefix := range []string{"myapp:", "myapp:dev:", "myapp:prod:user_123:", "analytics:session:abc123:", "cache:v2:"} {
		t.Run(prefix, func(t *testing.T) {
			mem := newMemory(t, m, memory.WithPrefix(prefix))
			require.NoError(t, mem.Set(ctx, "k", 1))
			names, err := mem.Keys(ctx)
			require.NoError(t, err)
			require.Equal(t, []string{"k"}, names)
		})
	}
}

func TestInvalidPrefix(t *testing.T) {
	for label, prefix := range map[string]string{
		"empty":       "",
		"no colon":    "myapp",
		"space":       "my app:",
		"tab":         "my\tapp:",
		"newline":     "myapp:\n:",
		"nul":         "my\x00app:",
		"nbsp":        "my\u00a0app:",
		"invalid utf": "my\xffapp:",
	} {
		t.Run(label, func(t *testing.T) {
			_, err := memory.New(ctx, memory.WithURL("redis://127.0.0.1:1"), memory.WithPrefix(prefix))
			require.ErrorIs(t, err, memory.ErrInvalidPrefix)
			require.Contains(t, err.Error(), fmt.Sprintf("%q", prefix))

			if prefix == "" || strings.ContainsRune(prefix, 0) {
				return // an empty variable counts as unset; NUL cannot be in one
			}
			t.Setenv("REDIS_PREFIX", prefix)
			_, err = memory.New(ctx, memory.WithURL("redis://127.0.0.1:1"))
			require.ErrorIs(t, err, memory.ErrInvalidPrefix)
			require.Contains(t, err.Error(), "REDIS_PREFIX")
			require.Contains(t, err.Error(), fmt.Sprintf("%q", prefix))
		})
	}
}

// TestAdversarialPrefixes pairs prefixes whose glob patterns, or plain
// string prefixes, reach into each other's keys. No operation of one may
// list, overwrite or delete a key of the other.
func TestAdversarialPrefixes(t *testing.T) {
	pairs := [][2]string{
		{"tenant1:", "tenant10:"},
		{"a*:", "ab:"},
		{"a?:", "ab:"},
		{"*:", "x:"},
		{"[ab]:", "a:"},
		{"[^a]:", "b:"},
		{`[\d]:`, "5:"},
		{`a\:`, "a:"},
		{`a\*:`, `a\b:`},
		{`a\E:`, "aE:"},
		{"{t1}:", "{t1}x:"},
		{"a]:", "a:"},
		{"^$.+(|):", "x:"},
	}
	eachServer(t, func(t *testing.T, addr string) {
		raw := rawClient(t, addr)
		for _, pair := range pairs {
			t.Run(pair[0]+" "+pair[1], func(t *testing.T) {
				require.NoError(t, raw.FlushDB(ctx).Err())
				for _, order := range [][2]string{pair, {pair[1], pair[0]}} {
					mine := newMemory(t, addr, memory.WithPrefix(order[0]))
					theirs := newMemory(t, addr, memory.WithPrefix(order[1]))
					require.NoError(t, mine.Set(ctx, "mine", 1))
					require.NoError(t, theirs.Set(ctx, "theirs", 2))
					require.NoError(t, theirs.Set(ctx, "mine", 3))

					names, err := mine.Keys(ctx)
					require.NoError(t, err)
					require.Equal(t, []string{"mine"}, names)

					n, err := mine.Clear(ctx)
					require.NoError(t, err)
					require.Equal(t, 1, n)
					requireValue(t, theirs, "theirs", 2)
					requireValue(t, theirs, "mine", 3)
					_, err = theirs.Clear(ctx)
					require.NoError(t, err)
					require.Empty(t, serverKeys(t, raw))
				}
			})
		}
	})
}

// newTenant returns a Memory on addr whose prefix comes from REDIS_PREFIX.
func newTenant(t *testing.T, addr string) *memory.Memory {
	t.Helper()
	m, err := memory.New(ctx, memory.WithURL("redis://"+addr))
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// requireValue asserts that name holds want in m.
func requireValue[T any](t *testing.T, m *memory.Memory, name string, want T) {
	t.Helper()
	got, err := memory.GetAs[T](ctx, m, name)
	require.NoError(t, err)
	require.Equal(t, want, got)
}
