package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

var ctx = context.Background()

// eachServer runs fn on a fresh miniredis and on a fresh real redis-server.
func eachServer(t *testing.T, fn func(t *testing.T, addr string)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) { fn(t, miniredis.RunT(t).Addr()) })
	t.Run("redis-server", func(t *testing.T) { fn(t, redisserver.Start(t).Addr) })
}

// result is what one run of the command did.
type result struct {
	code           int
	stdout, stderr string
}

// invoke runs the command line args in-process against the server at addr,
// with stdin, as a shell would run the tool: in an empty directory, with no
// REDIS_ or MEMORY_ variables set.
func invoke(t *testing.T, addr, stdin string, args ...string) result {
	t.Helper()
	isolate(t)
	var stdout, stderr strings.Builder
	code := run(t.Context(), append([]string{"--url", "redis://" + addr}, args...), strings.NewReader(stdin), &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// isolate moves the test to an empty directory, so that no .env is found,
// and unsets the variables that configure the library.
func isolate(t *testing.T) {
	t.Helper()
	t.Chdir(t.TempDir())
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "REDIS_") || strings.HasPrefix(name, "MEMORY_") {
			t.Setenv(name, "")
		}
	}
}

// ok runs the command and requires it to succeed.
func ok(t *testing.T, addr string, args ...string) string {
	t.Helper()
	r := invoke(t, addr, "", args...)
	require.Equal(t, 0, r.code, "memory %v: %s", args, r.stderr)
	return r.stdout
}

func newMemory(t *testing.T, addr, prefix string) *memory.Memory {
	t.Helper()
	m, err := memory.New(ctx, memory.WithURL("redis://"+addr), memory.WithPrefix(prefix))
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

func TestSetGetKeysDelExpire(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		p := "--prefix=app:"
		ok(t, addr, p, "set", "settings", `{"theme": "dark", "volume": 0.75}`)
		ok(t, addr, p, "set", "--ttl", "1h", "session", `"abc"`)
		ok(t, addr, p, "set", "count", "3")
		ok(t, addr, p, "--scope", "conv_1", "set", "topic", `"weather"`)

		m := newMemory(t, addr, "app:")
		var s struct{ Theme string }
		require.NoError(t, m.Get(ctx, "settings", &s), "written in the library's envelope")
		require.Equal(t, "dark", s.Theme)

		require.Equal(t, "{\n  \"theme\": \"dark\",\n  \"volume\": 0.75\n}\n", ok(t, addr, p, "get", "settings"))
		raw := ok(t, addr, p, "get", "--raw", "count")
		require.Regexp(t, `^\{"value": 3, "last_modified": \d+\}\n$`, raw)
		var rec struct {
			Name         string
			Value        json.RawMessage
			LastModified int64 `json:"last_modified"`
		}
		require.NoError(t, json.Unmarshal([]byte(ok(t, addr, p, "--json", "get", "count")), &rec))
		require.Equal(t, "count", rec.Name)
		require.JSONEq(t, "3", string(rec.Value))
		require.Positive(t, rec.LastModified)

		golden := "NAME      TYPE    TTL\n" +
			"count     number  -\n" +
			"session   string  1h0m0s\n" +
			"settings  object  -\n"
		require.Equal(t, golden, ok(t, addr, p, "keys"))
		var rows []struct {
			Name, Type string
			TTLms      int64 `json:"ttl_ms"`
		}
		require.NoError(t, json.Unmarshal([]byte(ok(t, addr, p, "keys", "--json")), &rows))
		require.Len(t, rows, 3)
		require.Equal(t, "session", rows[1].Name)
		require.Greater(t, rows[1].TTLms, int64(3500_000))
		require.Equal(t, int64(-1), rows[0].TTLms)
		require.Equal(t, "NAME   TYPE    TTL\ntopic  string  -\n", ok(t, addr, p, "--scope", "conv_1", "keys"))

		ok(t, addr, p, "expire", "count", "90s")
		ok(t, addr, p, "del", "count", "session", "absent")
		names, err := m.Keys(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"settings"}, names)
	})
}

