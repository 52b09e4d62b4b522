package memory

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/joho/godotenv"
	"github.com/redis/go-redis/v9"
)

const (
	// DefaultTimeout bounds each operation of a Memory unless WithTimeout
	// sets another bound.
	DefaultTimeout = 500 * time.Millisecond

	// DefaultCloseTimeout bounds how long Close delivers queued writes,
	// unless WithCloseTimeout sets another bound.
	DefaultCloseTimeout = 5 * time.Second
)

// An Option configures New. Options win over the process environment, which
// wins over the file given by WithEnvFile, which wins over the defaults.
type Option func(*config)

type config struct {
	client       redis.UniversalClient
	url          string
	prefix       string
	hasPrefix    bool
	envFile      string
	logger       *slog.Logger
	timeout      time.Duration
	closeTimeout time.Duration
	ttl          time.Duration
	queue        bool
	maxPending   int
	cache        int  // entries of the local cache; 0: off
	hasCache     bool // set by WithLocalCache, which wins over MEMORY_LOCAL_CACHE
	autoPipeline bool
	hasPipeline  bool    // set by WithAutoPipeline, which wins over MEMORY_AUTOPIPELINE
	server       *server // of the client New creates, when no WithClient
}

// WithClient makes the Memory use client, which stays the caller's: Close
// does not close it, and New sends nothing through it. Any number of Memory
// values can share one client.
//
// The Memory's timeout bounds a round trip on such a client only if the
// client has ContextTimeoutEnabled set: otherwise a server that does not
// answer holds an operation until the client's ReadTimeout (3s by default).
// New logs a warning for a client without it. Its ReadTimeout and
// WriteTimeout also cap the queue's later, longer attempts of a write that
// timed out; and the library's writes are never resent by the client,
// whatever its MaxRetries.
func WithClient(client redis.UniversalClient) Option {
	return func(c *config) { c.client = client }
}

// WithURL connects to the server at rawURL, of the form
// redis://[user:password@]host:port/db, rediss://… (TLS) or unix://…,
// instead of the one the environment names.
func WithURL(rawURL string) Option {
	return func(c *config) { c.url = rawURL }
}

// WithPrefix sets the key prefix, the Memory's namespace, instead of
// REDIS_PREFIX or DefaultPrefix.
func WithPrefix(prefix string) Option {
	return func(c *config) { c.prefix, c.hasPrefix = prefix, true }
}

// WithEnvFile reads configuration variables from the .env file at path,
// without changing the process environment. Variables set in the process
// environment win over the file.
func WithEnvFile(path string) Option {
	return func(c *config) { c.envFile = path }
}

// WithLogger sets the logger. By default a Memory logs text to standard error
// at the level MEMORY_LOG_LEVEL names, WARN when unset.
func WithLogger(logger *slog.Logger) Option {
	return func(c *config) { c.logger = logger }
}

// WithTimeout bounds every round trip of an operation, DefaultTimeout when
// not set. It is the deadline, rounded up to the next 10ms, of the context
// each round trip passes to the client, which ends the client's waits and
// retries with it; on a client that New creates, also its dial and pool
// timeouts. A client of one's own (WithClient) holds to the deadline only
// with ContextTimeoutEnabled set; otherwise its ReadTimeout and
// WriteTimeout bound a silent server instead.
//
// A write that times out is queued, and the queue's later attempts of it
// each get twice as long as the one before, up to a minute, so that a value
// too large to cross the link within the timeout still gets there.
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithCloseTimeout bounds how long Close delivers the writes still queued,
// DefaultCloseTimeout when not set. Close returns by then.
func WithCloseTimeout(d time.Duration) Option {
	return func(c *config) { c.closeTimeout = d }
}

// WithDefaultTTL makes every Set expire its key after ttl. Zero, the default,
// keeps values until they are deleted.
func WithDefaultTTL(ttl time.Duration) Option {
	return func(c *config) { c.ttl = ttl }
}

// WithOfflineQueue turns the offline queue on (the default) or off. While
// the server cannot be reached, writes are queued and flushed when it
// returns; with the queue off they fail with an error wrapping
// ErrUnavailable.
func WithOfflineQueue(on bool) Option {
	return func(c *config) { c.queue = on }
}

