package memory

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// A conn sends the commands of one Memory, or a pipeline's batches, to its
// server. It owns every round trip: each ends by its clock's
// timeout, the Memory's or the pipeline's, and a write is sent once. go-redis
// resends a command whose reply it lost, which for a write means applying it
// twice when the first send did reach the server; the library resends
// writes itself, knowing what a resend means for each.
type conn struct {
	client redis.UniversalClient
	clock  *clock
	pipe   *pipeline // nil: every command goes alone
	// pipeWrites sends writes through pipe too, not only reads. Only the
	// writes whose key the queue holds while the pipeliner may still send
	// them go there: see sendingError.
	pipeWrites bool
	puts       *batcher // nil: every put goes alone
}

// A pipeline shares round trips among the commands that the Memory values
// over one client send alone at once, over go-redis's AutoPipeliner (its
// deferred face, whose waits end with their contexts). A command sent while
// no other is in flight goes straight to the client, so that a lone caller
// pays nothing for it.
//
// The pipeliner sends its batches on a context of its own: a command whose
// caller's deadline passed may still be sent later. A read sent late harms
// no one; a write sent late could land after a later write to its key, so
// a write goes through the pipeliner only where the offline queue then
// holds its key until the pipeliner is done with it (sendingError). Writes
// go once (NoRetry), which the pipeliner honours. A connection that stalls
// holds the pipeliner's batches until the socket's read timeout: the
// pipeliner has a client of its own, made from the options of the Memory's,
// whose socket timeouts are the pipeline's timeout, the WithTimeout of the
// first Memory over the client that asked for it, and which closing the
// pipeline closes once the batches of puts are done, each within that
// timeout, so that no batch of the pipeliner's, nor of reads, holds it up.
type pipeline struct {
	client redis.UniversalClient // the pipeliner's own
	ap     *redis.AutoPipeliner
	flying atomic.Int64 // commands sent alone, now
	// The batchers of every Memory over the client; nil over a cluster,
	// where the keys of one command must share a slot.
	puts, gets *batcher
}

// A sendingError is the error of a command whose context ended while the
// pipeliner, or a batcher, still had it: it may be sent yet, or may have
// been.
type sendingError struct {
	err  error // the context's
	send interface {
		WaitContext(context.Context) error // returns once the send is done
	}
}

func (e *sendingError) Error() string { return e.err.Error() }
func (e *sendingError) Unwrap() error { return e.err }

// done returns once the pipeliner is done with the command, which it will
// not send after that, or ctx ends, whose error it then returns.
func (e *sendingError) done(ctx context.Context) error {
	_ = e.send.WaitContext(ctx)
	return ctx.Err()
}

// newPipeline returns a pipeline over a client made from the options of
// base, with socket and dial timeouts of timeout, that tries each batch
// once, and dials once for it: the pipeliner sends on a context that never
// ends, so that a batch's retries, between which the client waits its
// retry backoff, would hold the pipeliner, and Close, while the server is
// lost (a client's default settings held it 6s, where its timeout was
// 100ms). A read that such a try failed goes again alone: see send.
func newPipeline(base redis.UniversalClient, timeout time.Duration) (*pipeline, error) {
	// The base client's configuration of maintenance notifications is
	// go-redis's to change under its lock.
	maint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	var client redis.UniversalClient
	switch c := base.(type) {
	case *redis.Client:
		o := *c.Options()
		o.ReadTimeout, o.WriteTimeout, o.MaintNotificationsConfig = timeout, timeout, maint
		o.DialTimeout, o.DialerRetries, o.MaxRetries = min(o.DialTimeout, timeout), 1, -1
		client = redis.NewClient(&o)
	case *redis.ClusterClient:
		o := *c.Options()
		o.ReadTimeout, o.WriteTimeout, o.MaintNotificationsConfig = timeout, timeout, maint
		o.DialTimeout, o.DialerRetries, o.MaxRetries = min(o.DialTimeout, timeout), 1, -1
		client = redis.NewClusterClient(&o)
	default:
		return nil, fmt.Errorf("a %T is not supported", base)
	}
	ap, err := client.AsyncAutoPipeline()
	if err != nil {
		client.Close()
		return nil, err
	}
	p := &pipeline{client: client, ap: ap}
	if _, single := client.(*redis.Client); single {
		c := &conn{client: client, clock: clockFor(timeout)}
		p.puts, p.gets = newPuts(c), newGets(c)
	}
	return p, nil
}

