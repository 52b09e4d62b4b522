// Package examples_test builds and runs every example program, on the
// embedded server and on a real redis-server that already holds data.
package examples_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory/internal/redisserver"
)

var examples = map[string][]string{ // name: lines its output must hold
	"quickstart": {"answer: 42", "answer from another instance: 42", "settings: {Theme:dark Volume:0.75}",
		`names under "example:quickstart:": [answer settings] (the scope's keys live under "example:quickstart:conv_42:")`},
	"multitenant": {"tenant 1 data", "tenant 2 data", "example:multitenant:development:config = map[env:development]",
		"names of example:multitenant:tenant_1:: [data]", "tenant 10 still has: tenant 10 data",
		`Scope("acme:evil") refused: memory: scope of prefix "example:multitenant:": memory: invalid name "acme:evil": contains ':', the namespace separator (use Scope)`},
	"dotenv": {`example:dotenv:dev:value = "test"`, `REDIS_PREFIX in the process environment: ""`},
	"agent": {
		"  messages in history: 100 (want 100)",
		"  turns counted:       100 (want 100)",
		"  worker-0: 25 messages in history, progress 25",
		"  worker-3: 25 messages in history, progress 25",
		"nothing was lost",
		"context window: the last 8 of 100 messages",
	},
	"structbind": {
		"saved under example:structbind:conv_7:: [history prefs started_at step user]",
		"loaded: user=ada step=2 prefs=map[units:metric] started=2026-11-28T09:30:00Z",
		"  agent: Sunny, 21°C.",
		"step seen by the first process: 3",
	},
	"configwatch": {
		"operator: raise the rate limit  -> service runs with {RateLimit:100 Maintenance:false}",
		"operator: start maintenance     -> service runs with {RateLimit:100 Maintenance:true}",
		"operator: end maintenance       -> service runs with {RateLimit:100 Maintenance:false}",
		"service: stopped watching",
	},
}

// needsTracking holds the examples that need a server that tracks changes:
// on the embedded miniredis they stop with an error that says so.
var needsTracking = map[string]bool{"configwatch": true}

// build builds every example into a temporary directory and returns it.
func build(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for name := range examples {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, name), "./"+name).CombinedOutput()
		require.NoError(t, err, "build %s: %s", name, out)
	}
	return bin
}

// baseEnv is the environment less anything that names a server or prefix.
func baseEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "REDIS_") || strings.HasPrefix(kv, "MEMORY_") || strings.HasPrefix(kv, "ENVIRONMENT=")
	})
}

// execute runs the example name with env and returns its exit code and
// output.
func execute(t *testing.T, bin, name string, env []string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, name))
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode(), string(out)
	}
	require.NoError(t, err)
	return 0, string(out)
}

func TestExamples(t *testing.T) {
	bin := build(t)
	run := func(t *testing.T, name string, env []string) string {
		t.Helper()
		code, out := execute(t, bin, name, env)
		require.Zero(t, code, "%s: %s", name, out)
		for _, line := range examples[name] {
			require.Contains(t, out, line+"\n", name)
		}
		return out
	}

	t.Run("embedded", func(t *testing.T) {
		for name := range examples {
			if needsTracking[name] {
				code, out := execute(t, bin, name, baseEnv())
				require.Equal(t, 1, code, out)
				require.Contains(t, out, "CLIENT TRACKING, Redis 6 or later")
				continue
			}
			out := run(t, name, baseEnv())
			require.Contains(t, out, "using an embedded miniredis", name)
		}
	})
	t.Run("redis-server", func(t *testing.T) {
		srv := redisserver.Start(t)
		client := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer client.Close()
		before := plant(t, client)
		for name := range examples {
			// REDIS_PREFIX names the Python library's default namespace:
			// no example may follow it there.
			out := run(t, name, append(baseEnv(), "REDIS_URL=redis://"+srv.Addr, "REDIS_PREFIX=memory:"))
			require.NotContains(t, out, "embedded", name)
		}
		require.Equal(t, before, snapshot(t, client), "the examples changed or deleted nothing they did not write, and left nothing behind")
	})
}

// TestExamplesRefuseBusyNamespaces runs every example where its own
// namespace already holds a key: it stops at once and changes nothing.
func TestExamplesRefuseBusyNamespaces(t *testing.T) {
	bin := build(t)
	srv := redisserver.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer client.Close()
	for name, key := range map[string]string{
		"quickstart":  "example:quickstart:answer",
		"dotenv":      "example:dotenv:dev:value",
		"multitenant": "example:multitenant:tenant_2:data",
		"agent":       "example:agent:conv_42:history",
		"structbind":  "example:structbind:conv_7:user",
		"configwatch": "example:configwatch:rate_limit",
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, client.Set(t.Context(), key, `{"value": "mine", "last_modified": 1}`, 0).Err())
			before := snapshot(t, client)
			code, out := execute(t, bin, name, append(baseEnv(), "REDIS_URL=redis://"+srv.Addr))
			require.NotZero(t, code, out)
			require.Contains(t, out, "already holds keys, "+key+" among them")
			require.Equal(t, before, snapshot(t, client))
			require.NoError(t, client.Del(t.Context(), key).Err())
		})
	}
}

// plant writes a user's data where the examples once wrote theirs, named as
// they name their values: the Python library's default namespace and its
// conversation scopes, the namespacing guide's tenants and environments. One
// value has a TTL, one is a Python-style list. It returns the snapshot.
func plant(t *testing.T, client *redis.Client) map[string]string {
	t.Helper()
	ctx := t.Context()
	for i, key := range []string{
		"memory:answer", "memory:settings", "memory:value",
		"memory:conv_42:topic", "memory:conv_42:history", "memory:conv_42:progress", "memory:conv_42:turns",
		"memory:conv_7:user", "memory:conv_7:step", "memory:conv_7:history",
		"myapp:tenant_1:data", "myapp:tenant_2:data", "myapp:tenant_10:data", "myapp:dev:value",
		"development:config",
	} {
		require.NoError(t, client.Set(ctx, key, fmt.Sprintf(`{"value": "user data %d", "last_modified": %d}`, i, i+1), 0).Err())
	}
	require.NoError(t, client.Expire(ctx, "memory:answer", time.Hour).Err())
	require.NoError(t, client.RPush(ctx, "memory:conv_42:log", "a", "b").Err())
	return snapshot(t, client)
}

// snapshot returns every key on the server with its type, value and whether
// it expires.
func snapshot(t *testing.T, client *redis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := client.Keys(ctx, "*").Result()
	require.NoError(t, err)
	snap := map[string]string{}
	for _, key := range keys {
		typ := client.Type(ctx, key).Val()
		value := ""
		switch typ {
		case "string":
			value = client.Get(ctx, key).Val()
		case "list":
			value = strings.Join(client.LRange(ctx, key, 0, -1).Val(), ",")
		}
		snap[key] = fmt.Sprintf("%s %s ttl=%v", typ, value, client.TTL(ctx, key).Val() > 0)
	}
	return snap
}
