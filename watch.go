package memory

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"time"
)

// A Change is what a watched name holds after a change: its value, or that
// it has none.
type Change struct {
	Name     string          // the key less the Memory's prefix: "topic", or "conv_42:topic" in a scope
	Value    json.RawMessage // the stored value (the envelope's value member); nil when Deleted or not JSON
	Deleted  bool            // deleted or expired
	Modified time.Time       // the envelope's last_modified; zero when Deleted or unknown
}

// Watch returns a channel of the changes to names, or with no names to
// every key under the prefix, scopes' keys included ("conv_42:topic"),
// whoever makes them: this process, another one, the Python library,
// redis-cli, an expiry. For a Log the Value is its newest item.
//
// It is level-triggered: changes to one name may come as one Change, with
// the latest value, but after every change a Change comes with what the key
// then holds, unless it already holds again what the last Change of the
// name said. A consumer that falls behind never holds up anything else: its
// pending changes merge, name by name, while it does not receive.
//
// The server tells of changes itself (CLIENT TRACKING, broadcast mode, on
// every master of a cluster, and on the master of the moment under
// Sentinel), with no configuration of the server. One connection per
// server carries the tracking of every Memory over the client. When that
// connection breaks, or stops answering within half a second, Watch reads
// what it watches again once tracking is back, and tells what changed
// meanwhile. A server that refuses tracking (miniredis, Redis before 6, an
// ACL user without client|tracking) is an error from Watch.
//
// The channel is closed when ctx ends or the Memory is closed. Changes made
// before Watch returns are not told: what the keys hold as it returns is
// what later changes are told against.
func (m *Memory) Watch(ctx context.Context, names ...string) (<-chan Change, error) {
	if err := m.open("watch"); err != nil {
		return nil, err
	}
	w := &watcher{m: m, out: make(chan Change), wake: make(chan struct{}, 1), told: map[string]uint64{}}
	if len(names) > 0 {
		w.keys = map[string]bool{}
		for _, name := range names {
			key, err := m.key("watch", name)
			if err != nil {
				return nil, err
			}
			w.keys[key] = true
		}
	}
	unfollow, err := m.s.link.tracker.follow(m.s.conn.clock.bound(ctx), m.prefix, w, m.s.log)
	if err != nil {
		return nil, fmt.Errorf("memory: watch %q: %w", m.prefix, err)
	}
	// Tracking is on: what the keys hold now is what changes are told
	// against, and any change from now on is told.
	states, err := w.read(ctx, nil, true)
	if err != nil {
		unfollow()
		return nil, opError(ctx, "watch", m.prefix, err)
	}
	for key, s := range states {
		w.tell(key, s.digest)
	}
	err = m.startWatcher(func() {
		defer unfollow()
		defer close(w.out)
		w.run(ctx)
	})
	if err != nil {
		unfollow()
		return nil, err
	}
	return w.out, nil
}

// startWatcher runs fn for the Memory's Close to wait for, unless it is
// closed.
func (m *Memory) startWatcher(fn func()) error {
	m.s.watchMu.Lock()
	defer m.s.watchMu.Unlock()
	if err := m.open("watch"); err != nil {
		return err
	}
	m.s.watchers.Go(fn)
	return nil
}

// watchRetryMin and watchRetryMax bound the pause before a watcher reads
// again keys it could not read.
const (
	watchRetryMin = 50 * time.Millisecond
	watchRetryMax = 5 * time.Second
)

// A watcher tells one Watch's channel of the changes of its keys.
type watcher struct {
	m    *Memory
	keys map[string]bool // the keys watched; nil: every key under the prefix
	out  chan Change
	wake chan struct{} // tells run of changes; holds at most one

	mu    sync.Mutex          // guards dirty and all
	dirty map[string]struct{} // keys changed, not read since
	all   bool                // tracking broke: every key is to be read again

	// Only run uses these, and Watch before it starts run.
	told map[string]uint64 // the digest of each key's last state told, or read first; absent keys are not in it
}

// A state is what a key holds, as its Change says, and a digest of it.
type state struct {
	change Change
	digest uint64 // 0: absent
}

func (w *watcher) changed(keys []string) {
	w.mu.Lock()
	for _, key := range keys {
		if w.keys == nil || w.keys[key] {
			if w.dirty == nil {
				w.dirty = map[string]struct{}{}
			}
			w.dirty[key] = struct{}{}
		}
	}
	w.mu.Unlock()
	w.signal()
}

