package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-memory/memory"
)

// A document is the JSON form of a dump.
type document struct {
	Prefix  string                   `json:"prefix"`
	Records map[string]memory.Record `json:"records"`
}

func keys(ctx context.Context, c *cli, _ []string) error {
	if c.opts.scopes {
		scopes, err := c.mem.Scopes(ctx)
		if err != nil {
			return err
		}
		return c.report(scopes, func() {
			for _, s := range scopes {
				fmt.Fprintln(c.stdout, s)
			}
		})
	}
	names, err := c.mem.Keys(ctx)
	if err != nil {
		return err
	}
	// One round trip reads every value and TTL; a value gone since Keys
	// listed it, or one that is not a string, shows as "?".
	bctx, cancel := c.bounded(ctx)
	defer cancel()
	cmds, err := c.mem.Client().Pipelined(bctx, func(p redis.Pipeliner) error {
		for _, name := range names {
			p.Get(bctx, c.mem.Prefix()+name)
			p.PTTL(bctx, c.mem.Prefix()+name)
			p.Type(bctx, c.mem.Prefix()+name)
		}
		return nil
	})
	if reply := redis.Error(nil); err != nil && !errors.As(err, &reply) {
		return err // no answer from the server, as opposed to a miss or WRONGTYPE
	}
	type row struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		TTLms int64  `json:"ttl_ms"` // -1: none
	}
	rows := make([]row, len(names))
	for i, name := range names {
		record, _ := memory.RecordOf([]byte(cmds[3*i].(*redis.StringCmd).Val()))
		ttl := cmds[3*i+1].(*redis.DurationCmd).Val()
		rows[i] = row{Name: name, Type: jsonType(record.Value), TTLms: -1}
		if cmds[3*i+2].(*redis.StatusCmd).Val() == "list" {
			rows[i].Type = "log"
		}
		if ttl > 0 {
			rows[i].TTLms = ttl.Milliseconds()
		}
	}
	return c.report(rows, func() {
		w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tTYPE\tTTL")
		for _, r := range rows {
			ttl := "-"
			if r.TTLms >= 0 {
				ttl = (time.Duration(r.TTLms) * time.Millisecond).Round(time.Second).String()
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", r.Name, r.Type, ttl)
		}
		w.Flush()
	})
}

// bounded returns ctx bounded by the --timeout, for a round trip the tool
// makes on the client itself.
func (c *cli) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.opts.timeout)
}

// jsonType names the JSON type of value, "?" for a value it cannot read.
func jsonType(value json.RawMessage) string {
	if len(value) == 0 {
		return "?"
	}
	switch value[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func get(ctx context.Context, c *cli, args []string) error {
	name := args[0]
	stored, err := c.stored(ctx, name)
	switch {
	case redis.HasErrorPrefix(errors.Unwrap(err), "WRONGTYPE"):
		return c.getLog(ctx, name)
	case err != nil:
		return err
	case stored == nil:
		return fmt.Errorf("%w: %q", memory.ErrNotFound, c.mem.Prefix()+name)
	case c.opts.raw: // readable or not
		_, err = fmt.Fprintf(c.stdout, "%s\n", stored)
		return err
	}
	record, err := memory.RecordOf(stored)
	if err != nil {
		return &memory.DecodeError{Key: c.mem.Prefix() + name, Err: fmt.Errorf("%w (--raw shows the stored string)", err)}
	}
	if c.opts.json {
		return json.NewEncoder(c.stdout).Encode(struct {
			Name string `json:"name"`
			memory.Record
		}{name, record})
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, record.Value, "", "  "); err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.stdout, pretty.String())
	return err
}

// getLog prints the items of the log name: their values, as one indented
// JSON array (--json: their records; --raw: the elements as stored, one a
// line).
func (c *cli) getLog(ctx context.Context, name string) error {
	key := c.mem.Prefix() + name
	bctx, cancel := c.bounded(ctx)
	defer cancel()
	elements, err := c.mem.Client().LRange(bctx, key, 0, -1).Result()
	if err != nil {
		return &memory.DecodeError{Key: key, Err: fmt.Errorf("neither a string nor a log: %w", err)}
	}
	if c.opts.raw {
		for _, e := range elements {
			fmt.Fprintln(c.stdout, e)
		}
		return nil
	}
	var values []json.RawMessage
	var log []memory.Record
	for i, e := range elements {
		r, err := memory.RecordOf([]byte(e))
		if err != nil {
			return &memory.DecodeError{Key: key, Err: fmt.Errorf("item %d: %w (--raw shows the stored elements)", i, err)}
		}
		values, log = append(values, r.Value), append(log, r)
	}
	if c.opts.json {
		return json.NewEncoder(c.stdout).Encode(struct {
			Name string          `json:"name"`
			Log  []memory.Record `json:"log"`
		}{name, log})
	}
	all, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "%s\n", all)
	return err
}

