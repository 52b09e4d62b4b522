package memory

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Every operation ends by its timeout. go-redis takes two things from the
// context of a command: socket deadlines from its Deadline, and, from its
// Done channel, when to stop waiting: for a pooled connection, and between
// the retries of a refused dial or a failed command, which a client's own
// retry settings can stretch to seconds. A timer per operation, as
// context.WithTimeout makes, costs a loopback round trip 15 to 20% on this
// project's machines, so operations share their timers: a deadline is
// rounded up to the end of a tick, a tickWidth interval, and one timer ends
// every operation of the tick.
const tickWidth = 10 * time.Millisecond

// A clock bounds operations by one timeout.
type clock struct {
	timeout time.Duration
	mu      sync.Mutex // held to start a tick
	last    atomic.Pointer[tick]
}

// clocks holds the clock of each timeout in use, so that every Memory with
// that timeout, a service's thousands of tenants say, shares its ticks.
var clocks sync.Map // time.Duration to *clock

// clockFor returns the clock of timeout.
func clockFor(timeout time.Duration) *clock {
	if c, ok := clocks.Load(timeout); ok {
		return c.(*clock)
	}
	c, _ := clocks.LoadOrStore(timeout, &clock{timeout: timeout})
	return c.(*clock)
}

// A tick ends the operations whose deadlines fall in one interval. Its
// merged contexts are split over tickShards locks, by the caller's Done
// channel, so that operations under different contexts seldom wait for one
// another.
type tick struct {
	end    time.Time
	done   chan struct{} // closed at end
	shards [tickShards]tickShard
}

const tickShards = 16

// tickSeed hashes the Done channels of callers' contexts to tick shards.
var tickSeed = maphash.MakeSeed()

type tickShard struct {
	mu     sync.Mutex                 // guards ended and merged
	ended  bool                       // the tick's contexts were canceled
	merged map[<-chan struct{}]merged // by the Done channel of callers' contexts
}

// A merged context is done when a caller's context or its tick is.
type merged struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// bound returns a context for one operation under ctx, with ctx's values,
// that ends by the clock's timeout from now, or when ctx ends if sooner.
func (c *clock) bound(ctx context.Context) context.Context {
	deadline := time.Now().Add(c.timeout)
	d, ok := ctx.Deadline()
	if ok && !deadline.Before(d) {
		return ctx
	}
	t := c.tick(deadline)
	if ok && d.Before(t.end) {
		return ctx // within the tick's rounding
	}
	if ctx.Done() == nil {
		return tickContext{ctx, t} // ctx cannot end: nothing to merge
	}
	return mergedContext{ctx, t.merge(ctx), t}
}

// tick returns the tick that ends deadline: the last one, unless deadline
// is past its end.
func (c *clock) tick(deadline time.Time) *tick {
	if t := c.last.Load(); t != nil && !deadline.After(t.end) {
		return t
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.last.Load(); t != nil && !deadline.After(t.end) {
		return t
	}
	t := &tick{end: deadline.Truncate(tickWidth).Add(tickWidth), done: make(chan struct{})}
	time.AfterFunc(time.Until(t.end), t.close)
	c.last.Store(t)
	return t
}

// close ends t and the contexts merged with it.
func (t *tick) close() {
	close(t.done)
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.ended = true
		merged := sh.merged
		sh.merged = nil
		sh.mu.Unlock()
		for _, m := range merged {
			m.cancel()
		}
	}
}

// merge returns a context that ends when ctx or t does. The operations of a
// tick under contexts that end together, such as a request's, share one.
func (t *tick) merge(ctx context.Context) context.Context {
	done := ctx.Done()
	sh := &t.shards[maphash.Comparable(tickSeed, done)%tickShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if m, ok := sh.merged[done]; ok {
		return m.ctx
	}
	m := merged{}
	m.ctx, m.cancel = context.WithCancel(ctx)
	if sh.ended {
		m.cancel()
		return m.ctx
	}
	if sh.merged == nil {
		sh.merged = make(map[<-chan struct{}]merged)
	}
	sh.merged[done] = m
	return m.ctx
}

func (t *tick) err() error {
	select {
	case <-t.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// A tickContext is a caller's context that cannot end, given a tick's
// deadline.
type tickContext struct {
	context.Context
	tick *tick
}

func (c tickContext) Deadline() (time.Time, bool) { return c.tick.end, true }
func (c tickContext) Done() <-chan struct{}       { return c.tick.done }
func (c tickContext) Err() error                  { return c.tick.err() }

// A mergedContext is a caller's context that can end, given a tick's
// deadline: it ends when either does.
type mergedContext struct {
	context.Context                 // the caller's, for its values
	merged          context.Context // ends when the caller's or the tick does
	tick            *tick
}

func (c mergedContext) Deadline() (time.Time, bool) { return c.tick.end, true }
func (c mergedContext) Done() <-chan struct{}       { return c.merged.Done() }

func (c mergedContext) Err() error {
	if c.merged.Err() == nil {
		return nil
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	return context.DeadlineExceeded
}
