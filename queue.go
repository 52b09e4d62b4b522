package memory

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// DefaultMaxPending is how many entries a Memory, with its scopes,
	// may have queued while its writes cannot reach the server, unless
	// WithMaxPending says otherwise.
	DefaultMaxPending = 10_000

	// A key whose queued entry failed waits retryMin before the next
	// attempt, then twice as long after each failure up to retryMax;
	// each attempt may take the Memory's timeout times 2^failures, up to
	// attemptMax, so that a value too large to cross the link within the
	// timeout still gets there.
	retryMin   = 100 * time.Millisecond
	retryMax   = 30 * time.Second
	attemptMax = time.Minute

	// deliverers bounds how many keys the queue delivers at once.
	deliverers = 8
)

// An account is what the queue knows of the Memory, with its scopes, that
// queued an entry: how to send the entry, and where to count it.
type account struct {
	conn       *conn // with the Memory's timeout
	log        *slog.Logger
	maxPending int

	pending   atomic.Int64 // entries queued now
	delivered atomic.Uint64
	dropped   atomic.Uint64

	mu    sync.Mutex // guards drops
	drops []error    // refusals at delivery not yet reported by Flush or Close

	closed bool // the Memory is closed: nothing more is queued; guarded by the queue's mu
}

// drop counts e, refused by the server with err, as dropped, to be reported
// by the next Flush or Close.
func (a *account) drop(e *entry, err error) {
	a.dropped.Add(1)
	a.log.Error("memory: queued write dropped: the server refused it", "key", e.key, "err", err)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.drops = append(a.drops, fmt.Errorf("%q: %w", e.key, err))
}

// reportDrops returns an error wrapping ErrDropped that lists the entries
// dropped since the last report, or nil.
func (a *account) reportDrops() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.drops) == 0 {
		return nil
	}
	err := fmt.Errorf("%w: %d queued writes the server refused: %w", ErrDropped, len(a.drops), errors.Join(a.drops...))
	a.drops = nil
	return err
}

// An entry is one write waiting in the queue, in order with the other
// writes to its key.
type entry struct {
	key  string
	acct *account
	w    write
	sent bool // sent before without a reply: it may have applied
	// sending, when not nil, is the pipeliner's hold of that send, which
	// it may make yet: delivery waits until it is done.
	sending *sendingError
}

// A write is one change of a key, as the queue delivers it.
type write interface {
	// deliver applies the write on the server, once; resent says that an
	// earlier send may have applied it already. It returns nil when the
	// write applied, or had, or lost to a newer value; and held, whether
	// the server then holds what apply makes of the key whatever it held
	// before: a whole value that applied, or had.
	deliver(ctx context.Context, c *conn, key string, resent bool) (held bool, err error)
	// apply returns what the key holds once the write applies to what it
	// held, k, known when ok, and whether that can be known.
	apply(k known, ok bool) (known, bool)
	// settled ends what the write keeps while its outcome is not known.
	settled()
}

// A line is the entries of one key, delivered in order. Its fields, and
// its entries' sent, are guarded by the queue's mu.
type line struct {
	key     string
	entries []*entry
	busy    bool      // its head is being delivered
	fails   int       // failed deliveries of its head in a row
	next    time.Time // when its head may be tried again
	index   int       // in the queue's waiting heap, -1 when not in it
}

// A queue holds the writes of every Memory over one client that wait for
// the server, a line of them per key, and delivers them: at once, then,
// for a key whose head keeps failing, with a backoff of its own, while the
// other keys go on. Delivery stops while the server is known to be lost,
// but for a probe with a backoff of its own.
type queue struct {
	store *store
	size  atomic.Int64 // entries queued: when 0, writes skip mu

	mu       sync.Mutex       // guards the fields below
	lines    map[string]*line // by key
	ready    []*line          // due and not busy, in the order they became due
	waiting  lineHeap         // not due yet, by next
	busy     int              // lines being delivered
	progress chan struct{}    // closed, and replaced, whenever an entry leaves or an attempt fails
	probes   int              // probes of a lost server made
	lastErr  error            // of the last failed attempt
	done     int              // entries delivered since the queue was last empty
	recent   *account         // of the last entry queued
	wake     chan struct{}    // tells the flusher to look again; holds at most one
	now      chan struct{}    // tells the flusher a Flush waits; holds at most one
}

func newQueue(s *store) *queue {
	return &queue{
		store: s, lines: map[string]*line{}, progress: make(chan struct{}),
		wake: make(chan struct{}, 1), now: make(chan struct{}, 1),
	}
}

