package memory_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
)

// TestMain lets the test binary act as one of the writer processes of
// TestConcurrentProcesses. With MEMORY_TEST_PIPELINE_ALWAYS=1 (and
// MEMORY_AUTOPIPELINE=1), every command sent alone goes through the
// auto-pipeliner, so that the tests run over it everything they run.
func TestMain(m *testing.M) {
	if addr := os.Getenv("MEMORY_TEST_CHILD_ADDR"); addr != "" {
		os.Exit(childWriter(addr, os.Getenv("MEMORY_TEST_CHILD_ID")))
	}
	*memory.PipelineAlways = os.Getenv("MEMORY_TEST_PIPELINE_ALWAYS") == "1"
	os.Exit(m.Run())
}

const childWrites = 50

// childWriter appends to a list and increments a counter, childWrites times
// each, and returns the process's exit code.
func childWriter(addr, id string) int {
	m, err := memory.New(context.Background(), memory.WithURL("redis://"+addr), memory.WithPrefix("test:"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer m.Close()
	list := memory.ListOf[string](m, "log")
	for i := range childWrites {
		if err := list.Append(ctx, fmt.Sprintf("%s-%d", id, i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := memory.Update(ctx, m, "counter", func(n *int) error { *n++; return nil }); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

func TestUpdate(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)

		var seen []int
		require.NoError(t, memory.Update(ctx, m, "n", func(n *int) error {
			seen = append(seen, *n)
			*n = 41
			return nil
		}))
		require.Equal(t, []int{0}, seen, "fn sees the zero value of an absent name")
		require.NoError(t, memory.Update(ctx, m, "n", func(n *int) error { *n++; return nil }))
		requireValue(t, m, "n", 42)

		type user struct {
			Name string `json:"name"`
			Age  int    `json:"age"`
		}
		type data struct {
			User user `json:"user"`
		}
		require.NoError(t, m.Set(ctx, "data", data{user{"ada", 30}}))
		require.NoError(t, memory.Update(ctx, m, "data", func(d *data) error { d.User.Age = 31; return nil }))
		requireValue(t, m, "data", data{user{"ada", 31}})
		require.JSONEq(t, `{"user":{"name":"ada","age":31}}`, storedValue(t, raw, "test:data"))

		require.NoError(t, raw.Set(ctx, "test:py", `{"value": 7, "last_modified": 1}`, 0).Err())
		require.NoError(t, memory.Update(ctx, m, "py", func(n *int) error { *n *= 2; return nil }))
		requireValue(t, m, "py", 14)
	})
}

func TestUpdateErrors(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		require.NoError(t, m.Set(ctx, "n", 1))
		before := raw.Get(ctx, "test:n").Val()

		failure := errors.New("refused by fn")
		err := memory.Update(ctx, m, "n", func(n *int) error { *n = 99; return failure })
		require.ErrorIs(t, err, failure)
		require.Contains(t, err.Error(), `"test:n"`)
		require.Equal(t, before, raw.Get(ctx, "test:n").Val(), "a failing fn writes nothing")

		err = memory.Update(ctx, m, "new", func(n *int) error { return failure })
		require.ErrorIs(t, err, failure)
		require.Zero(t, raw.Exists(ctx, "test:new").Val())

		require.NoError(t, raw.Set(ctx, "test:bad", "not json", 0).Err())
		var de *memory.DecodeError
		require.ErrorAs(t, memory.Update(ctx, m, "bad", func(n *int) error { return nil }), &de)
		require.NoError(t, raw.RPush(ctx, "test:list", "x").Err())
		require.ErrorAs(t, memory.Update(ctx, m, "list", func(n *int) error { return nil }), &de)
		require.Equal(t, "test:list", de.Key)

		var ee *memory.EncodeError
		require.ErrorAs(t, memory.Update(ctx, m, "n", func(f *any) error { *f = make(chan int); return nil }), &ee)
		require.Equal(t, before, raw.Get(ctx, "test:n").Val())

		require.ErrorIs(t, memory.Update(ctx, m, "a:b", func(n *int) error { return nil }), memory.ErrInvalidName)
	})
}

func TestUpdateKeepsTTL(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		raw := rawClient(t, addr)
		require.NoError(t, m.Set(ctx, "n", 1))
		require.NoError(t, m.Expire(ctx, "n", time.Hour))
		require.NoError(t, memory.Update(ctx, m, "n", func(n *int) error { *n++; return nil }))
		require.Greater(t, raw.PTTL(ctx, "test:n").Val(), 59*time.Minute)

		withTTL := newMemory(t, addr, memory.WithDefaultTTL(time.Minute))
		require.NoError(t, memory.Update(ctx, withTTL, "n", func(n *int) error { *n++; return nil }))
		ttl := raw.PTTL(ctx, "test:n").Val()
		require.Greater(t, ttl, 50*time.Second)
		require.LessOrEqual(t, ttl, time.Minute)
	})
}

