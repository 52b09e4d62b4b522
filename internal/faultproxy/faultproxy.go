// Package faultproxy is a TCP proxy on loopback that injects faults between a
// client and a server, for tests.
//
// Each accepted client connection gets its own connection to the target.
// Bytes travel in chunks, one per read of at most 32 KiB; every fault acts on
// chunks. Each direction of each connection is a pipe: a reader goroutine
// timestamps the chunks it reads and queues them (at most 1 MiB per
// direction, then it stops reading), and a writer goroutine delivers them in
// order, each no sooner than its due time, paced by the bandwidth limit.
//
// When either direction ends (EOF or an error), the chunks already queued in
// that direction are delivered and then both connections are closed.
//
// Blackhole decides chunk by chunk: a chunk is discarded if the blackhole is
// on when it is read or when it is due to be written. A connection accepted
// while the blackhole is on never dials the target and discards everything
// it reads until it is closed, even after the blackhole is turned off.
// Connections accepted before resume forwarding when it is turned off, with
// the discarded bytes gone. The blackhole itself closes nothing.
//
// DelayNext holds back one client chunk, chosen by its bytes, while the
// others pass: a command that reaches the server after its client gave up.
//
// A reply reset (ResetNextReplies, ResetEveryReply) is decided when the
// server chunk is read, and carried out in order when that chunk is due:
// chunks queued before it are still delivered, it and everything after it
// are not. The counters of Stats are updated before the connections are
// closed, and the counts of forwarded bytes before each write, so what a
// client has seen is already in Stats.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	bufSize     = 32 << 10 // bytes a read may return: the largest chunk
	pieceSize   = 16 << 10 // bytes written at a time under a bandwidth limit
	maxQueued   = 1 << 20  // bytes queued per direction before reads stop
	dialTimeout = 10 * time.Second
)

// Proxy is a TCP proxy that forwards connections to a target and injects
// faults. Its methods are safe for concurrent use.
type Proxy struct {
	target    string
	ln        *net.TCPListener
	ctx       context.Context // cancelled by Close: aborts dials
	cancel    context.CancelFunc
	wg        sync.WaitGroup // every goroutine the proxy started
	closeOnce sync.Once

	latency    atomic.Int64 // time.Duration
	bandwidth  atomic.Int64 // bytes per second; 0 is unlimited
	blackhole  atomic.Bool
	refuse     atomic.Bool
	toServer   atomic.Int64
	toClient   atomic.Int64
	blackholed atomic.Int64

	mu           sync.Mutex // guards the fields below
	closed       bool
	conns        map[*conn]struct{}
	delayMatch   []byte        // DelayNext's pattern; nil when off
	delayFor     time.Duration // DelayNext's delay
	delayed      int
	resetNext    int // server chunks still to reset
	resetEvery   int // reset every resetEvery-th server chunk; 0 is off
	replies      int // server chunks counted toward resetEvery
	accepted     int
	repliesReset int
	resets       int
}

// Stats counts what a Proxy did since it started.
type Stats struct {
	Accepted        int   // client connections accepted
	Open            int   // connections open now
	Delayed         int   // client chunks held back by DelayNext
	RepliesReset    int   // server chunks dropped by ResetNextReplies/ResetEveryReply (each also resets its connection)
	Resets          int   // connections reset by any fault (ResetAll, reply resets, Refuse)
	BlackholedBytes int64 // bytes discarded while blackholed
	ToServer        int64 // bytes forwarded to the server
	ToClient        int64 // bytes forwarded to the client
}

// Start listens on 127.0.0.1:0 and forwards each accepted connection to
// target. It stops (closing the listener and every connection, waiting for
// its goroutines) when the test ends (tb.Cleanup).
func Start(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("faultproxy: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, conns: make(map[*conn]struct{})}
	p.wg.Go(p.accept)
	tb.Cleanup(p.Close)
	return p
}

// Addr returns the host:port clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close closes the listener and every connection, and waits for every
// goroutine of p to exit. It is idempotent.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		conns := p.snapshot()
		p.mu.Unlock()
		p.cancel()
		_ = p.ln.Close()
		for _, c := range conns {
			c.shutdown(closeNormal)
		}
	})
	p.wg.Wait()
}

// SetLatency delays every chunk, in each direction, until d after it was
// read. A chunk keeps the latency set when it was read. Chunks stay in order
// and are not serialized: many chunks read at once are all due d later.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(max(d, 0))) }

// SetBandwidth limits each direction of each connection to bytesPerSecond,
// writing in pieces of 16 KiB, each when it would have passed the link;
// 0 (or less) is unlimited.
func (p *Proxy) SetBandwidth(bytesPerSecond int) { p.bandwidth.Store(int64(max(bytesPerSecond, 0))) }

// DelayNext holds back the next chunk read from a client that contains
// match, for d more than the latency: the command in it reaches the server
// late, even after its client has given up and closed the connection, as
// TCP delivers what a closed socket had sent. Other connections go on.
func (p *Proxy) DelayNext(match []byte, d time.Duration) {
	p.mu.Lock()
	p.delayMatch, p.delayFor = bytes.Clone(match), d
	p.mu.Unlock()
}

