package memory_test

// Fault injection: the promise of SPEC §11 under lost replies, killed
// connections, killed and restarted servers, frozen, blackholed and busy
// servers, slow links and other writers. A write that returned nil is
// applied on the server exactly once, provided the process lives and the
// server is back within Close's budget.
//
// Every scenario counts the faults it injected and fails when it injected
// none, so that nothing passes vacuously. Real redis-server processes are
// required: redisserver skips or fails as configured.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/faultproxy"
	"github.com/redis-memory/memory/internal/redisserver"
)

const (
	faultPrefix  = "fault:"
	faultWriters = 4   // processes: one client, one Memory each
	faultN       = 500 // iterations per writer: an Append, an Update, an Incr each
	// faultPace spreads a writer's iterations over faultN*faultPace, so that
	// the faults strike during the run, not after it: while the server is
	// lost, queued writes return at once.
	faultPace    = 14 * time.Millisecond
	faultTimeout = 300 * time.Millisecond
	faultClose   = 20 * time.Second
)

// A faultItem is one Append of the workload: writer W's I-th.
type faultItem struct {
	W int `json:"w"`
	I int `json:"i"`
}

// faultClient returns a client on addr, one process's: it fails a refused
// dial at once and retries a failed command once (see countedMemory), holds
// to the context's deadline, and lets the queue's longer attempts through
// with long socket timeouts.
func faultClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  addr,
		MaxRetries:            1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
		ReadTimeout:           time.Minute,
		WriteTimeout:          time.Minute,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// faultMemory returns a Memory with prefix "fault:" over client. The test
// closes it; a cleanup closes it too, should the test end before.
func faultMemory(t *testing.T, client redis.UniversalClient, opts ...memory.Option) *memory.Memory {
	t.Helper()
	opts = append([]memory.Option{
		memory.WithClient(client), memory.WithPrefix(faultPrefix),
		memory.WithTimeout(faultTimeout), memory.WithCloseTimeout(faultClose),
	}, opts...)
	m, err := memory.New(context.Background(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// adminClient returns a client straight to the server at addr, not through
// any proxy, with room for slow commands: the view of an operator.
func adminClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// Fault scenario: the workload.

// A faultTally is what one writer's operations returned.
type faultTally struct {
	appendAcked, appendErr []bool // by I: the list's
	logAcked, logErr       []bool // by I: the Log's
	updAcked, updErr       int
	incAcked, incErr       int
	incUnknown             int // Incr errors wrapping ErrUnavailable: documented, may have applied
	errs                   map[string]int
	maxLatency             time.Duration
	maxLatencyOp           string
}

func newFaultTally() *faultTally {
	return &faultTally{
		appendAcked: make([]bool, faultN), appendErr: make([]bool, faultN),
		logAcked: make([]bool, faultN), logErr: make([]bool, faultN), errs: map[string]int{},
	}
}

func (tl *faultTally) record(op string, start time.Time, err error) {
	if d := time.Since(start); d > tl.maxLatency {
		tl.maxLatency, tl.maxLatencyOp = d, op
	}
	if err != nil {
		text := err.Error()
		if len(text) > 240 {
			text = text[:240] + "..."
		}
		tl.errs[op+": "+text]++
	}
}

// A faultRun is one scenario's state, as its fault sees it.
type faultRun struct {
	srv   *redisserver.Server
	proxy *faultproxy.Proxy // nil when the writers connect straight to srv
	admin *redis.Client     // straight to srv
	done  chan struct{}     // closed once the writers are done
	begun atomic.Int64      // iterations begun, all writers together
	total int64
}

// progress returns the fraction of the workload's iterations begun.
func (f *faultRun) progress() float64 { return float64(f.begun.Load()) / float64(f.total) }

// waitProgress waits until the workload is frac done, and reports false if
// the writers finished first.
func (f *faultRun) waitProgress(frac float64) bool {
	for f.progress() < frac {
		select {
		case <-f.done:
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	select {
	case <-f.done:
		return false
	default:
		return true
	}
}

// finished reports whether the writers are done.
func (f *faultRun) finished() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// A faultResult is what a fault did: how many times it struck, and notes.
type faultResult struct {
	count    int
	detail   string
	problems []string // evidence that a strike was not what it should be
}

// A faultKind is one scenario of the workload.
type faultKind struct {
	name       string
	serverArgs []string
	viaProxy   bool
	// strike injects the fault while the writers run, until they are done
	// or its plan is carried out, and leaves the server healthy. It runs in
	// its own goroutine.
	strike func(f *faultRun) faultResult
}

func TestFaultWorkload(t *testing.T) {
	kinds := []faultKind{
		{name: "lost replies", viaProxy: true, strike: strikeLostReplies},
		{name: "client kill", strike: strikeClientKill},
		{name: "kill -9 and restart", serverArgs: []string{"--appendonly", "yes", "--appendfsync", "always"}, strike: strikeKillRestart},
		{name: "frozen server", strike: strikeFreeze},
		{name: "black hole", viaProxy: true, strike: strikeBlackhole},
		{name: "busy server", strike: strikeBusyScript},
	}
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) { runFaultWorkload(t, kind) })
	}
}

// strikeLostReplies loses every 25th reply the server sends, all along: the
// server executes the command, the client sees its connection reset.
func strikeLostReplies(f *faultRun) faultResult {
	before := f.proxy.Stats().RepliesReset
	f.proxy.ResetEveryReply(25)
	<-f.done
	f.proxy.ResetEveryReply(0)
	st := f.proxy.Stats()
	return faultResult{count: st.RepliesReset - before, detail: fmt.Sprintf("replies reset %d, connections accepted %d", st.RepliesReset-before, st.Accepted)}
}

// strikeClientKill kills every normal client connection every 20ms.
func strikeClientKill(f *faultRun) faultResult {
	killed, rounds := 0, 0
	var problems []string
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-f.done:
			return faultResult{count: killed, detail: fmt.Sprintf("%d connections killed in %d rounds", killed, rounds), problems: problems}
		case <-tick.C:
		}
		n, err := f.admin.ClientKillByFilter(context.Background(), "TYPE", "normal", "SKIPME", "yes").Result()
		if err != nil {
			problems = append(problems, "CLIENT KILL: "+err.Error())
			continue
		}
		killed += int(n)
		rounds++
	}
}

