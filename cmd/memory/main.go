// Command memory inspects and maintains a namespace of
// github.com/redis-memory/memory from the shell: it lists, reads, writes,
// expires, clears, dumps, restores and watches the names under a prefix,
// with the library's configuration, isolation and envelope.
//
//	go install github.com/redis-memory/memory/cmd/memory@latest
//	memory --prefix myapp:prod: keys
//
// Exit codes: 0 success, 1 failure (not found, server error), 2 usage.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/redis-memory/memory"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// A command is one verb of the tool.
type command struct {
	name, args, summary, example string
	flags                        func(fs *flag.FlagSet, o *options) // its own flags, if any
	nargs                        func(n int) bool                   // whether it takes n arguments
	run                          func(ctx context.Context, c *cli, args []string) error
}

var commands = []*command{
	{name: "keys", summary: "list the names, with the type of their value and their TTL",
		example: "memory --prefix myapp: keys", nargs: none, run: keys},
	{name: "get", args: "NAME", summary: "print the value of NAME as indented JSON (--raw: the stored envelope)",
		example: "memory get settings", nargs: exactly(1), run: get,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.BoolVar(&o.raw, "raw", false, "print the stored envelope as it is")
		}},
	{name: "set", args: "NAME JSON", summary: "set NAME to the JSON value (checked before anything is written)",
		example: `memory set --ttl 1h settings '{"theme": "dark"}'`, nargs: exactly(2), run: set,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.DurationVar(&o.ttl, "ttl", 0, "expire the value after this `duration`")
		}},
	{name: "del", args: "NAME...", summary: "delete the names (absent names are not an error)",
		example: "memory del draft scratch", nargs: atLeast(1), run: del},
	{name: "expire", args: "NAME DURATION", summary: "make NAME expire after DURATION (Go syntax: 90s, 1h30m)",
		example: "memory expire session 30m", nargs: exactly(2), run: expire},
	{name: "clear", summary: "delete every key under the prefix, scopes included, in batches",
		example: "memory --prefix myapp:tenant_7: clear --dry-run", nargs: none, run: clear,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.BoolVar(&o.yes, "yes", false, "do not ask for confirmation")
			fs.BoolVar(&o.dryRun, "dry-run", false, "list what would be deleted, and delete nothing")
		}},
	{name: "dump", summary: "write the namespace, values and last_modified, as one JSON document",
		example: "memory --prefix myapp: dump -o backup.json", nargs: none, run: dump,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.StringVar(&o.output, "o", "", "write to `file` instead of standard output")
		}},
	{name: "restore", args: "FILE", summary: "write a dump back; values the server holds newer are kept unless --force",
		example: "memory --prefix myapp: restore backup.json", nargs: exactly(1), run: restore,
		flags: func(fs *flag.FlagSet, o *options) { fs.BoolVar(&o.force, "force", false, "overwrite newer values too") }},
	{name: "watch", args: "NAME...", summary: "print each change of the names, with the time and the writer's stamp, until interrupted",
		example: "memory watch status progress", nargs: atLeast(1), run: watch,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.DurationVar(&o.interval, "interval", time.Second, "poll every `duration`")
		}},
}

func none(n int) bool              { return n == 0 }
func exactly(k int) func(int) bool { return func(n int) bool { return n == k } }
func atLeast(k int) func(int) bool { return func(n int) bool { return n >= k } }

// options are the flags of every command, global ones first.
type options struct {
	url, envFile string
	prefix       prefix
	scopes       scopes
	json         bool
	timeout      time.Duration

	raw, yes, dryRun, force bool
	ttl, interval           time.Duration
	output                  string
}

// scopes is the repeatable --scope flag.
type scopes []string

func (s *scopes) String() string     { return strings.Join(*s, ",") }
func (s *scopes) Set(v string) error { *s = append(*s, v); return nil }

// prefix is the --prefix flag, which remembers whether it was given: an
// empty --prefix, as an unset shell variable makes it, is an error, not the
// default prefix.
type prefix struct {
	value string
	set   bool
}

func (p *prefix) String() string     { return p.value }
func (p *prefix) Set(v string) error { p.value, p.set = v, true; return nil }

