// Command memory inspects and maintains a namespace of
// github.com/redis-memory/memory from the shell: it lists, reads, writes,
// expires, clears, dumps, restores and watches the names under a prefix,
// with the library's configuration, isolation and envelope.
//
//	go install github.com/redis-memory/memory/cmd/memory@latest
//	memory --prefix myapp:prod: keys
//
// Exit codes: 0 success, 1 failure (not found, server error), 2 usage (a
// bad command line: unknown command or flag, wrong arguments, an invalid
// name, scope or prefix).
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redislog"
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
	redislog.Use(slog.New(slog.NewTextHandler(os.Stderr, nil)), slog.LevelWarn)
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// A command is one verb of the tool.
type command struct {
	name, args, summary, example string
	flags                        func(fs *flag.FlagSet, o *options) // its own flags, if any
	nargs                        func(n int) bool                   // whether it takes n arguments
	run                          func(ctx context.Context, c *cli, args []string) error
	offline                      bool // runs without a Memory
	unreachable                  bool // runs when the server cannot be reached
}

var commands []*command

func init() {
	commands = []*command{
		{name: "keys", summary: "list the names, with the type of their value and their TTL (--scopes: the scopes)",
			example: "memory --prefix myapp: keys", nargs: none, run: keys,
			flags: func(fs *flag.FlagSet, o *options) {
				fs.BoolVar(&o.scopes, "scopes", false, "list the scopes that hold keys instead")
			}},
		{name: "get", args: "NAME", summary: "print the value of NAME as indented JSON (--raw: the stored string, as it is)",
			example: "memory get settings", nargs: exactly(1), run: get,
			flags: func(fs *flag.FlagSet, o *options) {
				fs.BoolVar(&o.raw, "raw", false, "print the stored string as it is, readable or not")
			}},
		{name: "set", args: "NAME JSON|-", summary: "set NAME to the JSON value, or to standard input with -, checked before anything is written",
			example: `memory set settings '{"theme": "dark"}' --ttl 1h`, nargs: exactly(2), run: set,
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
		{name: "watch", args: "[NAME...]", summary: "print what the names hold, then each change, by any writer, with the time and the writer's stamp, until interrupted; with no names, every key under the prefix",
			example: "memory watch status progress", nargs: anyNumber, run: watch},
		{name: "info", summary: "show the server, the prefix, where each setting comes from, and the namespace's keys and scopes",
			example: "memory --prefix myapp: info", nargs: none, run: info, unreachable: true},
		{name: "help", args: "[COMMAND]", summary: "show how to use the tool, or a command",
			example: "memory help set", nargs: atMost(1), run: help, offline: true},
	}
}

func none(n int) bool              { return n == 0 }
func anyNumber(int) bool           { return true }
func exactly(k int) func(int) bool { return func(n int) bool { return n == k } }
func atLeast(k int) func(int) bool { return func(n int) bool { return n >= k } }
func atMost(k int) func(int) bool  { return func(n int) bool { return n <= k } }

// options are the flags of every command, global ones first.
type options struct {
	url, envFile string
	prefix       prefix
	scope        scopes
	json         bool
	timeout      time.Duration
	version      bool

	raw, yes, dryRun, force, scopes bool
	ttl                             time.Duration
	output                          string
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
	fs.Var(&o.scope, "scope", "work in this scope of the prefix; repeat to nest (`name`)")
	fs.StringVar(&o.envFile, "env-file", o.envFile, "read variables from this .env `file` (default: ./.env when present)")
	fs.BoolVar(&o.json, "json", o.json, "print machine-readable JSON")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "bound of each round trip to the server")
	fs.BoolVar(&o.version, "version", o.version, "print the version and exit")
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
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	top := flag.NewFlagSet("memory", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	c.opts.global(top)
	switch err := top.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		usage(stdout)
		return exitOK
	case err != nil:
		return c.usageFailed("memory", err.Error(), "memory --help")
	case c.opts.version:
		fmt.Fprintln(stdout, version())
		return exitOK
	case top.NArg() == 0:
		return c.usageFailed("memory", "no command", "memory --help")
	}
	cmd := lookup(top.Arg(0))
	if cmd == nil {
		return c.usageFailed("memory", fmt.Sprintf("unknown command %q", top.Arg(0)), "memory --help")
	}
	fs := flag.NewFlagSet("memory "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.opts.global(fs)
	if cmd.flags != nil {
		cmd.flags(fs, &c.opts)
	}
	hint := "memory " + cmd.name + " --help"
	operands, err := parseInterspersed(fs, top.Args()[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		commandUsage(stdout, cmd)
		return exitOK
	case err != nil:
		return c.usageFailed("memory "+cmd.name, err.Error(), hint)
	case c.opts.version:
		fmt.Fprintln(stdout, version())
		return exitOK
	case !cmd.nargs(len(operands)):
		return c.usageFailed("memory "+cmd.name, "wrong number of arguments: want "+cmp.Or(cmd.args, "none"), hint)
	}
	if !cmd.offline {
		err = c.open(ctx, cmd)
		if c.root != nil {
			defer func() {
				if err := c.root.Close(); err != nil {
					fmt.Fprintln(stderr, err)
				}
			}()
		}
	}
	if err == nil {
		err = cmd.run(ctx, c, operands)
	}
	var u usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &u):
		return c.usageFailed("memory "+cmd.name, err.Error(), hint)
	case errors.Is(err, memory.ErrInvalidName):
		return c.usageFailed("memory "+cmd.name, err.Error(), hint)
	}
	fmt.Fprintln(stderr, err)
	return exitFailure
}