// takeDelay returns how long to hold back the client chunk data, just read.
func (p *Proxy) takeDelay(data []byte) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.delayMatch == nil || !bytes.Contains(data, p.delayMatch) {
		return 0
	}
	p.delayMatch = nil
	p.delayed++
	return p.delayFor
}

// ResetNextReplies makes the next n chunks read from any server connection
// lost replies: instead of forwarding such a chunk, the proxy resets its
// client connection (closed with linger 0, so the client sees ECONNRESET or
// EOF) and its server connection. The server has received and executed the
// command; the client never sees its reply. It replaces any earlier count;
// 0 turns it off.
func (p *Proxy) ResetNextReplies(n int) {
	p.mu.Lock()
	p.resetNext = max(n, 0)
	p.mu.Unlock()
}

// ResetEveryReply makes, from now on, every n-th chunk read from any server
// connection a lost reply, as ResetNextReplies does; 0 turns it off. Chunks
// taken by ResetNextReplies or discarded by Blackhole do not count.
func (p *Proxy) ResetEveryReply(n int) {
	p.mu.Lock()
	p.resetEvery = max(n, 0)
	p.replies = 0
	p.mu.Unlock()
}

// Blackhole turns the blackhole on or off. While on, connections forward
// nothing in either direction (bytes read are discarded) and nothing is
// closed: the link hangs. Connections accepted while it is on stay dead
// after it is turned off; the others then forward the bytes read from then
// on.
func (p *Proxy) Blackhole(on bool) { p.blackhole.Store(on) }

// ResetAll resets every open connection now: client side closed with
// linger 0, and its server connection.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	conns := p.snapshot()
	p.mu.Unlock()
	for _, c := range conns {
		c.shutdown(resetFault)
	}
}

// Refuse turns refusing on or off. While on, accepted connections are reset
// at once, like a server that is down while its port answers.
func (p *Proxy) Refuse(on bool) { p.refuse.Store(on) }

// Stats returns the counters of p.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		Accepted:        p.accepted,
		Delayed:         p.delayed,
		Open:            len(p.conns),
		RepliesReset:    p.repliesReset,
		Resets:          p.resets,
		BlackholedBytes: p.blackholed.Load(),
		ToServer:        p.toServer.Load(),
		ToClient:        p.toClient.Load(),
	}
}

// snapshot returns the open connections. p.mu must be held.
func (p *Proxy) snapshot() []*conn {
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	return conns
}

// accept accepts connections until the listener is closed.
func (p *Proxy) accept() {
	for {
		client, err := p.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or the like: try again soon.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = client.Close()
			return
		}
		p.accepted++
		if p.refuse.Load() {
			p.resets++
			p.mu.Unlock()
			_ = client.SetLinger(0)
			_ = client.Close()
			continue
		}
		c := &conn{
			p:      p,
			client: client,
			dead:   p.blackhole.Load(),
			done:   make(chan struct{}),
			up:     newQueue(),
			down:   newQueue(),
		}
		p.conns[c] = struct{}{}
		p.wg.Go(c.serve)
		p.mu.Unlock()
	}
}

// takeReply reports whether the server chunk just read is to be reset.
func (p *Proxy) takeReply() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resetNext > 0 {
		p.resetNext--
		return true
	}
	if p.resetEvery > 0 {
		p.replies++
		if p.replies >= p.resetEvery {
			p.replies = 0
			return true
		}
	}
	return false
}

// closeKind is how a connection is closed, and what is counted.
type closeKind int

const (
	closeNormal closeKind = iota // plain close: EOF, Close
	resetQuiet                   // reset, not a fault: the target is unreachable
	resetFault                   // reset by ResetAll
	resetReply                   // reset instead of forwarding a reply
)

// conn is a client connection and its server connection.
type conn struct {
	p      *Proxy
	client *net.TCPConn
	dead   bool          // accepted during a blackhole: discards everything
	done   chan struct{} // closed by shutdown
	up     *queue        // client to server
	down   *queue        // server to client

	mu     sync.Mutex
	server net.Conn
	closed bool
}

// serve dials the target and forwards until the connection is closed.
func (c *conn) serve() {
	p := c.p
	if c.dead {
		c.discard()
		c.shutdown(closeNormal)
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		c.shutdown(resetQuiet)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = server.Close()
		return
	}
	c.server = server
	c.mu.Unlock()
	p.wg.Go(func() { c.read(c.client, c.up, false) })
	p.wg.Go(func() { c.read(server, c.down, true) })
	p.wg.Go(func() { c.write(server, c.up, &p.toServer) })
	c.write(c.client, c.down, &p.toClient)
}

// discard reads the client of a dead connection until it ends.
func (c *conn) discard() {
	buf := make([]byte, bufSize)
	for {
		n, err := c.client.Read(buf)
		c.p.blackholed.Add(int64(n))
		if err != nil {
			return
		}
	}
}