// global defines the global flags on fs, with the values they have as
// defaults, so that they can be given before or after the command's name.
func (o *options) global(fs *flag.FlagSet) {
	if o.timeout == 0 {
		o.timeout = 5 * time.Second
	}
	fs.StringVar(&o.url, "url", o.url, "the server, as redis://, rediss:// or unix:// `URL` (default: REDIS_URL, REDIS_HOST...)")
	fs.Var(&o.prefix, "prefix", "the namespace's key `prefix` (default: REDIS_PREFIX, else memory:)")
	fs.Var(&o.scopes, "scope", "work in this scope of the prefix; repeat to nest (`name`)")
	fs.StringVar(&o.envFile, "env-file", o.envFile, "read variables from this .env `file` (default: ./.env when present)")
	fs.BoolVar(&o.json, "json", o.json, "print machine-readable JSON")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "bound of each server operation")
}

// A cli is a parsed command line, ready to run.
type cli struct {
	opts           options
	root           *memory.Memory // as New returned it
	mem            *memory.Memory // the scope the flags name, or root
	stdin          io.Reader
	stdout, stderr io.Writer
}

// usageError is an error of the command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o options
	top := flag.NewFlagSet("memory", flag.ContinueOnError)
	top.SetOutput(stderr)
	o.global(top)
	top.Usage = func() { usage(stderr, top) }
	if err := top.Parse(args); err != nil {
		return parseExit(err)
	}
	if top.NArg() == 0 {
		usage(stderr, top)
		return exitUsage
	}
	cmd := lookup(top.Arg(0))
	if cmd == nil {
		fmt.Fprintf(stderr, "memory: unknown command %q\n", top.Arg(0))
		usage(stderr, top)
		return exitUsage
	}
	fs := flag.NewFlagSet("memory "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.global(fs)
	if cmd.flags != nil {
		cmd.flags(fs, &o)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: memory [flags] %s [flags] %s\n\n%s.\n\nExample:\n  %s\n\nFlags:\n", cmd.name, cmd.args, capitalize(cmd.summary), cmd.example)
		fs.PrintDefaults()
	}
	if err := fs.Parse(top.Args()[1:]); err != nil {
		return parseExit(err)
	}
	if !cmd.nargs(fs.NArg()) {
		fmt.Fprintf(stderr, "memory %s: wrong number of arguments: want %s\n", cmd.name, cmp.Or(cmd.args, "none"))
		fs.Usage()
		return exitUsage
	}
	c := &cli{opts: o, stdin: stdin, stdout: stdout, stderr: stderr}
	err := c.open(ctx)
	if c.root != nil {
		defer c.root.Close()
	}
	if err == nil {
		err = cmd.run(ctx, c, fs.Args())
	}
	var u usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &u):
		fmt.Fprintf(stderr, "memory %s: %v\n", cmd.name, err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "%v\n", err)
	return exitFailure
}

// parseExit is the exit code after a failed parse of flags, which the flag
// package has reported.
func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: memory [flags] command [flags] [arguments]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'memory command --help' for a command's flags and an example.\n\nFlags:\n")
	fs.PrintDefaults()
}

func capitalize(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// open makes the Memory the flags describe. The offline queue is off: a
// tool must not report success for a write that has not reached the server.
func (c *cli) open(ctx context.Context) error {
	opts := []memory.Option{memory.WithOfflineQueue(false), memory.WithTimeout(c.opts.timeout)}
	if c.opts.envFile == "" {
		if _, err := os.Stat(".env"); err == nil {
			c.opts.envFile = ".env"
		}
	}
	if c.opts.envFile != "" {
		opts = append(opts, memory.WithEnvFile(c.opts.envFile))
	}
	if c.opts.url != "" {
		opts = append(opts, memory.WithURL(c.opts.url))
	}
	if c.opts.prefix.set {
		opts = append(opts, memory.WithPrefix(c.opts.prefix.value))
	}
	if c.opts.ttl > 0 {
		opts = append(opts, memory.WithDefaultTTL(c.opts.ttl))
	}
	root, err := memory.New(ctx, opts...)
	if c.opts.prefix.set && errors.Is(err, memory.ErrInvalidPrefix) {
		return usageError{fmt.Sprintf("--prefix %q: %v", c.opts.prefix.value, err)}
	}
	if err != nil {
		return err
	}
	c.root, c.mem = root, root
	for _, part := range c.opts.scopes {
		if c.mem, err = c.mem.Scope(part); err != nil {
			return usageError{fmt.Sprintf("--scope %q: %v", part, err)}
		}
	}
	return nil
}
