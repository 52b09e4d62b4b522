package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// This file holds the tracker: the one follower, per client, of the keys
// that any writer changes, which Watch builds on.
//
// The server tells of changes itself, with broadcast tracking: a
// connection that runs CLIENT TRACKING ON BCAST PREFIX p... is sent the
// name of every key under those prefixes that any client changes, expires
// or evicts. Over RESP2 the names come as messages of the channel
// __redis__:invalidate, to the connection the tracking redirects to: the
// feed's own connection, which subscribes to it once tracking is on.
// Nothing of the server's configuration changes.
//
// One connection to each server (each master of a cluster) carries every
// prefix of every Memory over the client, so that many tenants do not make
// many connections. The prefixes of one connection may not overlap: it
// tracks those that no other holds, which cover the others. Its prefixes
// are fixed when it connects; a prefix not covered yet takes a new
// generation of connections, made and confirmed before the old one closes,
// so that no change falls between the two.
//
// A connection that breaks, or that no longer answers its pings, may have
// missed changes: the followers are told so, and read again what they
// follow once tracking is on again.

// invalidations is the channel the server tells tracked changes on.
const invalidations = "__redis__:invalidate"

// A feed idle for trackPing pings its server; a feed whose ping went
// unanswered for as long again is lost, and connects again, each command
// of its handshake within trackConnect. After repeated failures it waits
// from trackRetryMin, doubling up to trackRetryMax, between attempts. A cluster's masters are listed again
// every clusterRefresh, and after any failure.
const (
	trackPing      = 250 * time.Millisecond
	trackRetryMin  = 50 * time.Millisecond
	trackRetryMax  = 2 * time.Second
	trackConnect   = time.Second // for each command of a feed's handshake
	clusterRefresh = 10 * time.Second

	// liveFor is how long a feed may go without hearing from its server
	// and still be trusted to have told every change: its ping and the
	// pong's wait.
	liveFor = 2 * trackPing
)

// A follower is told of the keys under its prefix that any writer changed.
// Its methods are called with the tracker's lock held: they must not block,
// nor call the tracker.
type follower interface {
	changed(keys []string)
	// lost says that changes may have gone untold: tracking broke, or
	// the server flushed its keys.
	lost()
}

// A tracker follows the changes under the prefixes of its followers, on
// every server of one client.
type tracker struct {
	client redis.UniversalClient
	build  sync.Mutex // held while a generation is made

	gen atomic.Pointer[generation] // nil while no one follows; set with mu held

	mu        sync.Mutex                       // guards the fields below
	followers map[string]map[follower]struct{} // by prefix
	log       *slog.Logger                     // the last follower's
}

func newTracker(client redis.UniversalClient) *tracker {
	return &tracker{client: client, followers: map[string]map[follower]struct{}{}}
}

// follow tells f of the changes under prefix from now on, once tracking of
// prefix is confirmed, until the returned function is called. A server
// that refuses tracking is an error.
func (t *tracker) follow(ctx context.Context, prefix string, f follower, log *slog.Logger) (unfollow func(), err error) {
	t.mu.Lock()
	if t.followers[prefix] == nil {
		t.followers[prefix] = map[follower]struct{}{}
	}
	t.followers[prefix][f] = struct{}{}
	t.log = log
	t.mu.Unlock()
	unfollow = sync.OnceFunc(func() { t.unfollow(prefix, f) })
	if err := t.cover(ctx); err != nil {
		unfollow()
		return nil, err
	}
	return unfollow, nil
}

// cover makes sure a generation tracks every prefix followed.
func (t *tracker) cover(ctx context.Context) error {
	t.build.Lock()
	defer t.build.Unlock()
	t.mu.Lock()
	prefixes := coverOf(slices.Collect(maps.Keys(t.followers)))
	old, log := t.gen.Load(), t.log
	t.mu.Unlock()
	if old != nil && old.covers(prefixes) {
		return nil
	}
	g, err := startGeneration(ctx, t, prefixes, log)
	if err != nil {
		return err
	}
	t.mu.Lock()
	old = t.gen.Load()
	if len(t.followers) == 0 { // they all left meanwhile
		old, g = g, nil
	}
	t.gen.Store(g)
	t.mu.Unlock()
	if old != nil {
		old.stop()
	}
	return nil
}

