package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/oncecron/oncecron/locking"
)

// errRequeue means that our waiter key vanished (its session died): queue again.
var errRequeue = errors.New("etcdlock: waiter key gone")

// maxRequeues bounds how often one Acquire re-queues after losing its session.
const maxRequeues = 5

// Acquire implements locking.Acquirer: it waits in a queue of waiter keys until
// owner holds key, the key is completed (ErrDone) or ctx ends (an error wrapping
// ErrHeld and ctx's error). See the package documentation for the protocol. A
// cancelled Acquire deletes its waiter key before it returns (or, if the server
// cannot be reached, as soon as it can).
func (b *Backend) Acquire(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	const op = "acquire"
	if err := b.validate(key, owner, ttl); err != nil {
		return locking.Grant{}, fmt.Errorf("etcdlock: %s %q: %w", op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return locking.Grant{}, b.fail(ctx, op, key.String(), err)
	}
	for requeue := 0; ; requeue++ {
		s, err := b.session(ctx, ttl)
		if err != nil {
			return locking.Grant{}, b.fail(ctx, op, key.String(), err)
		}
		g, err := b.acquireOn(ctx, s, key, owner, ttl)
		if errors.Is(err, errRequeue) {
			if requeue < maxRequeues && ctx.Err() == nil {
				continue
			}
			return locking.Grant{}, fmt.Errorf("etcdlock: %s %q: %w: the session was lost %d times while queued", op, key, locking.ErrUnavailable, requeue+1)
		}
		if err != nil {
			return g, err
		}
		if b.sessionDead(s) {
			// Won on a session this process gave up while it waited (see
			// Claim): give the key back and queue again on a new session.
			_ = b.Release(context.WithoutCancel(ctx), g)
			if requeue < maxRequeues && ctx.Err() == nil {
				continue
			}
			return locking.Grant{}, b.fail(ctx, op, key.String(), fmt.Errorf("%w: the session ended while queued", locking.ErrUnavailable))
		}
		// A long wait may end just after a server restart, on a session whose
		// keep-alive is stale: renew it, or give the key back, rather than hand
		// out a lease already past its deadline.
		if ferr := b.freshen(ctx, s); ferr != nil {
			_ = b.Release(context.WithoutCancel(ctx), g)
			return locking.Grant{}, b.fail(ctx, op, key.String(), ferr)
		}
		b.mu.Lock()
		g.Since, g.TTL = s.since, min(ttl, s.validity())
		b.mu.Unlock()
		return g, nil
	}
}

func (b *Backend) acquireOn(ctx context.Context, s *session, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	const op = "acquire"
	lk, wp, wk := b.lockKey(key), b.waitPrefix(key), b.waitKey(key, owner)

	// A claim that yields to queued waiters: uncontended, Acquire costs one request.
	lc, lt, le := b.legacyOps(key) // see claimOps
	rctx, cancel := b.rpc(ctx)
	resp, err := b.cli.Txn(rctx).
		If(append([]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(lk), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(wp), "=", 0).WithPrefix(), // nobody queued
		}, lc...)...).
		Then(append([]clientv3.Op{clientv3.OpPut(lk, owner, clientv3.WithLease(s.id))}, lt...)...).
		Else(append([]clientv3.Op{clientv3.OpGet(lk)}, le...)...).
		Commit()
	cancel()
	if err == nil {
		b.learnLegacy(key, resp, 1, 1)
	}
	unknown := false // a claim of ours may have been applied without our knowing
	switch {
	case err != nil && isLeaseGone(err):
		b.loseSession(s, "a claim found the session lease gone")
		return locking.Grant{}, errRequeue
	case err != nil:
		if ctx.Err() != nil {
			b.orphan(key, owner, s, true)
			return locking.Grant{}, b.fail(ctx, op, key.String(), err)
		}
		unknown = true // the queue's claim transaction settles it
	case resp.Succeeded:
		return b.grant(key, owner, resp.Header.Revision, s, ttl), nil
	case (firstKV(resp, 0) != nil && isDone(firstKV(resp, 0).Value)) || legacyDone(resp, 1):
		return locking.Grant{}, fmt.Errorf("etcdlock: %s %q: %w", op, key, locking.ErrDone)
	default:
		if kv := firstKV(resp, 0); kv != nil && string(kv.Value) == owner {
			return b.repeated(key, owner, kv, ttl)
		}
	}

	b.mu.Lock()
	s.waiters++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		s.waiters--
		s.lastUsed = b.clock.Now()
		b.mu.Unlock()
	}()

	g, won, err := b.queue(ctx, s, key, owner, ttl, lk, wp, wk, &unknown)
	if won {
		return g, nil
	}
	if !errors.Is(err, errRequeue) {
		// Leave nothing behind: delete the waiter key (and the lock, had a claim
		// of ours been applied unbeknownst to us), within a bounded time even if
		// ctx has ended.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(b.o.requestTimeout, 2*time.Second))
		_, rerr := b.cleanupTxn(cctx, key, owner)
		cancel()
		if rerr != nil || unknown {
			b.orphan(key, owner, s, unknown)
		}
	}
	return locking.Grant{}, err
}