// strikeKillRestart kills the server (kill -9) three times during the run,
// once it holds some of the log, and starts it again 300ms later, from its
// append-only file.
func strikeKillRestart(f *faultRun) faultResult {
	restarts := 0
	var problems []string
	// Some progress on the server first.
	for f.admin.Exists(context.Background(), faultPrefix+"log").Val() == 0 {
		if f.finished() {
			return faultResult{problems: []string{"the log never reached the server before the writers finished"}}
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, at := range []float64{0.2, 0.45, 0.7} {
		if !f.waitProgress(at) {
			problems = append(problems, fmt.Sprintf("writers done before progress %.2f", at))
			break
		}
		f.srv.Stop()
		time.Sleep(300 * time.Millisecond)
		f.srv.Restart()
		restarts++
	}
	return faultResult{count: restarts, detail: fmt.Sprintf("%d kill -9 and restarts", restarts), problems: problems}
}

// strikeFreeze stops the server process (SIGSTOP) for 3s, then for 2s
// more later on: connections stay open and nothing is answered.
func strikeFreeze(f *faultRun) faultResult {
	freezes := 0
	for _, plan := range []struct {
		at   float64
		span time.Duration
	}{{0.15, 3 * time.Second}, {0.65, 2 * time.Second}} {
		if !f.waitProgress(plan.at) {
			break
		}
		f.srv.Freeze()
		time.Sleep(plan.span)
		f.srv.Thaw()
		freezes++
	}
	return faultResult{count: freezes, detail: fmt.Sprintf("%d freezes", freezes)}
}

// strikeBlackhole makes the link between the writers and the server a black
// hole for 2s, twice: bytes vanish, nothing is closed.
func strikeBlackhole(f *faultRun) faultResult {
	holes := 0
	for _, at := range []float64{0.2, 0.6} {
		if !f.waitProgress(at) {
			break
		}
		f.proxy.Blackhole(true)
		time.Sleep(2 * time.Second)
		f.proxy.Blackhole(false)
		holes++
	}
	bytes := f.proxy.Stats().BlackholedBytes
	r := faultResult{count: holes, detail: fmt.Sprintf("%d black holes, %d bytes discarded", holes, bytes)}
	if bytes == 0 {
		r.count = 0
		r.problems = append(r.problems, "no byte was discarded by the black hole")
	}
	return r
}

// busyScript keeps the server busy for ARGV[1] milliseconds, measured with
// TIME: the server answers no one meanwhile.
const busyScript = `
local t0 = redis.call('TIME')
local start = tonumber(t0[1]) * 1000000 + tonumber(t0[2])
local limit = tonumber(ARGV[1]) * 1000
while true do
	local t = redis.call('TIME')
	if tonumber(t[1]) * 1000000 + tonumber(t[2]) - start >= limit then
		return 1
	end
end
`

// strikeBusyScript runs a script that busy-loops 2s on the server, twice.
func strikeBusyScript(f *faultRun) faultResult {
	runs := 0
	var problems []string
	var took []string
	for _, at := range []float64{0.2, 0.6} {
		if !f.waitProgress(at) {
			break
		}
		start := time.Now()
		err := f.admin.Eval(context.Background(), busyScript, nil, 2000).Err()
		d := time.Since(start)
		took = append(took, d.Round(time.Millisecond).String())
		switch {
		case err != nil:
			problems = append(problems, "busy script: "+err.Error())
		case d < 1500*time.Millisecond:
			problems = append(problems, fmt.Sprintf("the busy script took %v, less than 1.5s", d))
		default:
			runs++
		}
	}
	return faultResult{count: runs, detail: fmt.Sprintf("%d busy scripts, each took %v", runs, took), problems: problems}
}

// runFaultWorkload runs the workload of faultWriters processes on a fresh
// server while kind's fault strikes, then checks that every acknowledged
// write applied exactly once.
func runFaultWorkload(t *testing.T, kind faultKind) {
	srv := redisserver.Start(t, kind.serverArgs...)
	f := &faultRun{srv: srv, admin: adminClient(t, srv.Addr), done: make(chan struct{}), total: faultWriters * faultN}
	target := srv.Addr
	if kind.viaProxy {
		f.proxy = faultproxy.Start(t, srv.Addr)
		target = f.proxy.Addr()
	}
	mems := make([]*memory.Memory, faultWriters)
	for w := range mems {
		mems[w] = faultMemory(t, faultClient(t, target))
	}

	tctx := t.Context()
	start := time.Now()
	faultDone := make(chan faultResult, 1)
	go func() {
		var r faultResult
		defer func() { faultDone <- r }()
		r = kind.strike(f)
	}()

	tallies := make([]*faultTally, faultWriters)
	var wg sync.WaitGroup
	for w := range faultWriters {
		tl := newFaultTally()
		tallies[w] = tl
		m := mems[w]
		wg.Go(func() {
			list := memory.ListOf[faultItem](m, "log")
			history := memory.LogOf[faultItem](m, "history")
			for i := range faultN {
				if d := time.Until(start.Add(time.Duration(i) * faultPace)); d > 0 {
					time.Sleep(d) // pace the workload, so that it spans the faults
				}
				f.begun.Add(1)
				t0 := time.Now()
				err := list.Append(tctx, faultItem{W: w, I: i})
				tl.record("append", t0, err)
				tl.appendAcked[i], tl.appendErr[i] = err == nil, err != nil

				t0 = time.Now()
				err = history.Append(tctx, faultItem{W: w, I: i})
				tl.record("log append", t0, err)
				tl.logAcked[i], tl.logErr[i] = err == nil, err != nil

				t0 = time.Now()
				err = memory.Update(tctx, m, "updates", func(n *int) error { *n++; return nil })
				tl.record("update", t0, err)
				if err == nil {
					tl.updAcked++
				} else {
					tl.updErr++
				}

				t0 = time.Now()
				_, err = m.Incr(tctx, "incrs", 1)
				tl.record("incr", t0, err)
				switch {
				case err == nil:
					tl.incAcked++
				case errors.Is(err, memory.ErrUnavailable):
					tl.incUnknown++
					tl.incErr++
				default:
					tl.incErr++
				}
			}
		})
	}
	wg.Wait()
	writersDone := time.Since(start)
	close(f.done)
	fault := <-faultDone

	// The server is up: Close delivers everything within its budget.
	var closeErrs []string
	closeStart := time.Now()
	var delivered uint64
	for w, m := range mems {
		delivered += m.Stats().Delivered
		if err := m.Close(); err != nil {
			closeErrs = append(closeErrs, fmt.Sprintf("writer %d: %v", w, err))
		}
	}
	closeTook := time.Since(closeStart)

	raw := adminClient(t, srv.Addr)
	res := checkFaultLog(faultList(t, raw, "log"), tallies, func(tl *faultTally) ([]bool, []bool) { return tl.appendAcked, tl.appendErr })
	logRes := checkFaultLog(faultLogItems(t, raw, "history"), tallies, func(tl *faultTally) ([]bool, []bool) { return tl.logAcked, tl.logErr })
	updates, updErr := faultCounter(t, raw, "updates")
	incrs, incErr := faultCounter(t, raw, "incrs")

	var acked, errs faultTally
	errTexts := map[string]int{}
	var maxLatency time.Duration
	var maxLatencyOp string
	appendsAcked, appendErrs, logAcked, logErrs := 0, 0, 0, 0
	for _, tl := range tallies {
		for i := range faultN {
			appendsAcked += count(tl.appendAcked[i])
			appendErrs += count(tl.appendErr[i])
			logAcked += count(tl.logAcked[i])
			logErrs += count(tl.logErr[i])
		}
		acked.updAcked += tl.updAcked
		acked.incAcked += tl.incAcked
		errs.updErr += tl.updErr
		errs.incErr += tl.incErr
		errs.incUnknown += tl.incUnknown
		for k, v := range tl.errs {
			errTexts[k] += v
		}
		if tl.maxLatency > maxLatency {
			maxLatency, maxLatencyOp = tl.maxLatency, tl.maxLatencyOp
		}
	}
	t.Logf("%s: fault: %s", kind.name, fault.detail)
	t.Logf("%s: appends acked %d, errors %d; updates acked %d, errors %d, on server %d; incrs acked %d, errors %d (ErrUnavailable %d), on server %d",
		kind.name, appendsAcked, appendErrs, acked.updAcked, errs.updErr, updates, acked.incAcked, errs.incErr, errs.incUnknown, incrs)
	t.Logf("%s: list on server %d items: duplicates %d, lost %d, out of order %d, foreign %d; delivered from queues %d",
		kind.name, res.items, res.dups, res.lost, res.disorder, res.foreign, delivered)
	t.Logf("%s: Log appends acked %d, errors %d; on server %d items: duplicates %d, lost %d, out of order %d, foreign %d",
		kind.name, logAcked, logErrs, logRes.items, logRes.dups, logRes.lost, logRes.disorder, logRes.foreign)
	t.Logf("%s: writers took %v, Close %v, slowest op %v (%s), elapsed %v",
		kind.name, writersDone.Round(time.Millisecond), closeTook.Round(time.Millisecond), maxLatency.Round(time.Millisecond), maxLatencyOp, time.Since(start).Round(time.Millisecond))
	for _, k := range slices.Sorted(maps.Keys(errTexts)) {
		t.Logf("%s: error x%d: %s", kind.name, errTexts[k], k)
	}

	require.Empty(t, fault.problems, "the fault did not strike as planned")
	require.Positive(t, fault.count, "the fault never struck: %s", fault.detail)
	require.Empty(t, closeErrs, "Close with the server up")
	require.NoError(t, updErr)
	require.NoError(t, incErr)
	require.True(t, res.dups == 0 && res.lost == 0 && res.disorder == 0 && res.foreign == 0,
		"log: %d duplicates, %d acknowledged appends lost, %d out of order, %d foreign items (%d on the server, %d acked); examples: %v",
		res.dups, res.lost, res.disorder, res.foreign, res.items, appendsAcked, res.examples)
	require.True(t, logRes.dups == 0 && logRes.lost == 0 && logRes.disorder == 0 && logRes.foreign == 0,
		"Log: %d duplicates, %d acknowledged appends lost, %d out of order, %d foreign items (%d on the server, %d acked); examples: %v",
		logRes.dups, logRes.lost, logRes.disorder, logRes.foreign, logRes.items, logAcked, logRes.examples)
	requireCount(t, "updates", updates, acked.updAcked, errs.updErr)
	requireCount(t, "incrs", incrs, acked.incAcked, errs.incErr)
	writeErrs := map[string]int{}
	for k, v := range errTexts {
		if !strings.HasPrefix(k, "incr: ") {
			writeErrs[k] = v
		}
	}
	require.Zero(t, appendErrs+logErrs+errs.updErr, "Append and Update errors with the queue on: %v", writeErrs)
	require.Equal(t, errs.incUnknown, errs.incErr, "Incr errors other than ErrUnavailable (documented for a value not known here): %v", errTexts)
}

// requireCount checks a counter on the server against the acknowledged
// writes, and those that failed and may have applied.
func requireCount(t *testing.T, name string, got, acked, failed int) {
	t.Helper()
	if failed == 0 {
		require.Equal(t, acked, got, "%s: acknowledged %d, on the server %d (%+d)", name, acked, got, got-acked)
		return
	}
	require.True(t, got >= acked && got <= acked+failed,
		"%s: on the server %d, acknowledged %d, failed (may have applied) %d: want [%d, %d]", name, got, acked, failed, acked, acked+failed)
}

// A faultLogCheck is what checkFaultLog found.
type faultLogCheck struct {
	items, dups, lost, disorder, foreign int
	examples                             []string
}

// checkFaultLog checks items, as read from the server, against the writers'
// tallies, of which which picks the acknowledged and the failed appends:
// every acknowledged append present exactly once, none twice, each writer's
// in increasing order.
func checkFaultLog(items []faultItem, tallies []*faultTally, which func(*faultTally) (acked, failed []bool)) faultLogCheck {
	var r faultLogCheck
	r.items = len(items)
	seen := map[faultItem]int{}
	last := map[int]int{}
	note := func(format string, args ...any) {
		if len(r.examples) < 10 {
			r.examples = append(r.examples, fmt.Sprintf(format, args...))
		}
	}
	for pos, it := range items {
		if it.W < 0 || it.W >= len(tallies) || it.I < 0 || it.I >= faultN {
			r.foreign++
			note("foreign %+v at %d", it, pos)
			continue
		}
		seen[it]++
		if seen[it] == 2 {
			r.dups++
			note("duplicate %+v at %d", it, pos)
		}
		if prev, ok := last[it.W]; ok && it.I <= prev {
			r.disorder++
			note("writer %d: item %d after %d at %d", it.W, it.I, prev, pos)
		}
		last[it.W] = it.I
		if acked, failed := which(tallies[it.W]); !acked[it.I] && !failed[it.I] {
			r.foreign++
			note("never appended %+v at %d", it, pos)
		}
	}
	for w, tl := range tallies {
		acked, _ := which(tl)
		for i, ok := range acked {
			if ok && seen[faultItem{w, i}] == 0 {
				r.lost++
				note("lost %+v", faultItem{w, i})
			}
		}
	}
	return r
}

// faultList returns the items of the list name, read from the envelope on
// the server; none when the key is absent.
func faultList(t *testing.T, raw redis.Cmdable, name string) []faultItem {
	t.Helper()
	stored, err := raw.Get(context.Background(), faultPrefix+name).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	require.NoError(t, err)
	rec, err := memory.RecordOf(stored)
	require.NoError(t, err)
	var items []faultItem
	require.NoError(t, json.Unmarshal(rec.Value, &items), "%s holds %.200s", name, stored)
	return items
}

// faultLogItems returns the items of the Log name, read from the server.
func faultLogItems(t *testing.T, raw redis.Cmdable, name string) []faultItem {
	t.Helper()
	elements, err := raw.LRange(context.Background(), faultPrefix+name, 0, -1).Result()
	require.NoError(t, err)
	items := make([]faultItem, len(elements))
	for i, e := range elements {
		rec, err := memory.RecordOf([]byte(e))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(rec.Value, &items[i]), "%s holds %.200s", name, e)
	}
	return items
}

// count is 1 for true, 0 for false.
func count(b bool) int {
	if b {
		return 1
	}
	return 0
}

// faultCounter returns the integer value of name on the server, 0 when
// absent.
func faultCounter(t *testing.T, raw redis.Cmdable, name string) (int, error) {
	t.Helper()
	stored, err := raw.Get(context.Background(), faultPrefix+name).Bytes()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	rec, err := memory.RecordOf(stored)
	if err != nil {
		return 0, err
	}
	var n int
	if err := json.Unmarshal(rec.Value, &n); err != nil {
		return 0, fmt.Errorf("%s holds %.200s: %w", name, stored, err)
	}
	return n, nil
}

// Fault scenario: a slow link and a huge value.

// TestFaultSlowLinkHugeValue sets a 20 MB value over a link of 8 MiB/s, far
// more than a 500ms timeout lets through: the write is queued, its later
// attempts get longer until it lands, byte for byte, while small writes of
// the same Memory to other names keep reaching the server within 10s.
func TestFaultSlowLinkHugeValue(t *testing.T) {
	const (
		size      = 20 << 20
		bandwidth = 8 << 20
	)
	srv := redisserver.Start(t)
	proxy := faultproxy.Start(t, srv.Addr)
	proxy.SetBandwidth(bandwidth)
	m := faultMemory(t, faultClient(t, proxy.Addr()), memory.WithTimeout(500*time.Millisecond), memory.WithCloseTimeout(2*time.Minute))
	raw := adminClient(t, srv.Addr)
	tctx := t.Context()
	require.NoError(t, m.Set(tctx, "warm", 0))

	big := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	_, _ = rng.Read(big)
	for i, b := range big {
		big[i] = 'a' + b%26
	}
	want := string(big)
	big = nil

	// Small writes to other names, every 50ms, until the big value lands.
	type small struct {
		name string
		made time.Time
		err  error
	}
	smalls := make(chan small, 4096)
	stopSmall := make(chan struct{})
	var smallWG sync.WaitGroup
	smallWG.Go(func() {
		defer close(smalls)
		for i := 0; ; i++ {
			select {
			case <-stopSmall:
				return
			case <-time.After(50 * time.Millisecond):
			}
			s := small{name: fmt.Sprintf("small%d", i), made: time.Now()}
			s.err = m.Set(tctx, s.name, i)
			smalls <- s
		}
	})
	// Each small write must be on the server within 10s of being made.
	type seen struct {
		name  string
		delay time.Duration
		err   error
	}
	var results []seen
	var checkWG sync.WaitGroup
	checkWG.Go(func() {
		for s := range smalls {
			r := seen{name: s.name, err: s.err}
			for {
				if raw.Exists(context.Background(), faultPrefix+s.name).Val() == 1 {
					r.delay = time.Since(s.made)
					break
				}
				if time.Since(s.made) > 10*time.Second {
					r.delay = -1
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			results = append(results, r)
		}
	})

	encStart := time.Now()
	_, err := json.Marshal(want)
	require.NoError(t, err)
	encodeTook := time.Since(encStart) // Set encodes it too before its round trip

	start := time.Now()
	err = m.Set(tctx, "big", want)
	setTook := time.Since(start)
	pendingAfterSet := m.Pending()
	require.NoError(t, err, "a write that times out is queued")

	requireEventually(t, 90*time.Second, func() bool { return raw.StrLen(context.Background(), faultPrefix+"big").Val() > size },
		"the big value lands on the server")
	landed := time.Since(start)
	close(stopSmall)
	smallWG.Wait()
	checkWG.Wait()

	require.NoError(t, m.Close(), "Close with the server up")
	stored, err := raw.Get(context.Background(), faultPrefix+"big").Bytes()
	require.NoError(t, err)
	rec, err := memory.RecordOf(stored)
	require.NoError(t, err)
	var got string
	require.NoError(t, json.Unmarshal(rec.Value, &got))

	slowest, late, failed := time.Duration(0), 0, 0
	for _, r := range results {
		switch {
		case r.err != nil:
			failed++
			t.Logf("small write %s: %v", r.name, r.err)
		case r.delay < 0:
			late++
		case r.delay > slowest:
			slowest = r.delay
		}
	}
	t.Logf("encoding the big value takes %v here; big Set returned after %v with %d pending; landed after %v; %d small writes, slowest seen after %v, %d late, %d failed; proxy %+v",
		encodeTook.Round(time.Millisecond), setTook.Round(time.Millisecond), pendingAfterSet, landed.Round(time.Millisecond), len(results), slowest.Round(time.Millisecond), late, failed, proxy.Stats())

	require.Positive(t, pendingAfterSet, "the fault: the big Set did not cross the link within its timeout, and was queued")
	require.Greater(t, landed, time.Duration(size)*time.Second/bandwidth*8/10, "the fault: the link was slow")
	require.Less(t, setTook, 2*encodeTook+1500*time.Millisecond, "Set returns by its timeout (500ms) past encoding, queued")
	require.NotEmpty(t, results, "small writes were made while the big one crossed")
	require.Zero(t, failed, "small writes failed")
	require.Zero(t, late, "small writes not on the server within 10s")
	require.True(t, got == want, "the big value is the one set, byte for byte: got %d bytes, want %d", len(got), len(want))
}

// Fault scenario: queued appends while another process appends.

// TestFaultQueuedAppendsWhileOthersAppend cuts process A off the server and
// has it append 400 items, queued, while process B appends every 10ms
// throughout: once the server is back for A, all of A's items reach it
// within 10s, without a Flush, each exactly once, and none of B's is lost.
func TestFaultQueuedAppendsWhileOthersAppend(t *testing.T) {
	t.Run("black hole for A", func(t *testing.T) {
		srv := redisserver.Start(t)
		proxy := faultproxy.Start(t, srv.Addr)
		a := faultMemory(t, faultClient(t, proxy.Addr()))
		b := faultMemory(t, faultClient(t, srv.Addr))
		runQueuedAppends(t, srv, a, b, func() { proxy.Blackhole(true) }, func() {
			proxy.Blackhole(false)
		}, func() (int, string) {
			st := proxy.Stats()
			return int(min(st.BlackholedBytes, 1<<30)), fmt.Sprintf("%d bytes blackholed", st.BlackholedBytes)
		})
	})
	t.Run("kill -9 and restart", func(t *testing.T) {
		srv := redisserver.Start(t, "--appendonly", "yes", "--appendfsync", "always")
		a := faultMemory(t, faultClient(t, srv.Addr))
		b := faultMemory(t, faultClient(t, srv.Addr))
		kills := 0
		runQueuedAppends(t, srv, a, b, func() { srv.Stop(); kills++ }, srv.Restart, func() (int, string) {
			return kills, fmt.Sprintf("%d kills", kills)
		})
	})
}

// runQueuedAppends runs TestFaultQueuedAppendsWhileOthersAppend with cut
// and restore as the fault, and evidence its count.
func runQueuedAppends(t *testing.T, srv *redisserver.Server, a, b *memory.Memory, cut, restore func(), evidence func() (int, string)) {
	const n = 400
	tctx := t.Context()
	raw := adminClient(t, srv.Addr)
	listA, listB := memory.ListOf[faultItem](a, "shared"), memory.ListOf[faultItem](b, "shared")
	require.NoError(t, listA.Append(tctx, faultItem{W: 0, I: -1}), "A reaches the server first")

	var bAcked, bErr []int
	stopB := make(chan struct{})
	var bWG sync.WaitGroup
	bWG.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopB:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if err := listB.Append(tctx, faultItem{W: 1, I: i}); err != nil {
				bErr = append(bErr, i)
			} else {
				bAcked = append(bAcked, i)
			}
		}
	})
	requireEventually(t, 5*time.Second, func() bool { return len(faultList(t, raw, "shared")) > 5 }, "B appends")

	cut()
	cutAt := time.Now()
	var aErrs []string
	for i := range n {
		if err := listA.Append(tctx, faultItem{W: 0, I: i}); err != nil {
			aErrs = append(aErrs, err.Error())
		}
	}
	appendsTook := time.Since(cutAt)
	pendingA := a.Pending()
	if d := 2*time.Second - time.Since(cutAt); d > 0 {
		time.Sleep(d) // the outage lasts 2s: pacing the fault
	}
	restore()
	back := time.Now()

	countA := func() int {
		c := 0
		for _, it := range faultList(t, raw, "shared") {
			if it.W == 0 && it.I >= 0 {
				c++
			}
		}
		return c
	}
	requireEventually(t, 10*time.Second, func() bool { return countA() >= n }, "all of A's queued appends on the server within 10s of its return")
	deliveredAfter := time.Since(back)
	time.Sleep(200 * time.Millisecond) // B appends on after A's delivery
	close(stopB)
	bWG.Wait()
	require.NoError(t, a.Close(), "A's Close with the server up")
	require.NoError(t, b.Close(), "B's Close with the server up")

	items := faultList(t, raw, "shared")
	count := map[faultItem]int{}
	last := map[int]int{0: -2, 1: -1}
	dups, disorder := 0, 0
	for _, it := range items {
		count[it]++
		if count[it] == 2 {
			dups++
		}
		if it.I <= last[it.W] {
			disorder++
		}
		last[it.W] = it.I
	}
	lostA, lostB := 0, 0
	for i := -1; i < n; i++ {
		if count[faultItem{0, i}] == 0 {
			lostA++
		}
	}
	for _, i := range bAcked {
		if count[faultItem{1, i}] == 0 {
			lostB++
		}
	}
	strikes, detail := evidence()
	t.Logf("A: %d appends queued in %v, %d pending; on the server %v after its return; B: %d acked, %d errors; %d items; duplicates %d, out of order %d, lost A %d, lost B %d; fault: %s",
		n, appendsTook.Round(time.Millisecond), pendingA, deliveredAfter.Round(time.Millisecond), len(bAcked), len(bErr), len(items), dups, disorder, lostA, lostB, detail)
	require.Positive(t, strikes, "the fault struck: %s", detail)
	require.Positive(t, pendingA, "A's appends were queued")
	require.Empty(t, aErrs, "A's queued appends return nil")
	require.Empty(t, bErr, "B's appends return nil")
	require.Zero(t, dups, "duplicates")
	require.Zero(t, disorder, "items out of order")
	require.Zero(t, lostA, "A's items lost")
	require.Zero(t, lostB, "B's acknowledged items lost")
}

