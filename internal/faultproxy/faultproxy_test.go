package faultproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// waitFor bounds every poll of a condition; it is generous, as the machine
// may be slow, and never bounds how fast the proxy must be.
const waitFor = 10 * time.Second

// TestProxy runs each fault against a real redis-server, through its own
// proxy.
func TestProxy(t *testing.T) {
	target := startRedis(t)
	direct := newClient(t, target)

	tests := []struct {
		name string
		run  func(t *testing.T, p *Proxy)
	}{
		{"forwarding", func(t *testing.T, p *Proxy) {
			c := newClient(t, p.Addr())
			require.NoError(t, c.Set(t.Context(), "fwd", "value", 0).Err())
			got, err := c.Get(t.Context(), "fwd").Result()
			require.NoError(t, err)
			require.Equal(t, "value", got)

			s := p.Stats()
			require.Equal(t, 1, s.Accepted)
			require.Equal(t, 1, s.Open)
			require.Positive(t, s.ToServer)
			require.Positive(t, s.ToClient)
			require.Zero(t, s.Resets)
		}},
		{"latency", func(t *testing.T, p *Proxy) {
			const d = 100 * time.Millisecond
			c := newClient(t, p.Addr())
			require.NoError(t, c.Ping(t.Context()).Err()) // connected
			p.SetLatency(d)

			start := time.Now()
			require.NoError(t, c.Ping(t.Context()).Err())
			elapsed := time.Since(start)
			t.Logf("PING with latency %v each way: %v", d, elapsed)
			require.GreaterOrEqual(t, elapsed, 2*d)

			// A pipeline of many commands keeps its order through the queues.
			cmds, err := c.Pipelined(t.Context(), func(pipe redis.Pipeliner) error {
				for range 50 {
					pipe.Incr(t.Context(), "latency:counter")
				}
				return nil
			})
			require.NoError(t, err)
			for i, cmd := range cmds {
				require.Equal(t, int64(i+1), cmd.(*redis.IntCmd).Val())
			}

			p.SetLatency(0)
			require.NoError(t, c.Ping(t.Context()).Err())
		}},
		{"bandwidth", func(t *testing.T, p *Proxy) {
			const size, rate = 2_000_000, 1_000_000
			c := newClient(t, p.Addr(), func(o *redis.Options) {
				o.ReadTimeout = time.Minute
				o.WriteTimeout = time.Minute
			})
			require.NoError(t, c.Ping(t.Context()).Err())
			p.SetBandwidth(rate)

			value := strings.Repeat("x", size)
			start := time.Now()
			require.NoError(t, c.Set(t.Context(), "bandwidth", value, 0).Err())
			elapsed := time.Since(start)
			t.Logf("SET of %d bytes at %d B/s: %v", size, rate, elapsed)
			require.GreaterOrEqual(t, elapsed, 1500*time.Millisecond)
			require.GreaterOrEqual(t, p.Stats().ToServer, int64(size))

			p.SetBandwidth(0)
			got, err := c.Get(t.Context(), "bandwidth").Result()
			require.NoError(t, err)
			require.Equal(t, value, got)
		}},
		{"reset next reply", func(t *testing.T, p *Proxy) {
			c := newClient(t, p.Addr())
			require.NoError(t, c.Ping(t.Context()).Err()) // handshake done
			require.NoError(t, direct.Set(t.Context(), "lost", 10, 0).Err())

			p.ResetNextReplies(1)
			err := c.Incr(t.Context(), "lost").Err()
			require.Error(t, err, "the reply must be lost")
			t.Logf("INCR through the proxy: %v", err)

			got, err := direct.Get(t.Context(), "lost").Int()
			require.NoError(t, err)
			require.Equal(t, 11, got, "the server executed the command")
			s := p.Stats()
			require.Equal(t, 1, s.RepliesReset)
			require.Equal(t, 1, s.Resets)

			// Only one reply is lost: the client works again.
			n, err := c.Incr(t.Context(), "lost").Result()
			require.NoError(t, err)
			require.Equal(t, int64(12), n)
			require.Equal(t, 1, p.Stats().RepliesReset)
		}},
		{"delay next", func(t *testing.T, p *Proxy) {
			c := newClient(t, p.Addr(), func(o *redis.Options) { o.PoolSize = 2 })
			require.NoError(t, c.Ping(t.Context()).Err()) // handshake done

			p.DelayNext([]byte("delayed:key"), time.Second)
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			err := c.Set(ctx, "delayed:key", "late", 0).Err()
			cancel()
			var netErr net.Error
			require.ErrorAs(t, err, &netErr, "held back: no reply in time")
			require.True(t, netErr.Timeout(), "%v is a timeout", err)
			require.Equal(t, 1, p.Stats().Delayed)

			// Other commands go on, and the one held back, its client gone,
			// still reaches the server.
			require.NoError(t, c.Set(t.Context(), "delayed:other", "now", 0).Err())
			require.Equal(t, redis.Nil, direct.Get(t.Context(), "delayed:key").Err(), "not yet")
			require.Eventually(t, func() bool { return direct.Get(t.Context(), "delayed:key").Val() == "late" }, waitFor, time.Millisecond)
			require.Equal(t, 1, p.Stats().Delayed, "only the next match")
		}},
		{"reset every reply", func(t *testing.T, p *Proxy) {
			// Raw connections send no handshake, so every reply is a chunk
			// the test knows of.
			const every, total = 3, 9
			require.NoError(t, direct.Del(t.Context(), "every").Err())
			p.ResetEveryReply(every)

			conn := dialRaw(t, p.Addr())
			lost := 0
			for i := 1; i <= total; i++ {
				reply, err := conn.do("INCR every")
				if i%every == 0 {
					require.Error(t, err, "reply %d must be lost", i)
					lost++
					conn = dialRaw(t, p.Addr())
					continue
				}
				require.NoError(t, err, "reply %d", i)
				require.Equal(t, ":"+strconv.Itoa(i), reply)
			}
			got, err := direct.Get(t.Context(), "every").Int()
			require.NoError(t, err)
			require.Equal(t, total, got, "the server executed every command")
			s := p.Stats()
			require.Equal(t, lost, s.RepliesReset)
			require.Equal(t, lost, s.Resets)

			p.ResetEveryReply(0)
			for range 2 * every {
				_, err := conn.do("PING")
				require.NoError(t, err)
			}
			s = p.Stats()
			require.Equal(t, lost, s.RepliesReset)
			require.Equal(t, lost+1, s.Accepted, "one connection, and one more after each lost reply")
		}},
		{"blackhole", func(t *testing.T, p *Proxy) {
			c := newClient(t, p.Addr())
			require.NoError(t, c.Set(t.Context(), "hole", "v", 0).Err())
			before := dialRaw(t, p.Addr())
			_, err := before.do("PING")
			require.NoError(t, err)

			p.Blackhole(true)
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = c.Get(ctx, "hole").Err()
			require.Error(t, err, "a GET through a blackhole must time out")
			require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)
			t.Logf("GET through the blackhole: %v", err)
			require.Eventually(t, func() bool { return p.Stats().BlackholedBytes > 0 }, waitFor, time.Millisecond)

			// Nothing is closed: the connection opened before stays open
			// and gets no reply; one opened now is accepted and dead.
			require.NoError(t, before.send("PING"))
			during := dialRaw(t, p.Addr())
			require.NoError(t, during.send("PING"))
			require.Eventually(t, func() bool { return p.Stats().Accepted == 3 }, waitFor, time.Millisecond)
			before.requireSilent(t, 300*time.Millisecond)
			during.requireSilent(t, 300*time.Millisecond)
			require.Zero(t, p.Stats().Resets)

			p.Blackhole(false)
			fresh := newClient(t, p.Addr())
			got, err := fresh.Get(t.Context(), "hole").Result()
			require.NoError(t, err)
			require.Equal(t, "v", got)

			// The connection opened before forwards new bytes only: one
			// PONG, for the PING sent now.
			reply, err := before.do("PING")
			require.NoError(t, err)
			require.Equal(t, "+PONG", reply)
			before.requireSilent(t, 200*time.Millisecond)

			// The connection opened during the blackhole stays dead.
			require.NoError(t, during.send("PING"))
			during.requireSilent(t, 300*time.Millisecond)
		}},
		{"reset all", func(t *testing.T, p *Proxy) {
			blocked := newClient(t, p.Addr())
			require.NoError(t, blocked.Ping(t.Context()).Err())
			raw := dialRaw(t, p.Addr())
			_, err := raw.do("PING")
			require.NoError(t, err)

			errc := make(chan error, 1)
			go func() { errc <- blocked.BLPop(t.Context(), time.Minute, "resetall:none").Err() }()
			require.Eventually(t, func() bool {
				info, err := direct.Info(t.Context(), "clients").Result()
				return err == nil && strings.Contains(info, "blocked_clients:1\r")
			}, waitFor, 5*time.Millisecond)

			p.ResetAll()
			require.Error(t, <-errc, "the blocked command must fail")
			_, err = raw.do("PING")
			require.Error(t, err, "the raw connection must be reset")
			s := p.Stats()
			require.Equal(t, 2, s.Resets)
			require.Zero(t, s.Open)
			require.Zero(t, s.RepliesReset)

			// The proxy still accepts: the client reconnects.
			require.NoError(t, blocked.Ping(t.Context()).Err())
		}},
		{"refuse", func(t *testing.T, p *Proxy) {
			p.Refuse(true)
			c := newClient(t, p.Addr())
			err := c.Ping(t.Context()).Err()
			require.Error(t, err, "a refused connection must fail")
			t.Logf("PING while refusing: %v", err)
			// Dialing itself may see the reset, if it comes fast enough.
			if raw, err := net.Dial("tcp", p.Addr()); err == nil {
				rc := &rawConn{Conn: raw, r: bufio.NewReader(raw)}
				_, err = rc.do("PING")
				_ = raw.Close()
				require.Error(t, err)
			}
			s := p.Stats()
			require.GreaterOrEqual(t, s.Resets, 2)
			require.Equal(t, s.Resets, s.Accepted)
			require.Zero(t, s.Open)

			p.Refuse(false)
			require.NoError(t, c.Ping(t.Context()).Err())
		}},
		{"close leaves no goroutines", func(t *testing.T, p *Proxy) {
			// p is unused: the baseline must not count its accept loop.
			p.Close()
			// Let the goroutines of earlier subtests' clients and proxies
			// settle before the baseline.
			base := settledGoroutines()

			q := Start(t, target)
			q.SetLatency(50 * time.Millisecond)
			q.SetBandwidth(100_000)
			idle := dialRaw(t, q.Addr())
			_, err := idle.do("PING")
			require.NoError(t, err)
			busy := dialRaw(t, q.Addr()) // a large write in flight
			big := strings.Repeat("x", 512<<10)
			_, err = fmt.Fprintf(busy, "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n%s\r\n", len(big), big)
			require.NoError(t, err)
			blocked := dialRaw(t, q.Addr()) // a reply the server holds
			require.NoError(t, blocked.send("BLPOP close:none 0"))
			q.Blackhole(true)
			dead := dialRaw(t, q.Addr()) // accepted during the blackhole
			require.NoError(t, dead.send("PING"))
			require.Eventually(t, func() bool { return q.Stats().Open == 4 }, waitFor, time.Millisecond)
			require.Greater(t, runtime.NumGoroutine(), base)

			q.Close()
			// Close has waited for every goroutine of q; each may still be
			// counted a moment after its last deferred call, hence the poll
			// (in this goroutine: Eventually would add one of its own).
			for deadline := time.Now().Add(waitFor); runtime.NumGoroutine() > base; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					t.Fatalf("%d goroutines after Close, want at most %d:\n%s",
						runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
				}
			}
			q.Close() // idempotent
			require.Zero(t, q.Stats().Open)
			_, err = idle.do("PING")
			require.Error(t, err, "Close closes every connection")
			_, err = net.Dial("tcp", q.Addr())
			require.Error(t, err, "Close closes the listener")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, Start(t, target))
		})
	}
}

