package zklock

import (
	"context"
	"errors"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/oncecron/oncecron/locking"
)

// Waiting for a held key (locking.Waiter).
//
// A claim that finds a key held learns it from the held node own/<name>, which
// exists exactly while some owner holds the key. Wait reads that node with a
// watch (one request), and the watch's one event tells what happened:
//
//   - NodeDataChanged: the holder completed the key. Complete sets the held
//     node's data before it deletes it, in the same multi; a one-shot watch
//     fires once, on the first change of the transaction, so the watcher sees
//     the data change and not the deletion (locking.ErrDone, final).
//   - NodeDeleted: released, reaped or the holder's session ended (ZooKeeper
//     deletes its ephemeral nodes then); the caller claims again.
//   - a session event (EventNotWatching after our own session expired, or the
//     client closing): the caller claims again.
//
// A done marker's own path cannot tell this: Complete deletes the ephemeral
// lock node and creates the persistent marker at the same path, and a watch on
// it fires NodeDeleted either way.
//
// If the held node is already gone, Wait reads the lock node once: absent, the
// key is free; a done marker within its retention is locking.ErrDone; an
// ephemeral lock node without a held node is a holder that claims as older
// versions did, whose lock node Wait then watches (any event: claim again).
// Reads that find nothing set no watch (getData, unlike exists, sets none on a
// missing node), so a Wait leaves no watch behind on a free or done key.

// maxWait bounds one Wait, in case a notification is lost; a dead holder's
// nodes go when its session expires, and that fires the watch.
const maxWait = 30 * time.Second

// Wait implements locking.Waiter: it returns an error wrapping
// locking.ErrDone once key was completed (or is found done), nil once it was
// released, its holder's session ended, the watch ended, or after maxWait, and
// ctx's error when ctx ends. When key is held it costs one request.
func (b *Backend) Wait(ctx context.Context, key locking.Key) error {
	if err := key.Validate(); err != nil {
		return b.wrap("wait", key.String(), err)
	}
	bound := b.clock.NewTimer(maxWait)
	defer bound.Stop()
	rctx, cancel := context.WithTimeout(ctx, maxWait) // for the requests
	defer cancel()
	ended := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, locking.ErrClosed):
			return b.wrap("wait", key.String(), err)
		case errors.Is(err, zk.ErrNoAuth):
			return b.wrap("wait", key.String(), err)
		}
		return nil // could not ask: the claim that follows reports why
	}

	ch, err := b.getW(rctx, b.heldPath(key))
	held := err == nil
	if errors.Is(err, zk.ErrNoNode) {
		// Gone since the caller's claim, or a holder of an older version.
		data, stat, _, _, gerr := b.get(rctx, b.lockPath(key))
		switch {
		case errors.Is(gerr, zk.ErrNoNode):
			return nil
		case gerr != nil:
			return ended(gerr)
		case stat.EphemeralOwner == 0:
			if m, perr := parseDone(data); perr != nil || !b.expired(stat.Ctime, m.RetentionMS) {
				return b.wrap("wait", key.String(), locking.ErrDone)
			}
			return nil // expired: the claim replaces it
		}
		ch, err = b.getW(rctx, b.lockPath(key))
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
	}
	if err != nil {
		return ended(err)
	}
	select {
	case ev, ok := <-ch:
		if held && ok && ev.Type == zk.EventNodeDataChanged {
			return b.wrap("wait", key.String(), locking.ErrDone)
		}
		return nil
	case <-bound.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.closing:
		return b.wrap("wait", key.String(), locking.ErrClosed)
	}
}

// getW reads p with a data watch and returns the watch's channel; a missing
// node yields zk.ErrNoNode and no watch.
func (b *Backend) getW(ctx context.Context, p string) (<-chan zk.Event, error) {
	var ch <-chan zk.Event
	err := b.idem(ctx, func() error {
		_, _, err := b.exec(func() error {
			var e error
			_, _, ch, e = b.conn.GetW(p)
			return e
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return ch, nil
}

var _ locking.Waiter = (*Backend)(nil)