// Fault scenario: Flush and Close are bounded.

// TestFaultFlushBounded queues writes to a server that does not answer: two
// Flushes at once, each with a 100ms deadline, return within 300ms of being
// called, whatever the queue is doing; Close with a 500ms budget returns
// within 800ms, saying how many writes it could not deliver.
func TestFaultFlushBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(t *testing.T, srv *redisserver.Server, proxy *faultproxy.Proxy)
	}{
		{"frozen server", func(t *testing.T, srv *redisserver.Server, _ *faultproxy.Proxy) {
			srv.Freeze()
			t.Cleanup(srv.Thaw)
		}},
		{"black hole", func(t *testing.T, _ *redisserver.Server, proxy *faultproxy.Proxy) { proxy.Blackhole(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redisserver.Start(t)
			proxy := faultproxy.Start(t, srv.Addr)
			m := faultMemory(t, faultClient(t, proxy.Addr()), memory.WithCloseTimeout(500*time.Millisecond))
			tctx := t.Context()
			require.NoError(t, m.Set(tctx, "warm", 0))
			tc.cut(t, srv, proxy)

			require.NoError(t, m.Set(tctx, "a", 1), "queued")
			require.NoError(t, memory.ListOf[int](m, "list").Append(tctx, 1, 2))
			require.NoError(t, memory.Update(tctx, m, "n", func(n *int) error { *n++; return nil }))
			require.Positive(t, m.Pending(), "the fault: writes are queued")

			var mu sync.Mutex
			var took []time.Duration
			var flushErrs []error
			flushPair := func() {
				var wg sync.WaitGroup
				for range 2 {
					wg.Go(func() {
						ctx, cancel := context.WithTimeout(tctx, 100*time.Millisecond)
						defer cancel()
						start := time.Now()
						err := m.Flush(ctx)
						d := time.Since(start)
						mu.Lock()
						took, flushErrs = append(took, d), append(flushErrs, err)
						mu.Unlock()
					})
				}
				wg.Wait()
			}
			flushPair() // while the first deliveries are under way
			requireOffline(t, m)
			flushPair() // once the server is known lost
			time.Sleep(700 * time.Millisecond)
			flushPair() // around the flusher's probe, 1s after the loss
			require.NoError(t, m.Set(tctx, "b", 1))
			flushPair()

			pending := m.Pending()
			start := time.Now()
			err := m.Close()
			closeTook := time.Since(start)
			t.Logf("Flush took %v; Close took %v with %d pending: %v", took, closeTook.Round(time.Millisecond), pending, err)
			for i, d := range took {
				require.Less(t, d, 300*time.Millisecond, "Flush %d with a 100ms deadline", i)
				require.Error(t, flushErrs[i], "Flush %d: the server does not answer", i)
			}
			require.Less(t, closeTook, 800*time.Millisecond, "Close with a 500ms budget")
			require.Error(t, err)
			if !errors.Is(err, memory.ErrUnavailable) {
				require.ErrorContains(t, err, "queued writes not delivered")
			}
		})
	}
}