// unfollow stops telling f of the changes under prefix; the last follower
// gone stops the tracking.
func (t *tracker) unfollow(prefix string, f follower) {
	t.mu.Lock()
	delete(t.followers[prefix], f)
	if len(t.followers[prefix]) == 0 {
		delete(t.followers, prefix)
	}
	var g *generation
	if len(t.followers) == 0 {
		g = t.gen.Swap(nil)
	}
	t.mu.Unlock()
	if g != nil {
		g.stop()
	}
}

// live reports whether every feed tracking the followers' prefixes heard
// from its server within the last liveFor: the changes made on the server
// until then have been told.
func (t *tracker) live() bool {
	g := t.gen.Load()
	if g == nil {
		return false
	}
	feeds := g.list.Load()
	if feeds == nil || len(*feeds) == 0 {
		return false
	}
	since := time.Now().Add(-liveFor).UnixNano()
	for _, f := range *feeds {
		if f.heard.Load() < since {
			return false
		}
	}
	return true
}

// dispatch tells each follower of the keys under its prefix.
func (t *tracker) dispatch(keys []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	to := map[follower][]string{}
	for _, key := range keys {
		// Prefixes end with the separator: only those ends of key can
		// be one.
		for i := range len(key) {
			if key[i] == separator {
				for f := range t.followers[key[:i+1]] {
					to[f] = append(to[f], key)
				}
			}
		}
	}
	for f, keys := range to {
		f.changed(keys)
	}
}

// lost tells every follower that changes may have gone untold.
func (t *tracker) lost() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, fs := range t.followers {
		for f := range fs {
			f.lost()
		}
	}
}

// coverOf returns the prefixes of ps that no other of ps starts: tracking
// them tracks all of ps, and no two of them overlap, as one connection's
// prefixes must not.
func coverOf(ps []string) []string {
	slices.Sort(ps)
	var cover []string
	for _, p := range ps {
		// Sorted, a prefix comes right before the prefixes it starts.
		if n := len(cover); n > 0 && strings.HasPrefix(p, cover[n-1]) {
			continue
		}
		cover = append(cover, p)
	}
	return cover
}

// A generation is the feeds that track one set of prefixes, one per
// server.
type generation struct {
	t        *tracker
	prefixes []string
	log      *slog.Logger
	ctx      context.Context // ended by stop
	cancel   context.CancelFunc
	kick     chan struct{} // asks a cluster's refresh to run now; holds at most one
	wg       sync.WaitGroup

	mu    sync.Mutex              // guards feeds
	feeds map[string]*feed        // by address
	list  atomic.Pointer[[]*feed] // the feeds, for live; set with mu held
}

// startGeneration connects feeds tracking prefixes to every server of t's
// client, and returns once each confirmed its subscription.
func startGeneration(ctx context.Context, t *tracker, prefixes []string, log *slog.Logger) (*generation, error) {
	gctx, cancel := context.WithCancel(context.Background())
	g := &generation{t: t, prefixes: prefixes, log: log, ctx: gctx, cancel: cancel,
		kick: make(chan struct{}, 1), feeds: map[string]*feed{}}
	nodes, err := g.nodes(ctx)
	if err != nil {
		g.stop()
		return nil, err
	}
	for _, o := range nodes {
		if err := g.add(ctx, o); err != nil {
			g.stop()
			return nil, err
		}
	}
	if _, ok := t.client.(*redis.ClusterClient); ok {
		g.wg.Go(g.refresh)
	}
	return g, nil
}

