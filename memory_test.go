package memory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
)

var ctx = context.Background()

type settings struct {
	Theme  string  `json:"theme"`
	Volume float64 `json:"volume"`
}

func TestSetGetRoundTrip(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		tests := []struct {
			name  string
			value any
			dst   func() any // a pointer to a fresh destination
		}{
			{"int", 42, func() any { return new(int) }},
			{"string", "héllo <b>&</b>", func() any { return new(string) }},
			{"bool", true, func() any { return new(bool) }},
			{"float", 0.75, func() any { return new(float64) }},
			{"null", nil, func() any { return new(any) }},
			{"slice", []int{1, 2, 3}, func() any { return new([]int) }},
			{"map", map[string]any{"a": 1.0, "b": []any{"x"}}, func() any { return new(map[string]any) }},
			{"struct", settings{"dark", 0.75}, func() any { return new(settings) }},
			{"time", time.Date(2026, 11, 28, 12, 0, 0, 5, time.UTC), func() any { return new(time.Time) }},
			{"unicode name ключ", "v", func() any { return new(string) }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				name := strings.ReplaceAll(tt.name, " ", "_")
				require.NoError(t, m.Set(ctx, name, tt.value))
				dst := tt.dst()
				require.NoError(t, m.Get(ctx, name, dst))
				want, err := json.Marshal(tt.value)
				require.NoError(t, err)
				got, err := json.Marshal(dst)
				require.NoError(t, err)
				require.JSONEq(t, string(want), string(got))
			})
		}
	})
}

func TestWireFormat(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr, memory.WithPrefix("memory:"))
		raw := rawClient(t, addr)

		before := time.Now().UnixNano()
		require.NoError(t, m.Set(ctx, "answer", 42))
		after := time.Now().UnixNano()

		stored, err := raw.Get(ctx, "memory:answer").Result()
		require.NoError(t, err)
		var stamp int64
		_, err = fmt.Sscanf(stored, `{"value": 42, "last_modified": %d}`, &stamp)
		require.NoError(t, err, "stored %s", stored)
		require.Equal(t, fmt.Sprintf(`{"value": 42, "last_modified": %d}`, stamp), stored)
		require.True(t, before <= stamp && stamp <= after, "last_modified %d not within [%d, %d]", stamp, before, after)

		require.NoError(t, m.Set(ctx, "page", "<a href=x>&</a>"))
		stored, err = raw.Get(ctx, "memory:page").Result()
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(stored, `{"value": "<a href=x>&</a>", `), "HTML is not escaped: %s", stored)
	})
}

func TestGetReadsForeignWriters(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		tests := []struct {
			name, stored string
			want         any
		}{
			{"python envelope", `{"value": {"theme": "dark", "volume": 0.75}, "last_modified": 1732838400123456789}`, map[string]any{"theme": "dark", "volume": 0.75}},
			{"compact envelope", `{"value":[1,2],"last_modified":1}`, []any{1.0, 2.0}},
			{"members reversed", `{"last_modified": 5, "value": "x"}`, "x"},
			{"envelope value holding the separator", `{"value": ", \"last_modified\": 1}", "last_modified": 7}`, `, "last_modified": 1}`},
			{"bare number", `42`, 42.0},
			{"bare string", `"hi"`, "hi"},
			{"bare object", `{"value": 1}`, map[string]any{"value": 1.0}},
			{"bare null", `null`, nil},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				name := fmt.Sprintf("foreign%d", i)
				require.NoError(t, raw.Set(ctx, "test:"+name, tt.stored, 0).Err())
				got, err := memory.GetAs[any](ctx, m, name)
				require.NoError(t, err)
				require.Equal(t, tt.want, got)
			})
		}
	})
}

