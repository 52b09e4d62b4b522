package memory

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory/internal/redisserver"
)

// TestScanPatternMatchesLiterally checks the pattern alone, without the
// HasPrefix filter behind it: on both servers it matches the keys under the
// prefix and none of the keys its glob characters would reach.
func TestScanPatternMatchesLiterally(t *testing.T) {
	tests := []struct {
		prefix string
		others []string
	}{
		{"a*:", []string{"ab:k", "a:k", "a*"}},
		{"a?:", []string{"ab:k"}},
		{"[ab]:", []string{"a:k", "b:k"}},
		{"[^a]:", []string{"b:k"}},
		{`[\d]:`, []string{"5:k", "d:k", `[d]:k`}},
		{`a\:`, []string{"a:k"}},
		{`a\E:`, []string{"aE:k", `a\\E:k`}},
		{"x]:", []string{"x:k"}},
	}
	servers := map[string]func(t *testing.T) string{
		"miniredis":    func(t *testing.T) string { return miniredis.RunT(t).Addr() },
		"redis-server": func(t *testing.T) string { return redisserver.Start(t).Addr },
	}
	for server, start := range servers {
		t.Run(server, func(t *testing.T) {
			ctx := context.Background()
			c := redis.NewClient(&redis.Options{Addr: start(t)})
			defer c.Close()
			for _, tt := range tests {
				require.NoError(t, c.FlushDB(ctx).Err())
				mine := []string{tt.prefix + "k", tt.prefix + "sub:k"}
				for _, key := range append(mine, tt.others...) {
					require.NoError(t, c.Set(ctx, key, "1", 0).Err())
				}
				keys, err := c.Keys(ctx, scanPattern(tt.prefix)).Result()
				require.NoError(t, err)
				require.ElementsMatch(t, mine, keys, "prefix %q, pattern %q", tt.prefix, scanPattern(tt.prefix))
			}
		})
	}
}
