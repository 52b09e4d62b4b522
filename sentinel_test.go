package memory_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
)

// TestSentinelFailover runs a Memory over a Sentinel failover client while
// its master fails: what was written before is read from the promoted
// replica, writes and updates made while no master answers are queued and
// reach the new master without a call to Flush, and the Memory goes on
// working there.
func TestSentinelFailover(t *testing.T) {
	s, m := sentinelMemory(t)

	type session struct {
		User string
		Step int
	}
	increment := func(n *int) error { *n++; return nil }
	require.NoError(t, m.Save(ctx, &session{User: "ada", Step: 1}))
	for range 10 {
		require.NoError(t, memory.Update(ctx, m, "visits", increment))
	}
	replicated, err := rawClient(t, s.Master.Addr).Wait(ctx, 1, 5*time.Second).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, replicated, "the replica has every write")

	s.Master.Stop()
	name := func(i int) string { return "k" + strconv.Itoa(i) }
	for i := range 20 {
		require.NoError(t, m.Set(ctx, name(i), i), "queued while no master answers")
	}
	require.NoError(t, memory.Update(ctx, m, "visits", increment), "queued on the known value")

	requireEventually(t, 30*time.Second, func() bool { return m.Pending() == 0 },
		"the queue reaches the promoted replica")
	promoted := rawClient(t, s.Replica.Addr)
	role, err := promoted.Do(ctx, "ROLE").Slice()
	require.NoError(t, err)
	require.Equal(t, "master", role[0])
	for i := range 20 {
		require.JSONEq(t, strconv.Itoa(i), storedValue(t, promoted, "test:"+name(i)), name(i))
	}
	require.JSONEq(t, "11", storedValue(t, promoted, "test:visits"))

	var got session
	require.NoError(t, m.Load(ctx, &got))
	require.Equal(t, session{User: "ada", Step: 1}, got, "written before the failover")
	require.NoError(t, memory.Update(ctx, m, "visits", increment))
	require.JSONEq(t, "12", storedValue(t, promoted, "test:visits"))
	names, err := m.Keys(ctx)
	require.NoError(t, err)
	require.Len(t, names, 23, fmt.Sprint(names))
	n, err := m.Clear(ctx)
	require.NoError(t, err)
	require.Equal(t, 23, n)
	require.Empty(t, serverKeys(t, promoted))
}