func TestExitCodes(t *testing.T) {
	addr := miniredis.RunT(t).Addr()
	tests := []struct {
		name     string
		args     []string
		code     int
		mentions string
	}{
		{"no command", nil, 2, "no command"},
		{"unknown command", []string{"fetch"}, 2, `unknown command "fetch"`},
		{"unknown flag", []string{"keys", "--nope"}, 2, "-nope"},
		{"missing argument", []string{"get"}, 2, "want NAME"},
		{"too many arguments", []string{"help", "a", "b"}, 2, "want [COMMAND]"},
		{"invalid JSON", []string{"set", "x", "{nope"}, 2, `"x" is not JSON`},
		{"bare word", []string{"set", "x", "text"}, 2, "quote strings"},
		{"bad duration", []string{"expire", "x", "soon"}, 2, `DURATION "soon"`},
		{"bad scope", []string{"--scope", "a b", "keys"}, 2, `--scope "a b"`},
		{"invalid name", []string{"get", "a:b"}, 2, "invalid name"},
		{"invalid name to set", []string{"set", "a b", "1"}, 2, "invalid name"},
		{"help on an unknown command", []string{"help", "fetch"}, 2, `unknown command "fetch"`},
		{"not found", []string{"get", "absent"}, 1, `not found: "memory:absent"`},
		{"expire absent", []string{"expire", "absent", "1m"}, 1, "not found"},
		{"bad prefix", []string{"--prefix", "nocolon", "keys"}, 2, "invalid prefix"},
		{"empty prefix", []string{"--prefix=", "keys"}, 2, `--prefix ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := invoke(t, addr, "", tt.args...)
			require.Equal(t, tt.code, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
			require.Contains(t, r.stderr, tt.mentions)
			require.Empty(t, r.stdout)
			if tt.code == exitUsage {
				lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
				require.Len(t, lines, 2, "one line, and a hint: %q", r.stderr)
				require.Regexp(t, `^Run 'memory( \w+)? --help' for usage\.$`, lines[1])
			}
		})
	}
	require.Empty(t, miniredisKeys(t, addr), "nothing was written")

	down := invoke(t, "127.0.0.1:1", "", "keys")
	require.Equal(t, 1, down.code)
	require.Contains(t, down.stderr, "server unavailable")
}

func TestHelpAndVersion(t *testing.T) {
	addr := miniredis.RunT(t).Addr()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := invoke(t, addr, "", args...)
		require.Equal(t, exitOK, r.code, "%v", args)
		require.Contains(t, r.stdout, "Commands:", "help goes to standard output")
		require.Contains(t, r.stdout, "  info ")
		require.Empty(t, r.stderr)
	}
	for _, args := range [][]string{{"get", "--help"}, {"help", "get"}, {"--prefix", "x:", "get", "-h"}} {
		r := invoke(t, addr, "", args...)
		require.Equal(t, exitOK, r.code, "%v", args)
		require.Contains(t, r.stdout, "Usage: memory [flags] get [flags] NAME")
		require.Contains(t, r.stdout, "Example:")
		require.Contains(t, r.stdout, "-raw")
		require.Empty(t, r.stderr)
	}
	for _, args := range [][]string{{"--version"}, {"keys", "--version"}} {
		r := invoke(t, addr, "", args...)
		require.Equal(t, exitOK, r.code)
		require.Regexp(t, `^memory \S+\n$`, r.stdout)
	}
}

func TestSetFromStandardInputAndTTLAfter(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		r := invoke(t, addr, `{"theme": "dark",`+"\n"+` "volume": 0.75}`+"\n", "set", "settings", "-", "--ttl", "1h")
		require.Equal(t, exitOK, r.code, r.stderr)
		m := newMemory(t, addr, "memory:")
		var s struct{ Theme string }
		require.NoError(t, m.Get(ctx, "settings", &s))
		require.Equal(t, "dark", s.Theme)
		ttl, err := m.TTL(ctx, "settings")
		require.NoError(t, err)
		require.Greater(t, ttl, 59*time.Minute, "--ttl after the arguments")

		ok(t, addr, "set", "n", "-5", "--prefix", "memory:")
		requireJSON(t, m, "n", "-5")
		ok(t, addr, "set", "--ttl", "1m", "--", "m", "-6")
		requireJSON(t, m, "m", "-6")

		bad := invoke(t, addr, "{nope", "set", "x", "-")
		require.Equal(t, exitUsage, bad.code)
		require.Contains(t, bad.stderr, `"{nope"`)
	})
}

// requireJSON requires name to hold the JSON text want in m.
func requireJSON(t *testing.T, m *memory.Memory, name, want string) {
	t.Helper()
	var got json.RawMessage
	require.NoError(t, m.Get(ctx, name, &got))
	require.JSONEq(t, want, string(got))
}

func TestKeysScopesAndRawGet(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		raw := redis.NewClient(&redis.Options{Addr: addr})
		defer raw.Close()
		for key, s := range map[string]string{"app:a": "1", "app:conv_1:x": "1", "app:conv_2:y": "1", "app:bad": "not json {"} {
			require.NoError(t, raw.Set(ctx, key, s, 0).Err())
		}
		require.Equal(t, "conv_1\nconv_2\n", ok(t, addr, "--prefix=app:", "keys", "--scopes"))
		require.Equal(t, `["conv_1","conv_2"]`+"\n", ok(t, addr, "--prefix=app:", "--json", "keys", "--scopes"))

		r := invoke(t, addr, "", "--prefix=app:", "get", "bad")
		require.Equal(t, exitFailure, r.code)
		require.Contains(t, r.stderr, `cannot decode key "app:bad"`)
		require.Contains(t, r.stderr, "--raw shows")
		require.Equal(t, "not json {\n", ok(t, addr, "--prefix=app:", "get", "--raw", "bad"), "a corrupt value's bytes")
	})
}

func TestInfo(t *testing.T) {
	addr := miniredis.RunT(t).Addr()
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	for _, key := range []string{"app:a", "app:b", "app:conv_1:x"} {
		require.NoError(t, raw.Set(ctx, key, "1", 0).Err())
	}
	isolate(t)
	require.NoError(t, os.WriteFile(".env", []byte("REDIS_PREFIX=app:\nMEMORY_LOG_LEVEL=ERROR\n"), 0o600))
	t.Setenv("REDIS_DB", "0")
	var stdout, stderr strings.Builder
	code := run(t.Context(), []string{"--url", "redis://" + addr, "info"}, strings.NewReader(""), &stdout, &stderr)
	require.Equal(t, exitOK, code, stderr.String())
	out := stdout.String()
	for _, want := range []string{
		"server:  tcp://" + addr + "/0\n",
		"prefix:  app:\n",
		"keys:    3, 2 of them names\n",
		"scopes:  conv_1\n",
	} {
		require.Contains(t, out, want)
	}
	require.Regexp(t, `REDIS_URL\s+redis://\S+\s+flag --url\n`, out)
	require.Regexp(t, `REDIS_PREFIX\s+app:\s+\.env\n`, out)
	require.Regexp(t, `MEMORY_LOG_LEVEL\s+ERROR\s+\.env\n`, out)
	require.Regexp(t, `REDIS_DB\s+0\s+environment\n`, out)
	require.Regexp(t, `REDIS_HOST\s+-\s+unset\n`, out)

	down := invoke(t, "127.0.0.1:1", "", "info")
	require.Equal(t, exitOK, down.code, "info runs without the server: %s", down.stderr)
	require.Contains(t, down.stdout, "(unreachable: ")
}

func miniredisKeys(t *testing.T, addr string) []string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	keys, err := c.Keys(ctx, "*").Result()
	require.NoError(t, err)
	return keys
}

func TestClear(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		mine, theirs := newMemory(t, addr, "a*:"), newMemory(t, addr, "ab:")
		for i := range 5 {
			require.NoError(t, mine.Set(ctx, fmt.Sprint("k", i), i))
			require.NoError(t, theirs.Set(ctx, fmt.Sprint("k", i), i))
		}
		p := "--prefix=a*:"

		dry := ok(t, addr, p, "clear", "--dry-run")
		require.Equal(t, "a*:k0\na*:k1\na*:k2\na*:k3\na*:k4\nwould delete 5 keys under \"a*:\": 5 names\n", dry)
		names, _ := mine.Keys(ctx)
		require.Len(t, names, 5, "--dry-run deletes nothing")

		refused := invoke(t, addr, "", p, "clear")
		require.Equal(t, 1, refused.code, "empty stdin is no confirmation")
		require.Contains(t, refused.stderr, `Delete 5 keys under "a*:" (5 names)? [y/N]`)
		require.Contains(t, refused.stderr, "nothing deleted")
		names, _ = mine.Keys(ctx)
		require.Len(t, names, 5)

		confirmed := invoke(t, addr, "y\n", p, "clear")
		require.Equal(t, 0, confirmed.code, confirmed.stderr)
		require.Equal(t, "deleted 5 keys under \"a*:\"\n", confirmed.stdout)
		names, _ = mine.Keys(ctx)
		require.Empty(t, names)
		names, _ = theirs.Keys(ctx)
		require.Len(t, names, 5, "the glob-like prefix leaves ab: untouched")

		var report struct {
			Prefix  string
			Deleted int
		}
		require.NoError(t, json.Unmarshal([]byte(ok(t, addr, "--prefix=ab:", "--json", "clear", "--yes")), &report))
		require.Equal(t, 5, report.Deleted)
	})
}

