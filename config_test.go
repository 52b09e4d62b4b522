package memory_test

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// clearEnv unsets every variable New reads, for the test's duration.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, name := range []string{
		"REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD",
		"REDIS_DB", "REDIS_PREFIX", "MEMORY_LOG_LEVEL", "MEMORY_LOCAL_CACHE", "MEMORY_AUTOPIPELINE",
	} {
		t.Setenv(name, "")
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	clearEnv(t)
	addr := miniredisAddr(t)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)

	tests := []struct {
		name string
		env  map[string]string
		opts []memory.Option
		db   int // where the write must land
	}{
		{"REDIS_URL", map[string]string{"REDIS_URL": "redis://" + addr + "/2"}, nil, 2},
		{"REDIS_HOST and REDIS_PORT", map[string]string{"REDIS_HOST": host, "REDIS_PORT": port, "REDIS_DB": "3"}, nil, 3},
		{"REDIS_URL wins over REDIS_HOST", map[string]string{"REDIS_URL": "redis://" + addr + "/4", "REDIS_HOST": "nowhere.invalid", "REDIS_PORT": "abc"}, nil, 4},
		{"WithURL wins over REDIS_URL", map[string]string{"REDIS_URL": "redis://nowhere.invalid:1"}, []memory.Option{memory.WithURL("redis://" + addr + "/5")}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			m, err := memory.New(ctx, tt.opts...)
			require.NoError(t, err)
			defer m.Close()
			require.NoError(t, m.Set(ctx, "where", tt.db))

			raw := redis.NewClient(&redis.Options{Addr: addr, DB: tt.db})
			defer raw.Close()
			require.Equal(t, int64(1), raw.Exists(ctx, "memory:where").Val())
		})
	}
}

func TestConfigErrors(t *testing.T) {
	clearEnv(t)
	missing := filepath.Join(t.TempDir(), "missing.env")
	tests := []struct {
		name     string
		env      map[string]string
		opts     []memory.Option
		mentions []string // what the error must name
		hides    string   // what it must not show
	}{
		{"port not a number", map[string]string{"REDIS_PORT": "abc"}, nil, []string{"REDIS_PORT", `"abc"`}, ""},
		{"port out of range", map[string]string{"REDIS_PORT": "70000"}, nil, []string{"REDIS_PORT", `"70000"`}, ""},
		{"negative db", map[string]string{"REDIS_DB": "-1"}, nil, []string{"REDIS_DB", `"-1"`}, ""},
		{"db not a number", map[string]string{"REDIS_DB": "one"}, nil, []string{"REDIS_DB", `"one"`}, ""},
		{"url scheme", map[string]string{"REDIS_URL": "http://localhost"}, nil, []string{"REDIS_URL", "http://localhost"}, ""},
		{"url unparsable", map[string]string{"REDIS_URL": "redis://user:s3cret@[::1"}, nil, []string{"REDIS_URL", "[::1"}, "s3cret"},
		{"url bad db", map[string]string{"REDIS_URL": "redis://user:s3cret@localhost/x"}, nil, []string{"REDIS_URL", "localhost"}, "s3cret"},
		{"WithURL", nil, []memory.Option{memory.WithURL("ftp://x")}, []string{"WithURL", "ftp://x"}, ""},
		{"log level", map[string]string{"MEMORY_LOG_LEVEL": "LOUD"}, nil, []string{"MEMORY_LOG_LEVEL", `"LOUD"`}, ""},
		{"timeout", nil, []memory.Option{memory.WithTimeout(0)}, []string{"WithTimeout(0s)"}, ""},
		{"close timeout", nil, []memory.Option{memory.WithCloseTimeout(-time.Second)}, []string{"WithCloseTimeout(-1s)"}, ""},
		{"ttl", nil, []memory.Option{memory.WithDefaultTTL(-time.Second)}, []string{"WithDefaultTTL(-1s)"}, ""},
		{"env file", nil, []memory.Option{memory.WithEnvFile(missing)}, []string{"WithEnvFile", missing}, ""},
		{"local cache", nil, []memory.Option{memory.WithLocalCache(-1)}, []string{"WithLocalCache(-1)"}, ""},
		{"local cache variable", map[string]string{"MEMORY_LOCAL_CACHE": "lots"}, nil, []string{"MEMORY_LOCAL_CACHE", `"lots"`}, ""},
		{"local cache negative", map[string]string{"MEMORY_LOCAL_CACHE": "-5"}, nil, []string{"MEMORY_LOCAL_CACHE", `"-5"`}, ""},
		{"auto-pipelining", map[string]string{"MEMORY_AUTOPIPELINE": "sometimes"}, nil, []string{"MEMORY_AUTOPIPELINE", `"sometimes"`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			m, err := memory.New(ctx, tt.opts...)
			require.Error(t, err)
			require.Nil(t, m)
			for _, s := range tt.mentions {
				require.Contains(t, err.Error(), s)
			}
			if tt.hides != "" {
				require.NotContains(t, err.Error(), tt.hides)
			}
		})
	}
}

