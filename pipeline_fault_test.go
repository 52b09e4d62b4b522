package memory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/faultproxy"
	"github.com/redis-memory/memory/internal/redisserver"
)

// Fault scenario: concurrent writes through the auto-pipeliner, whose
// batches go on after their callers gave up.

const (
	pipeWriters = 32
	pipeN       = 100
	// pipePace spreads a writer's iterations over the faults that strike
	// once; writers not paced keep the pipeliner full.
	pipePace = 30 * time.Millisecond
)

// TestFaultPipelinedWrites runs 32 goroutines over one Memory with
// auto-pipelining, each appending to a list of its own, setting a name of
// its own and incrementing a shared counter, while replies are lost, the
// link is a black hole, the server is frozen or killed and restarted. Every
// acknowledged write applies once and in order: no append lost, repeated
// or out of order, each name holds its writer's last Set, and the counter
// counts every acknowledged Incr, and at most those that may have applied
// besides.
func TestFaultPipelinedWrites(t *testing.T) {
	after := pipeN * pipePace / 4
	for _, tt := range []struct {
		name       string
		pace       time.Duration
		serverArgs []string
		strike     pipeStrike
	}{
		{"lost replies", 0, nil, lostReplies(25)},
		{"black hole", pipePace, nil, blackHoleAfter(after)},
		{"frozen server", pipePace, nil, freezeAfter(after)},
		{"kill -9 and restart", pipePace, persisted, killAfter(after)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := redisserver.Start(t, tt.serverArgs...)
			proxy := faultproxy.Start(t, srv.Addr)
			m := faultMemory(t, faultClient(t, proxy.Addr()), memory.WithAutoPipeline(true))
			tctx := t.Context()

			done := make(chan struct{})
			struck := make(chan int, 1)
			go func() { struck <- tt.strike(srv, proxy, done) }()

			type tally struct {
				appended, set  []bool // by iteration: acknowledged
				incrs, unknown int    // Incrs acknowledged, and failed with ErrUnavailable
				errs           []error
			}
			tallies := make([]tally, pipeWriters)
			start := time.Now()
			var wg sync.WaitGroup
			for w := range pipeWriters {
				tl := &tallies[w]
				tl.appended, tl.set = make([]bool, pipeN), make([]bool, pipeN)
				wg.Go(func() {
					list := memory.ListOf[faultItem](m, fmt.Sprint("list", w))
					for i := range pipeN {
						time.Sleep(time.Until(start.Add(time.Duration(i) * tt.pace)))
						err := list.Append(tctx, faultItem{W: w, I: i})
						tl.appended[i] = err == nil
						if err != nil {
							tl.errs = append(tl.errs, err)
						}
						err = m.Set(tctx, fmt.Sprint("name", w), i)
						tl.set[i] = err == nil
						if err != nil {
							tl.errs = append(tl.errs, err)
						}
						switch _, err := m.Incr(tctx, "count", 1); {
						case err == nil:
							tl.incrs++
						case errors.Is(err, memory.ErrUnavailable):
							tl.unknown++ // its result is lost: it may have applied
						default:
							tl.errs = append(tl.errs, err)
						}
					}
				})
			}
			wg.Wait()
			close(done)
			faults := <-struck
			conns := memory.PipelineConns(m)
			require.NoError(t, m.Close(), "the server is back: Close delivers the queue")

			raw := adminClient(t, srv.Addr)
			incrs, unknown := 0, 0
			for w, tl := range tallies {
				require.Empty(t, tl.errs, "writer %d: errors with the queue on", w)
				items := faultList(t, raw, fmt.Sprint("list", w))
				want := []faultItem{}
				for i, acked := range tl.appended {
					if acked {
						want = append(want, faultItem{W: w, I: i})
					}
				}
				require.Equal(t, want, items, "writer %d's list: every acknowledged append once, in order", w)
				require.JSONEq(t, fmt.Sprint(pipeN-1), storedValue(t, raw, faultPrefix+fmt.Sprint("name", w)), "writer %d's last Set", w)
				incrs += tl.incrs
				unknown += tl.unknown
			}
			count, err := faultCounter(t, raw, "count")
			require.NoError(t, err)
			t.Logf("%s: fault %d; pipeliner connections %d; incrs acknowledged %d, unknown %d, on the server %d", tt.name, faults, conns, incrs, unknown, count)
			require.Positive(t, faults, "the fault struck")
			require.Positive(t, conns, "writes went through the pipeliner")
			require.GreaterOrEqual(t, count, incrs, "no acknowledged Incr lost")
			require.LessOrEqual(t, count, incrs+unknown, "no Incr applied twice")
		})
	}
}