func (w *watcher) lost() {
	w.mu.Lock()
	w.all = true
	w.mu.Unlock()
	w.signal()
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take returns the keys changed since it was last called, and whether
// every key is to be read.
func (w *watcher) take() (dirty map[string]struct{}, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	dirty, all = w.dirty, w.all
	w.dirty, w.all = nil, false
	return dirty, all
}

// putBack marks again keys that could not be read.
func (w *watcher) putBack(dirty map[string]struct{}, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dirty == nil {
		w.dirty = map[string]struct{}{}
	}
	maps.Copy(w.dirty, dirty)
	w.all = w.all || all
}

// run reads the keys that changed and sends their changes, until ctx ends
// or the Memory closes.
func (w *watcher) run(ctx context.Context) {
	pending := map[string]state{} // changes not yet received, by key
	var order []string            // the keys of pending, oldest first; may hold keys no longer pending
	retry := time.NewTimer(0)
	<-retry.C
	defer retry.Stop()
	failures := 0
	for {
		for len(order) > 0 {
			if _, ok := pending[order[0]]; ok {
				break
			}
			order = order[1:]
		}
		var out chan<- Change
		var next state
		if len(order) > 0 {
			out, next = w.out, pending[order[0]]
		}
		select {
		case out <- next.change:
			key := order[0]
			order = order[1:]
			delete(pending, key)
			w.tell(key, next.digest)
			continue
		case <-w.wake:
		case <-retry.C:
		case <-ctx.Done():
			return
		case <-w.m.s.done:
			return
		}
		dirty, all := w.take()
		if len(dirty) == 0 && !all {
			continue
		}
		states, err := w.read(ctx, dirty, all)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.putBack(dirty, all)
			failures++
			retry.Reset(min(watchRetryMin<<min(failures-1, 10), watchRetryMax))
			continue
		}
		failures = 0
		for key, s := range states {
			_, queued := pending[key]
			switch {
			case s.digest == w.told[key]:
				delete(pending, key) // back to what was last told
			case !queued:
				order = append(order, key)
				fallthrough
			default:
				pending[key] = s
			}
		}
	}
}

// tell records that the consumer was told the state of key of digest d.
func (w *watcher) tell(key string, d uint64) {
	if d == 0 {
		delete(w.told, key)
		return
	}
	w.told[key] = d
}

// read returns the states of the keys dirty, or with all of every key
// watched: the named ones, or those under the prefix now and those told
// before, which may be gone.
func (w *watcher) read(ctx context.Context, dirty map[string]struct{}, all bool) (map[string]state, error) {
	keys := slices.Collect(maps.Keys(dirty))
	if all {
		switch {
		case w.keys != nil:
			keys = slices.Collect(maps.Keys(w.keys))
		default:
			names, err := w.m.collect(ctx, "watch", func(rest string) (string, bool) { return rest, true })
			if err != nil {
				return nil, err
			}
			for _, name := range names {
				keys = append(keys, w.m.prefix+name)
			}
			keys = append(keys, slices.Collect(maps.Keys(w.told))...)
			slices.Sort(keys)
			keys = slices.Compact(keys)
		}
	}
	states := make(map[string]state, len(keys))
	for batch := range slices.Chunk(keys, 1000) {
		heads, err := w.m.s.conn.heads(ctx, batch)
		if err != nil {
			return nil, err
		}
		for i, h := range heads {
			if h.list && h.stored == nil {
				continue // changing type: its change is told again
			}
			states[batch[i]] = w.m.stateOf(batch[i], h)
		}
	}
	return states, nil
}

// watchSeed seeds the digests of states.
var watchSeed = maphash.MakeSeed()

// stateOf returns the state of key as h says.
func (m *Memory) stateOf(key string, h head) state {
	c := Change{Name: key[len(m.prefix):]}
	if h.stored == nil {
		c.Deleted = true
		return state{change: c}
	}
	var hash maphash.Hash
	hash.SetSeed(watchSeed)
	if h.list {
		hash.Write(binary.AppendVarint(nil, h.length))
	}
	hash.Write(h.stored)
	if value, _, stamp, err := parts(h.stored); err == nil {
		c.Value = json.RawMessage(value)
		if stamp > 0 {
			c.Modified = time.Unix(0, stamp)
		}
	}
	return state{change: c, digest: hash.Sum64() | 1}
}
