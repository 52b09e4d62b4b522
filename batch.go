package memory

import (
	"context"
	"fmt"
	"strconv"
	"sync"
)

// batchSlots is how many sends a batcher has in flight at most, lone calls
// and batches: while one batch is on its way, the next fills.
const batchSlots = 2

// batchBytes bounds the keys and values of one batch, about: a call that
// finds the open batch holding more starts the next one, and a value of
// that size goes alone.
const batchBytes = 128 << 10

// A batcher sends the calls that callers make at once, through every Memory
// over one client, the tenants of a service say, as one command: the Sets
// and Deletes of many goroutines as one call of the script (newPuts), their
// reads of strings as one MGET (newGets). A call of the script costs the
// server more than the put it runs (docs/performance.md: 230k calls of one
// put a second, 400k puts a second in calls of 25), a GET more than a key of
// an MGET, and each command the client a round trip of its own: under many
// goroutines, the server runs one command per batch rather than one per
// call. A call made while fewer than batchSlots sends are in flight goes
// alone, so that a lone caller waits for no one.
//
// A batch is sent by a sender, a goroutine that sends the batches opened
// while it runs, one after another, and ends when none is left: under
// load, one goroutine sends batch after batch, whose stack has grown to
// go-redis's depth once. It sends on a context of its own, which has the
// values of the context of the call that opened the batch (for the client's
// Dialer and CredentialsProviderContext, which read them), over the
// pipeliner's client, whose socket timeouts are the pipeline's timeout: a
// put whose caller's context ends while it waits in a batch is told so with
// a *sendingError, as the pipeliner's are, whose send is the batch's; a
// read, with its context's error.
type batcher struct {
	head    []any                       // what a batch's command begins with
	do      func(*batch) ([]any, error) // sends a batch's command
	slots   chan struct{}               // a token per send in flight
	mu      sync.Mutex                  // guards the fields below, and orders senders.Add before wait
	open    *batch                      // the batch that calls join
	queued  []*batch                    // opened and not yet taken by a sender, oldest first
	running int                         // senders running
	last    struct{ keys, args int }    // of the last batch sent: the next one's room
	closed  bool                        // by stop: calls go alone
	senders sync.WaitGroup
}

// newPuts returns a batcher of puts over c: a batch is one call of the
// script, whose operation and identity, lowest seq, stamp and TTL are
// those of "puts", which carries a stamp, a TTL and a value for each put
// instead.
func newPuts(c *conn) *batcher {
	b := &batcher{head: []any{"puts", "", "0", "0", "0"}, slots: make(chan struct{}, batchSlots)}
	b.do = func(bt *batch) ([]any, error) { return c.run(bt.ctx, opsScript, bt.keys, bt.args...).Slice() }
	return b
}

// newGets returns a batcher of reads of strings over c: a batch is one
// MGET, tried once, as c's client, the pipeliner's, tries each command; a
// read whose batch failed goes again alone (conn.get).
func newGets(c *conn) *batcher {
	b := &batcher{head: []any{"mget"}, slots: make(chan struct{}, batchSlots)}
	b.do = func(bt *batch) ([]any, error) { return c.read(bt.ctx, bt.args...).Slice() }
	return b
}

// A batch is the calls that one command sends, in order.
type batch struct {
	ctx   context.Context // the values of the call that opened it
	keys  []string
	args  []any // the command's: the batcher's head, then those of each call
	bytes int   // of the keys and values
	done  chan struct{}
	// Set before done is closed:
	replies []any
	err     error
}

// join adds a call on key, with args and of size bytes, to the open batch,
// and returns the batch and the call's index in it; or, for a call to go
// alone now, no batch and the function to call once it went.
func (b *batcher) join(ctx context.Context, key string, size int, args ...any) (bt *batch, i int, went func()) {
	select {
	case b.slots <- struct{}{}:
		return nil, 0, b.free
	default:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, 0, func() {}
	}
	bt = b.open
	if bt == nil || bt.bytes >= batchBytes {
		bt = b.opened(ctx)
	}
	i = len(bt.keys)
	bt.keys = append(bt.keys, key)
	bt.args = append(bt.args, args...)
	bt.bytes += size
	return bt, i, nil
}

