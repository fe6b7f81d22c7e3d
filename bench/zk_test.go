package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/zklock"
)

// ZooKeeper contenders, every one on its own session whose requests are
// counted on the connection (request packets with a positive xid: pings, the
// handshake, auth and set-watches are not counted):
//
//	raw        create an EPHEMERAL node + delete it
//	oncecron-* Locker.Claim (one multi) + Lease.Complete or Lease.Release (one multi)
//	zk-lock    go-zookeeper's zk.Lock (the lock recipe: a protected
//	           EPHEMERAL_SEQUENTIAL node, list the children, watch the
//	           predecessor) + Unlock, on one lock node per benchmark that exists
//	           already, as the recipe is meant to be used (a fresh path would add
//	           the parent's creation: 3 more requests and a node left behind)

// zkCountingConn counts the request packets written on a ZooKeeper
// connection. go-zookeeper writes each packet with one Write: a 4-byte length,
// then the request header's xid (user requests count up from 1; pings are -2,
// auth -4, set-watches -8; the connect request has a protocol version of 0
// there).
type zkCountingConn struct {
	net.Conn
	c *counter
}

func (z zkCountingConn) Write(p []byte) (int, error) {
	if len(p) >= 8 && int32(binary.BigEndian.Uint32(p[4:8])) > 0 {
		z.c.n.Add(1)
	}
	return z.Conn.Write(p)
}

func zkDialer(c *counter) zk.Dialer {
	return func(network, address string, timeout time.Duration) (net.Conn, error) {
		conn, err := net.DialTimeout(network, address, timeout)
		if err != nil {
			return nil, err
		}
		return zkCountingConn{conn, c}, nil
	}
}

type zkQuiet struct{}

func (zkQuiet) Printf(string, ...any) {}

// zkConn connects a plain go-zookeeper session.
func zkConn(b *testing.B) (*zk.Conn, *counter) {
	b.Helper()
	n := &counter{}
	c, events, err := zk.Connect([]string{addr(b, envZK)}, 10*time.Second, zk.WithDialer(zkDialer(n)), zk.WithLogger(zkQuiet{}))
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for range events { //nolint:revive // drain
		}
	}()
	b.Cleanup(c.Close)
	// Wait for the session, so the first measured request does not wait for it.
	if _, _, err := c.Exists("/"); err != nil {
		b.Fatal(err)
	}
	return c, n
}

// zkDir creates the persistent node path (and its parents) if missing.
func zkDir(b *testing.B, c *zk.Conn, path string) string {
	b.Helper()
	p := ""
	for _, part := range splitPath(path) {
		p += "/" + part
		if _, err := c.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			b.Fatal(err)
		}
	}
	return path
}

func splitPath(p string) []string {
	var parts []string
	start := 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if i > start {
				parts = append(parts, p[start:i])
			}
			start = i + 1
		}
	}
	return parts
}

func zkRoot(sub string) string { return "/oncecron-bench-" + runID + "/" + sub }

