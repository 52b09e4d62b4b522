package memory

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory/internal/redisserver"
)

// TestBatcher takes every slot of a batcher, so that four puts wait in one
// batch while a value as large as a batch goes alone, gives up on one of
// them, then frees a slot: the batch goes as one call of the script, and
// each put gets its own reply, applied, left for a newer value or held
// already. The put given up on is told so with a *sendingError, whose send
// is done once the batch's is, and applies.
func TestBatcher(t *testing.T) {
	scriptServers(t, func(t *testing.T, c *conn, raw *redis.Client) {
		ctx := context.Background()
		const (
			newer = `{"value": 1, "last_modified": 9}`
			held  = `{"value": 2, "last_modified": 5}`
		)
		require.NoError(t, raw.Set(ctx, "k:newer", newer, 0).Err())
		require.NoError(t, raw.Set(ctx, "k:held", held, 0).Err())
		require.NoError(t, raw.HSet(ctx, "k:hash", "f", "v").Err())
		tests := []struct {
			key, value string
			outcome    int
		}{
			{"k:new", `{"value": 3, "last_modified": 5}`, applied},
			{"k:newer", `{"value": 4, "last_modified": 5}`, conflicted},
			{"k:held", held, duplicate},
			{"k:hash", `{"value": 5, "last_modified": 5}`, applied},
		}
		b := newPuts(c)
		free := takeSlots(b)
		results := make([]chan putResult, len(tests))
		for i, tt := range tests {
			results[i] = goPut(ctx, b, c, tt.key, tt.value)
		}
		gaveUp, cancel := context.WithCancel(ctx)
		given := goPut(gaveUp, b, c, "k:given", `{"value": 6, "last_modified": 5}`)
		waitBatched(t, b, len(tests)+1)
		large := `{"value": "` + strings.Repeat("x", batchBytes) + `", "last_modified": 5}`
		r := <-goPut(ctx, b, c, "k:large", large)
		require.NoError(t, r.err, "a value as large as a batch goes alone, without a slot")
		require.Equal(t, applied, r.reply.outcome)
		require.Equal(t, large, raw.Get(ctx, "k:large").Val())

		cancel()
		err := (<-given).err
		require.ErrorIs(t, err, context.Canceled)
		var sending *sendingError
		require.True(t, errors.As(err, &sending), "%v: a *sendingError", err)
		unsent, stop := context.WithTimeout(ctx, 10*time.Millisecond)
		require.ErrorIs(t, sending.send.WaitContext(unsent), context.DeadlineExceeded, "no slot: the batch is not sent")
		stop()

		free()
		for i, tt := range tests {
			r := <-results[i]
			require.NoError(t, r.err, tt.key)
			require.Equal(t, tt.outcome, r.reply.outcome, tt.key)
		}
		require.NoError(t, sending.send.WaitContext(ctx))
		b.wait()

		for key, want := range map[string]string{
			"k:new": tests[0].value, "k:newer": newer, "k:held": held, "k:hash": tests[3].value,
			"k:given": `{"value": 6, "last_modified": 5}`,
		} {
			require.Equal(t, want, raw.Get(ctx, key).Val(), key)
		}
	})
}

// TestBatcherErrors has one put of a batch meet an error, the server out of
// memory, and another apply: each caller gets its own reply.
func TestBatcherErrors(t *testing.T) {
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: redisserver.Start(t).Addr})
	t.Cleanup(func() { raw.Close() })
	c := &conn{client: raw, clock: clockFor(2 * time.Second)}
	require.NoError(t, raw.Set(ctx, "k:held", `{"value": 1, "last_modified": 5}`, 0).Err())
	require.NoError(t, raw.ConfigSet(ctx, "maxmemory", "1").Err())
	t.Cleanup(func() { raw.ConfigSet(ctx, "maxmemory", "0") })

	b := newPuts(c)
	free := takeSlots(b)
	// The Set first: a script that wrote already may write on past the
	// bound.
	set := goPut(ctx, b, c, "k:new", `{"value": 2, "last_modified": 6}`)
	waitBatched(t, b, 1)
	del := goPut(ctx, b, c, "k:held", "")
	waitBatched(t, b, 2)
	free()
	r := <-set
	require.True(t, redis.HasErrorPrefix(r.err, "OOM"), "%v: the server's refusal, of this put alone", r.err)
	require.ErrorAs(t, r.err, new(redis.Error))
	r = <-del
	require.NoError(t, r.err)
	require.Equal(t, applied, r.reply.outcome, "the delete applied")
	b.wait()
	require.Zero(t, raw.Exists(ctx, "k:held", "k:new").Val())
}

