package memory_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

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
// link is a black hole or the server is frozen. Every acknowledged write
// applies once and in order: no append lost, repeated or out of order, each
// name holds its writer's last Set, and the counter counts every
// acknowledged Incr, and at most those that may have applied besides.
func TestFaultPipelinedWrites(t *testing.T) {
	for _, tt := range []struct {
		name   string
		pace   time.Duration
		strike func(srv *redisserver.Server, proxy *faultproxy.Proxy, done <-chan struct{}) int
	}{
		{"lost replies", 0, func(_ *redisserver.Server, proxy *faultproxy.Proxy, done <-chan struct{}) int {
			proxy.ResetEveryReply(25)
			<-done
			proxy.ResetEveryReply(0)
			return proxy.Stats().RepliesReset
		}},
		{"black hole", pipePace, func(_ *redisserver.Server, proxy *faultproxy.Proxy, done <-chan struct{}) int {
			time.Sleep(pipeN * pipePace / 4)
			proxy.Blackhole(true)
			time.Sleep(time.Second)
			proxy.Blackhole(false)
			return int(proxy.Stats().BlackholedBytes)
		}},
		{"frozen server", pipePace, func(srv *redisserver.Server, _ *faultproxy.Proxy, done <-chan struct{}) int {
			time.Sleep(pipeN * pipePace / 4)
			srv.Freeze()
			time.Sleep(time.Second)
			srv.Thaw()
			return 1
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := redisserver.Start(t)
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