// settledGoroutines returns the number of goroutines once it has stopped
// changing.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for stable := 0; stable < 5; {
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			stable++
		} else {
			n, stable = m, 0
		}
	}
	return n
}

// newClient returns a go-redis client of addr that does not retry, so that
// faults surface, and respects context deadlines.
func newClient(t *testing.T, addr string, opts ...func(*redis.Options)) *redis.Client {
	t.Helper()
	o := &redis.Options{
		Addr:                  addr,
		MaxRetries:            -1,
		PoolSize:              1,
		ContextTimeoutEnabled: true,
	}
	for _, opt := range opts {
		opt(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawConn speaks inline RESP commands on a plain connection, which sends
// nothing but what the test asks for.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

// send writes the inline command cmd.
func (c *rawConn) send(cmd string) error {
	_, err := io.WriteString(c, cmd+"\r\n")
	return err
}

// do sends cmd and returns its reply line, without its CRLF.
func (c *rawConn) do(cmd string) (string, error) {
	if err := c.send(cmd); err != nil {
		return "", err
	}
	if err := c.SetReadDeadline(time.Now().Add(waitFor)); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(line, "\r\n"), nil
}

// requireSilent requires that nothing arrives on c, nor does it close,
// within d.
func (c *rawConn) requireSilent(t *testing.T, d time.Duration) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(d)))
	_, err := c.r.ReadByte()
	var ne net.Error
	require.ErrorAs(t, err, &ne, "want a timeout, nothing else")
	require.True(t, ne.Timeout(), "want a timeout: %v", err)
}