// TestFaultPipelineHold gives up on an append that the pipeliner holds, the
// server frozen: the append fails, and a hold in the queue keeps the next
// append to the list, sent alone, behind it, so that once the server thaws
// the two apply in order.
func TestFaultPipelineHold(t *testing.T) {
	defer func(was bool) { *memory.PipelineAlways = was }(*memory.PipelineAlways)
	srv := redisserver.Start(t)
	m := faultMemory(t, faultClient(t, srv.Addr), memory.WithAutoPipeline(true))
	list := memory.ListOf[string](m, "list")
	require.NoError(t, list.Append(ctx, "first"))

	srv.Freeze()
	*memory.PipelineAlways = true // this append alone through the pipeliner
	gaveUp, cancel := context.WithTimeout(ctx, faultTimeout/3)
	err := list.Append(gaveUp, "second")
	cancel()
	*memory.PipelineAlways = false
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Positive(t, memory.PipelineConns(m), "the append went through the pipeliner")
	require.Equal(t, 1, m.Pending(), "a hold of the list")
	require.NoError(t, list.Append(ctx, "third"), "queued behind the hold")
	require.Equal(t, 2, m.Pending())
	srv.Thaw()

	require.NoError(t, m.Flush(ctx))
	require.Zero(t, m.Pending())
	got, err := list.All(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"first", "second", "third"}, got, "the append given up on applied, before the next one")
}

// TestFaultPipelineHoldQueueFull gives up on an append that the pipeliner
// holds while the queue is full: the hold is queued all the same, and the
// next append to the list waits behind it, or is refused, rather than
// going to the server before the append given up on.
func TestFaultPipelineHoldQueueFull(t *testing.T) {
	defer func(was bool) { *memory.PipelineAlways = was }(*memory.PipelineAlways)
	srv := redisserver.Start(t)
	m := faultMemory(t, faultClient(t, srv.Addr), memory.WithAutoPipeline(true), memory.WithMaxPending(1))
	list := memory.ListOf[string](m, "list")
	require.NoError(t, list.Append(ctx, "first"))

	srv.Freeze()
	require.NoError(t, m.Set(ctx, "other", 1), "timed out: queued")
	require.Equal(t, 1, m.Pending(), "the queue is full")
	*memory.PipelineAlways = true
	gaveUp, cancel := context.WithTimeout(ctx, faultTimeout/3)
	err := list.Append(gaveUp, "second")
	cancel()
	*memory.PipelineAlways = false
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 2, m.Pending(), "the hold, over the bound")
	require.ErrorIs(t, list.Append(ctx, "third"), memory.ErrQueueFull, "behind the hold, in a full queue")
	srv.Thaw()

	require.NoError(t, m.Flush(ctx))
	got, err := list.All(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"first", "second"}, got)
}

// TestFaultBatchedSets runs 48 goroutines of Sets over one Memory with
// auto-pipelining, whose concurrent puts go to the server in batches, while
// replies are lost, the link is a black hole, a batch is held back until
// after its puts were sent again, the server is frozen or killed and
// restarted. Each goroutine sets a name of its own to 0, 1, 2
// and so on, and half of them delete it at the end. A poller reading the
// names straight from the server throughout never sees one go back to an
// older value, as a copy of a batch sent late would make it; once Close
// delivered the queue, each name holds its writer's last write.
func TestFaultBatchedSets(t *testing.T) {
	const (
		writers = 48
		n       = 150
		pace    = 10 * time.Millisecond
	)
	after := n * pace / 4
	for _, tt := range []struct {
		name       string
		serverArgs []string
		strike     pipeStrike
	}{
		{"lost replies", nil, lostReplies(25)},
		{"black hole", nil, blackHoleAfter(after)},
		{"frozen server", nil, freezeAfter(after)},
		{"a batch sent late", nil, func(_ *redisserver.Server, proxy *faultproxy.Proxy, done <-chan struct{}) int {
			time.Sleep(after)
			proxy.DelayNext([]byte("puts"), 3*faultTimeout) // after its puts were sent again, and newer ones
			for proxy.Stats().Delayed == 0 {
				select {
				case <-done:
					return 0
				case <-time.After(time.Millisecond):
				}
			}
			return 1
		}},
		{"kill -9 and restart", persisted, killAfter(after)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := redisserver.Start(t, tt.serverArgs...)
			proxy := faultproxy.Start(t, srv.Addr)
			m := faultMemory(t, faultClient(t, proxy.Addr()), memory.WithAutoPipeline(true))
			batches := &batchCounter{}
			memory.PipelineHook(m, batches)
			raw := adminClient(t, srv.Addr)
			tctx := t.Context()
			names := make([]string, writers)
			for w := range names {
				names[w] = faultPrefix + fmt.Sprint("set", w)
			}

			done := make(chan struct{})
			struck := make(chan int, 1)
			go func() { struck <- tt.strike(srv, proxy, done) }()
			regressions := make(chan []string, 1)
			go func() { regressions <- pollMonotonic(raw, names, done) }()

			errs := make([][]error, writers)
			start := time.Now()
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					name := fmt.Sprint("set", w)
					for i := range n {
						time.Sleep(time.Until(start.Add(time.Duration(i) * pace)))
						if err := m.Set(tctx, name, i); err != nil {
							errs[w] = append(errs[w], err)
						}
					}
					if w%2 == 0 {
						if err := m.Delete(tctx, name); err != nil {
							errs[w] = append(errs[w], err)
						}
					}
				})
			}
			wg.Wait()
			close(done)
			faults := <-struck
			require.NoError(t, m.Close(), "the server is back: Close delivers the queue")

			for w := range writers {
				require.Empty(t, errs[w], "writer %d: errors with the queue on", w)
				if w%2 == 0 {
					require.Zero(t, raw.Exists(ctx, names[w]).Val(), "writer %d's Delete, its last write", w)
				} else {
					require.JSONEq(t, fmt.Sprint(n-1), storedValue(t, raw, names[w]), "writer %d's last Set", w)
				}
			}
			t.Logf("%s: fault %d; batches %d of %d puts", tt.name, faults, batches.calls.Load(), batches.puts.Load())
			require.Positive(t, faults, "the fault struck")
			require.Positive(t, batches.calls.Load(), "puts went in batches")
			require.Empty(t, <-regressions, "no name went back to an older value")
		})
	}
}

