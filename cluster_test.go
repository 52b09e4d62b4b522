package memory_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// TestCluster runs the core, binding, update, collection and isolation
// behaviour on a real three-master Redis Cluster.
func TestCluster(t *testing.T) {
	cluster := redisserver.StartCluster(t, 3)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs})
	t.Cleanup(func() { client.Close() })
	newTenant := func(t *testing.T, prefix string) *memory.Memory {
		t.Helper()
		m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix(prefix))
		require.NoError(t, err)
		t.Cleanup(func() { m.Close() })
		return m
	}

	t.Run("core", func(t *testing.T) {
		m := newTenant(t, "core:")
		want := make([]string, 300)
		for i := range want {
			want[i] = fmt.Sprintf("k%03d", i)
			require.NoError(t, m.Set(ctx, want[i], i))
		}
		conv, err := m.Scope("conv")
		require.NoError(t, err)
		require.NoError(t, conv.Set(ctx, "topic", "x"))
		requireSpread(t, client, "core:")

		names, err := m.Keys(ctx)
		require.NoError(t, err)
		require.Equal(t, want, names, "every master is scanned")
		require.Equal(t, slices.Concat([]string{"conv:topic"}, want), walk(t, m), "every master is walked")
		requireValue(t, m, "k123", 123)
		ok, err := m.Has(ctx, "k007")
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, m.Delete(ctx, "k007"))
		require.ErrorIs(t, m.Expire(ctx, "k007", 0), memory.ErrNotFound)

		n, err := m.Clear(ctx)
		require.NoError(t, err)
		require.Equal(t, 300, n, "299 names and the scope's key")
		names, err = m.Keys(ctx)
		require.NoError(t, err)
		require.Empty(t, names)
	})

	t.Run("isolation", func(t *testing.T) {
		for _, pair := range [][2]string{{"tenant1:", "tenant10:"}, {"a*:", "ab:"}, {"{t}:", "{t}x:"}} {
			mine, theirs := newTenant(t, pair[0]), newTenant(t, pair[1])
			for i := range 50 {
				require.NoError(t, mine.Set(ctx, fmt.Sprint("m", i), i))
				require.NoError(t, theirs.Set(ctx, fmt.Sprint("t", i), i))
			}
			names, err := mine.Keys(ctx)
			require.NoError(t, err)
			require.Len(t, names, 50, pair)
			n, err := mine.Clear(ctx)
			require.NoError(t, err)
			require.Equal(t, 50, n, pair)
			names, err = theirs.Keys(ctx)
			require.NoError(t, err)
			require.Len(t, names, 50, "%v: the other tenant keeps every key", pair)
			_, err = theirs.Clear(ctx)
			require.NoError(t, err)
		}
	})

	t.Run("binding across slots", func(t *testing.T) {
		m := newTenant(t, "bind:")
		src := fullSession()
		require.NoError(t, m.Save(ctx, &src), "no CROSSSLOT: one pipeline, atomic per key")
		requireSpread(t, client, "bind:")
		var dst session
		require.NoError(t, m.Load(ctx, &dst))
		src.Secret = ""
		require.Equal(t, src, dst)
	})

	t.Run("hash-tagged save is one command", func(t *testing.T) {
		m := newTenant(t, "{tenant1}:")
		var mset atomic.Int32
		client.AddHook(commandWatcher(func(names []string) {
			if names[0] == "mset" {
				mset.Add(1)
			}
		}))
		require.NoError(t, m.Save(ctx, &struct{ A, B int }{}))
		require.Equal(t, int32(1), mset.Load(), "one MSET")
		// One slot: a single MGET reads the keys at one instant.
		requireAtomicSaves(t, m, client)
	})

	t.Run("update and collections", func(t *testing.T) {
		m := newTenant(t, "upd:")
		list := memory.ListOf[int](m, "list")
		errs := make(chan error, 4)
		for w := range 4 {
			go func() {
				for i := range 50 {
					if err := memory.Update(ctx, m, "counter", func(n *int) error { *n++; return nil }); err != nil {
						errs <- err
						return
					}
					if err := list.Append(ctx, w*100+i); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range 4 {
			require.NoError(t, <-errs)
		}
		requireValue(t, m, "counter", 200)
		n, err := list.Len(ctx)
		require.NoError(t, err)
		require.Equal(t, 200, n)
		require.NoError(t, memory.MapOf[int](m, "map").Set(ctx, "k", 1))
	})

	t.Run("ACL tenant", func(t *testing.T) {
		args := []any{"ACL", "SETUSER", "acltenant"}
		for _, rule := range append(tenantACL(t), "+cluster|slots") {
			args = append(args, rule)
		}
		args = append(args, "on", ">pw", "~acl:*")
		for _, addr := range cluster.Addrs {
			require.NoError(t, rawClient(t, addr).Do(ctx, args...).Err(), addr)
		}
		tenant := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: cluster.Addrs, Username: "acltenant", Password: "pw",
		})
		t.Cleanup(func() { tenant.Close() })
		m, err := memory.New(ctx, memory.WithClient(tenant), memory.WithPrefix("acl:"))
		require.NoError(t, err)
		t.Cleanup(func() { m.Close() })

		for i := range 30 {
			require.NoError(t, m.Set(ctx, fmt.Sprint("k", i), i))
		}
		requireSpread(t, client, "acl:")
		requireValue(t, m, "k7", 7)
		require.NoError(t, memory.Update(ctx, m, "n", func(n *int) error { *n++; return nil }))
		require.NoError(t, m.Save(ctx, &struct{ A, B int }{1, 2}))
		names, err := m.Keys(ctx)
		require.NoError(t, err)
		require.Len(t, names, 33)
		n, err := m.Clear(ctx)
		require.NoError(t, err)
		require.Equal(t, 33, n)

		other, err := memory.New(ctx, memory.WithClient(tenant), memory.WithPrefix("core:"))
		require.NoError(t, err)
		t.Cleanup(func() { other.Close() })
		err = other.Set(ctx, "k", 1)
		require.True(t, redis.IsPermissionError(err), "outside its prefix: %v", err)
	})

	t.Run("REDIS_CLUSTER_ADDRS", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("REDIS_CLUSTER_ADDRS", strings.Join(cluster.Addrs, ", "))
		t.Setenv("REDIS_PREFIX", "env:")
		m, err := memory.New(ctx)
		require.NoError(t, err)
		defer m.Close()
		_, isCluster := m.Client().(*redis.ClusterClient)
		require.True(t, isCluster)
		for i := range 30 {
			require.NoError(t, m.Set(ctx, fmt.Sprint("k", i), i))
		}
		names, err := m.Keys(ctx)
		require.NoError(t, err)
		require.Len(t, names, 30)

		t.Setenv("REDIS_DB", "1")
		_, err = memory.New(ctx)
		require.ErrorContains(t, err, "REDIS_DB")
	})
}