// has reports whether writes to key wait in the queue, so that a new one
// must wait behind them.
func (q *queue) has(key string) bool {
	if q.size.Load() == 0 {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lines[key] != nil
}

// add queues each entry behind the writes to its key, merging it with the
// last one when both are last-writer-wins. It returns an error wrapping
// ErrQueueFull, and queues nothing, when the entries would be more than
// their account may have queued; a hold is queued all the same, as the
// send it holds is made already.
func (q *queue) add(entries ...*entry) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	acct := entries[0].acct
	if acct.closed {
		return fmt.Errorf("%w: a write reached the queue after Close", ErrClosed)
	}
	more := int64(0)
	for _, e := range entries {
		if _, ok := q.mergeable(e); !ok {
			if _, held := e.w.(hold); !held {
				more++
			}
		}
	}
	if n := acct.pending.Load(); more > 0 && n+more > int64(acct.maxPending) {
		return fmt.Errorf("%w: %d of %d entries queued; %d more not queued", ErrQueueFull, n, acct.maxPending, more)
	}
	for _, e := range entries {
		q.addLocked(e)
	}
	q.signal()
	return nil
}

// mergeable returns the write that does what the last entry of e's key and
// then e do, if they can be one. q.mu must be held.
func (q *queue) mergeable(e *entry) (write, bool) {
	l := q.lines[e.key]
	if l == nil || len(l.entries) == 0 || l.busy && len(l.entries) == 1 {
		return nil, false // the head being delivered is as it was sent
	}
	if e.sending != nil {
		return nil, false // its send waits behind the last one's
	}
	// Entries of different accounts stay apart, so that the one a Close
	// drops carries nothing of another Memory's.
	if last := l.entries[len(l.entries)-1]; last.acct == e.acct {
		return mergeWrites(last.w, e.w)
	}
	return nil, false
}

func (q *queue) addLocked(e *entry) {
	q.recent = e.acct
	l := q.lines[e.key]
	if merged, ok := q.mergeable(e); ok {
		last := l.entries[len(l.entries)-1]
		last.w.settled()
		e.w, e.sent, e.sending = merged, false, last.sending
		l.entries[len(l.entries)-1] = e
		q.applyLocked(e)
		return
	}
	if l == nil {
		l = &line{key: e.key, index: -1}
		q.lines[e.key] = l
		q.ready = append(q.ready, l)
	}
	l.entries = append(l.entries, e)
	e.acct.pending.Add(1)
	q.size.Add(1)
	q.store.with(e.key, func(sl *slot) { sl.queued++ })
	q.applyLocked(e)
	e.acct.log.Debug("memory: write queued", "key", e.key, "queued", q.size.Load())
}

// applyLocked applies e to what the store knows of its key. q.mu must be
// held.
func (q *queue) applyLocked(e *entry) {
	q.store.with(e.key, func(sl *slot) {
		k, ok := e.w.apply(known{sl.stored, sl.expires}, sl.known)
		sl.known, sl.current, sl.stored, sl.expires = ok, false, k.stored, k.expires
	})
}

// found ends the read of key that t reserved, which found stored (nil:
// absent) on the server, and returns what key holds once the queued writes
// to it apply, and whether that can be known; or crossed, when a queued
// write may have been delivered after the read reached the server, too
// late for it to see: the key is to be read again.
func (q *queue) found(key string, stored []byte, t ticket) (k known, ok, crossed bool) {
	if t.queued {
		// No write to key leaves the queue between the check that none
		// did while the read was on its way and the view of those left.
		q.mu.Lock()
		defer q.mu.Unlock()
	}
	queued, crossed := q.store.found(key, stored, t)
	k = known{stored: stored}
	switch {
	case crossed:
		return known{}, false, true
	case !queued:
		return k, true, false
	case t.queued:
		k, ok = q.viewLocked(key, k)
	default: // queued while the read was on its way
		k, ok = q.view(key, k)
	}
	return k, ok, false
}

// view returns what key holds once its queued writes apply to k, the
// server's value, and whether that can be known. An operation the server's
// value records applied already.
func (q *queue) view(key string, k known) (known, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.viewLocked(key, k)
}

// viewLocked is view with q.mu held.
func (q *queue) viewLocked(key string, k known) (known, bool) {
	_, record, _, _ := parts(k.stored)
	ok := true
	if l := q.lines[key]; l != nil {
		for _, e := range l.entries {
			if !recorded(e.w, record) {
				k, ok = e.w.apply(k, ok)
			}
		}
	}
	return k, ok
}

