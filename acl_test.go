package memory_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// tenantACL returns the rules of the documented ACL line for a tenant user,
// less the user, its password and its key pattern, which the tests choose:
// the tests run with exactly the line users are told to use.
func tenantACL(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	const line = "ACL SETUSER tenant1 on >secret1 resetkeys ~tenant1:* "
	i := strings.Index(string(readme), line)
	require.GreaterOrEqual(t, i, 0, "README.md holds the tenant ACL line")
	rules, _, _ := strings.Cut(string(readme)[i+len(line):], "\n")
	return append([]string{"resetkeys"}, strings.Fields(rules)...)
}

// TestACLTenants gives two tenants a Redis user each, limited to its own
// prefix: each works fully in its prefix, and is refused in the other's.
func TestACLTenants(t *testing.T) {
	srv := redisserver.Start(t)
	admin := rawClient(t, srv.Addr)
	for _, tenant := range []string{"tenant1", "tenant2"} {
		args := []any{"ACL", "SETUSER", tenant}
		for _, rule := range tenantACL(t) {
			args = append(args, rule)
		}
		args = append(args, "on", ">pw-"+tenant, "~"+tenant+":*")
		require.NoError(t, admin.Do(ctx, args...).Err())
	}
	as := func(t *testing.T, user, prefix string, opts ...memory.Option) *memory.Memory {
		t.Helper()
		return newMemory(t, srv.Addr, append(opts, memory.WithURL("redis://"+user+":pw-"+user+"@"+srv.Addr), memory.WithPrefix(prefix))...)
	}

	for _, tenant := range []string{"tenant1", "tenant2"} {
		t.Run(tenant+" in its prefix", func(t *testing.T) {
			m := as(t, tenant, tenant+":", memory.WithLocalCache(100))
			require.NoError(t, m.Set(ctx, "data", tenant+" data"))
			requireValue(t, m, "data", tenant+" data")
			ok, err := m.Has(ctx, "data")
			require.NoError(t, err)
			require.True(t, ok)
			require.NoError(t, m.Expire(ctx, "data", time.Hour))
			require.NoError(t, memory.Update(ctx, m, "n", func(n *int) error { *n++; return nil }))
			require.NoError(t, memory.ListOf[string](m, "list").Append(ctx, "x"))
			require.NoError(t, memory.MapOf[int](m, "map").Set(ctx, "k", 1))
			_, err = m.Incr(ctx, "count", 1)
			require.NoError(t, err)
			_, err = m.SetIfAbsent(ctx, "once", 1)
			require.NoError(t, err)
			require.NoError(t, m.SetTTL(ctx, "ttl", 1, time.Hour))
			_, err = m.TTL(ctx, "ttl")
			require.NoError(t, err)
			require.NoError(t, m.Persist(ctx, "ttl"))
			log := memory.LogOf[string](m, "log")
			require.NoError(t, log.Append(ctx, "x", "y"))
			_, err = log.Last(ctx, 1)
			require.NoError(t, err)
			_, err = log.Len(ctx)
			require.NoError(t, err)
			require.NoError(t, log.Trim(ctx, 1))
			records, err := m.Dump(ctx)
			require.NoError(t, err)
			_, err = m.Restore(ctx, records, true)
			require.NoError(t, err)
			_, err = m.Scopes(ctx)
			require.NoError(t, err)
			type state struct{ A, B int }
			require.NoError(t, m.Save(ctx, &state{1, 2}))
			var got state
			require.NoError(t, m.Load(ctx, &got))
			require.Equal(t, state{1, 2}, got)
			names, err := m.Keys(ctx)
			require.NoError(t, err)
			require.Equal(t, []string{"A", "B", "count", "data", "list", "log", "map", "n", "once", "ttl"}, names)
			changes, err := m.Watch(t.Context())
			require.NoError(t, err)
			require.NoError(t, m.Delete(ctx, "n"))
			require.Equal(t, memory.Change{Name: "n", Deleted: true}, nextChange(t, changes))
			requireValue(t, m, "data", tenant+" data")
			require.Positive(t, m.Stats().CacheHits, "the local cache answered")
		})
	}

	// batched runs 64 goroutines of Sets and Gets through m, with
	// auto-pipelining, whose pipeliner's client batches counts.
	batched := func(t *testing.T, m *memory.Memory, batches *batchCounter) {
		t.Helper()
		concurrently(t, 64, func(g int) error {
			name := fmt.Sprint("g", g)
			for i := range 20 {
				if err := m.Set(ctx, name, i); err != nil {
					return err
				}
				if err := m.Get(ctx, name, new(int)); err != nil {
					return err
				}
			}
			return nil
		})
		t.Logf("%d batches of puts, %d of reads, %d commands denied", batches.calls.Load(), batches.reads.Load(), batches.denied.Load())
	}
	t.Run("tenant1 batched", func(t *testing.T) {
		m := as(t, "tenant1", "tenant1:", memory.WithAutoPipeline(true))
		batches := &batchCounter{}
		memory.PipelineHook(m, batches)
		batched(t, m, batches)
		require.Positive(t, batches.calls.Load()+batches.reads.Load(), "commands went in batches")
		require.Zero(t, batches.denied.Load(), "the line allows the batches' commands")
	})
	t.Run("a line without mget", func(t *testing.T) {
		args := []any{"ACL", "SETUSER", "older"}
		for _, rule := range tenantACL(t) {
			if rule != "+mget" {
				args = append(args, rule)
			}
		}
		require.NoError(t, admin.Do(ctx, append(args, "on", ">pw-older", "~older:*")...).Err())
		m := as(t, "older", "older:", memory.WithAutoPipeline(true))
		batches := &batchCounter{}
		memory.PipelineHook(m, batches)
		batched(t, m, batches)
		denied := batches.denied.Load()
		require.Positive(t, denied, "the server refused an MGET")
		batched(t, m, batches)
		require.Equal(t, denied, batches.denied.Load(), "reads no longer go in batches")
	})

	for _, denied := range []string{"-client|tracking", "-subscribe"} {
		t.Run("a user without "+denied[1:], func(t *testing.T) {
			require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "untracked", "reset", "on", ">pw-untracked", "~untracked:*", "&*", "+@all", denied).Err())
			_, err := as(t, "untracked", "untracked:").Watch(ctx)
			require.ErrorContains(t, err, "CLIENT TRACKING")
			require.True(t, redis.IsPermissionError(err), "%v", err)
		})
	}

	t.Run("tenant1 in tenant2's prefix", func(t *testing.T) {
		m := as(t, "tenant1", "tenant2:")
		for op, err := range map[string]error{
			"Set":    m.Set(ctx, "data", "stolen"),
			"Get":    m.Get(ctx, "data", new(string)),
			"Delete": m.Delete(ctx, "data"),
			"Update": memory.Update(ctx, m, "n", func(n *int) error { *n = 0; return nil }),
			"Save":   m.Save(ctx, &struct{ A int }{9}),
		} {
			require.Error(t, err, op)
			require.True(t, redis.IsPermissionError(err), "%s: %v", op, err)
			require.NotErrorIs(t, err, memory.ErrUnavailable, op)
		}
		require.Zero(t, m.Pending(), "refusals are returned, never queued")
		_, err := m.Clear(ctx)
		require.True(t, redis.IsPermissionError(err), "%v", err)
		_, err = m.Watch(ctx, "data")
		require.True(t, redis.IsPermissionError(err), "the watch cannot read what it would tell: %v", err)

		// SCAN is not filtered by key permissions: the server shows every
		// user the names of every key; it is the library that keeps a
		// Memory to its own prefix.
		names, err := m.Keys(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"A", "B", "count", "data", "list", "log", "map", "once", "ttl"}, names)
		requireValue(t, as(t, "tenant2", "tenant2:"), "data", "tenant2 data")
	})
}
