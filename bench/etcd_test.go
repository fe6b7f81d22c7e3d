package bench

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
)

// etcd contenders, every one on its own client whose unary gRPC calls are
// counted by an interceptor (Txn, Range, Put, DeleteRange, LeaseGrant, ...;
// lease keep-alives run on a stream and are not counted: they are per
// session, not per lock):
//
//	raw                put-if-absent transaction on an existing lease + delete
//	oncecron-*         Locker.Claim + Lease.Complete (retention 1m) or Lease.Release
//	concurrency-mutex  etcd's client/v3/concurrency Mutex: Lock (uncontended) or
//	                   TryLock (race, burst) + Unlock, on a session made once per
//	                   client (each racer has its own session: two Mutexes on one
//	                   session would both hold the lock)

func etcdClient(b *testing.B) (*clientv3.Client, *counter) {
	b.Helper()
	n := &counter{}
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		n.n.Add(1)
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{addr(b, envEtcd)},
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(count)},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cli.Close() })
	return cli, n
}

func etcdLocker(b *testing.B, cli *clientv3.Client) *locking.Locker {
	b.Helper()
	be, err := etcdlock.NewFromClient(cli, etcdlock.WithNamespace(runID))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close() }) // runs before the client's Close
	l, err := locking.New(be)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// etcdRawLease grants the lease the raw floor's keys are put on (not counted
// per op: it is made once, as a session would be).
func etcdRawLease(b *testing.B, cli *clientv3.Client) clientv3.LeaseID {
	b.Helper()
	ctx := context.Background()
	l, err := cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		b.Fatal(err)
	}
	ka, err := cli.KeepAlive(ctx, l.ID)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for range ka { //nolint:revive // drain the keep-alive answers
		}
	}()
	b.Cleanup(func() { _, _ = cli.Revoke(context.Background(), l.ID) })
	return l.ID
}

func etcdRawLock(ctx context.Context, cli *clientv3.Client, lease clientv3.LeaseID, key string) (bool, error) {
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, locking.NewOwner(), clientv3.WithLease(lease))).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

