package zklock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testSessionTimeout is the session timeout of test clients: short, so that cut
// clients expire quickly, and well above the suite's TTL (testTTL) so that a
// loaded machine does not drop connections (the client gives up on a connection
// after 2/3 of it without a packet).
const (
	testSessionTimeout = 6 * time.Second
	testTTL            = 2 * time.Second
)

// runNamespace keeps this run's nodes apart from earlier runs on the shared server.
var runNamespace = func() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:])
}()

// newBackend connects a backend to addr (the shared server if empty), closed when
// the test ends.
func newBackend(t testing.TB, addr string, opts ...Option) *Backend {
	t.Helper()
	if addr == "" {
		addr = testenv.ZKAddr(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := []Option{WithSessionTimeout(testSessionTimeout), WithNamespace(runNamespace)}
	if tt, ok := t.(*testing.T); ok {
		base = append(base, WithLogger(zaptest.NewLogger(tt)))
	}
	b, err := New(ctx, []string{addr}, append(base, opts...)...)
	if err != nil {
		t.Fatalf("zklock.New(%s): %v", addr, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func newLocker(t testing.TB, b locking.Backend) *locking.Locker {
	t.Helper()
	l, err := locking.New(b)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// proxy is a TCP proxy on loopback whose forwarding can be paused: while cut,
// every byte is held (connections stay open and new ones are accepted), as in a
// network partition; Heal lets the held bytes through.
type proxy struct {
	l      net.Listener
	target string

	mu     sync.Mutex
	cond   *sync.Cond
	cut    bool
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) Addr() string { return p.l.Addr().String() }

// Cut holds all traffic.
func (p *proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
}

// Heal lets traffic flow again.
func (p *proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pump(c, u)
		go p.pump(u, c)
	}
}

func (p *proxy) pump(src, dst net.Conn) {
	defer p.wg.Done()
	defer func() {
		src.Close()
		dst.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.cut && !p.closed {
				p.cond.Wait()
			}
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			return
		}
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.l.Close()
	p.wg.Wait()
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
