package memory_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
)

func TestList(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		list := memory.ListOf[int](m, "items")

		all, err := list.All(ctx)
		require.NoError(t, err)
		require.Empty(t, all)
		n, err := list.Len(ctx)
		require.NoError(t, err)
		require.Zero(t, n)

		require.NoError(t, list.Append(ctx, 1, 2, 3))
		require.NoError(t, list.Append(ctx, 4))
		require.NoError(t, list.Insert(ctx, 0, 0))
		require.NoError(t, list.Insert(ctx, 5, 5), "inserting at the length appends")
		require.NoError(t, list.Set(ctx, 2, 20))
		requireList(t, list, 0, 1, 20, 3, 4, 5)
		require.JSONEq(t, `[0,1,20,3,4,5]`, storedValue(t, raw, "test:items"), "one envelope holding a JSON array")

		v, err := list.Remove(ctx, 1)
		require.NoError(t, err)
		require.Equal(t, 1, v)
		v, err = list.Pop(ctx)
		require.NoError(t, err)
		require.Equal(t, 5, v)
		requireList(t, list, 0, 20, 3, 4)
		n, err = list.Len(ctx)
		require.NoError(t, err)
		require.Equal(t, 4, n)

		require.NoError(t, list.Clear(ctx))
		requireList(t, list)
		require.JSONEq(t, `[]`, storedValue(t, raw, "test:items"))
	})
}

func TestListErrors(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		list := memory.ListOf[string](m, "items")

		_, err := list.Pop(ctx)
		require.ErrorIs(t, err, memory.ErrNotFound, "popping an absent list")
		require.Zero(t, raw.Exists(ctx, "test:items").Val(), "nothing is written")

		require.NoError(t, list.Append(ctx, "a"))
		before := raw.Get(ctx, "test:items").Val()
		for name, err := range map[string]error{
			"insert -1": list.Insert(ctx, -1, "x"),
			"insert 2":  list.Insert(ctx, 2, "x"),
			"set 1":     list.Set(ctx, 1, "x"),
			"set -1":    list.Set(ctx, -1, "x"),
		} {
			require.ErrorContains(t, err, "out of range", name)
			require.ErrorContains(t, err, `"test:items"`, name)
		}
		_, err = list.Remove(ctx, 1)
		require.ErrorContains(t, err, "index 1 out of range with length 1")
		require.Equal(t, before, raw.Get(ctx, "test:items").Val(), "nothing is written")

		_, err = list.Pop(ctx)
		require.NoError(t, err)
		_, err = list.Pop(ctx)
		require.ErrorIs(t, err, memory.ErrNotFound, "popping an empty list")

		require.NoError(t, m.Set(ctx, "scalar", 5))
		var de *memory.DecodeError
		require.ErrorAs(t, memory.ListOf[int](m, "scalar").Append(ctx, 1), &de, "a stored value that is no list")
		_, err = memory.ListOf[int](m, "scalar").All(ctx)
		require.ErrorAs(t, err, &de)
		require.ErrorIs(t, memory.ListOf[int](m, "bad name").Append(ctx, 1), memory.ErrInvalidName)
	})
}

func TestListExtendsForeignWriters(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		// A Python synced list, and a bare JSON array written by hand.
		require.NoError(t, raw.Set(ctx, "test:py", `{"value": [1, 2, 3], "last_modified": 1732838400123456789}`, 0).Err())
		require.NoError(t, raw.Set(ctx, "test:bare", `["x"]`, 0).Err())

		require.NoError(t, memory.ListOf[int](m, "py").Append(ctx, 4))
		requireList(t, memory.ListOf[int](m, "py"), 1, 2, 3, 4)
		require.NoError(t, memory.ListOf[string](m, "bare").Append(ctx, "y"))
		requireList(t, memory.ListOf[string](m, "bare"), "x", "y")
	})
}

// TestListAfterAnotherWriterSet checks that an append does not make this
// process believe it knows a list that another process replaced with a
// whole value meanwhile: the Update after it starts from the server's list.
func TestListAfterAnotherWriterSet(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		mine, other := newMemory(t, addr), newMemory(t, addr)
		require.NoError(t, mine.Set(ctx, "l", []int{1}))
		require.NoError(t, other.Set(ctx, "l", []int{7, 8, 9}))
		require.NoError(t, memory.ListOf[int](mine, "l").Append(ctx, 4))
		require.NoError(t, memory.Update(ctx, mine, "l", func(v *[]int) error { *v = append(*v, 5); return nil }))
		requireList(t, memory.ListOf[int](other, "l"), 7, 8, 9, 4, 5)
	})
}

func TestMap(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		dict := memory.MapOf[string](m, "config")

		_, err := dict.Get(ctx, "lang")
		require.ErrorIs(t, err, memory.ErrNotFound)
		require.NoError(t, dict.Delete(ctx, "lang"), "deleting from an absent map")
		require.Zero(t, raw.Exists(ctx, "test:config").Val(), "writes nothing")

		require.NoError(t, dict.Set(ctx, "lang", "en"))
		require.NoError(t, dict.Update(ctx, map[string]string{"theme": "dark", "lang": "fr"}))
		v, err := dict.Get(ctx, "lang")
		require.NoError(t, err)
		require.Equal(t, "fr", v)
		n, err := dict.Len(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.JSONEq(t, `{"lang":"fr","theme":"dark"}`, storedValue(t, raw, "test:config"))

		require.NoError(t, dict.Delete(ctx, "lang"))
		all, err := dict.All(ctx)
		require.NoError(t, err)
		require.Equal(t, map[string]string{"theme": "dark"}, all)
		_, err = dict.Get(ctx, "lang")
		require.ErrorIs(t, err, memory.ErrNotFound)
		require.ErrorContains(t, err, `"lang"`)

		require.NoError(t, dict.Clear(ctx))
		all, err = dict.All(ctx)
		require.NoError(t, err)
		require.Empty(t, all)
		require.JSONEq(t, `{}`, storedValue(t, raw, "test:config"))
	})
}

func TestMapErrorsAndForeignWriters(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		require.NoError(t, raw.Set(ctx, "test:py", `{"value": {"a": 1}, "last_modified": 5}`, 0).Err())
		dict := memory.MapOf[int](m, "py")
		require.NoError(t, dict.Set(ctx, "b", 2))
		all, err := dict.All(ctx)
		require.NoError(t, err)
		require.Equal(t, map[string]int{"a": 1, "b": 2}, all, "another writer's keys are kept")

		require.NoError(t, m.Set(ctx, "list", []int{1}))
		var de *memory.DecodeError
		require.ErrorAs(t, memory.MapOf[int](m, "list").Set(ctx, "k", 1), &de)
		var ee *memory.EncodeError
		require.ErrorAs(t, memory.MapOf[float64](m, "f").Set(ctx, "nan", math.NaN()), &ee)
		require.Zero(t, raw.Exists(ctx, "test:f").Val())
	})
}

// requireList asserts that list holds want.
func requireList[T any](t *testing.T, list *memory.List[T], want ...T) {
	t.Helper()
	got, err := list.All(ctx)
	require.NoError(t, err)
	if want == nil {
		want = []T{}
	}
	require.Equal(t, want, got)
}
