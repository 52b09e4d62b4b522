package memory

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type ctxKey struct{}

func TestClockBound(t *testing.T) {
	const timeout = 30 * time.Millisecond
	values := context.WithValue(context.Background(), ctxKey{}, "v")
	cancelable, cancel := context.WithCancel(values)
	defer cancel()
	for name, parent := range map[string]context.Context{"background": values, "cancelable": cancelable} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			ctx := newTestClock(timeout).bound(parent)
			deadline, ok := ctx.Deadline()
			require.True(t, ok)
			require.False(t, deadline.Before(start.Add(timeout)), "not before the timeout")
			require.True(t, deadline.Before(time.Now().Add(timeout+tickWidth)), "rounded up by less than a tick")
			require.Equal(t, "v", ctx.Value(ctxKey{}), "the caller's values")
			require.NoError(t, ctx.Err())

			<-ctx.Done()
			require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
			require.False(t, time.Now().Before(deadline), "done at the deadline, not before")
			require.NoError(t, parent.Err(), "the caller's context goes on")
		})
	}
}

func TestClockBoundCanceled(t *testing.T) {
	c := newTestClock(time.Hour)
	parent, cancel := context.WithCancel(context.Background())
	first := c.bound(parent)
	second := c.bound(context.WithValue(parent, ctxKey{}, "second"))
	require.Equal(t, 1, c.last.Load().mergedCount(), "contexts that end together share their merge")
	require.Equal(t, "second", second.Value(ctxKey{}), "each keeps its values")
	require.Nil(t, first.Value(ctxKey{}))

	cancel()
	for _, ctx := range []context.Context{first, second} {
		<-ctx.Done()
		require.ErrorIs(t, ctx.Err(), context.Canceled, "the caller's cancellation")
	}
}

func TestClockBoundSoonerParent(t *testing.T) {
	c := newTestClock(time.Hour)
	parent, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.Equal(t, parent, c.bound(parent), "the caller's sooner deadline stands")
	require.Nil(t, c.last.Load(), "no tick")
}

func TestClockSharesTicks(t *testing.T) {
	c := newTestClock(time.Second)
	start := time.Now()
	ticks := map[<-chan struct{}]bool{}
	for range 10_000 {
		ticks[c.bound(context.Background()).Done()] = true
	}
	require.LessOrEqual(t, len(ticks), int(time.Since(start)/tickWidth)+2,
		"one tick, and so one timer, per interval at most")
}

func TestTickEndsMerged(t *testing.T) {
	c := newTestClock(20 * time.Millisecond)
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx := c.bound(parent)
	tick := c.last.Load()
	<-ctx.Done()
	require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	require.Zero(t, tick.mergedCount(), "the tick lets go of what it merged")
	require.NoError(t, parent.Err())
}

// TestTickShards merges the contexts of many callers with one tick: they
// spread over its shards, and each ends with the tick.
func TestTickShards(t *testing.T) {
	c := newTestClock(50 * time.Millisecond)
	var ctxs []context.Context
	for range 100 {
		parent, cancel := context.WithCancel(context.Background())
		defer cancel()
		ctxs = append(ctxs, c.bound(parent))
	}
	tick := c.last.Load()
	used := 0
	for i := range tick.shards {
		sh := &tick.shards[i]
		sh.mu.Lock()
		if len(sh.merged) > 0 || sh.ended {
			used++
		}
		sh.mu.Unlock()
	}
	require.Greater(t, used, 1, "callers spread over shards")
	for _, ctx := range ctxs {
		<-ctx.Done()
		require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	}
	require.Zero(t, tick.mergedCount())
}

// mergedCount returns how many merged contexts t holds.
func (t *tick) mergedCount() int {
	n := 0
	for i := range t.shards {
		t.shards[i].mu.Lock()
		n += len(t.shards[i].merged)
		t.shards[i].mu.Unlock()
	}
	return n
}

// newTestClock returns a clock of its own, unlike clockFor.
func newTestClock(timeout time.Duration) *clock { return &clock{timeout: timeout} }

func TestClockFor(t *testing.T) {
	require.Same(t, clockFor(time.Second), clockFor(time.Second), "one clock per timeout")
	require.NotSame(t, clockFor(time.Second), clockFor(2*time.Second))
}