// Fault scenario: Pending is exact.

// TestFaultPendingExact has two Memory values over one client and one
// prefix queue writes while the server refuses connections: each one's
// Pending is never negative, and their sum is the number of entries queued:
// a Set, Delete or Expire merges with the entry before it of the same name
// when that is the same Memory's, and each list, map or Update operation is
// one entry. Once the server is back and both Flush, both are 0.
func TestFaultPendingExact(t *testing.T) {
	srv := redisserver.Start(t)
	proxy := faultproxy.Start(t, srv.Addr)
	client := faultClient(t, proxy.Addr())
	m1, m2 := faultMemory(t, client), faultMemory(t, client)
	mems := []*memory.Memory{m1, m2}
	tctx := t.Context()
	require.NoError(t, m1.Set(tctx, "warm", 0))
	require.NoError(t, m2.Set(tctx, "warm", 0))

	// Sample both counts all along.
	var minSeen [2]atomic.Int64
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			for i, m := range mems {
				if p := int64(m.Pending()); p < minSeen[i].Load() {
					minSeen[i].Store(p)
				}
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})

	proxy.Refuse(true)
	proxy.ResetAll()
	require.NoError(t, m1.Set(tctx, "s0", "first"), "queued")
	requireOffline(t, m1)
	require.Equal(t, 1, m1.Pending()+m2.Pending())
	require.Positive(t, proxy.Stats().Resets, "the fault: connections were refused")

	// A scripted sequence, with the exact count after each step. A Set,
	// Delete or Expire of a name merges with the last entry of the name if
	// it is the same Memory's: entries of different Memories stay apart, so
	// that the one a Close drops holds nothing of the other's.
	want := [2]int{1, 0}
	last := map[string]int{"s0": 0} // whose is the last entry of each name
	check := func(step string) {
		t.Helper()
		p1, p2 := m1.Pending(), m2.Pending()
		require.True(t, p1 >= 0 && p2 >= 0, "%s: Pending %d and %d", step, p1, p2)
		require.Equal(t, want[0]+want[1], p1+p2, "%s: the sum of Pending (%d + %d)", step, p1, p2)
		require.Equal(t, want, [2]int{p1, p2}, "%s: each Memory's Pending", step)
	}
	lww := func(i int, name string, do func(m *memory.Memory) error) {
		t.Helper()
		require.NoError(t, do(mems[i]))
		if o, ok := last[name]; !ok || o != i {
			want[i]++
		}
		last[name] = i
	}
	opOf := func(i int, do func(m *memory.Memory) error) {
		t.Helper()
		require.NoError(t, do(mems[i]))
		want[i]++
	}
	for r := range 3 {
		for j := range 4 {
			name := fmt.Sprintf("s%d", j)
			i := (r + j) % 2
			lww(i, name, func(m *memory.Memory) error { return m.Set(tctx, name, r) })
			check(fmt.Sprintf("round %d: Set %s by m%d", r, name, i+1))
		}
		opOf(r%2, func(m *memory.Memory) error { return memory.ListOf[int](m, "l1").Append(tctx, r) })
		check(fmt.Sprintf("round %d: Append", r))
		opOf((r+1)%2, func(m *memory.Memory) error { return memory.ListOf[int](m, "l1").Append(tctx, 10+r, 20+r) })
		check(fmt.Sprintf("round %d: Append of two", r))
		opOf(r%2, func(m *memory.Memory) error { return memory.MapOf[int](m, "map").Set(tctx, fmt.Sprint("k", r), r) })
		check(fmt.Sprintf("round %d: Map.Set", r))
		opOf((r+1)%2, func(m *memory.Memory) error {
			return memory.Update(tctx, m, "u", func(n *int) error { *n++; return nil })
		})
		check(fmt.Sprintf("round %d: Update", r))
	}
	lww(1, "s1", func(m *memory.Memory) error { return m.Delete(tctx, "s1") })
	check("Delete s1 by m2")
	lww(0, "s2", func(m *memory.Memory) error { return m.Expire(tctx, "s2", time.Hour) })
	check("Expire s2 by m1")
	lww(0, "s3", func(m *memory.Memory) error { return m.Delete(tctx, "s3") })
	check("Delete s3 by m1")
	lww(1, "s3", func(m *memory.Memory) error { return m.Set(tctx, "s3", "again") })
	check("Set s3 by m2 after its Delete")

	// Then both at once: the sum is still exact.
	var wg sync.WaitGroup
	for i, m := range mems {
		wg.Go(func() {
			for k := range 100 {
				_ = m.Set(tctx, fmt.Sprintf("c%d-%d", i, k%10), k)
				_ = memory.ListOf[int](m, "l2").Append(tctx, i*1000+k)
			}
		})
	}
	wg.Wait()
	total := want[0] + want[1] + 20 + 200
	require.Equal(t, total, m1.Pending()+m2.Pending(), "after concurrent writes: %d + %d", m1.Pending(), m2.Pending())
	require.True(t, m1.Pending() >= 0 && m2.Pending() >= 0)

	proxy.Refuse(false)
	flushCtx, cancel := context.WithTimeout(tctx, 15*time.Second)
	defer cancel()
	var flushErrs [2]error
	for i, m := range mems {
		wg.Go(func() { flushErrs[i] = m.Flush(flushCtx) })
	}
	wg.Wait()
	close(stopSampling)
	sampler.Wait()
	t.Logf("queued %d entries; after Flush: Pending %d and %d, lowest seen %d and %d; delivered %d and %d; proxy %+v",
		total, m1.Pending(), m2.Pending(), minSeen[0].Load(), minSeen[1].Load(), m1.Stats().Delivered, m2.Stats().Delivered, proxy.Stats())
	require.NoError(t, flushErrs[0])
	require.NoError(t, flushErrs[1])
	require.Zero(t, m1.Pending())
	require.Zero(t, m2.Pending())
	require.GreaterOrEqual(t, minSeen[0].Load(), int64(0), "m1's Pending was negative")
	require.GreaterOrEqual(t, minSeen[1].Load(), int64(0), "m2's Pending was negative")
	require.Equal(t, uint64(total), m1.Stats().Delivered+m2.Stats().Delivered, "every entry delivered, once")

	raw := adminClient(t, srv.Addr)
	require.JSONEq(t, "2", storedValue(t, raw, faultPrefix+"s0"))
	require.Zero(t, raw.Exists(tctx, faultPrefix+"s1").Val())
	require.JSONEq(t, `"again"`, storedValue(t, raw, faultPrefix+"s3"))
	require.Greater(t, raw.PTTL(tctx, faultPrefix+"s2").Val(), 50*time.Minute, "s2 expires in an hour")
	require.JSONEq(t, "[0, 10, 20, 1, 11, 21, 2, 12, 22]", storedValue(t, raw, faultPrefix+"l1"))
	require.JSONEq(t, `{"k0": 0, "k1": 1, "k2": 2}`, storedValue(t, raw, faultPrefix+"map"))
	require.JSONEq(t, "3", storedValue(t, raw, faultPrefix+"u"))
	var l2 []int
	require.NoError(t, json.Unmarshal([]byte(storedValue(t, raw, faultPrefix+"l2")), &l2))
	require.Len(t, l2, 200)
	require.NoError(t, m1.Close())
	require.NoError(t, m2.Close())
}