func TestUpdateRoundTrips(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m, hook := countedMemory(t, addr)
		incr := func(n *int) error { *n++; return nil }
		require.NoError(t, memory.Update(ctx, m, "n", incr)) // loads the script
		hook.reset()
		require.NoError(t, memory.Update(ctx, m, "n", incr))
		require.Equal(t, 1, hook.count, "the value this process wrote last is known: one EVALSHA")

		fresh, freshHook := countedMemory(t, addr)
		require.NoError(t, memory.Update(ctx, fresh, "n", incr))
		require.Equal(t, 2, freshHook.count, "an unknown value: a GET and an EVALSHA")

		hook.reset()
		require.NoError(t, memory.Update(ctx, m, "n", incr))
		require.Equal(t, 2, hook.count, "a stale known value: the first EVALSHA returns the current one")
		requireValue(t, m, "n", 4)

		other := newMemory(t, addr)
		hook.reset()
		calls := 0
		require.NoError(t, memory.Update(ctx, m, "n", func(n *int) error {
			if calls++; calls == 1 {
				return other.Set(ctx, "n", 100) // a conflict, once
			}
			*n++
			return nil
		}))
		require.Equal(t, 2, hook.count, "a retry needs no read: the compare-and-set returned the value it found")
		requireValue(t, m, "n", 101)
	})
}

// TestUpdateConflict forces a conflict on every attempt: fn itself changes
// the value behind Update's back.
func TestUpdateConflict(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr)
		other := newMemory(t, addr)
		attempts := 0
		err := memory.Update(ctx, m, "n", func(n *int) error {
			attempts++
			return other.Set(ctx, "n", attempts)
		})
		require.ErrorIs(t, err, memory.ErrConflict)
		require.Equal(t, 64, attempts)
		requireValue(t, m, "n", 64)

		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		err = memory.Update(short, m, "n", func(n *int) error { return other.Set(ctx, "n", 0) })
		require.ErrorIs(t, err, memory.ErrConflict)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestConcurrentUpdates(t *testing.T) {
	const workers, increments = 8, 100
	eachServer(t, func(t *testing.T, addr string) {
		runWorkers(t, addr, workers, func(_ int, m *memory.Memory) error {
			for range increments {
				if err := memory.Update(ctx, m, "counter", func(n *int) error { *n++; return nil }); err != nil {
					return err
				}
			}
			return nil
		})
		requireValue(t, newMemory(t, addr), "counter", workers*increments)
	})
}

func TestConcurrentCollections(t *testing.T) {
	const workers, writes = 8, 50
	eachServer(t, func(t *testing.T, addr string) {
		runWorkers(t, addr, workers, func(w int, m *memory.Memory) error {
			list, dict := memory.ListOf[string](m, "items"), memory.MapOf[int](m, "config")
			for i := range writes {
				if err := list.Append(ctx, fmt.Sprintf("%d-%d", w, i)); err != nil {
					return err
				}
				if err := dict.Set(ctx, fmt.Sprintf("%d-%d", w, i), i); err != nil {
					return err
				}
			}
			return nil
		})
		m := newMemory(t, addr)
		items, err := memory.ListOf[string](m, "items").All(ctx)
		require.NoError(t, err)
		config, err := memory.MapOf[int](m, "config").All(ctx)
		require.NoError(t, err)
		require.Len(t, items, workers*writes)
		require.Len(t, config, workers*writes)
		for w := range workers {
			for i := range writes {
				require.Contains(t, items, fmt.Sprintf("%d-%d", w, i))
				require.Equal(t, i, config[fmt.Sprintf("%d-%d", w, i)])
			}
		}
	})
}

// TestConcurrentProcesses runs four copies of the test binary, each appending
// and incrementing, against one server: nothing is lost across processes.
func TestConcurrentProcesses(t *testing.T) {
	const children = 4
	eachServer(t, func(t *testing.T, addr string) {
		cmds := make([]*exec.Cmd, children)
		for i := range cmds {
			cmds[i] = exec.Command(os.Args[0], "-test.run=^$")
			cmds[i].Env = append(os.Environ(), "MEMORY_TEST_CHILD_ADDR="+addr, "MEMORY_TEST_CHILD_ID=p"+strconv.Itoa(i))
			require.NoError(t, cmds[i].Start())
		}
		for i, cmd := range cmds {
			require.NoError(t, cmd.Wait(), "child %d", i)
		}
		m := newMemory(t, addr)
		requireValue(t, m, "counter", children*childWrites)
		items, err := memory.ListOf[string](m, "log").All(ctx)
		require.NoError(t, err)
		require.Len(t, items, children*childWrites)
		for i := range children {
			for j := range childWrites {
				require.Contains(t, items, fmt.Sprintf("p%d-%d", i, j))
			}
		}
	})
}

// runWorkers runs work in n goroutines at once, each with a Memory of its
// own on addr (and so a client of its own), and fails t if any fails. It
// then flushes each Memory: a write whose reply a loaded machine did not
// bring in time was queued, and applies when delivered.
func runWorkers(t *testing.T, addr string, n int, work func(w int, m *memory.Memory) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	ms := make([]*memory.Memory, n)
	for w := range n {
		ms[w] = newMemory(t, addr)
		wg.Go(func() { errs[w] = work(w, ms[w]) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	for _, m := range ms {
		require.NoError(t, m.Flush(ctx))
	}
}