// covers reports whether g tracks every prefix of ps.
func (g *generation) covers(ps []string) bool {
	for _, p := range ps {
		if !slices.ContainsFunc(g.prefixes, func(q string) bool { return strings.HasPrefix(p, q) }) {
			return false
		}
	}
	return true
}

// nodes returns the options of the servers to track: the client's own, or
// those of each master of a cluster. The options of a Sentinel client
// carry its dialer, which finds the master of the moment.
func (g *generation) nodes(ctx context.Context) ([]*redis.Options, error) {
	switch c := g.t.client.(type) {
	case *redis.Client:
		return []*redis.Options{c.Options()}, nil
	case *redis.ClusterClient:
		var mu sync.Mutex
		var nodes []*redis.Options
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			nodes = append(nodes, node.Options())
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("memory: listing the masters to track: %w", err)
		}
		return nodes, nil
	}
	return nil, fmt.Errorf("memory: tracking changes over a %T is not supported", g.t.client)
}

// add connects a feed to the server of options o, unless one is
// connected there, and starts it.
func (g *generation) add(ctx context.Context, o *redis.Options) error {
	g.mu.Lock()
	_, ok := g.feeds[o.Addr]
	g.mu.Unlock()
	if ok {
		return nil
	}
	f, err := openFeed(ctx, o, g.prefixes)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		f.close()
		return g.ctx.Err()
	}
	g.feeds[o.Addr] = f
	g.listFeeds()
	g.wg.Go(func() { g.run(f) })
	return nil
}

// listFeeds lists the feeds of g for live. g.mu must be held.
func (g *generation) listFeeds() {
	list := slices.Collect(maps.Values(g.feeds))
	g.list.Store(&list)
}

// stop closes the feeds of g and waits for their loops to end.
func (g *generation) stop() {
	g.cancel()
	g.mu.Lock()
	for _, f := range g.feeds {
		f.close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// run reads the feed f until g stops: it dispatches the keys changed, pings
// an idle server, and connects again after a failure.
func (g *generation) run(f *feed) {
	pinged, failures := false, 0
	for {
		msg, err := f.receive(g.ctx)
		if g.ctx.Err() != nil || f.closed() {
			return
		}
		var netErr net.Error
		switch {
		case errors.As(err, &netErr) && netErr.Timeout() && !pinged:
			pinged = f.ping(g.ctx) == nil
			continue
		case err != nil:
			// Lost: a ping unanswered, a broken connection, or a message
			// the client cannot read, as a flush's, which names no key.
			f.heard.Store(0) // not live until subscribed again
			g.t.lost()
			if failures == 0 {
				g.log.Warn("memory: tracking of changes interrupted; what is watched is read again, and the local cache emptied", "addr", f.addr, "err", err)
			}
			g.refreshSoon()
			if netErr != nil && netErr.Timeout() {
				f.resubscribe(g.ctx)
			}
			failures++
			if failures > 1 && !sleepCtx(g.ctx, min(trackRetryMin<<min(failures-2, 10), trackRetryMax)) {
				return
			}
			pinged = false
			continue
		}
		pinged, failures = false, 0
		switch m := msg.(type) {
		case *redis.Message:
			if m.PayloadSlice != nil {
				g.t.dispatch(m.PayloadSlice)
			}
		case *redis.Subscription:
			// Subscribed again, on a new connection: what changed in
			// between went untold.
			g.t.lost()
		}
		f.heard.Store(time.Now().UnixNano())
	}
}

// refreshSoon asks a cluster's refresh to run now.
func (g *generation) refreshSoon() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// refresh lists a cluster's masters every clusterRefresh, and when a feed
// failed: it adds a feed for each new master, and drops those of servers
// that are no longer masters.
func (g *generation) refresh() {
	ticker := time.NewTicker(clusterRefresh)
	defer ticker.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-ticker.C:
		case <-g.kick:
		}
		ctx, cancel := context.WithTimeout(g.ctx, trackRetryMax)
		nodes, err := g.nodes(ctx)
		if err == nil {
			masters := map[string]bool{}
			added := false
			for _, o := range nodes {
				masters[o.Addr] = true
				g.mu.Lock()
				_, ok := g.feeds[o.Addr]
				g.mu.Unlock()
				if !ok {
					err = errors.Join(err, g.add(ctx, o))
					added = true
				}
			}
			g.mu.Lock()
			for addr, f := range g.feeds {
				if !masters[addr] {
					f.close()
					delete(g.feeds, addr)
					g.listFeeds()
				}
			}
			g.mu.Unlock()
			if added {
				g.t.lost()
			}
		}
		cancel()
		if err != nil && g.ctx.Err() == nil {
			g.log.Warn("memory: tracking the masters of the cluster", "err", err)
		}
	}
}

