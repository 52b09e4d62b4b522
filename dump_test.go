package memory_test

import (
	"encoding/json"
	"fmt"
	"strconv"
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
	good := memory.Record{Value: json.RawMessage(`1`)}
	for _, key := range []string{"with space", "", "a::b", "c:", ":c", "conv:a b", "x\x00y"} {
		t.Run(key, func(t *testing.T) {
			_, err := m.Restore(ctx, map[string]memory.Record{"good": good, "conv:good": good, key: good}, false)
			require.ErrorIs(t, err, memory.ErrInvalidName)
			require.Contains(t, err.Error(), strconv.Quote(key))
		})
	}
	_, err := m.Restore(ctx, map[string]memory.Record{"good": good, "bad": {Value: json.RawMessage(`{`)}}, false)
	var de *memory.DecodeError
	require.ErrorAs(t, err, &de)
	require.Equal(t, "test:bad", de.Key)
	records, err := m.Dump(ctx)
	require.NoError(t, err)
	require.Empty(t, records, "nothing written")
}

// TestRestoreBatches restores thousands of records in a few round trips:
// pipelines of a thousand, each record still checked against the server's
// stamp on its own.
func TestRestoreBatches(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		const n = 2500
		records := make(map[string]memory.Record, n)
		for i := range n {
			records[fmt.Sprintf("s%d:k%d", i%7, i)] = memory.Record{Value: json.RawMessage(strconv.Itoa(i)), LastModified: int64(i)}
		}
		raw := rawClient(t, addr)
		require.NoError(t, raw.Set(ctx, "test:s1:k1", `{"value": "newer", "last_modified": 99999}`, 0).Err())
		m, trips := countedMemory(t, addr, memory.WithTimeout(10*time.Second)) // miniredis runs scripts slowly under -race
		written, err := m.Restore(ctx, records, false)
		require.NoError(t, err)
		require.Equal(t, n-1, written, "all but the record the server holds newer")
		require.LessOrEqual(t, trips.count, n/1000+1+2, "a pipeline per thousand records, and loading the script once")
		require.Equal(t, `{"value": 2499, "last_modified": 2499}`, raw.Get(ctx, "test:s0:k2499").Val())
		require.Equal(t, `{"value": "newer", "last_modified": 99999}`, raw.Get(ctx, "test:s1:k1").Val())
	})
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