// Fault scenario: a queued Expire and a newer value.

// TestFaultQueuedExpire queues an Expire while the server refuses
// connections; meanwhile another writer stores a value of the name: a newer
// one survives the queued Expire, with no TTL; an older one gets it.
func TestFaultQueuedExpire(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ttl   time.Duration
		newer bool
	}{
		{"expire in 1h, newer value kept", time.Hour, true},
		{"expire now, newer value kept", 0, true},
		{"expire in 1h, older value expires", time.Hour, false},
		{"expire now, older value deleted", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redisserver.Start(t)
			proxy := faultproxy.Start(t, srv.Addr)
			m := faultMemory(t, faultClient(t, proxy.Addr()), memory.WithDefaultTTL(time.Hour))
			raw := adminClient(t, srv.Addr)
			tctx := t.Context()
			require.NoError(t, m.Set(tctx, "x", "mine"))

			proxy.Refuse(true)
			proxy.ResetAll()
			called := time.Now()
			require.NoError(t, m.Expire(tctx, "x", tc.ttl), "queued")
			requireOffline(t, m)
			require.Equal(t, 1, m.Pending(), "the fault: the Expire is queued")

			stamp := time.Now().UnixNano()
			value := `"newer"`
			if !tc.newer {
				stamp, value = called.Add(-time.Hour).UnixNano(), `"older"`
			}
			require.NoError(t, raw.Set(tctx, faultPrefix+"x", envelope(value, stamp), 0).Err())
			proxy.Refuse(false)
			flushCtx, cancel := context.WithTimeout(tctx, 15*time.Second)
			defer cancel()
			require.NoError(t, m.Flush(flushCtx))
			require.Zero(t, m.Pending())
			require.Equal(t, uint64(1), m.Stats().Delivered, "the queued Expire was delivered")

			pttl := raw.PTTL(tctx, faultPrefix+"x").Val()
			switch {
			case tc.newer:
				require.JSONEq(t, value, storedValue(t, raw, faultPrefix+"x"), "the newer value is there")
				require.Equal(t, time.Duration(-1), pttl, "and has no TTL")
			case tc.ttl > 0:
				require.JSONEq(t, value, storedValue(t, raw, faultPrefix+"x"))
				require.Greater(t, pttl, 50*time.Minute, "the older value got the queued TTL")
			default:
				require.Zero(t, raw.Exists(tctx, faultPrefix+"x").Val(), "the older value expired at once")
			}
			require.NoError(t, m.Close())
		})
	}
}