func TestEnvFile(t *testing.T) {
	clearEnv(t)
	addr := miniredisAddr(t)
	path := filepath.Join(t.TempDir(), ".env")
	require.NoError(t, os.WriteFile(path, []byte("# tenant settings\nREDIS_URL=redis://"+addr+"\nREDIS_PREFIX=fromfile:\n"), 0o600))

	m, err := memory.New(ctx, memory.WithEnvFile(path))
	require.NoError(t, err)
	defer m.Close()
	require.Equal(t, "fromfile:", m.Prefix())
	require.NoError(t, m.Set(ctx, "value", "test"))
	require.Equal(t, []string{"fromfile:value"}, serverKeys(t, rawClient(t, addr)))
	require.Empty(t, os.Getenv("REDIS_PREFIX"), "the process environment is untouched")
	require.Empty(t, os.Getenv("REDIS_URL"))

	t.Setenv("REDIS_PREFIX", "fromenv:")
	m2, err := memory.New(ctx, memory.WithEnvFile(path))
	require.NoError(t, err)
	defer m2.Close()
	require.Equal(t, "fromenv:", m2.Prefix(), "the process environment wins over the file")

	m3, err := memory.New(ctx, memory.WithEnvFile(path), memory.WithPrefix("fromoption:"))
	require.NoError(t, err)
	defer m3.Close()
	require.Equal(t, "fromoption:", m3.Prefix(), "options win over both")
}

func TestAuthentication(t *testing.T) {
	clearEnv(t)
	srv := redisserver.Start(t, "--requirepass", "s3cret")
	tests := []struct {
		name string
		url  string
		ok   bool
	}{
		{"no password", "redis://" + srv.Addr, false},
		{"wrong password", "redis://:wrong@" + srv.Addr, false},
		{"right password", "redis://:s3cret@" + srv.Addr, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := memory.New(ctx, memory.WithURL(tt.url))
			if tt.ok {
				require.NoError(t, err)
				require.NoError(t, m.Set(ctx, "k", 1))
				require.NoError(t, m.Close())
				return
			}
			require.Error(t, err)
			require.NotErrorIs(t, err, memory.ErrUnavailable, "a refused password is not an outage")
			require.True(t, redis.IsAuthError(err), "%v", err)
			require.Contains(t, err.Error(), srv.Addr)
			require.NotContains(t, err.Error(), "wrong")
		})
	}

	t.Run("REDIS_PASSWORD", func(t *testing.T) {
		t.Setenv("REDIS_HOST", "127.0.0.1")
		t.Setenv("REDIS_PORT", strconv.Itoa(srv.Port))
		t.Setenv("REDIS_PASSWORD", "s3cret")
		m, err := memory.New(ctx)
		require.NoError(t, err)
		defer m.Close()
		require.NoError(t, m.Set(ctx, "k", 1))
	})
}

func TestUnreachableServer(t *testing.T) {
	clearEnv(t)
	refused := closedPort(t)
	hung := hungServer(t)
	for name, addr := range map[string]string{"refused": refused, "hung": hung} {
		t.Run(name, func(t *testing.T) {
			url, timeout := memory.WithURL("redis://"+addr), memory.WithTimeout(200*time.Millisecond)
			m, err := memory.New(ctx, url, timeout, memory.WithCloseTimeout(300*time.Millisecond))
			require.NoError(t, err, "New starts without its server, the queue on")

			require.NoError(t, m.Set(ctx, "k", 1), "queued")
			require.Equal(t, 1, m.Pending())
			requireValue(t, m, "k", 1)
			err = m.Get(ctx, "unknown", new(int))
			require.ErrorIs(t, err, memory.ErrUnavailable)
			require.NotErrorIs(t, err, memory.ErrNotFound)
			require.Contains(t, err.Error(), `"memory:unknown"`)
			_, err = m.Keys(ctx)
			require.ErrorIs(t, err, memory.ErrUnavailable)
			err = m.Close()
			require.ErrorIs(t, err, memory.ErrUnavailable)
			require.ErrorContains(t, err, "1 queued writes not delivered")

			_, err = memory.New(ctx, url, timeout, memory.WithOfflineQueue(false))
			require.ErrorIs(t, err, memory.ErrUnavailable, "without the queue, New needs its server")
			require.ErrorContains(t, err, addr)
		})
	}
}