// close waits for the batches of puts under way, each of which ends by the
// timeout, then closes the pipeliner's client, which ends the pipeliner's
// batches under way and those of reads, which no write waits on, then the
// pipeliner.
func (p *pipeline) close() {
	if p.puts != nil {
		p.puts.wait()
	}
	p.client.Close()
	if p.gets != nil {
		p.gets.wait()
	}
	p.ap.Close()
}

// pipelineAlways sends every command that may go through the pipeliner
// there, lone ones included: the tests set it to run over it everything
// they run.
var pipelineAlways = false

// onceCmd is a command go-redis sends at most once.
type onceCmd struct{ *redis.Cmd }

func (onceCmd) NoRetry() bool { return true }

// write sends the command args once, within the timeout, through the
// pipeline with pipeWrites. When the pipeliner may send it yet, its error is
// a *sendingError.
func (c *conn) write(ctx context.Context, args ...any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	return sent(ctx, cmd, args, c.send(c.clock.bound(ctx), onceCmd{cmd}, c.pipeWrites))
}

// read sends the read command args within the timeout, retried as the
// client retries commands.
func (c *conn) read(ctx context.Context, args ...any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	return sent(ctx, cmd, args, c.send(c.clock.bound(ctx), cmd, true))
}

// sent returns cmd, of args, sent with err; or, when err is a
// *sendingError, a command of args that holds it, cmd being the
// pipeliner's still.
func sent(ctx context.Context, cmd *redis.Cmd, args []any, err error) *redis.Cmd {
	if _, ok := err.(*sendingError); ok {
		cmd = redis.NewCmd(ctx, args...)
		cmd.SetErr(err)
	}
	return cmd
}

// send sends cmd alone within ctx, through the pipeline when pipelined and
// others are in flight, and returns its error: a *sendingError when ctx
// ended while the pipeliner still had cmd, which is then not to be read. A
// read that the pipeliner's one try failed, its connection broken, goes
// again alone, retried as the client retries commands.
func (c *conn) send(ctx context.Context, cmd redis.Cmder, pipelined bool) error {
	p := c.pipe
	if p == nil || !pipelined {
		return c.client.Process(ctx, cmd)
	}
	defer p.flying.Add(-1)
	if p.flying.Add(1) == 1 && !pipelineAlways {
		return c.client.Process(ctx, cmd)
	}
	f := p.ap.Submit(ctx, cmd)
	if err := f.WaitContext(ctx); err != nil && err == ctx.Err() {
		return &sendingError{err: err, send: f}
	}
	err := cmd.Err()
	if err == nil || isReply(err) || ctx.Err() != nil {
		return err
	}
	if _, once := cmd.(onceCmd); once {
		return err // a write, sent once
	}
	cmd.SetErr(nil)
	return c.client.Process(ctx, cmd)
}