// recorded reports whether record, a value's record of operations, holds
// the identity of w.
func recorded(w write, record string) bool {
	var id opID
	switch w := w.(type) {
	case *opWrite:
		id = w.op.id
	case *updateWrite:
		id = w.id
	default:
		return false
	}
	for entry := range strings.FieldsSeq(record) {
		if strings.HasPrefix(entry, id.String()+".") {
			return true
		}
	}
	return false
}

// close marks acct closed: nothing more of it is queued.
func (q *queue) close(acct *account) {
	q.mu.Lock()
	defer q.mu.Unlock()
	acct.closed = true
}

// head returns the account to probe the server with: that of the entry
// longest in the queue, or of the last one queued.
func (q *queue) head() *account {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range q.ready {
		if len(l.entries) > 0 {
			return l.entries[0].acct
		}
	}
	if q.waiting.Len() > 0 && len(q.waiting[0].entries) > 0 {
		return q.waiting[0].entries[0].acct
	}
	return q.recent
}

// seen records acct as one to probe the server with, should the queue be
// empty.
func (q *queue) seen(acct *account) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.recent = acct
}

// accountOf returns the account of the head of l, nil when l is empty.
func (q *queue) accountOf(l *line) *account {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(l.entries) == 0 {
		return nil
	}
	return l.entries[0].acct
}

// idle reports whether the queue holds nothing and delivers nothing, and
// if so, logs how many entries it delivered since it was last idle.
func (q *queue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.lines) > 0 || q.busy > 0 {
		return false
	}
	if q.done > 0 && q.recent != nil {
		q.recent.log.Info("memory: queued writes delivered", "writes", q.done)
	}
	q.done, q.lastErr = 0, nil
	return true
}

// signal tells the flusher to look at the queue again.
func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// removeLocked takes e, the head of l, out of the queue once it is
// delivered or dropped; held says that the server holds what e made of the
// key. q.mu must be held.
func (q *queue) removeLocked(l *line, e *entry, held bool) {
	l.entries = l.entries[1:]
	q.size.Add(-1)
	e.acct.pending.Add(-1)
	e.w.settled()
	q.store.with(e.key, func(sl *slot) {
		sl.queued--
		switch {
		case sl.queued > 0:
		case held && sl.known:
			// What it knows is what e, applied to it last, made of
			// the key: the server holds it.
			sl.current = true
		case !sl.current:
			// What it knew was the queue's doing: the server now holds
			// what the writes made of its own value.
			sl.known, sl.stored = false, nil
		}
	})
	if len(l.entries) == 0 {
		delete(q.lines, l.key)
	}
	q.progressed()
}

// progressed wakes those who wait for the queue to change. q.mu must be
// held.
func (q *queue) progressed() {
	close(q.progress)
	q.progress = make(chan struct{})
}

// probed records a probe of the lost server, failed with err if not nil.
func (q *queue) probed(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.probes++
	if err != nil {
		q.lastErr = err
	}
	q.progressed()
}

// failure returns the error of the last failed attempt or probe.
func (q *queue) failure() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastErr
}

// dropMatching removes the entries that match, which are no longer to be
// delivered, from lines not being delivered, and returns how many it
// removed.
func (q *queue) dropMatching(match func(*entry) bool) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, l := range q.lines {
		kept := l.entries[:0]
		for i, e := range l.entries {
			if i == 0 && l.busy || !match(e) {
				kept = append(kept, e)
				continue
			}
			n++
			q.size.Add(-1)
			e.acct.pending.Add(-1)
			e.w.settled()
			q.store.with(e.key, func(sl *slot) { sl.queued--; sl.known, sl.stored = false, nil })
		}
		clear(l.entries[len(kept):])
		l.entries = kept
		if len(l.entries) == 0 && !l.busy {
			delete(q.lines, l.key)
			q.unschedule(l)
		}
	}
	if n > 0 {
		q.progressed()
	}
	return n
}

// dropPrefix removes the entries of the keys under prefix, as Clear
// removed those keys from the server.
func (q *queue) dropPrefix(prefix string) int {
	return q.dropMatching(func(e *entry) bool { return strings.HasPrefix(e.key, prefix) })
}

// unschedule takes l out of the ready list and the waiting heap. q.mu must
// be held.
func (q *queue) unschedule(l *line) {
	if l.index >= 0 {
		heap.Remove(&q.waiting, l.index)
	}
	for i, r := range q.ready {
		if r == l {
			q.ready = append(q.ready[:i], q.ready[i+1:]...)
			break
		}
	}
}