// TestBatcherContext has the put that opens a batch give up before the
// batch goes: the batch goes still, with the values of that put's context,
// which the client's Dialer and CredentialsProviderContext, and here a
// hook, see.
func TestBatcherContext(t *testing.T) {
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
	t.Cleanup(func() { raw.Close() })
	// The traceKey value of the context of each call of the script.
	traces := &cmdHook{name: "evalsha", of: func(ctx context.Context, _ redis.Cmder) any { return ctx.Value(traceKey{}) }}
	raw.AddHook(traces)
	c := &conn{client: raw, clock: clockFor(2 * time.Second)}

	b := newPuts(c)
	free := takeSlots(b)
	opener, cancel := context.WithCancel(context.WithValue(ctx, traceKey{}, "trace-1"))
	opened := goPut(opener, b, c, "k:a", `{"value": 1, "last_modified": 5}`)
	waitBatched(t, b, 1)
	joined := goPut(ctx, b, c, "k:b", `{"value": 2, "last_modified": 5}`)
	waitBatched(t, b, 2)
	cancel()
	require.ErrorIs(t, (<-opened).err, context.Canceled)
	free()
	require.NoError(t, (<-joined).err)
	b.wait()

	require.Equal(t, []any{"trace-1"}, traces.values(), "one call of the script, with the opener's values")
	require.Equal(t, `{"value": 1, "last_modified": 5}`, raw.Get(ctx, "k:a").Val(), "the put given up on applied")
}

// traceKey is the key of a context value, as a tracer's.
type traceKey struct{}

// A cmdHook records what of returns for each command named name that a
// client sends.
type cmdHook struct {
	name string
	of   func(context.Context, redis.Cmder) any
	mu   sync.Mutex // guards seen
	seen []any
}

func (h *cmdHook) values() []any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen
}

func (*cmdHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (*cmdHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *cmdHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == h.name {
			h.mu.Lock()
			h.seen = append(h.seen, h.of(ctx, cmd))
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

// A putResult is what a put of a batcher returned.
type putResult struct {
	reply opReply
	err   error
}

// goPut puts value, "" to delete, at key through b, stamped 5, from a
// goroutine of its own, and returns where its result comes.
func goPut(ctx context.Context, b *batcher, c *conn, key, value string) chan putResult {
	result := make(chan putResult, 1)
	go func() {
		reply, err := b.put(ctx, c, key, &op{name: "put", stamp: 5, ttl: -1, args: []any{[]byte(value)}})
		result <- putResult{reply, err}
	}()
	return result
}

// takeSlots takes every slot of b, so that puts wait in a batch, and
// returns the function that frees them.
func takeSlots(b *batcher) (free func()) {
	for range batchSlots {
		b.slots <- struct{}{}
	}
	return func() {
		for range batchSlots {
			<-b.slots
		}
	}
}

// waitBatched waits until n puts wait in the open batch of b.
func waitBatched(t *testing.T, b *batcher, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.open != nil && len(b.open.keys) == n
	}, 5*time.Second, time.Millisecond, "%d puts wait in one batch", n)
}

// TestBatcherGets takes every slot of a pipeline's batcher of reads, so
// that reads of a string, an absent key, a hash and a list wait in one
// batch, and a fifth read gives up, then frees the slots: the batch goes as
// one MGET, which has no string for the last three, read again alone: the
// absent key is nil, the others a *DecodeError. The read given up on
// returns its context's error, not a *sendingError: a read sent late holds
// nothing up.
func TestBatcherGets(t *testing.T) {
	scriptServers(t, func(t *testing.T, _ *conn, raw *redis.Client) {
		ctx := context.Background()
		const stored = `{"value": 1, "last_modified": 5}`
		require.NoError(t, raw.Set(ctx, "k:string", stored, 0).Err())
		require.NoError(t, raw.HSet(ctx, "k:hash", "f", "v").Err())
		require.NoError(t, raw.RPush(ctx, "k:list", stored).Err())
		p, err := newPipeline(raw, 2*time.Second)
		require.NoError(t, err)
		t.Cleanup(p.close)
		// The number of keys of each MGET.
		mgets := &cmdHook{name: "mget", of: func(_ context.Context, cmd redis.Cmder) any { return len(cmd.Args()) - 1 }}
		p.client.AddHook(mgets)
		c := &conn{client: raw, clock: clockFor(2 * time.Second), pipe: p}

		type result struct {
			stored []byte
			err    error
		}
		read := func(ctx context.Context, key string) chan result {
			r := make(chan result, 1)
			go func() {
				stored, err := c.get(ctx, key)
				r <- result{stored, err}
			}()
			return r
		}
		free := takeSlots(p.gets)
		keys := []string{"k:string", "k:absent", "k:hash", "k:list"}
		results := make([]chan result, len(keys))
		for i, key := range keys {
			results[i] = read(ctx, key)
			waitBatched(t, p.gets, i+1)
		}
		gaveUp, cancel := context.WithCancel(ctx)
		given := read(gaveUp, "k:string")
		waitBatched(t, p.gets, len(keys)+1)
		cancel()
		r := <-given
		require.ErrorIs(t, r.err, context.Canceled)
		require.False(t, errors.As(r.err, new(*sendingError)), "%v: a read holds nothing up", r.err)
		free()

		r = <-results[0]
		require.NoError(t, r.err)
		require.Equal(t, stored, string(r.stored))
		r = <-results[1]
		require.NoError(t, r.err, "absent")
		require.Nil(t, r.stored, "absent")
		for i, key := range keys[2:] {
			r := <-results[2+i]
			var decode *DecodeError
			require.ErrorAs(t, r.err, &decode, key)
			require.Equal(t, key, decode.Key)
		}
		p.gets.wait()
		require.Equal(t, []any{len(keys) + 1}, mgets.values(), "one MGET of every read")
	})
}