func TestDecodeError(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		require.NoError(t, raw.Set(ctx, "test:garbage", "not json{", 0).Err())
		require.NoError(t, raw.Set(ctx, "test:badstamp", `{"value": 1, "last_modified": "soon"}`, 0).Err())
		require.NoError(t, raw.RPush(ctx, "test:list", "a").Err())
		require.NoError(t, m.Set(ctx, "text", "words"))
		require.NoError(t, m.Set(ctx, "good", 1))

		tests := []struct {
			name string
			dst  any
		}{
			{"garbage", new(any)},
			{"badstamp", new(any)},
			{"list", new(any)},
			{"text", new(int)}, // JSON that does not fit the destination
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := m.Get(ctx, tt.name, tt.dst)
				var de *memory.DecodeError
				require.ErrorAs(t, err, &de)
				require.Equal(t, "test:"+tt.name, de.Key)
				require.Contains(t, err.Error(), `"test:`+tt.name+`"`)
				require.NotErrorIs(t, err, memory.ErrNotFound)
			})
		}
		got, err := memory.GetAs[int](ctx, m, "good")
		require.NoError(t, err, "one corrupt key does not affect the others")
		require.Equal(t, 1, got)
	})
}

func TestGetErrors(t *testing.T) {
	m := newMemory(t, miniredisAddr(t))
	require.NoError(t, m.Set(ctx, "x", 1))

	err := m.Get(ctx, "absent", new(int))
	require.ErrorIs(t, err, memory.ErrNotFound)
	require.Contains(t, err.Error(), `"test:absent"`)

	_, err = memory.GetAs[int](ctx, m, "absent")
	require.ErrorIs(t, err, memory.ErrNotFound)

	for _, dst := range []any{nil, 5, (*int)(nil)} {
		var invalid *json.InvalidUnmarshalError
		require.ErrorAs(t, m.Get(ctx, "x", dst), &invalid, "dst %#v", dst)
	}
}

func TestEncodeError(t *testing.T) {
	type cycle struct{ Next *cycle }
	loop := &cycle{}
	loop.Next = loop
	tests := []struct {
		name  string
		value any
	}{
		{"chan", make(chan int)},
		{"func", func() {}},
		{"nan", math.NaN()},
		{"inf", math.Inf(1)},
		{"complex", complex(1, 2)},
		{"cycle", loop},
		{"map_with_func", map[string]any{"f": func() {}}},
	}
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := m.Set(ctx, tt.name, tt.value)
				var ee *memory.EncodeError
				require.ErrorAs(t, err, &ee)
				require.Equal(t, tt.name, ee.Name)
				require.Contains(t, err.Error(), `"`+tt.name+`"`)
				require.NotNil(t, errors.Unwrap(err))
			})
		}
		require.Empty(t, serverKeys(t, raw), "nothing is written")
	})
}

func TestInvalidNames(t *testing.T) {
	names := map[string]string{
		"empty":          "",
		"colon":          "a:b",
		"space":          "a b",
		"tab":            "a\tb",
		"newline":        "a\n",
		"control":        "a\x00b",
		"delete":         "a\x7f",
		"unicode space":  "a\u00a0b",
		"line separator": "a\u2028b",
		"invalid utf-8":  "a\xffb",
		"too long":       strings.Repeat("n", 513),
	}
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		for label, name := range names {
			t.Run(label, func(t *testing.T) {
				ops := map[string]error{
					"Set":    m.Set(ctx, name, 1),
					"Get":    m.Get(ctx, name, new(int)),
					"Delete": m.Delete(ctx, name),
					"Expire": m.Expire(ctx, name, time.Second),
				}
				_, ops["Has"] = m.Has(ctx, name)
				_, ops["Scope"] = m.Scope(name)
				for op, err := range ops {
					require.ErrorIs(t, err, memory.ErrInvalidName, op)
					require.Contains(t, err.Error(), fmt.Sprintf("%q", name), op)
				}
			})
		}
		require.Empty(t, serverKeys(t, raw), "nothing is written")
		require.NoError(t, m.Set(ctx, strings.Repeat("n", 512), 1), "512 bytes is allowed")
	})
}