// read reads chunks from src into q until src ends or the connection is
// closed. fromServer marks the server side, whose chunks may be reset.
func (c *conn) read(src net.Conn, q *queue, fromServer bool) {
	p := c.p
	defer q.finish()
	buf := make([]byte, bufSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			due := time.Now().Add(time.Duration(p.latency.Load()))
			if !fromServer {
				due = due.Add(p.takeDelay(buf[:n]))
			}
			switch {
			case p.blackhole.Load():
				p.blackholed.Add(int64(n))
			case fromServer && p.takeReply():
				q.push(chunk{due: due, reset: true})
				return
			default:
				if !q.push(chunk{due: due, data: bytes.Clone(buf[:n])}) {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// write writes the chunks of q to dst, each when it is due, until q ends or
// the connection is closed; then it closes the connection.
func (c *conn) write(dst net.Conn, q *queue, forwarded *atomic.Int64) {
	p := c.p
	var next time.Time // under a bandwidth limit: when the link is free
	for {
		ch, ok := q.pop()
		if !ok || !c.sleepUntil(ch.due) {
			c.shutdown(closeNormal)
			return
		}
		if ch.reset {
			c.shutdown(resetReply)
			return
		}
		if p.blackhole.Load() {
			p.blackholed.Add(int64(len(ch.data)))
			continue
		}
		for data := ch.data; len(data) > 0; {
			piece := data[:min(len(data), pieceSize)]
			data = data[len(piece):]
			if bw := p.bandwidth.Load(); bw > 0 {
				next = later(next, time.Now()).Add(time.Duration(int64(len(piece)) * int64(time.Second) / bw))
				if !c.sleepUntil(next) {
					c.shutdown(closeNormal)
					return
				}
			}
			// Counted first, so that a peer never has more than Stats says.
			forwarded.Add(int64(len(piece)))
			n, err := dst.Write(piece)
			if err != nil {
				forwarded.Add(int64(n - len(piece)))
				c.shutdown(closeNormal)
				return
			}
		}
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sleepUntil waits until t and reports whether the connection is still open.
func (c *conn) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-c.done:
			return false
		default:
			return true
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-c.done:
		return false
	case <-timer.C:
		return true
	}
}

// shutdown closes the connection as kind says, once, and reports whether
// this call closed it. It counts before closing, so that Stats already
// shows a fault its client has seen.
func (c *conn) shutdown(kind closeKind) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	server := c.server
	c.mu.Unlock()

	p := c.p
	p.mu.Lock()
	delete(p.conns, c)
	switch kind {
	case resetFault:
		p.resets++
	case resetReply:
		p.resets++
		p.repliesReset++
	}
	p.mu.Unlock()

	if kind != closeNormal {
		_ = c.client.SetLinger(0)
		if tcp, ok := server.(*net.TCPConn); ok {
			_ = tcp.SetLinger(0)
		}
	}
	_ = c.client.Close()
	if server != nil {
		_ = server.Close()
	}
	close(c.done)
	c.up.abort()
	c.down.abort()
	return true
}

// chunk is what one read returned, or a reply reset.
type chunk struct {
	due   time.Time // when it may be written
	data  []byte
	reset bool // reset the connection instead of writing
}

// queue is the chunks of one direction, read but not yet written.
type queue struct {
	mu       sync.Mutex
	cond     sync.Cond
	chunks   []chunk
	bytes    int
	finished bool // no more pushes: pop drains what is left
	aborted  bool // the connection is closed: pop and push fail
}

func newQueue() *queue {
	q := &queue{}
	q.cond.L = &q.mu
	return q
}

// push appends ch, waiting while the queue is full, and reports whether the
// connection is still open.
func (q *queue) push(ch chunk) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.bytes >= maxQueued && !q.aborted {
		q.cond.Wait()
	}
	if q.aborted {
		return false
	}
	q.chunks = append(q.chunks, ch)
	q.bytes += len(ch.data)
	q.cond.Broadcast()
	return true
}

// pop removes the first chunk, waiting for one, and reports false when the
// queue is finished and empty, or aborted.
func (q *queue) pop() (chunk, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.chunks) == 0 && !q.finished && !q.aborted {
		q.cond.Wait()
	}
	if q.aborted || len(q.chunks) == 0 {
		return chunk{}, false
	}
	ch := q.chunks[0]
	q.chunks[0] = chunk{}
	q.chunks = q.chunks[1:]
	q.bytes -= len(ch.data)
	q.cond.Broadcast()
	return ch, true
}

// finish marks the end of pushes.
func (q *queue) finish() {
	q.mu.Lock()
	q.finished = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// abort drops the chunks and wakes every waiter.
func (q *queue) abort() {
	q.mu.Lock()
	q.aborted = true
	q.chunks = nil
	q.bytes = 0
	q.cond.Broadcast()
	q.mu.Unlock()
}