// TestClearNestedNamespaces shows, before anything is deleted, that a prefix
// owns the prefixes under it: the seed's myapp:, myapp:dev: and
// myapp:prod:user_123: overlap.
func TestClearNestedNamespaces(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		for prefix, names := range map[string][]string{
			"myapp:":               {"config", "flags"},
			"myapp:dev:":           {"a", "b", "c"},
			"myapp:prod:user_123:": {"cart"},
			"myapp:prod:":          {"x"},
			"myapps:":              {"other"},
		} {
			m := newMemory(t, addr, prefix)
			for _, name := range names {
				require.NoError(t, m.Set(ctx, name, 1))
			}
		}
		summary := `7 keys under "myapp:" (2 names, 5 keys in 2 scopes: dev (3), prod (2))`

		refused := invoke(t, addr, "n\n", "--prefix=myapp:", "clear")
		require.Equal(t, 1, refused.code)
		require.Contains(t, refused.stderr, "Delete "+summary+"? [y/N]")

		dry := ok(t, addr, "--prefix=myapp:", "clear", "--dry-run")
		require.True(t, strings.HasSuffix(dry, "\nwould delete 7 keys under \"myapp:\": 2 names, 5 keys in 2 scopes: dev (3), prod (2)\n"), dry)
		require.Contains(t, dry, "myapp:prod:user_123:cart\n")
		require.NotContains(t, dry, "myapps:")

		var report struct {
			Keys   []string
			Names  int
			Scopes map[string]int
		}
		require.NoError(t, json.Unmarshal([]byte(ok(t, addr, "--prefix=myapp:", "--json", "clear", "--dry-run")), &report))
		require.Len(t, report.Keys, 7)
		require.Equal(t, 2, report.Names)
		require.Equal(t, map[string]int{"dev": 3, "prod": 2}, report.Scopes)

		require.Equal(t, "deleted 7 keys under \"myapp:\"\n", ok(t, addr, "--prefix=myapp:", "clear", "--yes"))
		require.Equal(t, "NAME   TYPE    TTL\nother  number  -\n", ok(t, addr, "--prefix=myapps:", "keys"))
	})
}