func TestHasDeleteExpire(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)

		ok, err := m.Has(ctx, "k")
		require.NoError(t, err)
		require.False(t, ok)

		require.NoError(t, m.Set(ctx, "k", "v"))
		ok, err = m.Has(ctx, "k")
		require.NoError(t, err)
		require.True(t, ok)

		require.NoError(t, m.Expire(ctx, "k", time.Hour))
		ttl, err := raw.PTTL(ctx, "test:k").Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 59*time.Minute)
		require.LessOrEqual(t, ttl, time.Hour)

		require.NoError(t, m.Delete(ctx, "k"))
		require.Equal(t, int64(0), raw.Exists(ctx, "test:k").Val())
		require.NoError(t, m.Delete(ctx, "k"), "deleting an absent name is not an error")

		err = m.Expire(ctx, "k", time.Hour)
		require.ErrorIs(t, err, memory.ErrNotFound)
		require.Contains(t, err.Error(), `"test:k"`)

		require.NoError(t, m.Set(ctx, "gone", 1))
		require.NoError(t, m.Expire(ctx, "gone", 0), "a ttl of zero removes the name, as PEXPIRE does")
		_, err = memory.GetAs[int](ctx, m, "gone")
		require.ErrorIs(t, err, memory.ErrNotFound)
	})
}

func TestDefaultTTL(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr, memory.WithDefaultTTL(time.Minute))
		raw := rawClient(t, addr)
		require.NoError(t, m.Set(ctx, "session", "abc"))
		ttl, err := raw.PTTL(ctx, "test:session").Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 50*time.Second)
		require.LessOrEqual(t, ttl, time.Minute)
	})
}

func TestKeys(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)

		names, err := m.Keys(ctx)
		require.NoError(t, err)
		require.Empty(t, names)
		require.NotNil(t, names)

		for _, name := range []string{"b", "a", "c"} {
			require.NoError(t, m.Set(ctx, name, 1))
		}
		conv, err := m.Scope("conv_1")
		require.NoError(t, err)
		require.NoError(t, conv.Set(ctx, "history", []string{"hi"}))
		require.NoError(t, raw.Set(ctx, "test:with space", "1", 0).Err())
		require.NoError(t, raw.Set(ctx, "other:a", "1", 0).Err())

		names, err = m.Keys(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"a", "b", "c"}, names, "own names only: no scopes, no invalid names, no other prefixes")

		names, err = conv.Keys(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"history"}, names)
	})
}

func TestClear(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		require.NoError(t, m.Set(ctx, "a", 1))
		require.NoError(t, m.Set(ctx, "b", 1))
		conv, err := m.Scope("conv_1")
		require.NoError(t, err)
		require.NoError(t, conv.Set(ctx, "history", 1))
		require.NoError(t, raw.Set(ctx, "test:with space", "1", 0).Err())
		require.NoError(t, raw.Set(ctx, "tester:a", "1", 0).Err())
		require.NoError(t, raw.Set(ctx, "other:a", "1", 0).Err())

		n, err := conv.Clear(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)

		require.NoError(t, conv.Set(ctx, "history", 1))
		n, err = m.Clear(ctx)
		require.NoError(t, err)
		require.Equal(t, 4, n, "own names, scopes and any other key under the prefix")
		require.Equal(t, []string{"other:a", "tester:a"}, serverKeys(t, raw))

		n, err = m.Clear(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

// TestManyKeys lists and clears more keys than one SCAN page holds. On the
// real server this pages through cursors; miniredis returns one page.
func TestManyKeys(t *testing.T) {
	const count = 2600
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		pipe := raw.Pipeline()
		want := make([]string, count)
		for i := range count {
			want[i] = fmt.Sprintf("k%05d", i)
			pipe.Set(ctx, "test:"+want[i], `{"value": 1, "last_modified": 1}`, 0)
			pipe.Set(ctx, fmt.Sprintf("neighbour:k%05d", i), "1", 0)
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)

		names, err := m.Keys(ctx)
		require.NoError(t, err)
		require.Equal(t, want, names)

		n, err := m.Clear(ctx)
		require.NoError(t, err)
		require.Equal(t, count, n)
		names, err = m.Keys(ctx)
		require.NoError(t, err)
		require.Empty(t, names)
		require.Len(t, serverKeys(t, raw), count, "the neighbour's keys are all there")
	})
}