// A pipeStrike strikes a fault, at the server or at the proxy in front of
// it, while writers run until done, and returns how much it struck.
type pipeStrike func(srv *redisserver.Server, proxy *faultproxy.Proxy, done <-chan struct{}) int

// persisted are the arguments of a server whose data outlives kill -9.
var persisted = []string{"--appendonly", "yes", "--appendfsync", "always"}

// lostReplies resets the connection instead of every nth reply, until
// done, and returns how many it reset.
func lostReplies(nth int) pipeStrike {
	return func(_ *redisserver.Server, proxy *faultproxy.Proxy, done <-chan struct{}) int {
		proxy.ResetEveryReply(nth)
		<-done
		proxy.ResetEveryReply(0)
		return proxy.Stats().RepliesReset
	}
}

// blackHoleAfter makes the link a black hole for a second, after d, and
// returns how many bytes it swallowed.
func blackHoleAfter(d time.Duration) pipeStrike {
	return func(_ *redisserver.Server, proxy *faultproxy.Proxy, _ <-chan struct{}) int {
		time.Sleep(d)
		proxy.Blackhole(true)
		time.Sleep(time.Second)
		proxy.Blackhole(false)
		return int(proxy.Stats().BlackholedBytes)
	}
}

// freezeAfter freezes the server for a second, after d.
func freezeAfter(d time.Duration) pipeStrike {
	return func(srv *redisserver.Server, _ *faultproxy.Proxy, _ <-chan struct{}) int {
		time.Sleep(d)
		srv.Freeze()
		time.Sleep(time.Second)
		srv.Thaw()
		return 1
	}
}

// killAfter kills the server (kill -9) after d, and starts it again 300ms
// later.
func killAfter(d time.Duration) pipeStrike {
	return func(srv *redisserver.Server, _ *faultproxy.Proxy, _ <-chan struct{}) int {
		time.Sleep(d)
		srv.Stop()
		time.Sleep(300 * time.Millisecond)
		srv.Restart()
		return 1
	}
}

// pollMonotonic reads the integers stored at keys, straight from the
// server, until done, and returns a line for each time one held less than
// it was seen to hold before, once for each value it went back to. Reads
// that fail, the server being down, are
// left out.
func pollMonotonic(raw *redis.Client, keys []string, done <-chan struct{}) []string {
	seen := make([]int, len(keys)) // the most each held
	last := make([]int, len(keys)) // what each held at the last read
	for i := range seen {
		seen[i], last[i] = -1, -1
	}
	var regressions []string
	for {
		select {
		case <-done:
			return regressions
		case <-time.After(2 * time.Millisecond):
		}
		values, err := raw.MGet(context.Background(), keys...).Result()
		if err != nil {
			continue
		}
		for i, v := range values {
			s, ok := v.(string)
			if !ok {
				continue // absent: not written yet, or deleted at the end
			}
			var env struct{ Value int }
			if err := json.Unmarshal([]byte(s), &env); err != nil {
				regressions = append(regressions, fmt.Sprintf("%s: %q: %v", keys[i], s, err))
				continue
			}
			if env.Value < seen[i] && env.Value != last[i] {
				regressions = append(regressions, fmt.Sprintf("%s: %d after %d", keys[i], env.Value, seen[i]))
			}
			seen[i], last[i] = max(seen[i], env.Value), env.Value
		}
	}
}