// stored returns the string stored at the key of name, nil when there is
// none.
func (c *cli) stored(ctx context.Context, name string) ([]byte, error) {
	// A name follows the rules of a scope's part: Scope checks it, with
	// no I/O.
	if _, err := c.mem.Scope(name); err != nil {
		return nil, err
	}
	key := c.mem.Prefix() + name
	bctx, cancel := c.bounded(ctx)
	defer cancel()
	stored, err := c.mem.Client().Get(bctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return nil, &memory.DecodeError{Key: key, Err: err}
	case err != nil:
		return nil, fmt.Errorf("memory: get %q: %w", key, err)
	}
	return stored, nil
}

// set stores its JSON argument, or standard input for "-", under the name.
func set(ctx context.Context, c *cli, args []string) error {
	value := []byte(args[1])
	if args[1] == "-" {
		var err error
		if value, err = io.ReadAll(c.stdin); err != nil {
			return fmt.Errorf("memory set: read standard input: %w", err)
		}
		value = bytes.TrimSpace(value)
	}
	if !json.Valid(value) {
		return usageError{fmt.Sprintf("the value of %q is not JSON: %q (quote strings: '\"text\"')", args[0], shorten(value))}
	}
	if c.opts.ttl > 0 {
		return c.mem.SetTTL(ctx, args[0], json.RawMessage(value), c.opts.ttl)
	}
	return c.mem.Set(ctx, args[0], json.RawMessage(value))
}

// shorten returns b, cut to 60 bytes for an error message.
func shorten(b []byte) string {
	if len(b) > 60 {
		return string(b[:57]) + "..."
	}
	return string(b)
}

