// Package examples_test builds and runs every example program, on the
// embedded server and on a real redis-server.
package examples_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory/internal/redisserver"
)

var examples = map[string][]string{ // name: lines its output must hold
	"quickstart":  {"answer: 42", "answer from another instance: 42", "settings: {Theme:dark Volume:0.75}"},
	"multitenant": {"tenant 1 data", "tenant 2 data", "development:config = map[env:development]", "names of myapp:tenant_1:: [data]", "tenant 10 still has: tenant 10 data"},
	"dotenv":      {`myapp:dev:value = "test"`, `REDIS_PREFIX in the process environment: ""`},
	"agent": {
		"  messages in history: 100 (want 100)",
		"  turns counted:       100 (want 100)",
		"  worker-0: 25 messages in history, progress 25",
		"  worker-3: 25 messages in history, progress 25",
		"nothing was lost",
	},
	"structbind": {
		"saved under memory:conv_7:: [history prefs started_at step user]",
		"loaded: user=ada step=2 prefs=map[units:metric] started=2026-11-28T09:30:00Z",
		"  agent: Sunny, 21°C.",
		"step seen by the first process: 3",
	},
}

func TestExamples(t *testing.T) {
	bin := t.TempDir()
	for name := range examples {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, name), "./"+name)
		out, err := build.CombinedOutput()
		require.NoError(t, err, "build %s: %s", name, out)
	}
	// baseEnv is the environment less anything that names a server or prefix.
	baseEnv := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "REDIS_") || strings.HasPrefix(kv, "MEMORY_") || strings.HasPrefix(kv, "ENVIRONMENT=")
	})
	run := func(t *testing.T, name string, env []string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, name))
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %s", name, out)
		for _, line := range examples[name] {
			require.Contains(t, string(out), line+"\n")
		}
		return string(out)
	}

	t.Run("embedded", func(t *testing.T) {
		for name := range examples {
			out := run(t, name, baseEnv)
			require.Contains(t, out, "using an embedded miniredis", name)
		}
	})
	t.Run("redis-server", func(t *testing.T) {
		srv := redisserver.Start(t)
		for name := range examples {
			out := run(t, name, append(baseEnv, "REDIS_URL=redis://"+srv.Addr))
			require.NotContains(t, out, "embedded", name)
		}
		client := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer client.Close()
		keys, err := client.Keys(context.Background(), "*").Result()
		require.NoError(t, err)
		require.Empty(t, keys, "the examples clean up after themselves")
	})
}