// A feed is one connection that tracks prefixes on one server, subscribed
// to what the server tells of their changes.
type feed struct {
	addr   string
	client *redis.Client // of one connection, for the subscription alone
	heard  atomic.Int64  // when the feed last heard from its server, in Unix nanoseconds, once it told what it heard

	mu sync.Mutex    // guards ps
	ps *redis.PubSub // nil once closed
}

// openFeed connects to the server of options base a client of its own,
// which turns tracking of prefixes on as it connects, and every time it
// connects again, and subscribes; it returns once the server confirmed.
func openFeed(ctx context.Context, base *redis.Options, prefixes []string) (*feed, error) {
	o := *base
	o.Protocol = 2 // invalidations as messages of a channel
	// Maintenance notifications come over RESP3 only; and the client's
	// own configuration of them is go-redis's to change under its lock.
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	o.PoolSize, o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns = 1, 0, 0, 0
	// The handshake of a connection that does not answer must not hold
	// the feed longer than a lost ping does.
	o.ReadTimeout, o.WriteTimeout = trackConnect, trackConnect
	o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if base.OnConnect != nil {
			if err := base.OnConnect(ctx, cn); err != nil {
				return err
			}
		}
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			return err
		}
		args := []any{"client", "tracking", "on", "redirect", id, "bcast"}
		for _, p := range prefixes {
			args = append(args, "prefix", p)
		}
		return cn.Do(ctx, args...).Err()
	}
	f := &feed{addr: o.Addr, client: redis.NewClient(&o)}
	f.ps = f.client.Subscribe(ctx, invalidations)
	timeout := trackRetryMax
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if _, err := f.ps.ReceiveTimeout(ctx, timeout); err != nil {
		f.close()
		return nil, fmt.Errorf("memory: tracking changes on %s (CLIENT TRACKING, Redis 6 or later): %w", o.Addr, err)
	}
	f.heard.Store(time.Now().UnixNano())
	return f, nil
}

// receive returns the next message of f, or a timeout error after trackPing
// without one.
func (f *feed) receive(ctx context.Context) (any, error) {
	f.mu.Lock()
	ps := f.ps
	f.mu.Unlock()
	if ps == nil {
		return nil, redis.ErrClosed
	}
	return ps.ReceiveTimeout(ctx, trackPing)
}

// closed reports whether f was closed.
func (f *feed) closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ps == nil
}

// ping asks the server for a pong on the subscription.
func (f *feed) ping(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ps == nil {
		return redis.ErrClosed
	}
	return f.ps.Ping(ctx)
}

// resubscribe drops the connection of f, which no longer answers, for a
// new one.
func (f *feed) resubscribe(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ps != nil {
		f.ps.Close()
		f.ps = f.client.Subscribe(ctx, invalidations)
	}
}

// close closes the subscription and the client of f.
func (f *feed) close() {
	f.mu.Lock()
	if f.ps != nil {
		f.ps.Close()
		f.ps = nil
	}
	f.mu.Unlock()
	f.client.Close()
}