// free ends a send's being in flight.
func (b *batcher) free() { <-b.slots }

// put sends o, a put, on key, over c when it goes alone, and returns its
// reply.
func (b *batcher) put(ctx context.Context, c *conn, key string, o *op) (opReply, error) {
	if err := ctxErr(ctx); err != nil {
		return opReply{}, err // not sent
	}
	value := o.args[0].([]byte)
	if len(value) >= batchBytes {
		return o.run(ctx, c, key) // alone, rather than slow a batch of others
	}
	bt, i, went := b.join(ctx, key, len(key)+len(value), strconv.FormatInt(o.stamp, 10), o.ttlArg(), value)
	if bt == nil {
		defer went()
		return o.run(ctx, c, key)
	}
	v, err := bt.reply(c.clock.bound(ctx), i)
	if msg, ok := v.(string); ok {
		v, err = nil, putError(msg)
	}
	return o.reply(key, v, err)
}

// reply returns the reply of the i-th call of bt, once bt was sent; or,
// when ctx ends first, a *sendingError. A reply that came wins over a ctx
// that ended with it.
func (bt *batch) reply(ctx context.Context, i int) (any, error) {
	select {
	case <-bt.done:
	default:
		select {
		case <-bt.done:
		case <-ctx.Done():
			return nil, &sendingError{err: ctx.Err(), send: bt}
		}
	}
	switch {
	case bt.err != nil:
		return nil, bt.err
	case i >= len(bt.replies):
		return nil, fmt.Errorf("memory: a batch of %d calls had %d replies", len(bt.keys), len(bt.replies))
	}
	return bt.replies[i], nil
}

// A putError is the error reply of one put of a batch, which the script
// gives as a string: an error reply among the replies of a batch would end
// go-redis's reading of them, for the other puts too.
type putError string

func (e putError) Error() string { return string(e) }

// RedisError says that e is a reply of the server's, as redis.Error does.
func (putError) RedisError() {}

// opened returns a new open batch, with the values of ctx, queued for a
// sender, which it starts while fewer than batchSlots run. b.mu is held.
func (b *batcher) opened(ctx context.Context) *batch {
	bt := &batch{
		ctx:  context.WithoutCancel(ctx),
		keys: make([]string, 0, b.last.keys),
		args: append(make([]any, 0, b.last.args), b.head...),
		done: make(chan struct{}),
	}
	b.open = bt
	b.queued = append(b.queued, bt)
	if b.running < batchSlots {
		b.running++
		b.senders.Add(1)
		go b.send()
	}
	return bt
}

// send sends the queued batches, each once a slot is free, which closes it
// to later calls, and returns when none is left.
func (b *batcher) send() {
	defer b.senders.Done()
	for {
		b.mu.Lock()
		if len(b.queued) == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		bt := b.queued[0]
		b.queued[0] = nil
		b.queued = b.queued[1:]
		b.mu.Unlock()

		b.slots <- struct{}{}
		b.mu.Lock()
		if b.open == bt {
			b.open = nil
		}
		b.last.keys, b.last.args = len(bt.keys), len(bt.args)
		b.mu.Unlock()
		bt.replies, bt.err = b.do(bt)
		<-b.slots
		bt.ctx, bt.args = nil, nil // a hold in the queue may keep bt a while
		close(bt.done)
	}
}

// WaitContext returns once bt's send is done, or ctx ends, whose error it
// then returns.
func (bt *batch) WaitContext(ctx context.Context) error {
	select {
	case <-bt.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop has later calls go alone.
func (b *batcher) stop() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

// wait stops b, and returns once no batch is under way.
func (b *batcher) wait() {
	b.stop()
	b.senders.Wait()
}
