package faultnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// A Proxy forwards TCP connections from its own 127.0.0.1 port to a target,
// and injects network faults between them: give clients Addr() instead of
// the server's address.
//
// Close waits for all its goroutines.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // canceled by Close: ends dials in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and one per connection

	mu         sync.Mutex
	cond       *sync.Cond // signalled when blackholed or a conn's closed changes
	blackholed bool
	closed     bool
	conns      map[*proxyConn]struct{}
}

type proxyConn struct {
	client net.Conn
	server net.Conn // nil until dialed
	closed bool     // guarded by Proxy.mu
}

// Listen starts a proxy on a free 127.0.0.1 port to target (host:port). Close
// stops it and waits for its goroutines.
func Listen(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultnet: proxy: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, conns: make(map[*proxyConn]struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops forwarding in both directions, on the connections open
// and on new ones, while keeping them open: as in a network partition,
// clients see their requests time out, not a reset. Bytes that were being
// written at the moment Blackhole is called may still get through; bytes
// sent afterwards are held (the kernel's buffers fill up, then the sender
// blocks) and delivered after Unblackhole, as TCP would retransmit them.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackholed = true
}

// Unblackhole resumes forwarding.
func (p *Proxy) Unblackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackholed = false
	p.cond.Broadcast()
}

// CutAll closes all the connections open now, on both sides; new ones are
// accepted as before.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		p.closeLocked(c)
	}
}

// Close stops the proxy, closes its connections and waits for its
// goroutines. Calling it again does nothing.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for c := range p.conns {
		p.closeLocked(c)
	}
	p.mu.Unlock()
	p.cancel()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) closeLocked(c *proxyConn) {
	if c.closed {
		return
	}
	c.closed = true
	c.client.Close()
	if c.server != nil {
		c.server.Close()
	}
	p.cond.Broadcast()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		c := &proxyConn{client: conn}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			conn.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

func (p *Proxy) serve(c *proxyConn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		p.closeLocked(c)
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return // the client sees its connection closed, as by a server that is down
	}
	p.mu.Lock()
	if c.closed {
		p.mu.Unlock()
		server.Close()
		return
	}
	c.server = server
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.pipe(c, server, c.client)
	}()
	p.pipe(c, c.client, server)
	wg.Wait()
}

// pipe copies src to dst while the proxy is not blackholed. At EOF it
// half-closes dst; on an error it closes the whole connection.
func (p *Proxy) pipe(c *proxyConn, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		if !p.pass(c) {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			if !p.pass(c) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				p.close(c)
				return
			}
		}
		if errors.Is(err, io.EOF) {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
		if err != nil {
			p.close(c)
			return
		}
	}
}

// pass waits while the proxy is blackholed; it reports whether c is open.
func (p *Proxy) pass(c *proxyConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.blackholed && !c.closed {
		p.cond.Wait()
	}
	return !c.closed
}

func (p *Proxy) close(c *proxyConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked(c)
}