func zkLocker(b *testing.B) (*locking.Locker, *counter) {
	b.Helper()
	n := &counter{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	be, err := zklock.New(ctx, []string{addr(b, envZK)}, zklock.WithNamespace(runID), zklock.WithDialer(zkDialer(n)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close() })
	l, err := locking.New(be)
	if err != nil {
		b.Fatal(err)
	}
	return l, n
}

// zkLockUnlock is the lock + unlock of each ZooKeeper contender.
func zkLockUnlock() []lockContender {
	return []lockContender{
		{"raw", func(b *testing.B) (*counter, func(int) error) {
			c, n := zkConn(b)
			dir := zkDir(b, c, zkRoot("lu-raw"))
			return n, func(i int) error {
				p := fmt.Sprintf("%s/%d", dir, i)
				if _, err := c.Create(p, []byte(locking.NewOwner()), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
					return err
				}
				return c.Delete(p, -1)
			}
		}},
		{"oncecron-complete", oncecronLockUnlock(true, zkLocker)},
		{"oncecron-release", oncecronLockUnlock(false, zkLocker)},
		{"zk-lock", func(b *testing.B) (*counter, func(int) error) {
			c, n := zkConn(b)
			path := zkDir(b, c, zkRoot("lu-zklock"))
			acl := zk.WorldACL(zk.PermAll)
			return n, func(int) error {
				l := zk.NewLock(c, path, acl)
				if err := l.Lock(); err != nil {
					return err
				}
				return l.Unlock()
			}
		}},
	}
}

// BenchmarkZKLockUnlock: each contender's lock + unlock of a fresh key, one
// contender after another (see BenchmarkZKInterleaved for the ratios).
func BenchmarkZKLockUnlock(b *testing.B) { lockUnlockEach(b, zkLockUnlock()) }

// BenchmarkZKInterleaved: the same operations taking turns (see interleave).
func BenchmarkZKInterleaved(b *testing.B) { interleave(b, zkLockUnlock()) }

// BenchmarkZKRace: per round, 8 sessions race for one fresh key; ns/op is the
// round including the winner's unlock (oncecron: Complete). zk-lock has no
// try-lock: its losers queue and each gets the lock in turn, so its round ends
// when all 8 have held and released it; it reports ns/winner (until the first
// holder), reqs/racer (each racer's requests, unlock included) and two-winner
// (rounds in which two racers were seen holding at once), but no losers.
func BenchmarkZKRace(b *testing.B) {
	ctx := context.Background()
	rec := locking.Record{Outcome: locking.OutcomeSucceeded}
	b.Run("raw", func(b *testing.B) {
		cs := make([]*zk.Conn, racers)
		ns := make([]*counter, racers)
		for r := range cs {
			cs[r], ns[r] = zkConn(b)
		}
		dir := zkDir(b, cs[0], zkRoot("race-raw"))
		race(b, ns, func(r, i int) (bool, error) {
			_, err := cs[r].Create(fmt.Sprintf("%s/%d", dir, i), []byte(locking.NewOwner()), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
			switch {
			case err == nil:
				return true, nil
			case errors.Is(err, zk.ErrNodeExists):
				return false, nil
			}
			return false, err
		}, func(r, i int) error {
			return cs[r].Delete(fmt.Sprintf("%s/%d", dir, i), -1)
		})
	})
	b.Run("oncecron", func(b *testing.B) {
		ls := make([]*locking.Locker, racers)
		ns := make([]*counter, racers)
		leases := make([]*locking.Lease, racers)
		for r := range ls {
			ls[r], ns[r] = zkLocker(b)
			// Creates the scope's nodes (once per scope and process).
			lease, err := ls[r].Claim(ctx, tick("race-oncecron", fresh(1)), ttl)
			if err != nil {
				b.Fatal(err)
			}
			if err := lease.Complete(ctx, rec, retention); err != nil {
				b.Fatal(err)
			}
		}
		race(b, ns, func(r, i int) (bool, error) {
			lease, err := ls[r].Claim(ctx, tick("race-oncecron", i), ttl)
			leases[r] = lease
			switch {
			case err == nil:
				return true, nil
			case errors.Is(err, locking.ErrHeld), errors.Is(err, locking.ErrDone):
				return false, nil
			}
			return false, err
		}, func(r, i int) error {
			return leases[r].Complete(ctx, rec, retention)
		})
	})
	b.Run("zk-lock", func(b *testing.B) {
		cs := make([]*zk.Conn, racers)
		ns := make([]*counter, racers)
		for r := range cs {
			cs[r], ns[r] = zkConn(b)
		}
		path := zkDir(b, cs[0], zkRoot("race-zklock"))
		acl := zk.WorldACL(zk.PermAll)
		var winnerNs []float64
		var reqs, two int64
		b.ResetTimer()
		for range b.N {
			var wg sync.WaitGroup
			var holders atomic.Int32
			var overlap atomic.Bool
			took := make([]time.Duration, racers)
			start := make(chan struct{})
			var t0 time.Time
			before := sum(ns)
			for r := range racers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					l := zk.NewLock(cs[r], path, acl)
					if err := l.Lock(); err != nil {
						b.Errorf("racer %d: %v", r, err)
						return
					}
					took[r] = time.Since(t0)
					if holders.Add(1) > 1 {
						overlap.Store(true)
					}
					holders.Add(-1)
					if err := l.Unlock(); err != nil {
						b.Errorf("racer %d: unlock: %v", r, err)
					}
				}()
			}
			t0 = time.Now()
			close(start)
			wg.Wait()
			reqs += sum(ns) - before
			if overlap.Load() {
				two++
			}
			winnerNs = append(winnerNs, float64(slices.Min(took)))
		}
		b.StopTimer()
		b.ReportMetric(median(winnerNs), "ns/winner")
		b.ReportMetric(float64(reqs)/float64(b.N*racers), "reqs/racer")
		b.ReportMetric(float64(two), "two-winner")
	})
}

// BenchmarkZKBurst: 3 replicas claim the same 1,000 ticks at once (see
// BenchmarkRedisBurst). oncecron does not pipeline claims on ZooKeeper:
// oncecron-batch is Locker.ClaimBatch, which there sends up to 64 claims
// concurrently, and raw-batch is its floor (the raw create, 64 at a time).
// zk.Lock is left out: without a try-lock its losers would queue and each run
// the tick in turn.
func BenchmarkZKBurst(b *testing.B) {
	raw := func(batch bool) func(b *testing.B) {
		return func(b *testing.B) {
			cs := make([]*zk.Conn, replicas)
			ns := make([]*counter, replicas)
			for r := range cs {
				cs[r], ns[r] = zkConn(b)
			}
			dir := zkDir(b, cs[0], zkRoot(map[bool]string{true: "burst-raw-batch", false: "burst-raw-one"}[batch]))
			node := func(i, t int) string { return fmt.Sprintf("%s/%d-%d", dir, i, t) }
			burst(b, ns, func(r, i int, won []bool) error {
				try := func(t int) error {
					_, err := cs[r].Create(node(i, t), []byte(locking.NewOwner()), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
					switch {
					case err == nil:
						won[t] = true
					case errors.Is(err, zk.ErrNodeExists):
					default:
						return err
					}
					return nil
				}
				if batch {
					return parallel(ticks, 64, try)
				}
				for t := range ticks {
					if err := try(t); err != nil {
						return err
					}
				}
				return nil
			}, func(r, i int, won []bool) error {
				return parallel(ticks, 64, func(t int) error {
					if won[t] {
						return cs[r].Delete(node(i, t), -1)
					}
					return nil
				})
			})
		}
	}
	oncecronBurst := func(batch bool) func(b *testing.B) {
		return func(b *testing.B) {
			ls := make([]*locking.Locker, replicas)
			ns := make([]*counter, replicas)
			for r := range ls {
				ls[r], ns[r] = zkLocker(b)
			}
			name := map[bool]string{true: "burst-batch", false: "burst-one"}[batch]
			burstTicks(b, ns, ls, make([][]*locking.Lease, replicas), name, batch)
		}
	}
	b.Run("raw-batch", raw(true))
	b.Run("oncecron-batch", oncecronBurst(true))
	b.Run("raw-one-by-one", raw(false))
	b.Run("oncecron-one-by-one", oncecronBurst(false))
}