// TestEmptyPrefix: an empty --prefix, as an unset shell variable gives
// (--prefix "$TENANT"), is a usage error, not the default prefix memory:.
func TestEmptyPrefix(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr, "memory:")
		require.NoError(t, m.Set(ctx, "precious", 1))
		for _, args := range [][]string{
			{"--prefix", "", "clear", "--yes"},
			{"--prefix=", "clear", "--yes"},
			{"clear", "--prefix=", "--yes"},
			{"--prefix", "nocolon", "clear", "--yes"},
			{"--prefix", "a b:", "clear", "--yes"},
		} {
			r := invoke(t, addr, "", args...)
			require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
			require.Contains(t, r.stderr, "--prefix")
			require.Contains(t, r.stderr, "invalid prefix")
			require.Empty(t, r.stdout)
		}
		names, err := m.Keys(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"precious"}, names, "nothing deleted")
	})
}

func TestDumpClearRestore(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		raw := redis.NewClient(&redis.Options{Addr: addr})
		defer raw.Close()
		stored := map[string]string{
			"app:python":     `{"value": {"a": [1, 2], "b": "x y"}, "last_modified": 1732838400123456789}`,
			"app:go":         `{"value": {"a":[1,2]}, "last_modified": 1732838400000000001}`,
			"app:conv:topic": `{"value": "weather", "last_modified": 7}`,
			"app:bare":       `[1,  2]`,
		}
		for key, s := range stored {
			require.NoError(t, raw.Set(ctx, key, s, 0).Err())
		}
		file := filepath.Join(t.TempDir(), "dump.json")
		ok(t, addr, "--prefix=app:", "dump", "-o", file)
		var doc struct {
			Prefix  string
			Records map[string]memory.Record
		}
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &doc))
		require.Equal(t, "app:", doc.Prefix)
		require.Len(t, doc.Records, 4)
		require.Equal(t, ok(t, addr, "--prefix=app:", "dump"), string(data), "stdout and -o write the same")

		r := invoke(t, addr, "", "--prefix=app:", "clear", "--yes")
		require.Equal(t, 0, r.code)
		require.Empty(t, r.stderr, "no progress when standard error is no terminal")
		require.Empty(t, miniredisKeys(t, addr))
		out := ok(t, addr, "--prefix=app:", "restore", file)
		require.Equal(t, "restored 4 of 4 records under \"app:\" (the others are unchanged or newer on the server)\n", out)
		for key, s := range stored {
			got := raw.Get(ctx, key).Val()
			if key == "app:bare" {
				require.Equal(t, `{"value": [1,  2], "last_modified": 0}`, got, "a bare value comes back enveloped")
				continue
			}
			require.Equal(t, s, got, "byte for byte: %s", key)
		}

		newer := fmt.Sprintf(`{"value": "newer", "last_modified": %d}`, time.Now().UnixNano())
		require.NoError(t, raw.Set(ctx, "app:go", newer, 0).Err())
		require.Contains(t, ok(t, addr, "--prefix=app:", "restore", file), "restored 0 of 4")
		require.Equal(t, newer, raw.Get(ctx, "app:go").Val(), "a newer value is kept")
		require.Contains(t, ok(t, addr, "--prefix=app:", "restore", "--force", file), "restored 1 of 4")
		require.Equal(t, stored["app:go"], raw.Get(ctx, "app:go").Val())
	})
}

