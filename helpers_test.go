package memory_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
// With MEMORY_TEST_ACL=1, a real server's Memory connects as a user of the
// README's tenant ACL line, allowed every key.
func newMemory(t *testing.T, addr string, opts ...memory.Option) *memory.Memory {
	t.Helper()
	opts = append([]memory.Option{memory.WithURL("redis://" + aclUser(t, addr) + addr), memory.WithPrefix("test:")}, opts...)
	m, err := memory.New(context.Background(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// rawClient returns a plain go-redis client on the server at addr, closed at
// cleanup: the view of another process.
func rawClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
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

// roundTrips is a go-redis hook that counts round trips: each command sent
// alone and each pipeline, with the names of the pipelines' commands.
type roundTrips struct {
	mu        sync.Mutex
	count     int
	singles   []string // the names of the commands sent alone
	pipelines [][]string
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.count++
		h.singles = append(h.singles, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, cmd := range cmds {
			names[i] = cmd.Name()
		}
		h.mu.Lock()
		h.count++
		h.pipelines = append(h.pipelines, names)
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// reset forgets what was counted.
func (h *roundTrips) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.count, h.singles, h.pipelines = 0, nil, nil
}

// pipelined returns how many pipelines were counted.
func (h *roundTrips) pipelined() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.pipelines)
}

// commands returns how many commands were counted, those of pipelines
// included.
func (h *roundTrips) commands() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.count
	for _, p := range h.pipelines {
		n += len(p) - 1
	}
	return n
}

// countedMemory returns a Memory with prefix "test:" over a client on addr
// that counts its round trips. The client's connections, of its main pool
// and of its pipeline pool, are open before counting starts, so that
// handshakes are not counted. Like the client New creates, it fails a
// refused dial at once and retries a failed command once: go-redis fails
// every dial at once, for up to a second, after PoolSize failed ones.
func countedMemory(t *testing.T, addr string, opts ...memory.Option) (*memory.Memory, *roundTrips) {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr, DialerRetries: 1, MaxRetries: 1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	require.NoError(t, client.Ping(ctx).Err())
	_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error { return p.Ping(ctx).Err() })
	require.NoError(t, err)
	_, err = client.TxPipelined(ctx, func(p redis.Pipeliner) error { return p.Ping(ctx).Err() })
	require.NoError(t, err)
	hook := &roundTrips{}
	client.AddHook(hook)
	m, err := memory.New(ctx, append([]memory.Option{memory.WithClient(client), memory.WithPrefix("test:")}, opts...)...)
	require.NoError(t, err)
	return m, hook
}

// sentinelMemory starts a master, its replica and a Sentinel, and returns
// them with a Memory of prefix "test:", and opts, over a failover client,
// closed when the test ends.
func sentinelMemory(t *testing.T, opts ...memory.Option) (*redisserver.Sentinel, *memory.Memory) {
	t.Helper()
	s := redisserver.StartSentinel(t)
	client := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    redisserver.MasterName,
		SentinelAddrs: []string{s.Sentinel.Addr},
	})
	t.Cleanup(func() { client.Close() })
	m, err := memory.New(ctx, append([]memory.Option{memory.WithClient(client), memory.WithPrefix("test:"),
		memory.WithTimeout(300 * time.Millisecond)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return s, m
}

// aclUser returns "user:password@" for a URL of the server at addr, of a
// user with the README's tenant ACL line and every key, made on the
// server, when MEMORY_TEST_ACL=1 and the server has ACLs; "" otherwise.
func aclUser(t *testing.T, addr string) string {
	t.Helper()
	if os.Getenv("MEMORY_TEST_ACL") != "1" {
		return ""
	}
	admin := rawClient(t, addr)
	args := []any{"ACL", "SETUSER", "suite"}
	for _, rule := range tenantACL(t) {
		args = append(args, rule)
	}
	args = append(args, "on", ">pw-suite", "~*")
	if err := admin.Do(ctx, args...).Err(); err != nil {
		// miniredis has no ACLs; a server with a password is the test's.
		require.True(t, strings.Contains(err.Error(), "unknown") || redis.HasErrorPrefix(err, "NOAUTH") || strings.Contains(err.Error(), "unauthenticated"), "%v", err)
		return ""
	}
	require.NoError(t, admin.Do(ctx, "ACL", "SAVE").Err(), "the user comes back with a restart")
	return "suite:pw-suite@"
}

// concurrently calls fn(g) for each g below n, each from a goroutine of its
// own, and fails t with the errors they returned.
func concurrently(t *testing.T, n int, fn func(g int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range n {
		wg.Go(func() {
			if err := fn(g); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// A batchCounter counts the batches of puts that a client sends, the puts
// in them, and the batches of puts under more than one prefix (up to a
// key's first ':'), its MGETs, batches of reads, and the commands the
// server refused for want of permission: as a hook of a Memory's
// auto-pipeliner (PipelineHook), those of every Memory over its client.
type batchCounter struct{ calls, puts, mixed, reads, denied atomic.Int64 }

func (h *batchCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *batchCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if cmd.Name() == "mget" {
			h.reads.Add(1)
		}
		if len(args) > 3 && (cmd.Name() == "evalsha" || cmd.Name() == "eval") {
			if keys, ok := args[2].(int); ok && len(args) > 3+keys && args[3+keys] == "puts" {
				h.calls.Add(1)
				h.puts.Add(int64(keys))
				prefixes := map[string]bool{}
				for _, key := range args[3 : 3+keys] {
					prefix, _, _ := strings.Cut(fmt.Sprint(key), ":")
					prefixes[prefix] = true
				}
				if len(prefixes) > 1 {
					h.mixed.Add(1)
				}
			}
		}
		err := next(ctx, cmd)
		if redis.IsPermissionError(err) {
			h.denied.Add(1)
		}
		return err
	}
}

func (h *batchCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
