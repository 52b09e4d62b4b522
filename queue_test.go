package memory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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

// offlineMemory returns a miniredis and a Memory with prefix "test:" on it,
// over a client that counts its round trips.
func offlineMemory(t *testing.T, opts ...memory.Option) (*miniredis.Miniredis, *memory.Memory, *roundTrips) {
	t.Helper()
	srv := miniredis.RunT(t)
	m, hook := countedMemory(t, srv.Addr(), opts...)
	t.Cleanup(func() { m.Close() })
	return srv, m, hook
}

// envelope returns a stored envelope of value with the given stamp.
func envelope(value string, stamp int64) string {
	return fmt.Sprintf(`{"value": %s, "last_modified": %d}`, value, stamp)
}

func TestOfflineWritesAndReads(t *testing.T) {
	srv, m, hook := offlineMemory(t)
	require.NoError(t, m.Set(ctx, "known", "before"))
	srv.Close()

	require.NoError(t, m.Set(ctx, "a", 1), "queued, not an error")
	requireOffline(t, m)
	hook.reset()
	require.NoError(t, m.Set(ctx, "b", 2))
	require.NoError(t, m.Set(ctx, "a", 3))
	require.NoError(t, m.Delete(ctx, "known"))
	require.Zero(t, hook.count, "once the server is known lost, writes go to the queue without I/O")
	require.Equal(t, 3, m.Pending(), "writes to one name coalesce")

	requireValue(t, m, "a", 3) // this process's queued writes are read back
	requireValue(t, m, "b", 2)
	require.ErrorIs(t, m.Get(ctx, "known", new(string)), memory.ErrNotFound, "deleted here: known absent")
	err := m.Get(ctx, "never", new(string))
	require.ErrorIs(t, err, memory.ErrUnavailable)
	require.NotErrorIs(t, err, memory.ErrNotFound)
	ok, err := m.Has(ctx, "a")
	require.NoError(t, err)
	require.True(t, ok)
	_, err = m.Keys(ctx)
	require.ErrorIs(t, err, memory.ErrUnavailable)
	_, err = m.Clear(ctx)
	require.ErrorIs(t, err, memory.ErrUnavailable)

	err = m.Flush(ctx)
	require.ErrorIs(t, err, memory.ErrUnavailable, "once a probe of the lost server failed")
	require.ErrorContains(t, err, "3 queued writes not delivered")

	require.NoError(t, srv.Restart())
	require.NoError(t, m.Flush(ctx))
	require.Zero(t, m.Pending())
	raw := rawClient(t, srv.Addr())
	require.JSONEq(t, "3", storedValue(t, raw, "test:a"))
	require.JSONEq(t, "2", storedValue(t, raw, "test:b"))
	require.Zero(t, raw.Exists(ctx, "test:known").Val())
}

func TestOfflineReadsKnownValues(t *testing.T) {
	srv, m, _ := offlineMemory(t)
	require.NoError(t, m.Set(ctx, "written", "w"))
	require.NoError(t, rawClient(t, srv.Addr()).Set(ctx, "test:read", envelope(`"r"`, 1), 0).Err())
	requireValue(t, m, "read", "r")
	srv.Close()

	requireValue(t, m, "written", "w") // known from a write
	requireValue(t, m, "read", "r")    // known from a read

	var known struct {
		Written string `memory:"written"`
		Read    string `memory:"read"`
	}
	require.NoError(t, m.Load(ctx, &known), "every field known")
	require.Equal(t, "w", known.Written)
	require.Equal(t, "r", known.Read)

	partly := struct {
		Written string `memory:"written"`
		Unknown string `memory:"unknown"`
	}{Unknown: "untouched"}
	err := m.Load(ctx, &partly)
	require.ErrorIs(t, err, memory.ErrUnavailable)
	require.ErrorContains(t, err, "1 of 2 fields")
	require.Equal(t, "w", partly.Written)
	require.Equal(t, "untouched", partly.Unknown)
}