func TestWatch(t *testing.T) {
	addr := redisserver.Start(t).Addr
	m := newMemory(t, addr, "memory:")
	require.NoError(t, m.Set(ctx, "status", "starting"))
	raw := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { raw.Close() })

	isolate(t)
	out, stdout := io.Pipe()
	watchCtx, stop := context.WithCancel(t.Context())
	code := make(chan int, 1)
	go func() {
		code <- run(watchCtx, []string{"--url", "redis://" + addr, "watch", "status"}, strings.NewReader(""), stdout, io.Discard)
		stdout.Close()
	}()
	lines := bufio.NewScanner(out)

	require.True(t, lines.Scan())
	require.Regexp(t, `^\S+ status = "starting" \(written \S+\)$`, lines.Text(), "what it holds first")
	require.NoError(t, m.Set(ctx, "status", "running"))
	require.True(t, lines.Scan())
	require.Contains(t, lines.Text(), `status = "running"`)
	require.NoError(t, raw.Set(ctx, "memory:status", "42", 0).Err())
	require.True(t, lines.Scan())
	require.Regexp(t, `^\S+ status = 42$`, lines.Text(), "another writer's bare value")
	require.NoError(t, raw.Set(ctx, "memory:other", "1", 0).Err())
	require.NoError(t, m.Delete(ctx, "status"))
	require.True(t, lines.Scan())
	require.Regexp(t, `^\S+ status deleted$`, lines.Text(), "only the names watched")

	stop() // as an interrupt does
	go io.Copy(io.Discard, out)
	require.Equal(t, exitOK, <-code, "an interrupt ends watch with success")

	t.Run("every name, as JSON", func(t *testing.T) {
		out, stdout := io.Pipe()
		watchCtx, stop := context.WithCancel(t.Context())
		code := make(chan int, 1)
		go func() {
			code <- run(watchCtx, []string{"--url", "redis://" + addr, "--json", "watch"}, strings.NewReader(""), stdout, io.Discard)
			stdout.Close()
		}()
		lines := bufio.NewScanner(out)
		conv, err := m.Scope("conv_1")
		require.NoError(t, err)
		// The watch starts at some point: write until it tells.
		written := make(chan struct{})
		go func() {
			defer close(written)
			for watchCtx.Err() == nil && conv.Set(ctx, "topic", "go") == nil {
				time.Sleep(10 * time.Millisecond)
			}
		}()
		require.True(t, lines.Scan())
		var change struct {
			Name  string
			Value json.RawMessage
			Stamp int64 `json:"last_modified"`
		}
		require.NoError(t, json.Unmarshal(lines.Bytes(), &change))
		require.Equal(t, "conv_1:topic", change.Name)
		require.JSONEq(t, `"go"`, string(change.Value))
		require.Positive(t, change.Stamp)
		stop()
		<-written
		go io.Copy(io.Discard, out)
		require.Equal(t, exitOK, <-code)
	})
	t.Run("miniredis refuses", func(t *testing.T) {
		r := invoke(t, miniredis.RunT(t).Addr(), "", "watch", "status")
		require.Equal(t, exitFailure, r.code)
		require.Contains(t, r.stderr, "CLIENT TRACKING")
	})
}

