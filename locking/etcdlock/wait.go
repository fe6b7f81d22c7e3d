package etcdlock

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/oncecron/oncecron/locking"
)

// Waiting for a held key (locking.Waiter).
//
// A claim that finds a key held notes the revision of its answer. Wait then
// watches the key's scope (its lock and its done marker among the rest) from
// the next revision, with one watch on the client's shared watch stream (no
// request of its own): the done marker's put
// means the key was completed (ErrDone, final: the marker lasts its
// retention); the lock's deletion means it was released or its holder's lease
// expired, and the caller claims again. Nothing is missed between the claim
// and the watch, since the watch starts at the claim's revision. A compacted
// revision, a lost leader or a broken stream end the Wait, and the caller
// claims again. Locker.TakeOver uses it, so that a replica that lost a tick's
// race costs no request but its lost claim when the winner completes the tick.

const (
	// maxWait bounds one Wait, in case the watch stream stalls silently.
	maxWait = 30 * time.Second
	// sameTxnWait is how long a Wait that saw the lock deleted waits for the
	// done marker's put of the same transaction, should it come in a later
	// response.
	sameTxnWait = 100 * time.Millisecond
	// heldRevs bounds the revisions kept for claims that found a key held;
	// older ones are dropped first (a Wait without one reads the key).
	heldRevs = 4096
)

// heldSeen keeps, per key, the revision at which a claim last found it held.
type heldSeen struct {
	mu   sync.Mutex
	revs map[locking.Key]int64
	keys []locking.Key // insertion order, for the bound
}

func (h *heldSeen) note(key locking.Key, rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.revs == nil {
		h.revs = map[locking.Key]int64{}
	}
	if _, ok := h.revs[key]; !ok {
		h.keys = append(h.keys, key)
	}
	h.revs[key] = rev
	for len(h.revs) > heldRevs && len(h.keys) > 0 {
		delete(h.revs, h.keys[0])
		h.keys = h.keys[1:]
	}
	if len(h.keys) > 2*heldRevs { // drop the order of keys taken by Waits
		live := h.keys[:0]
		for _, k := range h.keys {
			if _, ok := h.revs[k]; ok {
				live = append(live, k)
			}
		}
		h.keys = live
	}
}

func (h *heldSeen) take(key locking.Key) (int64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rev, ok := h.revs[key]
	delete(h.revs, key)
	return rev, ok
}

// Wait implements locking.Waiter: it returns an error wrapping
// locking.ErrDone once key was completed, nil once its lock was deleted
// (released, or the holder's lease expired) or when the watch could not go
// on, and ctx's error when ctx ends. It makes no request when a claim of this
// backend found key held just before; otherwise it reads the lock once.
func (b *Backend) Wait(ctx context.Context, key locking.Key) error {
	if err := key.Validate(); err != nil {
		return err
	}
	lk, dk := b.lockKey(key), b.doneKey(key)
	rev, ok := b.held.take(key)
	if !ok {
		rctx, cancel := b.rpc(ctx)
		resp, err := b.cli.Txn(rctx).Then(clientv3.OpGet(lk, clientv3.WithCountOnly()), clientv3.OpGet(dk, clientv3.WithCountOnly())).Commit()
		cancel()
		switch {
		case err != nil:
			return nil // the claim that follows reports it
		case resp.Responses[1].GetResponseRange().Count > 0:
			return fmt.Errorf("etcdlock: wait %q: %w", key, locking.ErrDone)
		case resp.Responses[0].GetResponseRange().Count == 0:
			return nil
		}
		rev = resp.Header.Revision
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// One watch of the key's scope: a completion deletes the lock and puts
	// the done marker in one transaction, whose events come together.
	w := b.cli.Watch(wctx, b.scopePrefix(key.Scope), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	bound := b.clock.NewTimer(maxWait)
	defer bound.Stop()
	var deleted int64 // the revision at which the lock was deleted
	var sameTxn locking.Timer
	var sameTxnC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-bound.C():
			return nil
		case <-sameTxnC:
			return nil // released, or the holder's lease expired
		case r, ok := <-w:
			if !ok || r.Err() != nil || r.Canceled {
				return nil
			}
			for _, ev := range r.Events {
				switch k := string(ev.Kv.Key); {
				case k == dk && ev.Type == mvccpb.PUT:
					return fmt.Errorf("etcdlock: wait %q: %w", key, locking.ErrDone)
				case k == lk && ev.Type == mvccpb.DELETE && deleted == 0:
					deleted = ev.Kv.ModRevision
				case deleted != 0 && ev.Kv.ModRevision > deleted:
					return nil // past the deletion's transaction: no done marker in it
				}
			}
			if deleted != 0 && sameTxn == nil {
				// The events of one transaction come in one response; in
				// case a response is ever cut within one, wait briefly.
				sameTxn = b.clock.NewTimer(sameTxnWait)
				defer sameTxn.Stop()
				sameTxnC = sameTxn.C()
			}
		}
	}
}

var _ locking.Waiter = (*Backend)(nil)