// get returns the string stored at key, nil when there is none. A key that
// is not a string gives a *DecodeError. Under load, the read goes in a batch
// of the pipeline's; a key for which the batch had no string, none or one of
// another type, which MGET does not tell apart, or whose batch failed, is
// read again alone, within the same timeout. A server that refuses MGET, an
// ACL without it, stops the batches of reads.
func (c *conn) get(ctx context.Context, key string) ([]byte, error) {
	ctx = c.clock.bound(ctx)
	if c.pipe != nil && c.pipe.gets != nil {
		if err := ctxErr(ctx); err != nil {
			return nil, err // nothing to put in a batch
		}
		bt, i, went := c.pipe.gets.join(ctx, key, len(key), key)
		if bt == nil {
			defer went()
		} else {
			v, err := bt.reply(ctx, i)
			if s, ok := err.(*sendingError); ok {
				return nil, s.err // a read sent late holds nothing up
			}
			if redis.IsPermissionError(err) {
				c.pipe.gets.stop()
			}
			if stored, ok := v.(string); ok {
				return []byte(stored), nil
			}
		}
	}
	cmd := redis.NewStringCmd(ctx, "get", key)
	err := c.send(ctx, cmd, true)
	switch s := err.(type) {
	case nil:
		return cmd.Bytes()
	case *sendingError:
		return nil, s.err // a read sent late holds nothing up
	}
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return nil, &DecodeError{Key: key, Err: err}
	}
	return nil, err
}

// writeAll sends the commands in one round trip, once: as one MULTI/EXEC
// transaction when tx, as a pipeline otherwise.
func (c *conn) writeAll(ctx context.Context, tx bool, commands [][]any) ([]*redis.Cmd, error) {
	bctx := c.clock.bound(ctx)
	pipe := c.client.Pipeline()
	if tx {
		pipe = c.client.TxPipeline()
	}
	cmds := make([]*redis.Cmd, len(commands))
	for i, args := range commands {
		cmds[i] = redis.NewCmd(bctx, args...)
		_ = pipe.Process(bctx, onceCmd{cmds[i]})
	}
	_, err := pipe.Exec(bctx)
	return cmds, err
}

// getExpiring returns the string stored at key, nil when there is none, and
// its PTTL, in one round trip. A key that is not a string gives a
// *DecodeError.
func (c *conn) getExpiring(ctx context.Context, key string) ([]byte, time.Duration, error) {
	gets, ttls, err := c.getAll(ctx, []string{key}, true)
	if err != nil && !isReply(err) {
		return nil, 0, err
	}
	stored, err := gets[0].Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, ttls[0].Val(), nil
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return nil, 0, &DecodeError{Key: key, Err: err}
	}
	return stored, ttls[0].Val(), err
}

// getAll reads the strings stored at keys, and with ttl their PTTLs, in one
// pipeline, which works across the slots of a cluster, within the timeout.
// Exec's error is the first failed command, a miss included.
func (c *conn) getAll(ctx context.Context, keys []string, ttl bool) ([]*redis.StringCmd, []*redis.DurationCmd, error) {
	bctx := c.clock.bound(ctx)
	pipe := c.client.Pipeline()
	gets := make([]*redis.StringCmd, len(keys))
	var ttls []*redis.DurationCmd
	for i, key := range keys {
		gets[i] = pipe.Get(bctx, key)
		if ttl {
			ttls = append(ttls, pipe.PTTL(bctx, key))
		}
	}
	_, err := pipe.Exec(bctx)
	return gets, ttls, err
}

// A head is what a key holds, as Watch tells it: a string, or the length
// and the last element of a list, which a Log is.
type head struct {
	stored []byte // the string, or the list's last element; nil when absent
	list   bool   // with stored nil: the key changed type as it was read
	length int64  // of a list
}