// Fault scenario: writes dropped at delivery.

// TestFaultDroppedAtDelivery queues writes that the server refuses when they
// are delivered: the next Flush, or else Close, reports them with an error
// wrapping ErrDropped, and Stats counts them. With nothing refused, Close
// returns nil.
func TestFaultDroppedAtDelivery(t *testing.T) {
	setup := func(t *testing.T) (*memory.Memory, *faultproxy.Proxy, *redis.Client) {
		srv := redisserver.Start(t)
		proxy := faultproxy.Start(t, srv.Addr)
		m := faultMemory(t, faultClient(t, proxy.Addr()), memory.WithDefaultTTL(time.Hour))
		return m, proxy, adminClient(t, srv.Addr)
	}
	cut := func(t *testing.T, m *memory.Memory, proxy *faultproxy.Proxy, write func() error) {
		t.Helper()
		proxy.Refuse(true)
		proxy.ResetAll()
		require.NoError(t, write(), "queued")
		requireOffline(t, m)
		require.Positive(t, m.Pending(), "the fault: the write is queued")
	}

	t.Run("insert out of range: Flush reports it", func(t *testing.T) {
		m, proxy, raw := setup(t)
		tctx := t.Context()
		list := memory.ListOf[string](m, "l")
		require.NoError(t, list.Append(tctx, "a", "b", "c"))
		requireList(t, list, "a", "b", "c")
		cut(t, m, proxy, func() error { return list.Insert(tctx, 3, "d") })
		// Another writer shortens the list meanwhile.
		require.NoError(t, raw.Set(tctx, faultPrefix+"l", envelope(`["a"]`, time.Now().UnixNano()), 0).Err())
		proxy.Refuse(false)
		flushCtx, cancel := context.WithTimeout(tctx, 15*time.Second)
		defer cancel()
		err := m.Flush(flushCtx)
		t.Logf("Flush: %v; stats %+v", err, m.Stats())
		require.ErrorIs(t, err, memory.ErrDropped)
		require.Positive(t, m.Stats().Dropped)
		require.Zero(t, m.Pending())
		require.JSONEq(t, `["a"]`, storedValue(t, raw, faultPrefix+"l"))
		require.NoError(t, m.Flush(flushCtx), "the drop was reported once")
		require.NoError(t, m.Close(), "nothing refused since the Flush that reported it")
	})

	t.Run("append to a Redis list: Close reports it", func(t *testing.T) {
		m, proxy, raw := setup(t)
		tctx := t.Context()
		require.NoError(t, m.Set(tctx, "warm", 0))
		cut(t, m, proxy, func() error { return memory.ListOf[string](m, "l").Append(tctx, "x") })
		require.NoError(t, m.Set(tctx, "other", "fine"), "queued too, and delivered")
		// Another client makes the name a Redis list meanwhile.
		require.NoError(t, raw.RPush(tctx, faultPrefix+"l", "y").Err())
		proxy.Refuse(false)
		err := m.Close()
		t.Logf("Close: %v; stats %+v", err, m.Stats())
		require.ErrorIs(t, err, memory.ErrDropped)
		require.NotErrorIs(t, err, memory.ErrUnavailable, "the server was reached")
		require.Positive(t, m.Stats().Dropped)
		require.Equal(t, []string{"y"}, raw.LRange(tctx, faultPrefix+"l", 0, -1).Val(), "the Redis list is as the other client left it")
		require.JSONEq(t, `"fine"`, storedValue(t, raw, faultPrefix+"other"), "the other queued write was delivered")
	})

	t.Run("nothing refused: Close returns nil", func(t *testing.T) {
		m, proxy, raw := setup(t)
		tctx := t.Context()
		require.NoError(t, m.Set(tctx, "warm", 0))
		cut(t, m, proxy, func() error { return memory.ListOf[string](m, "l").Append(tctx, "x") })
		require.NoError(t, m.Set(tctx, "other", "fine"))
		proxy.Refuse(false)
		require.NoError(t, m.Close())
		require.Zero(t, m.Stats().Dropped)
		require.JSONEq(t, `["x"]`, storedValue(t, raw, faultPrefix+"l"))
		require.JSONEq(t, `"fine"`, storedValue(t, raw, faultPrefix+"other"))
	})
}