func TestScope(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr, memory.WithPrefix("memory:"))
		raw := rawClient(t, addr)
		conv, err := m.Scope("conv_42")
		require.NoError(t, err)
		require.Equal(t, "memory:conv_42:", conv.Prefix())
		require.Same(t, m.Client(), conv.Client())

		require.NoError(t, conv.Set(ctx, "topic", "go"))
		require.Equal(t, []string{"memory:conv_42:topic"}, serverKeys(t, raw), "the keys of Python's ConversationMemory")

		_, err = memory.GetAs[string](ctx, m, "topic")
		require.ErrorIs(t, err, memory.ErrNotFound, "a parent does not see its scope's names")

		nested, err := conv.Scope("agent")
		require.NoError(t, err)
		require.Equal(t, "memory:conv_42:agent:", nested.Prefix())

		require.NoError(t, conv.Close(), "closing a scope does nothing")
		require.NoError(t, conv.Set(ctx, "still", "open"))
	})
}

func TestClose(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		conv, err := m.Scope("conv")
		require.NoError(t, err)
		client := m.Client()

		require.NoError(t, m.Close())
		require.ErrorIs(t, m.Close(), memory.ErrClosed)
		require.ErrorIs(t, client.Ping(ctx).Err(), redis.ErrClosed, "New's own client is closed")

		for _, mem := range []*memory.Memory{m, conv} {
			_, hasErr := mem.Has(ctx, "x")
			_, keysErr := mem.Keys(ctx)
			_, clearErr := mem.Clear(ctx)
			for op, err := range map[string]error{
				"Set":    mem.Set(ctx, "x", 1),
				"Get":    mem.Get(ctx, "x", new(int)),
				"Delete": mem.Delete(ctx, "x"),
				"Expire": mem.Expire(ctx, "x", time.Second),
				"Has":    hasErr,
				"Keys":   keysErr,
				"Clear":  clearErr,
			} {
				require.ErrorIs(t, err, memory.ErrClosed, "%s on %s", op, mem.Prefix())
			}
		}
	})
}

func TestSharedClient(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		client := rawClient(t, addr)
		require.NoError(t, client.Ping(ctx).Err())
		conns := client.PoolStats().TotalConns

		tenants := make([]*memory.Memory, 1000)
		for i := range tenants {
			m, err := memory.New(ctx, memory.WithClient(client), memory.WithPrefix(fmt.Sprintf("tenant%d:", i)))
			require.NoError(t, err)
			tenants[i] = m
		}
		require.Equal(t, conns, client.PoolStats().TotalConns, "New does no I/O on a shared client")
		for i, m := range tenants {
			require.NoError(t, m.Set(ctx, "data", i))
		}
		require.LessOrEqual(t, client.PoolStats().TotalConns, conns, "sequential use reuses one connection")

		for i, m := range tenants {
			got, err := memory.GetAs[int](ctx, m, "data")
			require.NoError(t, err)
			require.Equal(t, i, got)
			require.NoError(t, m.Close())
		}
		require.NoError(t, client.Ping(ctx).Err(), "Close leaves a shared client open")
	})
}

// deadlineHook records, for each command sent, how far off its context's
// deadline was.
type deadlineHook struct{ budgets []time.Duration }

func (h *deadlineHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *deadlineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		budget := time.Duration(-1)
		if d, ok := ctx.Deadline(); ok {
			budget = time.Until(d)
		}
		h.budgets = append(h.budgets, budget)
		return next(ctx, cmd)
	}
}