// hurry makes every waiting line due now, for a Flush.
func (q *queue) hurry() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.waiting.Len() > 0 {
		l := heap.Pop(&q.waiting).(*line)
		l.next = time.Time{}
		q.ready = append(q.ready, l)
	}
	select {
	case q.now <- struct{}{}:
	default:
	}
}

// due moves the waiting lines whose time has come to the ready list, and
// returns the ready lines it may start delivering now, marked busy, and
// when the next waiting line is due, zero for none. It reports whether the
// queue is empty.
func (q *queue) due(now time.Time) (start []*line, next time.Time, empty bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.waiting.Len() > 0 && !q.waiting[0].next.After(now) {
		q.ready = append(q.ready, heap.Pop(&q.waiting).(*line))
	}
	for len(q.ready) > 0 && q.busy < deliverers {
		l := q.ready[0]
		q.ready = q.ready[1:]
		l.busy = true
		q.busy++
		start = append(start, l)
	}
	if q.waiting.Len() > 0 {
		next = q.waiting[0].next
	}
	return start, next, len(q.lines) == 0 && q.busy == 0
}

// deliver sends the entries of l in order, until it is empty or one fails
// for want of the server, which it returns. An entry the server refuses is
// dropped and reported.
func (q *queue) deliver(ctx context.Context, l *line) error {
	for {
		q.mu.Lock()
		if len(l.entries) == 0 {
			q.finish(l, nil)
			q.mu.Unlock()
			return nil
		}
		e, fails := l.entries[0], l.fails
		q.mu.Unlock()

		var held bool
		var err error
		if e.sending != nil {
			err = e.sending.done(ctx)
		}
		if err == nil {
			c := e.acct.conn
			if fails > 0 {
				c = &conn{client: c.client, clock: clockFor(min(c.clock.timeout<<min(fails, 10), attemptMax))}
			}
			held, err = e.w.deliver(ctx, c, e.key, e.sent)
		}
		q.mu.Lock()
		switch {
		case err == nil:
			e.acct.delivered.Add(1)
			q.done++
			q.removeLocked(l, e, held)
			l.fails = 0
		case unreachable(err) || errors.Is(err, ErrConflict) || ctx.Err() != nil:
			e.sent = true
			q.finish(l, err)
			q.mu.Unlock()
			return err
		default:
			e.acct.drop(e, err)
			q.removeLocked(l, e, false)
		}
		q.mu.Unlock()
	}
}

// finish ends a delivery of l: an empty line leaves the queue; one whose
// head failed, with err, waits for its next attempt. q.mu must be held.
func (q *queue) finish(l *line, err error) {
	l.busy = false
	q.busy--
	if len(l.entries) == 0 {
		if q.lines[l.key] == l {
			delete(q.lines, l.key)
		}
	} else {
		q.lastErr = err
		l.fails++
		l.next = time.Now().Add(min(retryMin<<min(l.fails-1, 10), retryMax))
		heap.Push(&q.waiting, l)
		q.progressed()
	}
	q.signal()
}

// wait returns once acct has no entry queued; or every entry left of it
// has failed an attempt since wait began, or the server is lost and a probe
// of it since wait began failed; or ctx ends. lost reports whether the
// server is lost.
func (q *queue) wait(ctx context.Context, acct *account, lost func() bool) error {
	q.mu.Lock()
	probes := q.probes
	q.mu.Unlock()
	for {
		q.mu.Lock()
		progress, done := q.progress, acct.pending.Load() == 0
		if !done && lost() {
			done = q.probes > probes
		} else if !done {
			done = !q.pendingLocked(acct)
		}
		q.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-progress:
		}
	}
}

// pendingLocked reports whether an entry of acct is due or being
// delivered, not waiting for the next attempt after a failure. q.mu must be
// held.
func (q *queue) pendingLocked(acct *account) bool {
	for _, l := range q.lines {
		if l.index >= 0 && !l.busy {
			continue // waiting
		}
		for _, e := range l.entries {
			if e.acct == acct {
				return true
			}
		}
	}
	return false
}

// A lineHeap orders waiting lines by when they are due.
type lineHeap []*line

func (h lineHeap) Len() int           { return len(h) }
func (h lineHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h lineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *lineHeap) Push(x any) {
	l := x.(*line)
	l.index = len(*h)
	*h = append(*h, l)
}
func (h *lineHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	l.index = -1
	*h = old[:len(old)-1]
	return l
}