// TestOfflineOrder queues writes of several kinds to one name, and to
// others: each name's writes reach the server in the order they were made.
func TestOfflineOrder(t *testing.T) {
	srv, m, _ := offlineMemory(t)
	list := memory.ListOf[string](m, "list")
	srv.Close()
	require.NoError(t, list.Append(ctx, "a"))
	requireOffline(t, m)
	require.NoError(t, m.Set(ctx, "list", []string{"x"}))
	require.NoError(t, list.Append(ctx, "b"))
	require.NoError(t, m.Set(ctx, "other", 1))
	require.NoError(t, list.Insert(ctx, 0, "first"))
	require.NoError(t, m.Set(ctx, "other", 2))
	require.NoError(t, srv.Restart())
	require.NoError(t, m.Flush(ctx))
	requireList(t, list, "first", "x", "b")
	requireValue(t, m, "other", 2)
}

// TestOfflineDeliveredKnown delivers writes queued in an outage, whole
// values and a list append, then loses the server again: the whole values,
// which the server now holds, are still known here; the list, which the
// append changed on the server, is not.
func TestOfflineDeliveredKnown(t *testing.T) {
	type pair struct{ A, B int }
	srv, m, _ := offlineMemory(t)
	srv.Close()
	require.NoError(t, m.Set(ctx, "set", "s"))
	requireOffline(t, m)
	require.NoError(t, m.Save(ctx, &pair{1, 2}))
	require.NoError(t, m.Delete(ctx, "deleted"))
	require.NoError(t, memory.ListOf[int](m, "list").Append(ctx, 1))
	require.NoError(t, srv.Restart())
	require.NoError(t, m.Flush(ctx))
	require.Zero(t, m.Pending())
	srv.Close()

	requireValue(t, m, "set", "s")
	var got pair
	require.NoError(t, m.Load(ctx, &got))
	require.Equal(t, pair{1, 2}, got)
	require.ErrorIs(t, m.Get(ctx, "deleted", new(string)), memory.ErrNotFound)
	require.ErrorIs(t, m.Get(ctx, "list", new([]int)), memory.ErrUnavailable)
}

// A deliveryGate is a go-redis hook that, armed, holds back every script
// call, the queue's deliveries, until released, saying on arrived that one
// waits; and calls afterRead with the count of reads once the reply of each
// GET, or pipeline of them, is in.
type deliveryGate struct {
	armed     atomic.Bool
	arrived   chan struct{}
	release   chan struct{}
	reads     int
	afterRead func(n int)
}

func (g *deliveryGate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *deliveryGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !g.armed.Load() {
			return next(ctx, cmd)
		}
		switch cmd.Name() {
		case "evalsha": // first of each delivery; an EVAL after NOSCRIPT passes
			g.arrived <- struct{}{}
			<-g.release
		case "get":
			err := next(ctx, cmd)
			g.read()
			return err
		}
		return next(ctx, cmd)
	}
}

func (g *deliveryGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if g.armed.Load() && cmds[0].Name() == "get" {
			g.read()
		}
		return err
	}
}

func (g *deliveryGate) read() {
	g.reads++
	g.afterRead(g.reads)
}

// TestOfflineReadCrossesDeliveries reads a name while the queue delivers
// three writes to it, one while each round trip of the read is on its way,
// after the read reached the server; the last read finds the queue empty.
// The read returns the last write all the same, not what the server held
// before it: by Get, and by Load.
func TestOfflineReadCrossesDeliveries(t *testing.T) {
	type one struct{ K int }
	for name, read := range map[string]func(m *memory.Memory) (int, error){
		"get": func(m *memory.Memory) (int, error) { return memory.GetAs[int](ctx, m, "K") },
		"load": func(m *memory.Memory) (int, error) {
			var v one
			err := m.Load(ctx, &v)
			return v.K, err
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := miniredis.RunT(t)
			client := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialerRetries: 1, MaxRetries: 1, ContextTimeoutEnabled: true})
			t.Cleanup(func() { client.Close() })
			g := &deliveryGate{arrived: make(chan struct{}), release: make(chan struct{})}
			client.AddHook(g)
			// Over one client, the writes of three Memory values to one
			// name are three entries of the queue, not one merged.
			ms := make([]*memory.Memory, 3)
			for i := range ms {
				m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix("test:"))
				require.NoError(t, err)
				t.Cleanup(func() { m.Close() })
				ms[i] = m
			}
			srv.Close()
			for i, m := range ms {
				require.NoError(t, m.Set(ctx, "K", i+1))
				require.Equal(t, 1, m.Pending())
			}
			require.NoError(t, srv.Restart())

			g.afterRead = func(n int) {
				if n > len(ms) {
					return
				}
				g.release <- struct{}{} // the n-th delivery goes, after the read
				if n < len(ms) {
					<-g.arrived // the next one waits: the n-th is out of the queue
					return
				}
				require.NoError(t, ms[n-1].Flush(ctx)) // the last one is out of the queue
			}
			g.armed.Store(true)
			flushed := make(chan error, 1)
			go func() { flushed <- ms[0].Flush(ctx) }()
			<-g.arrived // the first delivery waits
			got, err := read(ms[0])
			g.armed.Store(false)
			<-flushed
			require.NoError(t, err)
			require.Equal(t, 3, got, "the last write, delivered while the last read was on its way")
			got, err = read(ms[0])
			require.NoError(t, err)
			require.Equal(t, 3, got)
		})
	}
}