// WithMaxPending bounds how many names a Memory, its scopes included, may
// have queued at once, DefaultMaxPending when not set. A write that would
// queue one more name fails with an error wrapping ErrQueueFull. The holds
// of WithAutoPipeline are queued over the bound: the sends they hold are
// made already.
func WithMaxPending(n int) Option {
	return func(c *config) { c.maxPending = n }
}

// WithLocalCache turns the local cache on, with room for maxEntries values
// across every Memory over the client, or off with 0, the default; it wins
// over MEMORY_LOCAL_CACHE. Reads are then answered from process memory
// while the server tells the process of changes to the keys read (CLIENT
// TRACKING). A process always reads its own writes, through any Memory
// over the client; another process's writes are seen within milliseconds,
// and never more than half a second late. A server that refuses tracking
// leaves reads to the server, with a warning.
func WithLocalCache(maxEntries int) Option {
	return func(c *config) { c.cache, c.hasCache = maxEntries, true }
}

// WithAutoPipeline, on, has commands that the Memory values over the client
// send at once from many goroutines share round trips (go-redis's
// AutoPipeliner), while a command sent alone goes alone; it wins over
// MEMORY_AUTOPIPELINE. Reads, Set, Delete and the list, map, log and counter
// operations go through it; the Sets and Deletes made at once, by any Memory
// over the client, go to the server in batches, one call of the
// last-writer-wins script each, and their reads of whole values (Get, GetAs,
// Has, List and Map reads, those of Update and of the queue's deliveries;
// not those of the local cache, nor Load) in batches too, one MGET each;
// except on a cluster, where the keys of one command must share a slot. A
// read that its MGET found no string for, absent or of another type, or
// whose MGET failed, goes again alone; a server that refuses MGET (an ACL
// without it) turns the batches of reads off. A write whose caller gave up
// while the pipeliner or a batch held it holds the later writes to its name
// in the queue until it was sent, so that it does not land after them. With
// the offline queue off, writes go alone. The Memory values over one client
// share the pipeliner and its batches, which end by the WithTimeout of the
// first of them that turned it on: a write of another, of a longer timeout,
// that the pipeliner or a batch held longer is queued, as one whose reply
// was lost. A Set of a value of 128 KiB or more goes alone. It is off by
// default: docs/performance.md of the repository says what it gains and
// costs.
func WithAutoPipeline(on bool) Option {
	return func(c *config) { c.autoPipeline, c.hasPipeline = on, true }
}

// newConfig applies opts over the environment and checks the result.
func newConfig(opts []Option) (*config, error) {
	c := &config{timeout: DefaultTimeout, closeTimeout: DefaultCloseTimeout, queue: true, maxPending: DefaultMaxPending}
	for _, opt := range opts {
		opt(c)
	}
	env, err := loadEnv(c.envFile)
	if err != nil {
		return nil, err
	}
	if c.timeout <= 0 {
		return nil, fmt.Errorf("memory: WithTimeout(%v): the timeout must be positive", c.timeout)
	}
	if c.closeTimeout <= 0 {
		return nil, fmt.Errorf("memory: WithCloseTimeout(%v): the timeout must be positive", c.closeTimeout)
	}
	if c.maxPending < 1 {
		return nil, fmt.Errorf("memory: WithMaxPending(%d): the bound must be positive", c.maxPending)
	}
	if c.ttl < 0 {
		return nil, fmt.Errorf("memory: WithDefaultTTL(%v): the TTL must not be negative", c.ttl)
	}
	if c.cache < 0 {
		return nil, fmt.Errorf("memory: WithLocalCache(%d): the number of entries must not be negative", c.cache)
	}
	if v := env.lookup("MEMORY_AUTOPIPELINE"); v != "" && !c.hasPipeline {
		if c.autoPipeline, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("memory: MEMORY_AUTOPIPELINE=%q: want 1 or 0 (true or false)", v)
		}
	}
	if v := env.lookup("MEMORY_LOCAL_CACHE"); v != "" && !c.hasCache {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("memory: MEMORY_LOCAL_CACHE=%q: want a number of entries, 0 for none", v)
		}
		c.cache = n
	}
	source := fmt.Sprintf("WithPrefix(%q)", c.prefix)
	if !c.hasPrefix {
		c.prefix = cmp.Or(env.lookup("REDIS_PREFIX"), DefaultPrefix)
		source = fmt.Sprintf("REDIS_PREFIX=%q", c.prefix)
	}
	if why := prefixFault(c.prefix); why != "" {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalidPrefix, source, why)
	}
	if c.logger == nil {
		level, err := parseLevel(env.lookup("MEMORY_LOG_LEVEL"))
		if err != nil {
			return nil, err
		}
		c.logger = defaultLogger(level)
	}
	if c.client == nil {
		if c.server, err = env.server(c.url); err != nil {
			return nil, err
		}
		o := &c.server.opts
		// Each operation's context carries its deadline. The socket's
		// own timeouts are longer, for the queue's later attempts of a
		// write that took longer than one timeout to get through.
		o.DialTimeout, o.PoolTimeout = c.timeout, c.timeout
		o.ReadTimeout, o.WriteTimeout = max(c.timeout, attemptMax), max(c.timeout, attemptMax)
		o.ContextTimeoutEnabled = true
		o.DialerRetries = 1 // a refused dial fails now, not after four more tries
		o.MaxRetries = 1
	}
	return c, nil
}

