package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory/internal/redisserver"
)

// TestLargeNamespace dumps and clears 100,000 keys on a real server, in SCAN
// batches and never with KEYS, and reports the time against redis-cli
// --scan | xargs redis-cli del doing the same on the same server.
func TestLargeNamespace(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 keys: skipped with -short")
	}
	const count = 100_000
	srv := redisserver.Start(t)
	cli, err := exec.LookPath("redis-cli")
	require.NoError(t, err, "redis-cli comes with redis-server")
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer raw.Close()
	fill := func() {
		pipe := raw.Pipeline()
		for i := range count {
			pipe.Set(ctx, fmt.Sprintf("big:k%06d", i), `{"value": 1, "last_modified": 1}`, 0)
		}
		pipe.Set(ctx, "bigger:k", `{"value": 1, "last_modified": 1}`, 0)
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
	}
	stats := func() string {
		return raw.Info(ctx, "commandstats").Val()
	}
	calls := func(info, cmd string) int {
		for _, line := range strings.Split(info, "\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				return n
			}
		}
		return 0
	}
	fill()

	require.NoError(t, raw.ConfigResetStat(ctx).Err())
	start := time.Now()
	file := filepath.Join(t.TempDir(), "big.json")
	ok(t, srv.Addr, "--prefix=big:", "dump", "-o", file)
	dumpTime := time.Since(start)
	info := stats()
	require.Zero(t, calls(info, "keys"), "never KEYS")
	require.GreaterOrEqual(t, calls(info, "scan"), count/1000, "SCAN batches of about 1,000")
	var doc struct{ Records map[string]json.RawMessage }
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &doc))
	require.Len(t, doc.Records, count)

	require.NoError(t, raw.ConfigResetStat(ctx).Err())
	start = time.Now()
	out := ok(t, srv.Addr, "--prefix=big:", "clear", "--yes")
	clearTime := time.Since(start)
	require.Equal(t, fmt.Sprintf("deleted %d keys under \"big:\"\n", count), out)
	info = stats()
	require.Zero(t, calls(info, "keys"), "never KEYS")
	require.GreaterOrEqual(t, calls(info, "scan"), count/1000)
	require.Equal(t, int64(1), raw.DBSize(ctx).Val(), "only bigger:k is left")

	fill()
	start = time.Now()
	port := strconv.Itoa(srv.Port)
	xargs := exec.Command("sh", "-c", cli+" -p "+port+" --scan --pattern 'big:*' | xargs "+cli+" -p "+port+" del")
	xout, err := xargs.CombinedOutput()
	require.NoError(t, err, "%s", xout)
	xargsTime := time.Since(start)
	require.Equal(t, int64(1), raw.DBSize(ctx).Val())

	t.Logf("100,000 keys: memory dump %v, memory clear %v; redis-cli --scan | xargs redis-cli del: %v (clear %.2fx of it)",
		dumpTime.Round(time.Millisecond), clearTime.Round(time.Millisecond), xargsTime.Round(time.Millisecond),
		float64(clearTime)/float64(xargsTime))
}