// TestFaultSetIfAbsentLostReply loses the reply of a SetIfAbsent that the
// server applied: asked again at once, the server tells the call's own
// write by its bytes, and the call reports that it wrote.
func TestFaultSetIfAbsentLostReply(t *testing.T) {
	srv := redisserver.Start(t)
	proxy := faultproxy.Start(t, srv.Addr)
	m := faultMemory(t, faultClient(t, proxy.Addr()), memory.WithDefaultTTL(time.Hour))
	require.NoError(t, m.Set(ctx, "warm", 1)) // the connection's handshake is done

	proxy.ResetNextReplies(1)
	ok, err := m.SetIfAbsent(ctx, "lock", "mine")
	require.Equal(t, 1, proxy.Stats().RepliesReset, "the reply was lost")
	require.NoError(t, err)
	require.True(t, ok, "it did write")
	require.JSONEq(t, `"mine"`, storedValue(t, adminClient(t, srv.Addr), "fault:lock"))

	ok, err = m.SetIfAbsent(ctx, "lock", "again")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, m.Close())
}

// TestFaultLogAppendLostReply loses the reply of a Log append that the
// server applied, twice in a row: the append sent again finds its element
// at the end of the log, and the log holds it once.
func TestFaultLogAppendLostReply(t *testing.T) {
	srv := redisserver.Start(t)
	proxy := faultproxy.Start(t, srv.Addr)
	m := faultMemory(t, faultClient(t, proxy.Addr()), memory.WithDefaultTTL(time.Hour))
	log := memory.LogOf[faultItem](m, "history")
	require.NoError(t, log.Append(ctx, faultItem{0, 0})) // the connection's handshake is done

	proxy.ResetNextReplies(2)
	require.NoError(t, log.Append(ctx, faultItem{0, 1}, faultItem{0, 2}), "queued: its outcome is not known")
	require.Equal(t, 2, proxy.Stats().RepliesReset, "two replies lost: the first send's and the resend's")
	require.NoError(t, m.Flush(ctx))
	require.Equal(t, []faultItem{{0, 0}, {0, 1}, {0, 2}}, faultLogItems(t, adminClient(t, srv.Addr), "history"))
	require.NoError(t, m.Close())
}