// An environment looks variables up in the process environment, then in the
// .env file. An empty variable counts as unset.
type environment map[string]string

func loadEnv(path string) (environment, error) {
	if path == "" {
		return nil, nil
	}
	file, err := godotenv.Read(path)
	if err != nil {
		return nil, fmt.Errorf("memory: WithEnvFile(%q): %w", path, err)
	}
	// godotenv reads a line with no '=', such as "REDIS_URL redis://h:1",
	// as a variable named "REDIS_URL redis": refuse it rather than let
	// the setting fall back to its default.
	for _, name := range slices.Sorted(maps.Keys(file)) {
		if !isVariableName(name) {
			return nil, fmt.Errorf("memory: WithEnvFile(%q): entry %q is not a variable name (letters, digits and '_'; is its '=' missing?)", path, name)
		}
	}
	return file, nil
}

// isVariableName reports whether s is a name the shell gives variables:
// letters, digits and '_', not starting with a digit.
func isVariableName(s string) bool {
	for i, c := range s {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

func (e environment) lookup(name string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return e[name]
}

// A server says how to reach the server, or the cluster, when New creates
// the client.
type server struct {
	opts    redis.UniversalOptions
	network string // of a single node: "tcp" or "unix"
	cluster bool
}

// client returns a new client of s.
func (s *server) client() redis.UniversalClient {
	if s.cluster {
		return redis.NewClusterClient(s.opts.Cluster())
	}
	o := s.opts.Simple()
	o.Network = s.network
	return redis.NewClient(o)
}

// addr names the server, or the cluster's seed addresses.
func (s *server) addr() string { return strings.Join(s.opts.Addrs, ",") }

// server returns the server of rawURL, else of REDIS_CLUSTER_ADDRS, else of
// REDIS_URL, else of REDIS_HOST and REDIS_PORT, with the credentials,
// database and TLS settings that go with it.
func (e environment) server(rawURL string) (*server, error) {
	source := "WithURL"
	switch {
	case rawURL != "":
	case e.lookup("REDIS_CLUSTER_ADDRS") != "":
		return e.cluster()
	default:
		rawURL, source = e.lookup("REDIS_URL"), "REDIS_URL"
	}
	if rawURL == "" {
		return e.hostPort()
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err // its text repeats the URL, password included
		}
		return nil, fmt.Errorf("memory: %s=%q: %w", source, redactURL(rawURL), err)
	}
	s := &server{network: opt.Network, opts: redis.UniversalOptions{
		Addrs:     []string{opt.Addr},
		Username:  opt.Username,
		Password:  opt.Password,
		DB:        opt.DB,
		TLSConfig: opt.TLSConfig,
	}}
	if caFile := e.lookup("REDIS_TLS_CA_FILE"); caFile != "" {
		if opt.TLSConfig == nil {
			return nil, fmt.Errorf("memory: REDIS_TLS_CA_FILE=%q asks for TLS, but %s=%q does not: use rediss://", caFile, source, redactURL(rawURL))
		}
		if opt.TLSConfig.RootCAs, err = loadCA(caFile); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// hostPort returns the server of REDIS_HOST and REDIS_PORT.
func (e environment) hostPort() (*server, error) {
	host := cmp.Or(e.lookup("REDIS_HOST"), "localhost")
	port := cmp.Or(e.lookup("REDIS_PORT"), "6379")
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("memory: REDIS_PORT=%q is not a port number (1-65535)", port)
	}
	db, err := e.db()
	if err != nil {
		return nil, err
	}
	s := &server{network: "tcp", opts: redis.UniversalOptions{
		Addrs:    []string{net.JoinHostPort(host, port)},
		Username: e.lookup("REDIS_USERNAME"),
		Password: e.lookup("REDIS_PASSWORD"),
		DB:       db,
	}}
	s.opts.TLSConfig, err = e.tls(host)
	return s, err
}

// cluster returns the Redis Cluster of REDIS_CLUSTER_ADDRS.
func (e environment) cluster() (*server, error) {
	raw := e.lookup("REDIS_CLUSTER_ADDRS")
	var addrs []string
	for _, addr := range strings.Split(raw, ",") {
		addr = strings.TrimSpace(addr)
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return nil, fmt.Errorf("memory: REDIS_CLUSTER_ADDRS=%q: %q is not host:port", raw, addr)
		}
		addrs = append(addrs, addr)
	}
	switch db, err := e.db(); {
	case err != nil:
		return nil, err
	case db != 0:
		return nil, fmt.Errorf("memory: REDIS_DB=%d with REDIS_CLUSTER_ADDRS: a cluster has database 0 only", db)
	}
	s := &server{cluster: true, opts: redis.UniversalOptions{
		Addrs:    addrs,
		Username: e.lookup("REDIS_USERNAME"),
		Password: e.lookup("REDIS_PASSWORD"),
	}}
	var err error
	s.opts.TLSConfig, err = e.tls("")
	return s, err
}

// db returns the database number of REDIS_DB.
func (e environment) db() (int, error) {
	db := cmp.Or(e.lookup("REDIS_DB"), "0")
	n, err := strconv.Atoi(db)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("memory: REDIS_DB=%q is not a database number (0 or more)", db)
	}
	return n, nil
}