func TestWithClientDoesNoIO(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: closedPort(t)})
	defer client.Close()
	m, err := memory.New(ctx, memory.WithClient(client))
	require.NoError(t, err)
	require.Zero(t, client.PoolStats().Misses, "no connection was asked for")
	require.NoError(t, m.Close())
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	addr := miniredisAddr(t)
	before := goroutines()
	for range 10 {
		m := newMemory(t, addr)
		require.NoError(t, m.Set(ctx, "k", 1))
		require.NoError(t, m.Close())
	}
	requireGoroutines(t, before)
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// hungServer returns the address of a server that accepts connections and
// never answers.
func hungServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return l.Addr().String()
}

// stacks returns the stack of every goroutine, in one snapshot.
func stacks() []string {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// goroutines returns how many goroutines run, less those of miniredis's
// servers: they serve the connections a client keeps, and their number is
// the client's business.
func goroutines() int {
	n := 0
	for _, stack := range stacks() {
		if !strings.Contains(stack, "alicebob/miniredis") {
			n++
		}
	}
	return n
}

// flushers returns how many background loops of the offline queue run, or
// are about to.
func flushers() int {
	n := 0
	for _, stack := range stacks() {
		if strings.Contains(stack, "created by github.com/redis-memory/memory.(*link).startFlusher") {
			n++
		}
	}
	return n
}

// requireGoroutines waits until at most n goroutines run, as goroutines
// counts them, and fails with a dump of them if that takes more than five
// seconds.
func requireGoroutines(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); goroutines() > n; {
		if time.Now().After(deadline) {
			var dump strings.Builder
			pprof.Lookup("goroutine").WriteTo(&dump, 1)
			t.Fatalf("%d goroutines run, want at most %d:\n%s", goroutines(), n, dump.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUnixSocket(t *testing.T) {
	clearEnv(t)
	sock := filepath.Join(t.TempDir(), "redis.sock")
	redisserver.Start(t, "--unixsocket", sock, "--unixsocketperm", "700")
	m, err := memory.New(ctx, memory.WithURL("unix://"+sock))
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, m.Set(ctx, "k", "over a unix socket"))
	requireValue(t, m, "k", "over a unix socket")
}

func TestEnvFileBrokenEntry(t *testing.T) {
	clearEnv(t)
	tests := []struct {
		name, file, entry string
	}{
		{"no equals sign", "REDIS_URL redis://10.0.0.1:6379\n", "REDIS_URL redis"},
		{"space in the name", "REDIS PREFIX=x:\n", "REDIS PREFIX"},
		{"leading digit", "1REDIS_PREFIX=x:\n", "1REDIS_PREFIX"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".env")
			require.NoError(t, os.WriteFile(path, []byte("REDIS_PREFIX=ok:\n"+tt.file), 0o600))
			m, err := memory.New(ctx, memory.WithEnvFile(path))
			require.Error(t, err, "no fallback to localhost")
			require.Nil(t, m)
			require.Contains(t, err.Error(), path)
			require.Contains(t, err.Error(), fmt.Sprintf("entry %q", tt.entry))
		})
	}
}

func TestWithClientWithoutContextTimeout(t *testing.T) {
	addr := miniredisAddr(t)
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	for _, enabled := range []bool{true, false} {
		client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: enabled})
		defer client.Close()
		for range 2 {
			m, err := memory.New(ctx, memory.WithClient(client), memory.WithLogger(logger))
			require.NoError(t, err)
			defer m.Close()
		}
	}
	require.Equal(t, 1, strings.Count(logs.String(), "ContextTimeoutEnabled is false"),
		"one warning, for the client without it, however many Memory values use it: %s", logs.String())
}