// usageFailed reports a bad command line in one line, and where to learn
// more.
func (c *cli) usageFailed(who, msg, hint string) int {
	fmt.Fprintf(c.stderr, "%s: %s\nRun '%s' for usage.\n", who, msg, hint)
	return exitUsage
}

// parseInterspersed parses the flags of fs among args, before, between and
// after the operands, which it returns. "--" ends the flags; a negative
// number ("-5", a JSON value) is an operand.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for len(args) > 0 {
		if args[0] == "--" {
			return append(operands, args[1:]...), nil
		}
		if isNegativeNumber(args[0]) {
			operands, args = append(operands, args[0]), args[1:]
			continue
		}
		end := len(args)
		for i, arg := range args {
			if isNegativeNumber(arg) || arg == "--" {
				end = i
				break
			}
		}
		if err := fs.Parse(args[:end]); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) > 0 {
			operands = append(operands, rest[0])
			rest = rest[1:]
		}
		args = append(rest, args[end:]...)
	}
	return operands, nil
}

func isNegativeNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil && strings.HasPrefix(s, "-")
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: memory [flags] command [flags] [arguments]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'memory command --help' for a command's flags and an example.\n\nFlags:\n")
	fs := flag.NewFlagSet("memory", flag.ContinueOnError)
	fs.SetOutput(w)
	new(options).global(fs)
	fs.PrintDefaults()
}

func commandUsage(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "Usage: memory [flags] %s [flags] %s\n\n%s.\n\nExample:\n  %s\n\nFlags:\n", cmd.name, cmd.args, capitalize(cmd.summary), cmd.example)
	fs := flag.NewFlagSet("memory "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(w)
	var o options
	o.global(fs)
	if cmd.flags != nil {
		cmd.flags(fs, &o)
	}
	fs.PrintDefaults()
}

func capitalize(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// version returns the tool's version, as the Go toolchain recorded it when
// it built the tool.
func version() string {
	v := "(devel)"
	if info, ok := debug.ReadBuildInfo(); ok {
		v = cmp.Or(info.Main.Version, v)
	}
	return "memory " + v
}

// open makes the Memory the flags describe, for cmd. The offline queue is
// off: a tool must not report success for a write that has not reached the
// server, and New fails when the server cannot be reached, but for a
// command that runs without it.
func (c *cli) open(ctx context.Context, cmd *command) error {
	opts := []memory.Option{memory.WithOfflineQueue(cmd.unreachable), memory.WithTimeout(c.opts.timeout)}
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
	root, err := memory.New(ctx, opts...)
	if c.opts.prefix.set && errors.Is(err, memory.ErrInvalidPrefix) {
		return usageError{fmt.Sprintf("--prefix %q: %v", c.opts.prefix.value, err)}
	}
	if err != nil {
		return err
	}
	c.root, c.mem = root, root
	for _, part := range c.opts.scope {
		if c.mem, err = c.mem.Scope(part); err != nil {
			return usageError{fmt.Sprintf("--scope %q: %v", part, err)}
		}
	}
	return nil
}