// tls returns the TLS configuration REDIS_TLS_CA_FILE asks for, checking
// that certificates name serverName (the address dialled when empty), or
// nil when it is unset.
func (e environment) tls(serverName string) (*tls.Config, error) {
	caFile := e.lookup("REDIS_TLS_CA_FILE")
	if caFile == "" {
		return nil, nil
	}
	roots, err := loadCA(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
}

// loadCA reads the PEM certificates of the CA file at path.
func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("memory: REDIS_TLS_CA_FILE: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("memory: REDIS_TLS_CA_FILE=%q holds no PEM certificate", path)
	}
	return roots, nil
}

// redactURL hides the password of rawURL, even when rawURL does not parse.
func redactURL(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return u.Redacted()
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if at := strings.LastIndexByte(rest, '@'); ok && at >= 0 {
		return scheme + "://xxxxx@" + rest[at+1:]
	}
	return rawURL
}

// defaultLoggers holds the default logger of each level, shared by every
// Memory that logs at that level, so that a Memory per tenant costs no
// logger.
var defaultLoggers sync.Map // slog.Level → *slog.Logger

// defaultLogger returns the logger that writes text to standard error at
// level.
func defaultLogger(level slog.Level) *slog.Logger {
	if l, ok := defaultLoggers.Load(level); ok {
		return l.(*slog.Logger)
	}
	l, _ := defaultLoggers.LoadOrStore(level, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	return l.(*slog.Logger)
}

// parseLevel parses MEMORY_LOG_LEVEL; WARNING, the Python library's name,
// means WARN.
func parseLevel(s string) (slog.Level, error) {
	var level slog.Level
	switch {
	case s == "":
		return slog.LevelWarn, nil
	case strings.EqualFold(s, "WARNING"):
		return slog.LevelWarn, nil
	case level.UnmarshalText([]byte(s)) != nil:
		return 0, fmt.Errorf("memory: MEMORY_LOG_LEVEL=%q: want DEBUG, INFO, WARN or ERROR", s)
	}
	return level, nil
}