func TestLogs(t *testing.T) {
	eachServer(t, func(t *testing.T, addr string) {
		m := newMemory(t, addr, "app:")
		log := memory.LogOf[map[string]string](m, "conv")
		require.NoError(t, log.Append(ctx, map[string]string{"role": "user", "text": "hi"}, map[string]string{"role": "agent", "text": "hello"}))
		require.NoError(t, m.Set(ctx, "n", 1))

		require.Equal(t, "NAME  TYPE    TTL\nconv  log     -\nn     number  -\n", ok(t, addr, "--prefix=app:", "keys"))
		require.Equal(t, "[\n  {\n    \"role\": \"user\",\n    \"text\": \"hi\"\n  },\n  {\n    \"role\": \"agent\",\n    \"text\": \"hello\"\n  }\n]\n",
			ok(t, addr, "--prefix=app:", "get", "conv"), "get shows a log's items")
		raw := ok(t, addr, "--prefix=app:", "get", "--raw", "conv")
		require.Len(t, strings.Split(strings.TrimSpace(raw), "\n"), 2, "one stored element a line")

		file := filepath.Join(t.TempDir(), "dump.json")
		ok(t, addr, "--prefix=app:", "dump", "-o", file)
		ok(t, addr, "--prefix=app:", "clear", "--yes")
		require.Contains(t, ok(t, addr, "--prefix=app:", "restore", file), "restored 2 of 2")
		all, err := log.All(ctx)
		require.NoError(t, err)
		require.Equal(t, []map[string]string{{"role": "user", "text": "hi"}, {"role": "agent", "text": "hello"}}, all)
	})
}
