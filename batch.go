package memory

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"
)

// batchSlots is how many sends of puts a batcher has in flight at most,
// lone puts and batches: while one batch is on its way, the next fills.
const batchSlots = 2

// batchBytes bounds the keys and values of one batch, about: a put that
// finds the open batch holding more starts the next one.
const batchBytes = 128 << 10

// A batcher sends the puts that callers make at once, the Sets and Deletes
// of many goroutines, as one call of the script. A call of the script costs
// the server more than the put it runs (docs/performance.md: 5.8µs a call
// of one put, 3.6µs a put in a call of 25), and each call a round trip of
// its own: under many goroutines, the server runs one call per batch rather
// than one per put. A put made while fewer than batchSlots sends are in
// flight goes alone, so that a lone caller waits for no one.
//
// A batch is sent by a goroutine of its own, on a context of its own, over
// the pipeliner's client, whose socket timeouts are the Memory's timeout: a
// caller whose context ends while its put waits in a batch is told so with
// a *sendingError, as the pipeliner's are, whose send is the batch's.
type batcher struct {
	conn    *conn         // sends the batches, alone
	slots   chan struct{} // a token per send in flight
	mu      sync.Mutex    // guards open and closed, and orders flushes.Add before wait
	open    *batch        // the batch that puts join, waiting for a slot
	closed  bool          // by wait: puts go alone
	flushes sync.WaitGroup
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
	select {
	case b.slots <- struct{}{}:
		defer func() { <-b.slots }()
		return o.run(ctx, c, key)
	default:
	}
	value := o.args[0].([]byte)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return o.run(ctx, c, key)
	}
	bt := b.open
	if bt == nil || bt.bytes >= batchBytes {
		bt = &batch{args: append([]any(nil), batchHead...), done: make(chan struct{})}
		b.open = bt
		b.flushes.Add(1)
		go b.flush(bt)
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
	cmd := redis.NewCmd(ctx)
	switch {
	case bt.err != nil:
		cmd.SetErr(bt.err)
	case i >= len(bt.replies):
		cmd.SetErr(fmt.Errorf("memory: a batch of %d puts had %d replies", len(bt.keys), len(bt.replies)))
	default:
		if msg, ok := bt.replies[i].(string); ok {
			cmd.SetErr(putError(msg))
		} else {
			cmd.SetVal(bt.replies[i])
		}
	}
	return o.reply(key, cmd)
}

// A putError is the error reply of one put of a batch, which the script
// gives as a string: an error reply among the replies of a batch would end
// go-redis's reading of them, for the other puts too.
type putError string

func (e putError) Error() string { return string(e) }

// RedisError says that e is a reply of the server's, as redis.Error does.
func (putError) RedisError() {}

// flush sends bt once a slot is free, and closes it to later puts then.
func (b *batcher) flush(bt *batch) {
	defer b.flushes.Done()
	b.slots <- struct{}{}
	defer func() { <-b.slots }()
	b.mu.Lock()
	if b.open == bt {
		b.open = nil
	}
	b.mu.Unlock()
	bt.replies, bt.err = b.conn.run(context.Background(), opsScript, bt.keys, bt.args...).Slice()
	close(bt.done)
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
	b.flushes.Wait()
}
