package memory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestBatcher takes every slot of a batcher, so that four puts wait in one
// batch, gives up on one of them, then frees a slot: the batch goes as one
// call of the script, and each put gets its own reply, applied, left for a
// newer value or held already. The put given up on is told so with a
// *sendingError, whose send is done once the batch's is, and applies.
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
		b := newBatcher(c)
		for range batchSlots {
			b.slots <- struct{}{}
		}
		put := func(value string) *op {
			return &op{name: "put", stamp: 5, ttl: -1, args: []any{[]byte(value)}}
		}
		tests := []struct {
			key, value string
			outcome    int
		}{
			{"k:new", `{"value": 3, "last_modified": 5}`, applied},
			{"k:newer", `{"value": 4, "last_modified": 5}`, conflicted},
			{"k:held", held, duplicate},
			{"k:hash", `{"value": 5, "last_modified": 5}`, applied},
		}
		type result struct {
			reply opReply
			err   error
		}
		results := make([]chan result, len(tests))
		for i, tt := range tests {
			results[i] = make(chan result, 1)
			go func() {
				reply, err := b.put(ctx, c, tt.key, put(tt.value))
				results[i] <- result{reply, err}
			}()
		}
		gaveUp, cancel := context.WithCancel(ctx)
		given := make(chan error, 1)
		go func() {
			_, err := b.put(gaveUp, c, "k:given", put(`{"value": 6, "last_modified": 5}`))
			given <- err
		}()
		require.Eventually(t, func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.open != nil && len(b.open.keys) == len(tests)+1
		}, 5*time.Second, time.Millisecond, "the puts wait in one batch")

		cancel()
		err := <-given
		require.ErrorIs(t, err, context.Canceled)
		var sending *sendingError
		require.True(t, errors.As(err, &sending), "%v: a *sendingError", err)
		unsent, stop := context.WithTimeout(ctx, 10*time.Millisecond)
		require.ErrorIs(t, sending.send.WaitContext(unsent), context.DeadlineExceeded, "no slot: the batch is not sent")
		stop()

		<-b.slots
		for i, tt := range tests {
			r := <-results[i]
			require.NoError(t, r.err, tt.key)
			require.Equal(t, tt.outcome, r.reply.outcome, tt.key)
		}
		require.NoError(t, sending.send.WaitContext(ctx))
		<-b.slots
		b.wait()

		for key, want := range map[string]string{
			"k:new": tests[0].value, "k:newer": newer, "k:held": held, "k:hash": tests[3].value,
			"k:given": `{"value": 6, "last_modified": 5}`,
		} {
			require.Equal(t, want, raw.Get(ctx, key).Val(), key)
		}
	})
}
