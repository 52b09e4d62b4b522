package memory

import (
	"context"
	"fmt"
	"strconv"
	"sync"
)

// batchSlots is how many sends of puts a batcher has in flight at most,
// lone puts and batches: while one batch is on its way, the next fills.
const batchSlots = 2

// batchBytes bounds the keys and values of one batch, about: a put that
// finds the open batch holding more starts the next one, and a value of
// that size goes alone.
const batchBytes = 128 << 10

// A batcher sends the puts that callers make at once, the Sets and Deletes
// of many goroutines, through every Memory over one client, the tenants of a
// service say, as one call of the script. A call of the script costs the
// server more than the put it runs (docs/performance.md: 5.8µs a call of one
// put, 3.6µs a put in a call of 25), and each call a round trip of its own:
// under many goroutines, the server runs one call per batch rather than one
// per put. A put made while fewer than batchSlots sends are in flight goes
// alone, so that a lone caller waits for no one.
//
// A batch is sent by a sender, a goroutine that sends the batches opened
// while it runs, one after another, and ends when none is left: under
// load, one goroutine sends batch after batch, whose stack has grown to
// go-redis's depth once. It sends on a context of its own, which has the
// values of the context of the put that opened the batch (for the client's
// Dialer and CredentialsProviderContext, which read them), over the
// pipeliner's client, whose socket timeouts are the pipeline's timeout: a
// caller whose context ends while its put waits in a batch is told so with
// a *sendingError, as the pipeliner's are, whose send is the batch's.
type batcher struct {
	conn    *conn         // sends the batches, alone
	slots   chan struct{} // a token per send in flight
	mu      sync.Mutex    // guards the fields below, and orders senders.Add before wait
	open    *batch        // the batch that puts join
	queued  []*batch      // opened and not yet taken by a sender, oldest first
	running int           // senders running
	last    int           // puts in the last batch sent: the next one's room
	closed  bool          // by wait: puts go alone
	senders sync.WaitGroup
}

func newBatcher(c *conn) *batcher {
	return &batcher{conn: c, slots: make(chan struct{}, batchSlots)}
}

// batchHead is what a batch's call of the script begins with: the
// operation, and the identity, lowest seq, stamp and TTL that puts carries
// for each put instead.
var batchHead = []any{"puts", "", "0", "0", "0"}

// A batch is the puts that one call of the script applies, in order.
type batch struct {
	ctx   context.Context // the values of the put that opened it
	keys  []string
	args  []any // the script's: batchHead, then three for each put: stamp, TTL, value
	bytes int   // of the keys and values
	done  chan struct{}
	// Set before done is closed:
	replies []any
	err     error
}

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
	select {
	case b.slots <- struct{}{}:
		defer func() { <-b.slots }()
		return o.run(ctx, c, key)
	default:
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return o.run(ctx, c, key)
	}
	bt := b.open
	if bt == nil || bt.bytes >= batchBytes {
		bt = b.opened(ctx)
	}
	i := len(bt.keys)
	bt.keys = append(bt.keys, key)
	bt.args = append(bt.args, strconv.FormatInt(o.stamp, 10), o.ttlArg(), value)
	bt.bytes += len(key) + len(value)
	b.mu.Unlock()
	ctx = c.clock.bound(ctx)
	select {
	case <-bt.done:
	case <-ctx.Done():
		return opReply{}, &sendingError{err: ctx.Err(), send: bt}
	}
	v, err := bt.reply(i)
	return o.reply(key, v, err)
}

// reply returns the reply of the i-th put of bt, once it was sent.
func (bt *batch) reply(i int) (any, error) {
	switch {
	case bt.err != nil:
		return nil, bt.err
	case i >= len(bt.replies):
		return nil, fmt.Errorf("memory: a batch of %d puts had %d replies", len(bt.keys), len(bt.replies))
	}
	if msg, ok := bt.replies[i].(string); ok {
		return nil, putError(msg)
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
		keys: make([]string, 0, b.last),
		args: append(make([]any, 0, len(batchHead)+3*b.last), batchHead...),
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
// to later puts, and returns when none is left.
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
		b.last = len(bt.keys)
		b.mu.Unlock()
		bt.replies, bt.err = b.conn.run(bt.ctx, opsScript, bt.keys, bt.args...).Slice()
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

// wait returns once no batch is under way; later puts go alone.
func (b *batcher) wait() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.senders.Wait()
}
