package chaos

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// proxy forwards TCP connections from its own 127.0.0.1 port to a target and
// can black-hole them (a network partition: connections stay open, nothing
// passes), like internal/testenv's Proxy, without needing a testing.TB.
type proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu         sync.Mutex
	cond       *sync.Cond
	blackholed bool
	closed     bool
	conns      map[*pconn]struct{}
}

type pconn struct {
	client, server net.Conn
	closed         bool
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{target: target, ln: ln, conns: make(map[*pconn]struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackholed = on
	p.cond.Broadcast()
}

func (p *proxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.blackholed = false
	for c := range p.conns {
		p.closeLocked(c)
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *proxy) closeLocked(c *pconn) {
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

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c := &pconn{client: conn}
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

func (p *proxy) serve(c *pconn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		p.closeLocked(c)
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	// A partitioned client cannot even connect.
	if !p.pass(c) {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
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

func (p *proxy) pipe(c *pconn, dst, src net.Conn) {
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
				p.closeConn(c)
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
			p.closeConn(c)
			return
		}
	}
}

// pass waits while the proxy is black-holed; it reports whether c is open.
func (p *proxy) pass(c *pconn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.blackholed && !c.closed {
		p.cond.Wait()
	}
	return !c.closed
}

func (p *proxy) closeConn(c *pconn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked(c)
}
