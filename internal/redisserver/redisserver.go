// Package redisserver runs real redis-server processes on loopback for tests.
//
// Without redis-server on PATH, Start skips the test with a message, or fails
// it when MEMORY_REQUIRE_REDIS=1.
package redisserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// A Server is a redis-server process listening on a loopback port.
type Server struct {
	Addr string // host:port
	Port int
	Dir  string // working directory: logs, RDB and AOF files

	tb       testing.TB
	args     []string
	tls      *TLS
	sentinel bool // run as a Sentinel, with its configuration file in Dir
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has exited
}

// TLS is the configuration of a server that speaks TLS only.
type TLS struct {
	CertFile, KeyFile, CAFile string      // PEM files, absolute paths
	Client                    *tls.Config // trusts the server, to check it is up
}

// Start starts redis-server on a free loopback port with args appended to
// its command line, and stops it when the test ends. Persistence is off
// unless args turn it on.
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	return start(tb, &Server{args: args}, freePort)
}

// StartTLS is Start for a server that accepts TLS connections only, on its
// port, with the certificate of t. It does not ask clients for
// certificates.
func StartTLS(tb testing.TB, t TLS, args ...string) *Server {
	tb.Helper()
	return start(tb, &Server{args: args, tls: &t}, freePort)
}

// lookPath returns the path of the command name, or skips the test, or fails
// it when MEMORY_REQUIRE_REDIS=1, if name is not on PATH.
func lookPath(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("MEMORY_REQUIRE_REDIS") == "1" {
			tb.Fatalf("%s is required (MEMORY_REQUIRE_REDIS=1) but not on PATH: %v", name, err)
		}
		tb.Skipf("%s not on PATH: skipping the real-server test (install it: apt-get install redis-server)", name)
	}
	return path
}

// start starts s, which holds its arguments and mode, on a port pickPort
// finds, and stops it when the test ends.
func start(tb testing.TB, s *Server, pickPort func(testing.TB) int) *Server {
	tb.Helper()
	path := lookPath(tb, "redis-server")
	s.Dir, s.tb = tb.TempDir(), tb
	var err error
	// A port found free can be taken before the server binds it: try again.
	for attempt := 0; ; attempt++ {
		s.Port = pickPort(tb)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		err = s.start(path)
		if err == nil {
			break
		}
		if attempt == 2 {
			tb.Fatalf("redis-server: %v", err)
		}
	}
	tb.Cleanup(s.Stop)
	return s
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// free reports whether the loopback port can be listened on.
func free(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func (s *Server) start(path string) error {
	ports := []string{"--port", strconv.Itoa(s.Port)}
	if s.tls != nil {
		ports = []string{
			"--port", "0", "--tls-port", strconv.Itoa(s.Port),
			"--tls-cert-file", s.tls.CertFile, "--tls-key-file", s.tls.KeyFile,
			"--tls-ca-cert-file", s.tls.CAFile, "--tls-auth-clients", "no",
		}
	}
	args := append(ports,
		"--bind", "127.0.0.1",
		"--dir", s.Dir,
		"--logfile", "redis.log",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
	)
	args = append(args, s.args...)
	if os.Getenv("MEMORY_TEST_ACL") == "1" && !s.sentinel && !slices.Contains(s.args, "--requirepass") {
		// The users the tests make, saved with ACL SAVE, come back when
		// the server restarts.
		acl := filepath.Join(s.Dir, "users.acl")
		f, err := os.OpenFile(acl, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		f.Close()
		args = append(args, "--aclfile", acl)
	}
	if s.sentinel {
		// A Sentinel rewrites its configuration file, which must come
		// first; a restarted one keeps what it wrote.
		conf := filepath.Join(s.Dir, "sentinel.conf")
		f, err := os.OpenFile(conf, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		f.Close()
		args = append([]string{conf, "--sentinel"}, args...)
	}
	s.cmd = exec.Command(path, args...)
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	deadline := time.Now().Add(startTimeout)
	for {
		if err := s.ping(); err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("exited at start: %s", s.logTail())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("no answer on %s within %v: %s", s.Addr, startTimeout, s.logTail())
		}
	}
}

// ping reports an error unless the server answers PING. A server that is
// still loading its data answers -LOADING, which counts as not ready.
func (s *Server) ping() error {
	dialer := &net.Dialer{Timeout: time.Second}
	var conn net.Conn
	var err error
	if s.tls != nil {
		conn, err = tls.DialWithDialer(dialer, "tcp", s.Addr, s.tls.Client)
	} else {
		conn, err = dialer.Dial("tcp", s.Addr)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING: %q", line)
	}
	return nil
}

func (s *Server) logTail() string {
	data, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// until polls cond until it holds, and fails the test if it does not within
// startTimeout.
func until(tb testing.TB, what string, cond func(ctx context.Context) bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for !cond(ctx) {
		select {
		case <-ctx.Done():
			tb.Fatalf("waited %v for %s", startTimeout, what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop kills the server and waits for it to exit. Stopping a stopped server
// does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port, in the same directory,
// with the same arguments, so that a persisted data set comes back.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	if err := s.start(lookPath(s.tb, "redis-server")); err != nil {
		s.tb.Fatalf("restart redis-server on %s: %v", s.Addr, err)
	}
}

// Freeze stops the server process (SIGSTOP) without closing its port:
// connections are accepted by the kernel and commands sent, but nothing is
// answered until Thaw.
func (s *Server) Freeze() {
	s.tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.tb.Fatalf("freeze redis-server on %s: %v", s.Addr, err)
	}
}

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() {
	s.tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.tb.Fatalf("thaw redis-server on %s: %v", s.Addr, err)
	}
}
