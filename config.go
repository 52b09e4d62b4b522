package memory

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds each operation of a Memory unless WithTimeout sets
// another bound.
const DefaultTimeout = 500 * time.Millisecond

// An Option configures New. Options win over the process environment, which
// wins over the file given by WithEnvFile, which wins over the defaults.
type Option func(*config)

type config struct {
	client     redis.UniversalClient
	url        string
	prefix     string
	hasPrefix  bool
	envFile    string
	logger     *slog.Logger
	timeout    time.Duration
	ttl        time.Duration
	queue      bool
	maxPending int
	options    *redis.Options // of the client New creates, when no WithClient
}

// WithClient makes the Memory use client, which stays the caller's: Close
// does not close it, and New sends nothing through it. Any number of Memory
// values can share one client.
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

// WithTimeout bounds every operation, DefaultTimeout when not set. It is the
// deadline of the context each operation passes to the client, and, on a
// client that New creates, also its dial, read, write and pool timeouts.
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
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
// queue one more name fails with an error wrapping ErrQueueFull.
func WithMaxPending(n int) Option {
	return func(c *config) { c.maxPending = n }
}

// newConfig applies opts over the environment and checks the result.
func newConfig(opts []Option) (*config, error) {
	c := &config{timeout: DefaultTimeout, queue: true, maxPending: DefaultMaxPending}
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
	if c.maxPending < 1 {
		return nil, fmt.Errorf("memory: WithMaxPending(%d): the bound must be positive", c.maxPending)
	}
	if c.ttl < 0 {
		return nil, fmt.Errorf("memory: WithDefaultTTL(%v): the TTL must not be negative", c.ttl)
	}
	switch {
	case c.hasPrefix:
		if why := prefixFault(c.prefix); why != "" {
			return nil, fmt.Errorf("%w: WithPrefix(%q): %s", ErrInvalidPrefix, c.prefix, why)
		}
	case env.lookup("REDIS_PREFIX") != "":
		c.prefix = env.lookup("REDIS_PREFIX")
		if why := prefixFault(c.prefix); why != "" {
			return nil, fmt.Errorf("%w: REDIS_PREFIX=%q: %s", ErrInvalidPrefix, c.prefix, why)
		}
	default:
		c.prefix = DefaultPrefix
	}
	if c.logger == nil {
		level, err := parseLevel(env.lookup("MEMORY_LOG_LEVEL"))
		if err != nil {
			return nil, err
		}
		c.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	if c.client == nil {
		if c.options, err = env.clientOptions(c.url); err != nil {
			return nil, err
		}
		c.options.DialTimeout = c.timeout
		c.options.ReadTimeout = c.timeout
		c.options.WriteTimeout = c.timeout
		c.options.PoolTimeout = c.timeout
		c.options.ContextTimeoutEnabled = true
		c.options.DialerRetries = 1 // a refused dial fails now, not after four more tries
		c.options.MaxRetries = 1
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
	return file, nil
}

func (e environment) lookup(name string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return e[name]
}

// clientOptions returns the client options of rawURL, else of REDIS_URL, else
// of REDIS_HOST, REDIS_PORT, REDIS_USERNAME, REDIS_PASSWORD and REDIS_DB.
func (e environment) clientOptions(rawURL string) (*redis.Options, error) {
	source := "WithURL"
	if rawURL == "" {
		rawURL, source = e.lookup("REDIS_URL"), "REDIS_URL"
	}
	if rawURL != "" {
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			var urlErr *url.Error
			if errors.As(err, &urlErr) {
				err = urlErr.Err // its text repeats the URL, password included
			}
			return nil, fmt.Errorf("memory: %s=%q: %w", source, redactURL(rawURL), err)
		}
		return opt, nil
	}
	host := cmp.Or(e.lookup("REDIS_HOST"), "localhost")
	port := cmp.Or(e.lookup("REDIS_PORT"), "6379")
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("memory: REDIS_PORT=%q is not a port number (1-65535)", port)
	}
	db := cmp.Or(e.lookup("REDIS_DB"), "0")
	n, err := strconv.Atoi(db)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("memory: REDIS_DB=%q is not a database number (0 or more)", db)
	}
	return &redis.Options{
		Addr:     net.JoinHostPort(host, port),
		Username: e.lookup("REDIS_USERNAME"),
		Password: e.lookup("REDIS_PASSWORD"),
		DB:       n,
	}, nil
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
