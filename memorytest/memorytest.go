// Package memorytest provides a memory.Memory for tests, backed by an
// embedded miniredis, so that code using memory can be tested without a
// Redis server.
package memorytest

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"github.com/redis-memory/memory"
)

// New returns a Memory on a fresh miniredis, configured by opts over the
// defaults. The Memory and the server are closed when the test ends, and a
// failure to create them fails the test. The server's environment variables
// (REDIS_URL, REDIS_HOST, …) are ignored; REDIS_PREFIX is read as usual unless
// opts hold WithPrefix.
func New(tb testing.TB, opts ...memory.Option) *memory.Memory {
	tb.Helper()
	s := miniredis.RunT(tb)
	m, err := memory.New(context.Background(), append([]memory.Option{memory.WithURL("redis://" + s.Addr())}, opts...)...)
	if err != nil {
		tb.Fatalf("memorytest: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}