// evalshaCalls finds the count of EVALSHA runs in INFO commandstats.
var evalshaCalls = regexp.MustCompile(`cmdstat_evalsha:calls=(\d+)`)

// TestFaultCopyAfterResend holds back the first send of a write until after
// its resend applied and the writer wrote again: the copy, arriving last,
// finds the write recorded, and it applies once; the copy of a Set or
// Delete finds a newer value, which it leaves alone.
func TestFaultCopyAfterResend(t *testing.T) {
	tests := []struct {
		name  string
		write func(m *memory.Memory, i int) error
		check func(t *testing.T, raw redis.Cmdable)
	}{
		{"set", func(m *memory.Memory, i int) error {
			return m.Set(ctx, "k", i)
		}, func(t *testing.T, raw redis.Cmdable) {
			require.JSONEq(t, "2", storedValue(t, raw, faultPrefix+"k"))
		}},
		{"delete", func(m *memory.Memory, i int) error {
			if i == 1 {
				return m.Delete(ctx, "k")
			}
			return m.Set(ctx, "k", i)
		}, func(t *testing.T, raw redis.Cmdable) {
			require.JSONEq(t, "2", storedValue(t, raw, faultPrefix+"k"))
		}},
		{"list append", func(m *memory.Memory, i int) error {
			return memory.ListOf[faultItem](m, "k").Append(ctx, faultItem{0, i})
		}, func(t *testing.T, raw redis.Cmdable) {
			require.Equal(t, []faultItem{{0, 0}, {0, 1}, {0, 2}}, faultList(t, raw, "k"))
		}},
		{"log append", func(m *memory.Memory, i int) error {
			return memory.LogOf[faultItem](m, "k").Append(ctx, faultItem{0, i})
		}, func(t *testing.T, raw redis.Cmdable) {
			require.Equal(t, []faultItem{{0, 0}, {0, 1}, {0, 2}}, faultLogItems(t, raw, "k"))
		}},
		{"incr", func(m *memory.Memory, i int) error {
			_, err := m.Incr(ctx, "k", int64(min(i, 1)))
			return err
		}, func(t *testing.T, raw redis.Cmdable) {
			n, err := faultCounter(t, raw, "k")
			require.NoError(t, err)
			require.Equal(t, 2, n)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redisserver.Start(t)
			proxy := faultproxy.Start(t, srv.Addr)
			admin := adminClient(t, srv.Addr)
			m := faultMemory(t, faultClient(t, proxy.Addr()), memory.WithDefaultTTL(time.Hour))
			require.NoError(t, tt.write(m, 0)) // the script is loaded, the value known
			runs := func() int {
				t.Helper()
				m := evalshaCalls.FindStringSubmatch(admin.Info(ctx, "commandstats").Val())
				require.NotNil(t, m, "EVALSHA in INFO commandstats")
				n, _ := strconv.Atoi(m[1])
				return n
			}
			before := runs()

			proxy.DelayNext([]byte(faultPrefix+"k\r\n"), 5*faultTimeout)
			require.NoError(t, tt.write(m, 1), "queued: its outcome is not known")
			require.Equal(t, 1, proxy.Stats().Delayed)
			require.NoError(t, m.Flush(ctx))
			require.NoError(t, tt.write(m, 2))
			require.Equal(t, before+2, runs(), "the resend and the next write ran, the first send not yet")

			require.Eventually(t, func() bool { return runs() == before+3 }, 10*time.Second, time.Millisecond, "the first send arrives")
			tt.check(t, admin)
			require.NoError(t, m.Close())
		})
	}
}

// Fault scenario: lost replies under Save, read back through the local cache.

// TestFaultSaveCached saves 500 versions of a struct through a proxy that
// resets every 7th reply (the cache's tracking connection's included), as
// one MSET and, with a TTL, as one MULTI/EXEC, and after each Save loads it
// back through the local cache: every Load sees the Save before it, whole,
// whether its read crossed the delivery of the queued fields or was reset
// (it then answers from what the process knows, which a delivered field
// leaves known), and at the end the server holds the last version, whole,
// none lost.
func TestFaultSaveCached(t *testing.T) {
	const saves = 500
	type triple struct{ A, B, C int }
	for name, opts := range map[string][]memory.Option{
		"mset":       nil,
		"multi/exec": {memory.WithDefaultTTL(time.Hour)},
	} {
		t.Run(name, func(t *testing.T) {
			srv := redisserver.Start(t)
			proxy := faultproxy.Start(t, srv.Addr)
			m := faultMemory(t, faultClient(t, proxy.Addr()), append(opts, memory.WithLocalCache(100))...)
			tctx := t.Context()
			require.NoError(t, m.Save(tctx, &triple{}))
			proxy.ResetEveryReply(7)
			stale, unknown := 0, 0
			for i := 1; i <= saves; i++ {
				require.NoError(t, m.Save(tctx, &triple{i, i, i}), "acknowledged, sent or queued")
				var got triple
				switch err := m.Load(tctx, &got); {
				case errors.Is(err, memory.ErrUnavailable):
					unknown++
					t.Logf("save %d: %v", i, err)
				case err != nil:
					t.Fatal(err)
				case got != triple{i, i, i}:
					stale++
					t.Logf("save %d: loaded %+v", i, got)
				}
			}
			proxy.ResetEveryReply(0)
			require.NoError(t, m.Close())
			stats := proxy.Stats()
			t.Logf("fault: %d replies reset; %d loads unavailable; %+v", stats.RepliesReset, unknown, m.Stats())
			require.Positive(t, stats.RepliesReset, "the fault happened")
			require.Zero(t, stale, "loads that missed the save before them")
			require.Zero(t, unknown, "loads of values not known here: every field's last save is")
			raw := adminClient(t, srv.Addr)
			for _, field := range []string{"A", "B", "C"} {
				require.JSONEq(t, strconv.Itoa(saves), storedValue(t, raw, faultPrefix+field), "the last acknowledged save, whole: none lost")
			}
		})
	}
}