// startRedis starts a redis-server on a free loopback port, with
// persistence off, and stops it when the test ends. It skips the test when
// redis-server is not on PATH, or fails it if MEMORY_REQUIRE_REDIS=1.
func startRedis(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("MEMORY_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-server is required (MEMORY_REQUIRE_REDIS=1) but not on PATH: %v", err)
		}
		t.Skipf("redis-server not on PATH, skipping the tests against a real server (MEMORY_REQUIRE_REDIS=1 fails instead): %v", err)
	}
	dir := t.TempDir()
	for attempt := range 3 { // another process may take the free port first
		port := freePort(t)
		logPath := filepath.Join(dir, fmt.Sprintf("redis-%d.log", attempt))
		log, err := os.Create(logPath)
		require.NoError(t, err)
		cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = log, log
		require.NoError(t, cmd.Start())
		exited := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			_ = log.Close()
			close(exited)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if ping(addr, exited) {
			return addr
		}
		out, _ := os.ReadFile(logPath)
		t.Logf("redis-server on port %d did not start:\n%s", port, out)
	}
	t.Fatalf("redis-server did not start")
	return ""
}

// ping polls addr until it answers PING, and reports whether it did before
// the server exited or waitFor passed.
func ping(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, err = io.WriteString(c, "PING\r\n")
			line, rerr := bufio.NewReader(c).ReadString('\n')
			_ = c.Close()
			if err == nil && rerr == nil && line == "+PONG\r\n" {
				return true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