// TestFaultPipelinedReads runs 64 goroutines of Gets over a Memory with
// auto-pipelining while the connection is reset instead of every 25th
// reply: the pipeliner tries each batch once, and so does the batcher of
// reads each MGET, and a read that a reset failed goes again alone, over
// the Memory's client, which retries it. Every Get, each
// of a name that no read found before, so that none is known here, returns
// the value.
func TestFaultPipelinedReads(t *testing.T) {
	srv := redisserver.Start(t)
	proxy := faultproxy.Start(t, srv.Addr)
	client := rawClient(t, proxy.Addr()) // go-redis's default retries
	m := faultMemory(t, client, memory.WithAutoPipeline(true))
	pipelines, batches := &roundTrips{}, &batchCounter{}
	memory.PipelineHook(m, pipelines)
	memory.PipelineHook(m, batches)
	const goroutines, n = 64, 50
	var pairs []any
	for g := range goroutines {
		for i := range n {
			pairs = append(pairs, fmt.Sprintf("%sg%d-%d", faultPrefix, g, i), fmt.Sprintf(`{"value": %d, "last_modified": 1}`, i))
		}
	}
	require.NoError(t, adminClient(t, srv.Addr).MSet(ctx, pairs...).Err())

	proxy.ResetEveryReply(25)
	concurrently(t, goroutines, func(g int) error {
		for i := range n {
			v, err := memory.GetAs[int](ctx, m, fmt.Sprintf("g%d-%d", g, i))
			if err == nil && v != i {
				err = fmt.Errorf("g%d-%d: read %d", g, i, v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	proxy.ResetEveryReply(0)
	t.Logf("%d replies reset, %d batches of the pipeliner, %d MGETs", proxy.Stats().RepliesReset, pipelines.pipelined(), batches.reads.Load())
	require.Positive(t, proxy.Stats().RepliesReset, "the fault")
	require.Positive(t, pipelines.pipelined(), "reads went through the pipeliner")
	require.Positive(t, batches.reads.Load(), "reads went in batches")
}

// TestPipelinedCloseWhileLost has 64 goroutines read and write through a
// Memory with auto-pipelining, over a client whose retries wait an hour
// between tries, until its server is lost: every connection reset and new
// ones refused. The pipeliner's batches under way then end within the
// Memory's timeout, not at their retries, so Close ends within its budget,
// and reports the writes it could not deliver.
func TestPipelinedCloseWhileLost(t *testing.T) {
	srv := redisserver.Start(t)
	proxy := faultproxy.Start(t, srv.Addr)
	before := goroutines()
	client := redis.NewClient(&redis.Options{
		Addr:                  proxy.Addr(),
		ContextTimeoutEnabled: true,
		MinRetryBackoff:       time.Hour,
		MaxRetryBackoff:       time.Hour,
	})
	t.Cleanup(func() { client.Close() })
	m, err := memory.New(ctx, memory.WithClient(client), memory.WithAutoPipeline(true),
		memory.WithTimeout(100*time.Millisecond), memory.WithCloseTimeout(300*time.Millisecond))
	require.NoError(t, err)
	pipelines := &roundTrips{}
	memory.PipelineHook(m, pipelines)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = m.Get(ctx, fmt.Sprint("r", g), new(int))
				if err := m.Set(ctx, fmt.Sprint("w", g), i); err != nil {
					t.Errorf("Set, applied or queued: %v", err)
					return
				}
			}
		})
	}
	requireEventually(t, 5*time.Second, func() bool { return pipelines.pipelined() > 10 }, "commands go through the pipeliner")
	proxy.Refuse(true)
	proxy.ResetAll()
	requireEventually(t, 5*time.Second, func() bool { return m.Pending() > 0 }, "the fault: writes are queued")
	close(stop)
	wg.Wait()

	start := time.Now()
	err = m.Close()
	took := time.Since(start)
	t.Logf("%d batches of the pipeliner, %d connections reset; Close took %v: %v", pipelines.pipelined(), proxy.Stats().Resets, took.Round(time.Millisecond), err)
	require.Less(t, took, 2*time.Second, "Close with a 300ms budget, where a retry waits an hour (30s for go-redis's backstop)")
	require.ErrorIs(t, err, memory.ErrUnavailable)
	require.ErrorContains(t, err, "queued writes not delivered")
	require.NoError(t, client.Close())
	requireGoroutines(t, before)
}