func etcdSession(b *testing.B, cli *clientv3.Client) *concurrency.Session {
	b.Helper()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(ttl/time.Second)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func ekey(contender string, i int) string { return fmt.Sprintf("/%s/%s/%d", runID, contender, i) }

// etcdLockUnlock is the lock + unlock of each etcd contender.
func etcdLockUnlock() []lockContender {
	ctx := context.Background()
	locker := func(b *testing.B) (*locking.Locker, *counter) {
		cli, n := etcdClient(b)
		return etcdLocker(b, cli), n
	}
	return []lockContender{
		{"raw", func(b *testing.B) (*counter, func(int) error) {
			cli, n := etcdClient(b)
			lease := etcdRawLease(b, cli)
			return n, func(i int) error {
				k := ekey("lu-raw", i)
				ok, err := etcdRawLock(ctx, cli, lease, k)
				if err != nil || !ok {
					return errors.Join(err, errLost)
				}
				_, err = cli.Delete(ctx, k)
				return err
			}
		}},
		{"oncecron-complete", oncecronLockUnlock(true, locker)},
		{"oncecron-release", oncecronLockUnlock(false, locker)},
		{"concurrency-mutex", func(b *testing.B) (*counter, func(int) error) {
			cli, n := etcdClient(b)
			s := etcdSession(b, cli)
			return n, func(i int) error {
				m := concurrency.NewMutex(s, ekey("lu-mutex", i))
				if err := m.Lock(ctx); err != nil {
					return err
				}
				return m.Unlock(ctx)
			}
		}},
	}
}

// BenchmarkEtcdLockUnlock: each contender's lock + unlock of a fresh key, one
// contender after another (see BenchmarkEtcdInterleaved for the ratios).
func BenchmarkEtcdLockUnlock(b *testing.B) { lockUnlockEach(b, etcdLockUnlock()) }

// BenchmarkEtcdInterleaved: the same operations taking turns (see interleave).
func BenchmarkEtcdInterleaved(b *testing.B) { interleave(b, etcdLockUnlock()) }

// BenchmarkEtcdRace: per round, 8 clients race for one fresh key; ns/op is the
// round including the winner's unlock (oncecron: Complete).
func BenchmarkEtcdRace(b *testing.B) {
	ctx := context.Background()
	rec := locking.Record{Outcome: locking.OutcomeSucceeded}
	clients := func(b *testing.B) ([]*clientv3.Client, []*counter) {
		cs := make([]*clientv3.Client, racers)
		ns := make([]*counter, racers)
		for r := range cs {
			cs[r], ns[r] = etcdClient(b)
		}
		return cs, ns
	}
	b.Run("raw", func(b *testing.B) {
		cs, ns := clients(b)
		leases := make([]clientv3.LeaseID, racers)
		for r, c := range cs {
			leases[r] = etcdRawLease(b, c)
		}
		race(b, ns, func(r, i int) (bool, error) {
			return etcdRawLock(ctx, cs[r], leases[r], ekey("race-raw", i))
		}, func(r, i int) error {
			_, err := cs[r].Delete(ctx, ekey("race-raw", i))
			return err
		})
	})
	b.Run("oncecron", func(b *testing.B) {
		cs, ns := clients(b)
		ls := make([]*locking.Locker, racers)
		leases := make([]*locking.Lease, racers)
		for r, c := range cs {
			ls[r] = etcdLocker(b, c)
			lease, err := ls[r].Claim(ctx, tick("race-warm", fresh(1)), ttl) // makes the session
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
	b.Run("concurrency-mutex", func(b *testing.B) {
		cs, ns := clients(b)
		ss := make([]*concurrency.Session, racers)
		ms := make([]*concurrency.Mutex, racers)
		for r, c := range cs {
			ss[r] = etcdSession(b, c)
		}
		race(b, ns, func(r, i int) (bool, error) {
			ms[r] = concurrency.NewMutex(ss[r], ekey("race-mutex", i))
			err := ms[r].TryLock(ctx)
			switch {
			case err == nil:
				return true, nil
			case errors.Is(err, concurrency.ErrLocked):
				return false, nil
			}
			return false, err
		}, func(r, i int) error {
			return ms[r].Unlock(ctx)
		})
	})
}

// BenchmarkEtcdBurst: 3 replicas claim the same 1,000 ticks at once (see
// BenchmarkRedisBurst). oncecron does not pipeline claims on etcd:
// oncecron-batch is Locker.ClaimBatch, which there sends up to 64 claims
// concurrently, and raw-batch is its floor (the raw transaction, 64 at a time);
// the others claim one by one.
func BenchmarkEtcdBurst(b *testing.B) {
	ctx := context.Background()
	replicaClients := func(b *testing.B) ([]*clientv3.Client, []*counter) {
		cs := make([]*clientv3.Client, replicas)
		ns := make([]*counter, replicas)
		for r := range cs {
			cs[r], ns[r] = etcdClient(b)
		}
		return cs, ns
	}
	oncecronBurst := func(batch bool) func(b *testing.B) {
		return func(b *testing.B) {
			cs, ns := replicaClients(b)
			ls := make([]*locking.Locker, replicas)
			name := map[bool]string{true: "burst-batch", false: "burst-one"}[batch]
			for r, c := range cs {
				ls[r] = etcdLocker(b, c)
				lease, err := ls[r].Claim(ctx, tick(name+"-warm", fresh(1)), ttl) // makes the session
				if err != nil {
					b.Fatal(err)
				}
				if err := lease.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
			burstTicks(b, ns, ls, make([][]*locking.Lease, replicas), name, batch)
		}
	}
	raw := func(batch bool) func(b *testing.B) {
		return func(b *testing.B) {
			cs, ns := replicaClients(b)
			leases := make([]clientv3.LeaseID, replicas)
			for r, c := range cs {
				leases[r] = etcdRawLease(b, c)
			}
			name := map[bool]string{true: "burst-raw-batch-", false: "burst-raw-one-"}[batch]
			burst(b, ns, func(r, i int, won []bool) error {
				try := func(t int) error {
					ok, err := etcdRawLock(ctx, cs[r], leases[r], ekey(name+fmt.Sprint(i), t))
					won[t] = ok
					return err
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
				_, err := cs[r].Delete(ctx, fmt.Sprintf("/%s/%s%d/", runID, name, i), clientv3.WithPrefix())
				return err
			})
		}
	}
	b.Run("raw-batch", raw(true))
	b.Run("oncecron-batch", oncecronBurst(true))
	b.Run("raw-one-by-one", raw(false))
	b.Run("oncecron-one-by-one", oncecronBurst(false))
	b.Run("concurrency-mutex-one-by-one", func(b *testing.B) {
		cs, ns := replicaClients(b)
		ss := make([]*concurrency.Session, replicas)
		ms := make([][]*concurrency.Mutex, replicas)
		for r, c := range cs {
			ss[r] = etcdSession(b, c)
		}
		burst(b, ns, func(r, i int, won []bool) error {
			ms[r] = make([]*concurrency.Mutex, ticks)
			for t := range ticks {
				m := concurrency.NewMutex(ss[r], ekey(fmt.Sprint("burst-mutex-", i), t))
				err := m.TryLock(ctx)
				switch {
				case err == nil:
					won[t], ms[r][t] = true, m
				case errors.Is(err, concurrency.ErrLocked):
				default:
					return err
				}
			}
			return nil
		}, func(r, i int, won []bool) error {
			return parallel(ticks, 64, func(t int) error {
				if m := ms[r][t]; m != nil {
					return m.Unlock(ctx)
				}
				return nil
			})
		})
	})
}
