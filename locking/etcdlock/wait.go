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
// watches the key's lock from the next revision, with one watch on the
// client's shared watch stream (no request of its own): a put of a done value
// means the key was completed (ErrDone, final: the done value lasts its
// retention); the lock's deletion means it was released or its holder's lease
// expired, and the caller claims again. Nothing is missed between the claim
// and the watch, since the watch starts at the claim's revision. A compacted
// revision, a lost leader or a broken stream end the Wait, and the caller
// claims again. Locker.TakeOver uses it, so that a replica that lost a tick's
// race costs no request but its lost claim when the winner completes the tick.

const (
	// maxWait bounds one Wait, in case the watch stream stalls silently.
	maxWait = 30 * time.Second
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
	lk := b.lockKey(key)
	rev, ok := b.held.take(key)
	if !ok {
		rctx, cancel := b.rpc(ctx)
		resp, err := b.cli.Get(rctx, lk)
		cancel()
		switch {
		case err != nil:
			return nil // the claim that follows reports it
		case len(resp.Kvs) == 0:
			return nil
		case isDone(resp.Kvs[0].Value):
			return fmt.Errorf("etcdlock: wait %q: %w", key, locking.ErrDone)
		}
		rev = resp.Header.Revision
	}
	ev, found, w, use := b.hub.register(lk, rev)
	switch {
	case !use:
		return b.watchOne(ctx, key, lk, rev)
	case found:
		return ev.err(key)
	}
	bound := b.clock.NewTimer(maxWait)
	defer bound.Stop()
	select {
	case <-ctx.Done():
		b.hub.unregister(lk, w)
		return ctx.Err()
	case <-bound.C():
		b.hub.unregister(lk, w)
		return nil
	case r := <-w.c:
		if !r.ok {
			return nil // the hub's watch ended: claim again
		}
		return r.ev.err(key)
	}
}

// err is what Wait returns for ev, an event of key's lock.
func (ev hubEvent) err(key locking.Key) error {
	if ev.done {
		return fmt.Errorf("etcdlock: wait %q: %w", key, locking.ErrDone)
	}
	return nil // released, or the holder's lease expired
}

// watchOne waits, as Wait does, with a watch of lk (key's lock) alone from
// rev+1: when the hub cannot serve the Wait.
func (b *Backend) watchOne(ctx context.Context, key locking.Key, lk string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	w := b.cli.Watch(wctx, lk, clientv3.WithRev(rev+1))
	bound := b.clock.NewTimer(maxWait)
	defer bound.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-bound.C():
			return nil
		case r, ok := <-w:
			if !ok || r.Err() != nil || r.Canceled {
				return nil
			}
			for _, ev := range r.Events {
				switch {
				case ev.Type == mvccpb.PUT && isDone(ev.Kv.Value):
					return hubEvent{done: true}.err(key)
				case ev.Type == mvccpb.DELETE:
					return nil // released, or the holder's lease expired
				}
			}
		}
	}
}

var _ locking.Waiter = (*Backend)(nil)