func TestOfflineLastWriterWins(t *testing.T) {
	tests := []struct {
		name   string
		server time.Duration // the stamp the server holds at flush, from now
		want   string
	}{
		{"server newer: queued write skipped", time.Hour, `"server"`},
		{"server older: queued write applied", -time.Hour, `"queued"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, m, _ := offlineMemory(t)
			srv.Close()
			require.NoError(t, m.Set(ctx, "x", "queued"))
			// Another writer's value, stored while this process was cut off.
			srv.Set("test:x", envelope(`"server"`, time.Now().Add(tt.server).UnixNano()))
			require.NoError(t, srv.Restart())
			require.NoError(t, m.Flush(ctx))
			require.JSONEq(t, tt.want, storedValue(t, rawClient(t, srv.Addr()), "test:x"))
			require.Zero(t, m.Pending())
		})
	}
}

// TestOfflineReplays queues updates, a list append and a map change, while
// another writer changes the same values on the server: at flush they are
// replayed on the server's values, and no change is lost.
func TestOfflineReplays(t *testing.T) {
	srv, m, _ := offlineMemory(t)
	list, dict := memory.ListOf[int](m, "list"), memory.MapOf[string](m, "map")
	require.NoError(t, m.Set(ctx, "counter", 10))
	requireList(t, list) // read: known here, and kept known by this process's own changes
	require.NoError(t, list.Append(ctx, 1))
	_, err := dict.All(ctx)
	require.NoError(t, err)
	require.NoError(t, dict.Set(ctx, "mine", "a"))
	srv.Close()

	require.NoError(t, memory.Update(ctx, m, "counter", func(n *int) error { *n++; return nil }))
	require.NoError(t, list.Append(ctx, 2))
	require.NoError(t, dict.Set(ctx, "mine", "b"))
	requireValue(t, m, "counter", 11) // applied to the value known here
	requireList(t, list, 1, 2)
	popped, err := list.Pop(ctx)
	require.NoError(t, err, "a known list can be popped offline")
	require.Equal(t, 2, popped)
	require.NoError(t, list.Append(ctx, 3))
	require.Equal(t, 5, m.Pending(), "one entry per queued operation")

	_, err = memory.ListOf[int](m, "unknown").Pop(ctx)
	require.ErrorIs(t, err, memory.ErrUnavailable, "popping a list not known here")
	require.NoError(t, memory.ListOf[int](m, "unknown").Append(ctx, 7), "appending needs no known value")
	require.ErrorIs(t, m.Get(ctx, "unknown", new([]int)), memory.ErrUnavailable)

	// Meanwhile, another writer.
	srv.Set("test:counter", envelope("20", time.Now().UnixNano()))
	srv.Set("test:list", envelope("[1, 9]", time.Now().UnixNano()))
	srv.Set("test:map", envelope(`{"mine": "a", "theirs": "z"}`, time.Now().UnixNano()))
	srv.Set("test:unknown", envelope("[5]", time.Now().UnixNano()))
	require.NoError(t, srv.Restart())
	require.NoError(t, m.Flush(ctx))

	requireValue(t, m, "counter", 21)
	requireList(t, list, 1, 9, 3) // append 2, pop, append 3: replayed on [1, 9]
	requireList(t, memory.ListOf[int](m, "unknown"), 5, 7)
	all, err := dict.All(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"mine": "b", "theirs": "z"}, all)
}

func TestStats(t *testing.T) {
	srv, m, _ := offlineMemory(t)
	require.Equal(t, memory.Stats{}, m.Stats())
	srv.Close()
	require.NoError(t, m.Set(ctx, "a", 1))
	requireOffline(t, m)
	require.NoError(t, m.Set(ctx, "b", 1))
	_, err := m.Incr(ctx, "n", 1)
	require.ErrorIs(t, err, memory.ErrUnavailable, "a counter not known here, with the server known lost")
	require.Equal(t, memory.Stats{Pending: 2, Offline: true}, m.Stats(), "the increment is not queued: it did not apply")
	require.NoError(t, srv.Restart())
	require.NoError(t, m.Flush(ctx))
	require.Equal(t, memory.Stats{Delivered: 2}, m.Stats())
	require.ErrorIs(t, m.Get(ctx, "n", new(int)), memory.ErrNotFound)
}

func TestOfflineAutomaticFlush(t *testing.T) {
	srv, m, _ := offlineMemory(t)
	srv.Close()
	require.NoError(t, m.Set(ctx, "x", "queued"))
	require.NoError(t, srv.Restart())
	raw := rawClient(t, srv.Addr())
	requireEventually(t, 10*time.Second, func() bool { return raw.Exists(ctx, "test:x").Val() == 1 },
		"the background loop flushes the queue without Flush")
	require.JSONEq(t, `"queued"`, storedValue(t, raw, "test:x"))
	requireEventually(t, time.Second, func() bool { return m.Pending() == 0 }, "the queue empties")
}

func TestOfflineQueueLimit(t *testing.T) {
	srv, m, _ := offlineMemory(t, memory.WithMaxPending(2))
	srv.Close()
	require.NoError(t, m.Set(ctx, "a", 1))
	require.NoError(t, m.Set(ctx, "b", 1))
	err := m.Set(ctx, "c", 1)
	require.ErrorIs(t, err, memory.ErrQueueFull)
	require.ErrorIs(t, m.Get(ctx, "c", new(int)), memory.ErrUnavailable, "the refused write is not known either")
	require.NoError(t, m.Set(ctx, "a", 2), "a queued name still takes writes")
	type three struct{ A, X, Y int }
	require.ErrorIs(t, m.Save(ctx, &three{1, 2, 3}), memory.ErrQueueFull, "X and Y would be two names more")
	require.ErrorIs(t, m.Get(ctx, "X", new(int)), memory.ErrUnavailable, "nothing of the Save was queued")
	requireValue(t, m, "a", 2)
	require.Equal(t, 2, m.Pending())

	conv, err := m.Scope("conv")
	require.NoError(t, err)
	require.ErrorIs(t, conv.Set(ctx, "z", 1), memory.ErrQueueFull, "scopes share the bound")
}

func TestOfflineClose(t *testing.T) {
	srv, m, _ := offlineMemory(t, memory.WithCloseTimeout(300*time.Millisecond))
	srv.Close()
	require.NoError(t, m.Set(ctx, "a", 1))
	require.NoError(t, m.Set(ctx, "b", 1))
	err := m.Close()
	require.ErrorIs(t, err, memory.ErrUnavailable)
	require.ErrorContains(t, err, "2 queued writes not delivered")

	srv2, m2, _ := offlineMemory(t)
	srv2.Close()
	require.NoError(t, m2.Set(ctx, "a", 1))
	require.NoError(t, srv2.Restart())
	require.NoError(t, m2.Close(), "Close flushes what it can")
	require.JSONEq(t, "1", storedValue(t, rawClient(t, srv2.Addr()), "test:a"))
}

// TestOfflineCloseKeepsOthersWrites closes one of two Memories of a client
// and prefix while the server is down: the Close drops what it queued, and
// the other's queued writes to the same names are still delivered.
func TestOfflineCloseKeepsOthersWrites(t *testing.T) {
	srv := miniredis.RunT(t)
	client := rawClient(t, srv.Addr())
	a, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix("test:"))
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	b, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix("test:"), memory.WithCloseTimeout(100*time.Millisecond))
	require.NoError(t, err)
	srv.Close()
	require.NoError(t, a.Set(ctx, "x", 1))
	require.NoError(t, b.Expire(ctx, "x", time.Hour))
	require.Equal(t, 1, a.Pending())
	require.Equal(t, 1, b.Pending())
	require.ErrorIs(t, b.Close(), memory.ErrUnavailable)

	require.NoError(t, srv.Restart())
	require.NoError(t, a.Flush(ctx))
	require.JSONEq(t, "1", storedValue(t, client, "test:x"))
	require.Equal(t, time.Duration(0), srv.TTL("test:x"), "b's Expire was dropped with b")
}

// TestOfflineLostByAReadAlone marks the server lost by a read that met a
// refused connection, with nothing queued: the background loop still runs,
// finds the server back, and reads go to it again.
func TestOfflineLostByAReadAlone(t *testing.T) {
	srv, m, _ := offlineMemory(t)
	require.NoError(t, m.SetTTL(ctx, "x", 1, time.Millisecond))
	time.Sleep(2 * time.Millisecond) // known here to have expired: the Update reads first
	srv.Close()
	failed := errors.New("fn failed")
	err := memory.Update(ctx, m, "x", func(v *int) error { return failed })
	require.ErrorIs(t, err, failed, "fn ran on the value known here: absent")
	require.True(t, m.Stats().Offline)
	require.Zero(t, m.Pending())

	require.NoError(t, srv.Restart())
	srv.Set("test:y", envelope("2", 1))
	require.Eventually(t, func() bool { return !m.Stats().Offline }, 10*time.Second, 10*time.Millisecond)
	requireValue(t, m, "y", 2)
}

func TestQueueOff(t *testing.T) {
	srv, m, _ := offlineMemory(t, memory.WithOfflineQueue(false))
	srv.Close()
	require.ErrorIs(t, m.Set(ctx, "a", 1), memory.ErrUnavailable)
	require.ErrorIs(t, m.Delete(ctx, "a"), memory.ErrUnavailable)
	require.ErrorIs(t, memory.Update(ctx, m, "n", func(n *int) error { return nil }), memory.ErrUnavailable)
	require.Zero(t, m.Pending())
}

// TestRefusalsAreNotQueued checks that errors from a server that answered
// are returned, never queued.
func TestRefusalsAreNotQueued(t *testing.T) {
	srv := redisserver.Start(t, "--requirepass", "s3cret")
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: "wrong"})
	defer client.Close()
	m, err := memory.New(ctx, memory.WithClient(client))
	require.NoError(t, err)
	defer m.Close()
	err = m.Set(ctx, "a", 1)
	require.Error(t, err)
	require.True(t, redis.IsAuthError(err), "%v", err)
	require.NotErrorIs(t, err, memory.ErrUnavailable)
	require.Zero(t, m.Pending())

	good := newMemory(t, srv.Addr, memory.WithURL("redis://:s3cret@"+srv.Addr))
	require.NoError(t, good.Client().RPush(ctx, "test:list", "x").Err())
	var de *memory.DecodeError
	require.ErrorAs(t, memory.ListOf[int](good, "list").Append(ctx, 1), &de, "WRONGTYPE is returned")
	require.Zero(t, good.Pending())
}

func TestFlusherPerClient(t *testing.T) {
	srv := miniredis.RunT(t)
	client := rawClient(t, srv.Addr())
	require.NoError(t, client.Ping(ctx).Err())
	before := goroutines()
	tenants := make([]*memory.Memory, 100)
	for i := range tenants {
		m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix("t"+strconv.Itoa(i)+":"))
		require.NoError(t, err)
		tenants[i] = m
	}
	srv.Close()
	for _, m := range tenants {
		require.NoError(t, m.Set(ctx, "x", 1))
	}
	require.Equal(t, 1, flushers(), "one background loop for all the tenants of a client")
	require.NoError(t, srv.Restart())
	for _, m := range tenants {
		require.NoError(t, m.Close())
	}
	requireGoroutines(t, before)
	require.Equal(t, int64(1), client.Exists(ctx, "t99:x").Val(), "Close flushed")
}

func TestCloseStopsTheFlusher(t *testing.T) {
	before := goroutines()
	srv := miniredis.RunT(t)
	m := newMemory(t, srv.Addr(), memory.WithCloseTimeout(300*time.Millisecond))
	srv.Close()
	require.NoError(t, m.Set(ctx, "x", 1))
	require.Equal(t, 1, flushers(), "the background loop runs")
	require.ErrorIs(t, m.Close(), memory.ErrUnavailable)
	requireGoroutines(t, before)
}

// requireOffline waits until m knows its server lost.
func requireOffline(t *testing.T, m *memory.Memory) {
	t.Helper()
	requireEventually(t, 5*time.Second, func() bool { return m.Stats().Offline }, "the server is known lost")
}

// requireEventually polls cond every 10ms until it holds, and fails t if it
// does not within d.
func requireEventually(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, msg)
		}
	}
}

// TestRealServerOutage stops a real redis-server, with its data persisted in
// an append-only file, in the middle of the writes, and starts it again on
// the same port: every write reaches the server, without a call to Flush.
func TestRealServerOutage(t *testing.T) {
	srv := redisserver.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	m := newMemory(t, srv.Addr, memory.WithTimeout(300*time.Millisecond))
	name := func(i int) string { return fmt.Sprintf("k%03d", i) }
	for i := range 100 {
		require.NoError(t, m.Set(ctx, name(i), i))
	}

	srv.Stop()
	for i := 100; i < 200; i++ {
		require.NoError(t, m.Set(ctx, name(i), i), "queued while the server is down")
	}
	require.Equal(t, 100, m.Pending())
	for i := range 200 {
		requireValue(t, m, name(i), i) // read back from what this process knows
	}

	srv.Restart()
	raw := rawClient(t, srv.Addr)
	requireEventually(t, 30*time.Second, func() bool { return m.Pending() == 0 },
		"the background loop flushes the queue once the server is back")
	for i := range 200 {
		require.JSONEq(t, strconv.Itoa(i), storedValue(t, raw, "test:"+name(i)), name(i))
	}
}

// TestRealServerFrozen freezes a real redis-server, which then holds its
// connections open and answers nothing: the write that meets it times out
// and is queued, reads are answered from what this process knows, and once
// the server answers again the queue reaches it without a call to Flush.
func TestRealServerFrozen(t *testing.T) {
	srv := redisserver.Start(t)
	m := newMemory(t, srv.Addr, memory.WithTimeout(200*time.Millisecond))
	require.NoError(t, m.Set(ctx, "a", 1))

	srv.Freeze()
	for i := range 3 {
		require.NoError(t, m.Set(ctx, "b", i), "queued while the server does not answer")
	}
	require.LessOrEqual(t, m.Pending(), 2, "writes to one name coalesce, but for one being delivered")
	requireValue(t, m, "a", 1)
	requireValue(t, m, "b", 2)

	srv.Thaw()
	requireEventually(t, 30*time.Second, func() bool { return m.Pending() == 0 },
		"the background loop flushes the queue once the server answers")
	raw := rawClient(t, srv.Addr)
	require.JSONEq(t, "1", storedValue(t, raw, "test:a"))
	require.JSONEq(t, "2", storedValue(t, raw, "test:b"), "the last write wins over the one that timed out")
}

func TestOfflineLogs(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, m, _ := offlineMemory(t, memory.WithLogger(logger))
	srv.Close()
	require.NoError(t, m.Set(ctx, "a", 1))
	requireOffline(t, m)
	require.NoError(t, srv.Restart())
	require.NoError(t, m.Flush(ctx))
	requireEventually(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "delivered") }, "the flusher logs what it delivered")
	for _, want := range []string{
		`level=WARN msg="memory: server lost; queueing writes"`,
		`level=DEBUG msg="memory: write queued" key=test:a queued=1`,
		`level=INFO msg="memory: server back; delivering the queue" queued=1`,
		`level=INFO msg="memory: queued writes delivered" writes=1`,
	} {
		require.Contains(t, logs.String(), want)
	}
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
