package memory

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The flusher probes a lost server after probeMin, then after twice as
// long each time, up to probeMax.
const (
	probeMin = time.Second
	probeMax = 30 * time.Second
)

// A link is what every Memory over one client shares: this process's
// identity as a writer, what it knows of keys, the queue of writes waiting
// for the server, whether the server is known to be lost, the one loop,
// the flusher, that delivers the queue and probes a lost server, and the
// tracker that Watch follows changes with.
type link struct {
	client  redis.UniversalClient
	writer  string        // this process's identity in the records of operations
	seq     atomic.Uint64 // of the last operation begun
	store   *store
	queue   *queue
	tracker *tracker // of the changes Watch tells

	// lost says that writes go to the queue, and reads to the store,
	// without trying the server. Only the flusher clears it.
	lost atomic.Bool

	deliveries sync.WaitGroup // the flusher's deliveries under way

	mu   sync.Mutex         // guards the fields below
	pipe *pipeline          // nil until a Memory over client asks for auto-pipelining
	refs int                // Memory values returned by New over client
	stop context.CancelFunc // stops the flusher
	done chan struct{}      // closed when the flusher has stopped; nil when none runs
}

var links = struct {
	sync.Mutex // guards m
	m          map[redis.UniversalClient]*link
}{m: map[redis.UniversalClient]*link{}}

// linkFor returns the link of client, made on its first use, and counts one
// more user of it. first reports whether this use is the first.
func linkFor(client redis.UniversalClient) (l *link, first bool) {
	links.Lock()
	defer links.Unlock()
	l = links.m[client]
	if first = l == nil; first {
		s := newStore()
		l = &link{client: client, writer: newWriter(), store: s, queue: newQueue(s), tracker: newTracker(client)}
		links.m[client] = l
	}
	l.mu.Lock()
	l.refs++
	l.mu.Unlock()
	return l, first
}

// pipeline returns the pipeline of the client, made on its first use, on a
// client of its own with socket timeouts of timeout.
func (l *link) pipeline(timeout time.Duration) (*pipeline, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pipe == nil {
		p, err := newPipeline(l.client, timeout)
		if err != nil {
			return nil, fmt.Errorf("memory: WithAutoPipeline: %w", err)
		}
		l.pipe = p
	}
	return l.pipe, nil
}

// newWriter returns a random identity, unique among the writers of any
// key for all practical purposes: 50 bits, as 10 lowercase base32 digits.
func newWriter() string {
	var b [8]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))[:10]
}

// begin starts an operation on key: it returns the operation's identity
// and the lowest seq of this process's operations on key whose outcome it
// does not know, which the server need remember no longer than that.
func (l *link) begin(key string) (opID, uint64) {
	seq, low := l.store.begin(key, func() uint64 { return l.seq.Add(1) })
	return opID{l.writer, seq}, low
}

// release counts one user of l less; the last one stops the flusher and
// forgets l. It returns a function that waits up to d for the flusher, and
// the deliveries it had under way, to end: each ends with its round trip,
// which closing the client cuts short; and then closes the pipeline, which
// waits for its batches of puts, each within the pipeline's timeout, and
// cuts its batches of reads short.
func (l *link) release() (wait func(d time.Duration)) {
	links.Lock()
	l.mu.Lock()
	l.refs--
	last := l.refs == 0
	done, pipe := l.done, l.pipe
	if last {
		delete(links.m, l.client)
		if done != nil {
			l.stop()
		}
	}
	l.mu.Unlock()
	links.Unlock()
	if !last {
		return func(time.Duration) {}
	}
	return func(d time.Duration) {
		ended := make(chan struct{})
		go func() {
			if done != nil {
				<-done
			}
			l.deliveries.Wait()
			close(ended)
		}()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ended:
		case <-t.C:
		}
		if pipe != nil {
			pipe.close()
		}
	}
}

// enqueue queues entries, all or none, and makes sure the flusher runs to
// deliver them.
func (l *link) enqueue(entries ...*entry) error {
	if err := l.queue.add(entries...); err != nil {
		return err
	}
	l.startFlusher()
	return nil
}

// startFlusher starts the flusher unless it runs.
func (l *link) startFlusher() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done == nil && l.refs > 0 {
		ctx, stop := context.WithCancel(context.Background())
		l.stop, l.done = stop, make(chan struct{})
		go l.flusher(ctx, l.done)
	}
}

// flusher delivers the queue, and while the server is lost, probes it with
// PING at growing pauses, until the queue is empty and the server not lost,
// or ctx ends.
func (l *link) flusher(ctx context.Context, done chan struct{}) {
	defer close(done)
	pause := probeMin
	for {
		if l.lost.Load() {
			// Only a Flush cuts the pause short: writes queued while the
			// server is lost do not make the flusher probe it sooner.
			if !l.sleep(ctx, pause, l.queue.now) {
				return
			}
			acct := l.queue.head()
			err := acct.conn.ping(ctx)
			if err != nil {
				l.queue.probed(err)
				pause = min(2*pause, probeMax)
				continue
			}
			pause = probeMin
			l.lost.Store(false)
			acct.log.Info("memory: server back; delivering the queue", "queued", l.queue.size.Load())
			l.queue.hurry()
			l.queue.probed(nil)
		}
		start, next, empty := l.queue.due(time.Now())
		if empty && l.stopIfIdle() {
			return
		}
		for _, ln := range start {
			l.deliveries.Go(func() {
				if err := l.queue.deliver(ctx, ln); err != nil && ctx.Err() == nil {
					l.probeAfter(ctx, ln, err)
				}
			})
		}
		var wait time.Duration
		if !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		if !l.sleep(ctx, wait, l.queue.wake) {
			return
		}
	}
}

// probeAfter pings the server after a delivery to it failed with err, and
// marks the server lost if the ping fails too: a slow server is not a lost
// one.
func (l *link) probeAfter(ctx context.Context, ln *line, err error) {
	acct := l.queue.accountOf(ln)
	if acct == nil || l.lost.Load() {
		return
	}
	if pingErr := acct.conn.ping(ctx); pingErr != nil && ctx.Err() == nil {
		l.lose(acct, errors.Join(err, pingErr))
	}
}

// failed records that a write met err, which left its outcome unknown: a
// server that refused the connection is lost at once, while one that did
// not reply is probed by the flusher.
func (l *link) failed(acct *account, err error) {
	if refused(err) {
		l.lose(acct, err)
	}
}

// lose marks the server lost, as err showed it, and makes sure the
// flusher runs, which alone finds it back.
func (l *link) lose(acct *account, err error) {
	if !l.lost.Swap(true) {
		acct.log.Warn("memory: server lost; queueing writes", "err", err)
	}
	l.queue.seen(acct)
	l.startFlusher()
	l.queue.signal()
}

// sleep waits for d, when d is 0 for ever, or until wake, and reports false
// if ctx ended first.
func (l *link) sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-l.queue.now:
	case <-wake:
	case <-timer:
	}
	return true
}

// stopIfIdle marks the flusher stopped and reports true when there is
// nothing left for it to do: the queue is empty and the server not lost.
func (l *link) stopIfIdle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.queue.size.Load() > 0 || l.lost.Load() || !l.queue.idle() {
		return false
	}
	l.done = nil
	return true
}