func del(ctx context.Context, c *cli, args []string) error {
	for _, name := range args {
		if err := c.mem.Delete(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func expire(ctx context.Context, c *cli, args []string) error {
	ttl, err := time.ParseDuration(args[1])
	if err != nil {
		return usageError{fmt.Sprintf("DURATION %q: %v", args[1], err)}
	}
	return c.mem.Expire(ctx, args[0], ttl)
}

func clear(ctx context.Context, c *cli, _ []string) error {
	prefix := c.mem.Prefix()
	if !c.opts.yes || c.opts.dryRun {
		n, err := c.census(ctx, c.opts.dryRun)
		if err != nil {
			return err
		}
		if c.opts.dryRun {
			return c.report(map[string]any{"prefix": prefix, "keys": n.keys, "names": n.names, "scopes": n.scopes, "deleted": 0}, func() {
				for _, key := range n.keys {
					fmt.Fprintln(c.stdout, prefix+key)
				}
				fmt.Fprintf(c.stdout, "would delete %d keys under %q: %s\n", n.total(), prefix, n)
			})
		}
		fmt.Fprintf(c.stderr, "Delete %d keys under %q (%s)? [y/N] ", n.total(), prefix, n)
		answer, _ := bufio.NewReader(c.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return fmt.Errorf("memory: clear %q: not confirmed; nothing deleted (--yes skips the question)", prefix)
		}
	}
	var n int
	err := c.during(fmt.Sprintf("clearing %q", prefix), func() (err error) {
		n, err = c.mem.Clear(ctx)
		return err
	})
	if err != nil {
		return err
	}
	return c.report(map[string]any{"prefix": prefix, "deleted": n}, func() {
		fmt.Fprintf(c.stdout, "deleted %d keys under %q\n", n, prefix)
	})
}

// A census counts the keys under a prefix: those of names directly under
// it, and those in each scope, nested scopes counted in their top scope.
// A prefix owns every prefix under it, so Clear removes them all.
type census struct {
	names  int
	scopes map[string]int // top scope → keys in it
	keys   []string       // every key less the prefix, sorted, when asked for
}

// census walks the keys under the prefix, reading no values, and keeps them
// all when keep is true.
func (c *cli) census(ctx context.Context, keep bool) (census, error) {
	n := census{scopes: map[string]int{}}
	for key, err := range c.mem.Walk(ctx) {
		if err != nil {
			return n, err
		}
		if keep {
			n.keys = append(n.keys, key)
		}
		if scope, _, nested := strings.Cut(key, ":"); nested {
			n.scopes[scope]++
		} else {
			n.names++
		}
	}
	slices.Sort(n.keys)
	n.keys = slices.Compact(n.keys) // a key may come twice in a walk
	return n, nil
}

func (n census) total() int {
	total := n.names
	for _, k := range n.scopes {
		total += k
	}
	return total
}

// maxListedScopes is how many scopes a census names before it says how many
// more there are.
const maxListedScopes = 10

// String says how the keys split, such as "3 names, 9 keys in 2 scopes:
// dev (5), prod (4)".
func (n census) String() string {
	s := fmt.Sprintf("%d names", n.names)
	if len(n.scopes) == 0 {
		return s
	}
	scopes := slices.Sorted(maps.Keys(n.scopes))
	listed := make([]string, 0, maxListedScopes+1)
	for _, scope := range scopes[:min(len(scopes), maxListedScopes)] {
		listed = append(listed, fmt.Sprintf("%s (%d)", scope, n.scopes[scope]))
	}
	if more := len(scopes) - maxListedScopes; more > 0 {
		listed = append(listed, fmt.Sprintf("and %d more", more))
	}
	return fmt.Sprintf("%s, %d keys in %d scopes: %s", s, n.total()-n.names, len(scopes), strings.Join(listed, ", "))
}

func dump(ctx context.Context, c *cli, _ []string) error {
	var records map[string]memory.Record
	dumpErr := c.during(fmt.Sprintf("dumping %q", c.mem.Prefix()), func() (err error) {
		records, err = c.mem.Dump(ctx)
		return err
	})
	if records == nil {
		return dumpErr
	}
	out := c.stdout
	if c.opts.output != "" {
		f, err := os.Create(c.opts.output)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	if err := writeDocument(out, c.mem.Prefix(), records); err != nil {
		return err
	}
	return dumpErr
}

// writeDocument writes the dump of records as JSON, each value byte for byte
// as stored (json.Marshal would compact it), one record a line.
func writeDocument(w io.Writer, prefix string, records map[string]memory.Record) error {
	quote := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "{\n  \"prefix\": %s,\n  \"records\": {", quote(prefix))
	names := make([]string, 0, len(records))
	for name := range records {
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		if i > 0 {
			bw.WriteString(",")
		}
		r := records[name]
		if r.Log == nil {
			fmt.Fprintf(bw, "\n    %s: {\"value\": %s, \"last_modified\": %d}", quote(name), r.Value, r.LastModified)
			continue
		}
		fmt.Fprintf(bw, "\n    %s: {\"last_modified\": %d, \"log\": [", quote(name), r.LastModified)
		for j, item := range r.Log {
			if j > 0 {
				bw.WriteString(",")
			}
			fmt.Fprintf(bw, "\n      {\"value\": %s, \"last_modified\": %d}", item.Value, item.LastModified)
		}
		bw.WriteString("\n    ]}")
	}
	if len(names) > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteString("}\n}\n")
	return bw.Flush()
}

func restore(ctx context.Context, c *cli, args []string) error {
	data, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var doc document
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("memory: restore: %s is not a dump: %w", args[0], err)
	}
	var n int
	err = c.during(fmt.Sprintf("restoring %d records under %q", len(doc.Records), c.mem.Prefix()), func() (err error) {
		n, err = c.mem.Restore(ctx, doc.Records, c.opts.force)
		return err
	})
	if err != nil {
		return err
	}
	return c.report(map[string]any{"prefix": c.mem.Prefix(), "records": len(doc.Records), "written": n}, func() {
		fmt.Fprintf(c.stdout, "restored %d of %d records under %q (the others are unchanged or newer on the server)\n",
			n, len(doc.Records), c.mem.Prefix())
	})
}

func watch(ctx context.Context, c *cli, names []string) error {
	changes, err := c.mem.Watch(ctx, names...)
	if err != nil {
		return err
	}
	// What the names hold as the watch starts, then each change.
	for _, name := range names {
		stored, err := c.stored(ctx, name)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		case stored != nil:
			r, _ := memory.RecordOf(stored)
			c.change(memory.Change{Name: name, Value: r.Value, Modified: stamp(r.LastModified)})
		}
	}
	for change := range changes {
		c.change(change)
	}
	return nil
}

// stamp returns the time of a last_modified stamp, zero for none.
func stamp(lastModified int64) time.Time {
	if lastModified <= 0 {
		return time.Time{}
	}
	return time.Unix(0, lastModified)
}

// change prints one change that watch saw.
func (c *cli) change(ch memory.Change) {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if c.opts.json {
		var lastModified int64
		if !ch.Modified.IsZero() {
			lastModified = ch.Modified.UnixNano()
		}
		json.NewEncoder(c.stdout).Encode(struct {
			Time    string          `json:"time"`
			Name    string          `json:"name"`
			Deleted bool            `json:"deleted,omitempty"`
			Value   json.RawMessage `json:"value,omitempty"`
			Stamp   int64           `json:"last_modified,omitempty"`
		}{now, ch.Name, ch.Deleted, ch.Value, lastModified})
		return
	}
	switch {
	case ch.Deleted:
		fmt.Fprintf(c.stdout, "%s %s deleted\n", now, ch.Name)
	case ch.Modified.IsZero():
		fmt.Fprintf(c.stdout, "%s %s = %s\n", now, ch.Name, ch.Value)
	default:
		fmt.Fprintf(c.stdout, "%s %s = %s (written %s)\n", now, ch.Name, ch.Value, ch.Modified.UTC().Format(time.RFC3339Nano))
	}
}

// report prints v as JSON with --json, and calls human otherwise.
func (c *cli) report(v any, human func()) error {
	if c.opts.json {
		return json.NewEncoder(c.stdout).Encode(v)
	}
	human()
	return nil
}

// during runs fn, which does what doing says, and while it runs tells a
// person at a terminal, every half second, how long it has been running.
// With standard error not a terminal it prints nothing.
func (c *cli) during(doing string, fn func() error) error {
	f, ok := c.stderr.(*os.File)
	if !ok {
		return fn()
	}
	if info, err := f.Stat(); err != nil || info.Mode()&os.ModeCharDevice == 0 {
		return fn()
	}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		ticker := time.NewTicker(500 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				fmt.Fprintf(f, "\r%s... %v", doing, time.Since(start).Round(time.Second))
			}
		}
	}()
	err := fn()
	close(done)
	fmt.Fprintf(f, "\r%s: done in %v\n", doing, time.Since(start).Round(time.Millisecond))
	return err
}