// requireSpread asserts that every master holds keys under prefix.
func requireSpread(t *testing.T, client *redis.ClusterClient, prefix string) {
	t.Helper()
	var masters, holding atomic.Int32
	err := client.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		masters.Add(1)
		keys, _, err := node.Scan(ctx, 0, prefix+"*", 10000).Result()
		if len(keys) > 0 {
			holding.Add(1)
		}
		return err
	})
	require.NoError(t, err)
	require.Equal(t, int32(3), masters.Load())
	require.Equal(t, int32(3), holding.Load(), "keys on every master")
}

// commandWatcher is a hook that calls seen with the name of each command
// sent alone, and the command names of each pipeline.
type commandWatcher func(names []string)

func (w commandWatcher) DialHook(next redis.DialHook) redis.DialHook { return next }

func (w commandWatcher) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		w([]string{cmd.Name()})
		return next(ctx, cmd)
	}
}

func (w commandWatcher) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, cmd := range cmds {
			names[i] = cmd.Name()
		}
		w(names)
		return next(ctx, cmds)
	}
}

// TestClusterMasterOutage stops one master of a cluster, with its data in an
// append-only file, and starts it again: the writes made meanwhile are
// queued, and reach their slots once the master is back, without a call to
// Flush.
func TestClusterMasterOutage(t *testing.T) {
	cluster := redisserver.StartCluster(t, 3, "--appendonly", "yes", "--appendfsync", "always")
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs})
	t.Cleanup(func() { client.Close() })
	m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix("outage:"),
		memory.WithTimeout(300*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	name := func(i int) string { return fmt.Sprint("k", i) }
	for i := range 30 {
		require.NoError(t, m.Set(ctx, name(i), i))
	}
	requireSpread(t, client, "outage:")

	cluster.Servers[0].Stop()
	for i := range 30 {
		require.NoError(t, m.Set(ctx, name(i), 100+i), "written, or queued from the first write that meets the down master on")
	}
	require.Positive(t, m.Pending())

	cluster.Servers[0].Restart()
	requireEventually(t, 60*time.Second, func() bool { return m.Pending() == 0 },
		"the background loop flushes the queue once the master is back")
	for i := range 30 {
		require.JSONEq(t, fmt.Sprint(100+i), storedValue(t, client, "outage:"+name(i)), name(i))
	}
}
