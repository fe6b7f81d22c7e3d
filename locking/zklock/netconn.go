package zklock

import (
	"bufio"
	"net"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// conns keeps the client's open network connections, so that Close can end
// the session's connection itself when the client's own close does not: the
// client asks the server to close the session with a request it gives up
// queueing after a second (when its send queue is full, as with thousands of
// claims in flight), and its loop then goes on, pinging, forever.
type conns struct {
	mu   sync.Mutex
	open map[*trackedConn]struct{}
}

// dialer wraps d (nil: the client's default, a TCP dial) so that every
// connection it makes is tracked until closed.
func (cs *conns) dialer(d zk.Dialer) zk.Dialer {
	if d == nil {
		d = net.DialTimeout
	}
	return func(network, address string, timeout time.Duration) (net.Conn, error) {
		c, err := d(network, address, timeout)
		if err != nil {
			return nil, err
		}
		t := &trackedConn{Conn: c, cs: cs, r: bufio.NewReaderSize(c, readBuffer)}
		cs.mu.Lock()
		if cs.open == nil {
			cs.open = map[*trackedConn]struct{}{}
		}
		cs.open[t] = struct{}{}
		cs.mu.Unlock()
		return t, nil
	}
}

// closeAll closes every tracked connection.
func (cs *conns) closeAll() {
	cs.mu.Lock()
	open := make([]*trackedConn, 0, len(cs.open))
	for t := range cs.open {
		open = append(open, t)
	}
	cs.mu.Unlock()
	for _, t := range open {
		_ = t.Close()
	}
}

// readBuffer is the read buffer of a connection. The client reads each
// reply with two reads (its length, then its body): under load, one system
// call now fetches many replies.
const readBuffer = 64 << 10

type trackedConn struct {
	net.Conn
	cs   *conns
	r    *bufio.Reader // only the client's receive loop reads
	once sync.Once
}

func (t *trackedConn) Read(p []byte) (int, error) { return t.r.Read(p) }

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.cs.mu.Lock()
		delete(t.cs.open, t)
		t.cs.mu.Unlock()
	})
	return t.Conn.Close()
}