// heads reads what keys hold: one pipeline of GETs, and one of LLEN and
// LINDEX for the keys that hold lists.
func (c *conn) heads(ctx context.Context, keys []string) ([]head, error) {
	hs := make([]head, len(keys))
	cmds, _, err := c.getAll(ctx, keys, false)
	if err != nil && !isReply(err) {
		return nil, err
	}
	var lists []int
	for i, cmd := range cmds {
		switch err := cmd.Err(); {
		case err == nil:
			hs[i].stored = []byte(cmd.Val())
		case errors.Is(err, redis.Nil):
		case redis.HasErrorPrefix(err, "WRONGTYPE"):
			lists = append(lists, i)
		default:
			return nil, fmt.Errorf("%q: %w", keys[i], err)
		}
	}
	if len(lists) == 0 {
		return hs, nil
	}
	bctx := c.clock.bound(ctx)
	pipe := c.client.Pipeline()
	lens, lasts := make([]*redis.IntCmd, len(lists)), make([]*redis.StringCmd, len(lists))
	for j, i := range lists {
		lens[j], lasts[j] = pipe.LLen(bctx, keys[i]), pipe.LIndex(bctx, keys[i], -1)
	}
	if _, err := pipe.Exec(bctx); err != nil && !isReply(err) {
		return nil, err
	}
	for j, i := range lists {
		// A key that is no longer a list changed in between: a list with
		// no element here, whose change is told again.
		last, _ := lasts[j].Bytes()
		hs[i] = head{stored: last, list: true, length: lens[j].Val()}
	}
	return hs, nil
}

// ping asks the server for a reply within the timeout.
func (c *conn) ping(ctx context.Context) error {
	return c.client.Ping(c.clock.bound(ctx)).Err()
}

// A script is Lua source the server runs by its SHA-1.
type script struct {
	src, sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

// run runs s on keys with args, once, within the timeout: EVALSHA, then
// EVAL if the server does not have the script, which it did not run.
func (c *conn) run(ctx context.Context, s *script, keys []string, args ...any) *redis.Cmd {
	cmd := c.write(ctx, scriptArgs("evalsha", s.sha, keys, args)...)
	if isNoScript(cmd.Err()) {
		cmd = c.write(ctx, scriptArgs("eval", s.src, keys, args)...)
	}
	return cmd
}

func scriptArgs(verb, body string, keys []string, args []any) []any {
	all := make([]any, 0, 3+len(keys)+len(args))
	all = append(all, verb, body, len(keys))
	for _, key := range keys {
		all = append(all, key)
	}
	return append(all, args...)
}

func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

// runAll runs s once for each call in one pipeline, within the timeout,
// loading the script first if the server does not have it; the calls that
// met NOSCRIPT, which the server did not run, are sent again. It returns
// each call's command, and the error of the pipeline that is no reply of the
// server's.
func (c *conn) runAll(ctx context.Context, s *script, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	todo := make([]int, len(calls))
	for i := range todo {
		todo[i] = i
	}
	bctx := c.clock.bound(ctx)
	for loaded := false; ; loaded = true {
		pipe := c.client.Pipeline()
		for _, i := range todo {
			cmds[i] = redis.NewCmd(bctx, scriptArgs("evalsha", s.sha, calls[i].keys, calls[i].args)...)
			_ = pipe.Process(bctx, onceCmd{cmds[i]})
		}
		_, err := pipe.Exec(bctx)
		if isReply(err) {
			err = nil
		}
		var missing []int
		for _, i := range todo {
			if isNoScript(cmds[i].Err()) {
				missing = append(missing, i)
			}
		}
		if err != nil || len(missing) == 0 || loaded {
			return cmds, err
		}
		if err := c.client.ScriptLoad(bctx, s.src).Err(); err != nil {
			return cmds, err
		}
		todo = missing
	}
}

// A scriptCall is one run of a script in runAll.
type scriptCall struct {
	keys []string
	args []any
}

// nodes returns the servers that hold the keys: the client itself, or each
// master of a cluster. Listing a cluster's masters may reload its slots
// first, within the timeout.
func (c *conn) nodes(ctx context.Context) ([]redis.Cmdable, error) {
	cluster, ok := c.client.(*redis.ClusterClient)
	if !ok {
		return []redis.Cmdable{c.client}, nil
	}
	var mu sync.Mutex
	var nodes []redis.Cmdable
	err := cluster.ForEachMaster(c.clock.bound(ctx), func(_ context.Context, node *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		nodes = append(nodes, node)
		return nil
	})
	return nodes, err
}
