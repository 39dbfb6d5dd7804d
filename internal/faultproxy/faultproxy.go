// Package faultproxy is a TCP proxy that tests put between pgoutbox and
// PostgreSQL to inject network faults: added latency, a cut (every
// connection closed, new ones refused), and a black hole (connections stay
// open but nothing gets through: the half-open socket a relay must not hang
// on forever). Its upstream can move, so that clients keep one address
// while the server restarts on another port.
//
// It is a few dozen lines instead of Toxiproxy because Toxiproxy's
// in-process use needs its HTTP API server, Prometheus and zerolog.
package faultproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

type mode int32

const (
	pass mode = iota
	cut
	blackhole
)

// Proxy forwards connections from its address to an upstream address.
type Proxy struct {
	ln       net.Listener
	upstream atomic.Value // string
	mode     atomic.Int32
	latency  atomic.Int64 // nanoseconds added before each forwarded chunk
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// Start listens on a free loopback port and forwards to upstream (host:port).
func Start(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, conns: map[net.Conn]struct{}{}}
	p.upstream.Store(upstream)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetUpstream moves new connections to another upstream.
func (p *Proxy) SetUpstream(addr string) { p.upstream.Store(addr) }

// SetLatency delays every forwarded chunk, both ways, by d.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mode.Store(int32(cut))
	p.closeAll()
}

// Blackhole keeps connections open but forwards nothing, and accepts new
// connections that go nowhere, until Restore: what a half-open network looks
// like from both ends. Connections that lived through it are closed on
// Restore, as their streams lost bytes.
func (p *Proxy) Blackhole() { p.mode.Store(int32(blackhole)) }

// Restore forwards again.
func (p *Proxy) Restore() {
	if mode(p.mode.Swap(int32(pass))) == blackhole {
		p.closeAll()
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.closeAll()
	p.wg.Wait()
}

func (p *Proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *Proxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		if mode(p.mode.Load()) == cut {
			_ = client.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	p.track(client)
	defer p.untrack(client)
	defer func() { _ = client.Close() }()
	server, err := net.DialTimeout("tcp", p.upstream.Load().(string), 5*time.Second)
	if err != nil {
		return
	}
	p.track(server)
	defer p.untrack(server)
	defer func() { _ = server.Close() }()
	done := make(chan struct{}, 2)
	go func() { p.pipe(server, client); done <- struct{}{} }()
	go func() { p.pipe(client, server); done <- struct{}{} }()
	<-done
}

// pipe copies src to dst chunk by chunk, applying the current fault.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			switch mode(p.mode.Load()) {
			case cut:
				return
			case blackhole:
				continue // swallowed
			}
			if d := time.Duration(p.latency.Load()); d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF or a closed connection: either way, done
		}
	}
}