// queue puts owner's waiter key in line and waits for its turn; see Acquire.
func (b *Backend) queue(ctx context.Context, s *session, key locking.Key, owner string, ttl time.Duration,
	lk, wp, wk string, unknown *bool) (locking.Grant, bool, error) {
	const op = "acquire"
	backoff := newBackoff()

	// Enqueue (idempotent: a repeat finds the key and keeps its place).
	var myRev int64
	for myRev == 0 {
		rctx, cancel := b.rpc(ctx)
		resp, err := b.cli.Txn(rctx).
			If(clientv3.Compare(clientv3.CreateRevision(wk), "=", 0)).
			Then(clientv3.OpPut(wk, s.rev(), clientv3.WithLease(s.id))).
			Else(clientv3.OpGet(wk)).
			Commit()
		cancel()
		switch {
		case err != nil && isLeaseGone(err):
			b.loseSession(s, "a waiter found the session lease gone")
			return locking.Grant{}, false, errRequeue
		case err != nil:
			if ctx.Err() != nil {
				return locking.Grant{}, false, b.fail(ctx, op, key.String(), err)
			}
			if werr := backoff.wait(ctx, b.clock); werr != nil {
				return locking.Grant{}, false, b.fail(ctx, op, key.String(), errors.Join(err, werr))
			}
		case resp.Succeeded:
			myRev = resp.Header.Revision
		default:
			kv := firstKV(resp, 0)
			if kv == nil || kv.Lease != int64(s.id) {
				// Ours from an earlier, dead session: replace it at the back of the line.
				rctx, cancel := b.rpc(ctx)
				_, err := b.cli.Delete(rctx, wk)
				cancel()
				if err != nil && ctx.Err() != nil {
					return locking.Grant{}, false, b.fail(ctx, op, key.String(), err)
				}
				continue
			}
			myRev = kv.CreateRevision
		}
	}

	// Wait for our turn: one transaction per wake-up. The one that wins the
	// lock also deletes our waiter key: the next in line then waits for the
	// lock, and a release or completion has no waiter key to delete.
	backoff = newBackoff()
	for {
		lc, lt, le := b.legacyOps(key) // see claimOps
		rctx, cancel := b.rpc(ctx)
		resp, err := b.cli.Txn(rctx).
			If(append([]clientv3.Cmp{
				clientv3.Compare(clientv3.CreateRevision(lk), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(wk), "=", myRev),
				clientv3.Compare(clientv3.CreateRevision(wp), ">", myRev-1).WithPrefix(), // first in line
			}, lc...)...).
			Then(append([]clientv3.Op{clientv3.OpPut(lk, owner, clientv3.WithLease(s.id)), clientv3.OpDelete(wk)}, lt...)...).
			Else(append([]clientv3.Op{
				clientv3.OpGet(lk),
				clientv3.OpGet(wk),
				clientv3.OpGet(wp, append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(myRev-1))...),
			}, le...)...).
			Commit()
		cancel()
		if err != nil {
			if isLeaseGone(err) {
				b.loseSession(s, "a waiter found the session lease gone")
				return locking.Grant{}, false, errRequeue
			}
			*unknown = true
			if ctx.Err() != nil {
				return locking.Grant{}, false, b.fail(ctx, op, key.String(), err)
			}
			if werr := backoff.wait(ctx, b.clock); werr != nil {
				return locking.Grant{}, false, b.fail(ctx, op, key.String(), errors.Join(err, werr))
			}
			continue
		}
		backoff = newBackoff()
		b.learnLegacy(key, resp, 2, 3)
		if resp.Succeeded {
			return b.grant(key, owner, resp.Header.Revision, s, ttl), true, nil
		}
		lock, mine, pred := firstKV(resp, 0), firstKV(resp, 1), firstKV(resp, 2)
		var watchKey string
		switch {
		case lock != nil && string(lock.Value) == owner:
			g, err := b.repeated(key, owner, lock, ttl)
			return g, err == nil, err
		case (lock != nil && isDone(lock.Value)) || legacyDone(resp, 3):
			return locking.Grant{}, false, fmt.Errorf("etcdlock: %s %q: %w", op, key, locking.ErrDone)
		case mine == nil || mine.CreateRevision != myRev:
			return locking.Grant{}, false, errRequeue
		case pred != nil:
			watchKey = string(pred.Key)
		case lock != nil:
			watchKey = lk
		default:
			continue // changed between the compares and the reads: impossible in one txn, but harmless
		}
		if err := b.waitChange(ctx, s, watchKey, resp.Header.Revision); err != nil {
			return locking.Grant{}, false, fmt.Errorf("etcdlock: %s %q: %w", op, key, errors.Join(locking.ErrHeld, err))
		}
	}
}

// waitChange waits until key changes after revision rev (a waiter key is
// deleted; a lock is deleted, or completed, which puts its done value), the
// session is lost, the fallback interval (the session TTL) passes, or ctx ends
// (its error).
func (b *Backend) waitChange(ctx context.Context, s *session, key string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := b.cli.Watch(wctx, key, clientv3.WithRev(rev+1))
	t := b.clock.NewTimer(s.ttl)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.lost:
			return nil
		case <-t.C():
			return nil
		case wr, ok := <-wch:
			if ok && wr.Err() == nil && len(wr.Events) == 0 {
				continue // a progress notification
			}
			if !ok || wr.Err() != nil {
				// The watch failed (no leader, compaction, closing): re-check soon,
				// but do not spin.
				return sleep(ctx, b.clock, 100*time.Millisecond)
			}
			return nil
		}
	}
}

type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 25 * time.Millisecond} }

func (bo *backoff) wait(ctx context.Context, c locking.Clock) error {
	d := bo.d
	bo.d = min(2*bo.d, time.Second)
	return sleep(ctx, c, d)
}

func sleep(ctx context.Context, c locking.Clock, d time.Duration) error {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

var _ locking.Acquirer = (*Backend)(nil)
