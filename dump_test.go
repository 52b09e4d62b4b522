package memory_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
)

func TestDumpRestore(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		stored := map[string]string{
			"test:python":     `{"value": {"a": [1, 2], "b": "x"}, "last_modified": 1732838400123456789}`,
			"test:conv:topic": `{"value": "weather", "last_modified": 5}`,
			"test:bare":       `[1,  2]`,
			"other:x":         `{"value": 1, "last_modified": 1}`,
		}
		for key, s := range stored {
			require.NoError(t, raw.Set(ctx, key, s, 0).Err())
		}
		require.NoError(t, raw.RPush(ctx, "test:list", "x").Err())

		records, err := m.Dump(ctx)
		var de *memory.DecodeError
		require.ErrorAs(t, err, &de, "the list is reported")
		require.Equal(t, "test:list", de.Key)
		require.Equal(t, map[string]memory.Record{
			"python":     {Value: json.RawMessage(`{"a": [1, 2], "b": "x"}`), LastModified: 1732838400123456789},
			"conv:topic": {Value: json.RawMessage(`"weather"`), LastModified: 5},
			"bare":       {Value: json.RawMessage(`[1,  2]`)},
		}, records, "values keep their bytes; scopes are included")

		require.NoError(t, raw.Del(ctx, "test:list").Err())
		_, err = m.Clear(ctx)
		require.NoError(t, err)
		n, err := m.Restore(ctx, records, false)
		require.NoError(t, err)
		require.Equal(t, 3, n)
		require.Equal(t, stored["test:python"], raw.Get(ctx, "test:python").Val(), "byte for byte")
		require.Equal(t, stored["test:conv:topic"], raw.Get(ctx, "test:conv:topic").Val())
		requireValue(t, m, "bare", []int{1, 2})

		// The last writer wins, unless forced.
		newer := time.Now().UnixNano()
		require.NoError(t, raw.Set(ctx, "test:python", `{"value": "newer", "last_modified": `+jsonInt(newer)+`}`, 0).Err())
		n, err = m.Restore(ctx, records, false)
		require.NoError(t, err)
		require.Zero(t, n, "nothing older than the server, nothing changed")
		requireValue(t, m, "python", "newer")
		n, err = m.Restore(ctx, records, true)
		require.NoError(t, err)
		require.Equal(t, 1, n, "forced over the newer value; the others are unchanged")
		require.Equal(t, stored["test:python"], raw.Get(ctx, "test:python").Val())
	})
}

func TestRestoreRefusesBadRecords(t *testing.T) {
	m := newMemory(t, miniredisAddr(t))
	for key, r := range map[string]memory.Record{
		"with space": {Value: json.RawMessage(`1`)},
		"":           {Value: json.RawMessage(`1`)},
	} {
		_, err := m.Restore(ctx, map[string]memory.Record{"good": {Value: json.RawMessage(`1`)}, key: r}, false)
		require.ErrorIs(t, err, memory.ErrInvalidName)
	}
	_, err := m.Restore(ctx, map[string]memory.Record{"good": {Value: json.RawMessage(`1`)}, "bad": {Value: json.RawMessage(`{`)}}, false)
	var de *memory.DecodeError
	require.ErrorAs(t, err, &de)
	require.Equal(t, "test:bad", de.Key)
	names, err := m.Keys(ctx)
	require.NoError(t, err)
	require.Empty(t, names, "nothing written")
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