func (h *deadlineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestOperationsCarryDeadline checks that every command, on a client of the
// caller's, carries the Memory's timeout as its context deadline, or the
// caller's when that is sooner.
func TestOperationsCarryDeadline(t *testing.T) {
	client := rawClient(t, miniredisAddr(t))
	require.NoError(t, client.Ping(ctx).Err()) // the handshake's commands go through hooks too
	hook := &deadlineHook{}
	client.AddHook(hook)
	m, err := memory.New(ctx, memory.WithClient(client), memory.WithTimeout(time.Minute))
	require.NoError(t, err)

	require.NoError(t, m.Set(ctx, "k", 1))
	require.NoError(t, m.Get(ctx, "k", new(int)))
	_, err = m.Has(ctx, "k")
	require.NoError(t, err)
	require.NoError(t, m.Expire(ctx, "k", time.Hour))
	_, err = m.Keys(ctx)
	require.NoError(t, err)
	_, err = m.Clear(ctx)
	require.NoError(t, err)
	require.NoError(t, m.Delete(ctx, "k"))
	require.Len(t, hook.budgets, 9, "EVALSHA (NOSCRIPT) EVAL GET EXISTS PEXPIRE SCAN SCAN UNLINK EVALSHA")
	for i, budget := range hook.budgets {
		require.Greater(t, budget, 50*time.Second, "command %d", i)
		require.LessOrEqual(t, budget, time.Minute+10*time.Millisecond, "command %d (deadlines are rounded up to 10ms)", i)
	}

	hook.budgets = nil
	sooner, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	require.NoError(t, m.Set(sooner, "k", 1))
	require.Len(t, hook.budgets, 1)
	require.LessOrEqual(t, hook.budgets[0], time.Second, "the caller's sooner deadline wins")
}

// TestTimeoutEndsClientRetries runs every operation against a server that
// refuses connections, through a client of the caller's whose dial and
// command retries would each wait an hour: the Memory's timeout ends them,
// whether or not the caller's context can be canceled.
func TestTimeoutEndsClientRetries(t *testing.T) {
	mr := miniredis.RunT(t)
	addr := mr.Addr()
	mr.Close()
	client := redis.NewClient(&redis.Options{
		Addr:               addr,
		DialerRetries:      5,
		DialerRetryBackoff: func(int) time.Duration { return time.Hour },
		MaxRetries:         3,
		MinRetryBackoff:    time.Hour,
		MaxRetryBackoff:    time.Hour,
	})
	t.Cleanup(func() { client.Close() })
	m, err := memory.New(ctx, memory.WithClient(client), memory.WithOfflineQueue(false),
		memory.WithTimeout(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })

	type state struct{ A int }
	ops := []struct {
		name string
		op   func(ctx context.Context) error
	}{
		{"set", func(ctx context.Context) error { return m.Set(ctx, "k", 1) }},
		{"get", func(ctx context.Context) error { return m.Get(ctx, "k", new(int)) }},
		{"has", func(ctx context.Context) error { _, err := m.Has(ctx, "k"); return err }},
		{"delete", func(ctx context.Context) error { return m.Delete(ctx, "k") }},
		{"expire", func(ctx context.Context) error { return m.Expire(ctx, "k", time.Hour) }},
		{"keys", func(ctx context.Context) error { _, err := m.Keys(ctx); return err }},
		{"clear", func(ctx context.Context) error { _, err := m.Clear(ctx); return err }},
		{"save", func(ctx context.Context) error { return m.Save(ctx, &state{1}) }},
		{"load", func(ctx context.Context) error { return m.Load(ctx, &state{}) }},
		{"update", func(ctx context.Context) error {
			return memory.Update(ctx, m, "n", func(n *int) error { *n++; return nil })
		}},
	}
	parents := map[string]func() (context.Context, context.CancelFunc){
		"background": func() (context.Context, context.CancelFunc) { return context.Background(), func() {} },
		"cancelable": func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
	}
	for parentName, parent := range parents {
		for _, tc := range ops {
			t.Run(parentName+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := parent()
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- tc.op(ctx) }()
				select {
				case err := <-done:
					require.ErrorIs(t, err, memory.ErrUnavailable)
				case <-time.After(time.Minute):
					t.Fatal("the operation waited out the client's retries")
				}
			})
		}
	}
}
