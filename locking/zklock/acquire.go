package zklock

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
)

// Acquire implements locking.Acquirer with ZooKeeper's lock recipe. The caller
// queues as an EPHEMERAL_SEQUENTIAL node under <scope>/wait/<name> and watches
// only its predecessor; at the head of the queue it claims the key, deleting its
// waiter node in the same multi, or, if a direct claimer holds the key, watches
// the lock node alone. So a release wakes one waiter, not all. When ctx ends the
// waiter node is deleted (in the background if the server cannot be reached) and
// the error wraps ctx's error. A completed key yields locking.ErrDone.
func (b *Backend) Acquire(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	if err := b.checkArgs(key, owner, ttl); err != nil {
		return locking.Grant{}, b.wrap("acquire", key.String(), err)
	}
	g, err := b.acquire(ctx, key, owner, ttl)
	if err != nil {
		return locking.Grant{}, b.wrap("acquire", key.String(), err)
	}
	return g, nil
}

func (b *Backend) acquire(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	dir := b.waitDir(key)
	prefix := "w-" + owner + "-"
	me := ""        // our waiter node's path
	unsure := false // a create of our waiter node may have succeeded unseen
	defer func() {
		if me != "" {
			b.dropWaiter(me)
		}
		if unsure {
			b.mu.Lock()
			if b.pending[dir] == nil {
				b.pending[dir] = map[string]int64{}
			}
			b.pending[dir][owner] = b.conn.SessionID()
			b.mu.Unlock()
		}
	}()
	var why error = locking.ErrHeld // what we were waiting for, reported when ctx ends
	giveUp := func(err error) (locking.Grant, error) {
		if ctx.Err() != nil {
			return locking.Grant{}, fmt.Errorf("gave up waiting: %w", errors.Join(why, ctx.Err()))
		}
		return locking.Grant{}, err
	}
	transient := func(err error) bool {
		if ctx.Err() != nil || !retryable(err) {
			return false
		}
		why = err
		_ = sleep(ctx, b.closing, 100*time.Millisecond)
		return true
	}
	timeout := max(b.SessionTimeout(), time.Second)
	for {
		if err := ctx.Err(); err != nil {
			return giveUp(err)
		}
		kids, err := b.children(ctx, dir)
		if err != nil {
			if transient(err) {
				continue
			}
			return giveUp(err)
		}
		if me == "" && unsure { // adopt a waiter node created by a create whose reply was lost
			for _, k := range kids {
				if strings.HasPrefix(k, prefix) {
					me = dir + "/" + k
					break
				}
			}
			unsure = false
		}
		if me == "" {
			p, err := b.enqueue(ctx, key, dir, prefix, owner)
			if err != nil {
				if !answered(err) {
					unsure = true
				}
				if transient(err) {
					continue
				}
				return giveUp(err)
			}
			me = p
			continue // list again, with our node
		}
		queue := waiters(kids)
		pos := slices.Index(queue, path.Base(me))
		if pos < 0 {
			me = "" // our node is gone with an ended session: queue again
			continue
		}
		if pos > 0 {
			if err := b.waitGone(ctx, dir+"/"+queue[pos-1], timeout); err != nil {
				if transient(err) {
					continue
				}
				return giveUp(err)
			}
			continue
		}
		g, repeat, err := b.claim(ctx, key, owner, ttl, me)
		switch {
		case err == nil:
			if !repeat {
				me = "" // deleted by the claim's multi
			}
			return g, nil
		case errors.Is(err, errWaiterGone):
			me = ""
		case errors.Is(err, locking.ErrDone):
			return locking.Grant{}, err
		case errors.Is(err, locking.ErrHeld):
			why = locking.ErrHeld
			if err := b.waitGone(ctx, b.lockPath(key), timeout); err != nil && !transient(err) {
				return giveUp(err)
			}
		case transient(err):
		default:
			why = err // an unknown outcome: not ErrHeld, so the caller cleans up
			return giveUp(err)
		}
	}
}

// enqueue creates our waiter node, creating the per-name wait node if needed.
func (b *Backend) enqueue(ctx context.Context, key locking.Key, dir, prefix, owner string) (string, error) {
	for range 3 {
		if err := b.ensureScope(ctx, key.Scope); err != nil {
			return "", err
		}
		var p string
		err := b.do(ctx, func() error {
			_, _, err := b.exec(func() error {
				var e error
				p, e = b.conn.Create(dir+"/"+prefix, []byte(owner), zk.FlagEphemeral|zk.FlagSequence, b.acl)
				return e
			})
			return err
		})
		if abandoned(err) {
			return "", err
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return p, err
		}
		err = b.do(ctx, func() error {
			_, _, err := b.exec(func() error {
				_, err := b.conn.Create(dir, nil, zk.FlagPersistent, b.acl)
				return err
			})
			return err
		})
		if errors.Is(err, zk.ErrNoNode) {
			b.forgetScope(key.Scope)
		} else if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return "", err
		}
	}
	return "", fmt.Errorf("%w: the wait queue node keeps disappearing", locking.ErrUnavailable)
}

// waiters returns the waiter node names of a listing in queue order.
func waiters(kids []string) []string {
	out := make([]string, 0, len(kids))
	for _, k := range kids {
		if _, ok := seqOf(k); ok && strings.HasPrefix(k, "w-") {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, c string) int {
		x, _ := seqOf(a)
		y, _ := seqOf(c)
		return int(min(max(x-y, -1), 1))
	})
	return out
}

// waitGone sets a watch on p and waits until p is deleted or changed, or for
// recheck (a bound on lost notifications), or for ctx.
func (b *Backend) waitGone(ctx context.Context, p string, recheck time.Duration) error {
	var exists bool
	var ch <-chan zk.Event
	err := b.idem(ctx, func() error {
		_, _, err := b.exec(func() error {
			var e error
			exists, _, ch, e = b.conn.ExistsW(p)
			return e
		})
		return err
	})
	if err != nil || !exists {
		return err
	}
	t := time.NewTimer(recheck)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return errors.Join(locking.ErrUnavailable, ctx.Err())
	case <-b.closing:
		return locking.ErrClosed
	}
}

// dropWaiter deletes a waiter node of ours; if the server cannot be reached it is
// retried in the background (while the session lasts: the node is ephemeral).
func (b *Backend) dropWaiter(p string) {
	ctx, cancel := context.WithTimeout(context.Background(), min(max(b.SessionTimeout()/2, 500*time.Millisecond), 2*time.Second))
	defer cancel()
	if err := b.deleteNode(ctx, p, -1); err != nil && !errors.Is(err, locking.ErrClosed) {
		b.log.Warn("could not delete a waiter node; retrying in the background", zap.String("path", p), zap.Error(err))
		b.mu.Lock()
		b.orphans[p] = b.conn.SessionID()
		b.mu.Unlock()
	}
}

// deleteNode deletes p at version; a missing node is not an error.
func (b *Backend) deleteNode(ctx context.Context, p string, version int32) error {
	err := b.do(ctx, func() error {
		_, _, err := b.exec(func() error { return b.conn.Delete(p, version) })
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	return err
}

// retryOrphans retries deleting abandoned waiter nodes (one pass at a time).
func (b *Backend) retryOrphans() {
	b.mu.Lock()
	if len(b.orphans) == 0 && len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	paths := make([]string, 0, len(b.orphans))
	for p := range b.orphans {
		paths = append(paths, p)
	}
	pending := map[string][]string{}
	for dir, owners := range b.pending {
		for o := range owners {
			pending[dir] = append(pending[dir], o)
		}
	}
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, p := range paths {
		if err := b.deleteNode(ctx, p, -1); err == nil {
			b.mu.Lock()
			delete(b.orphans, p)
			b.mu.Unlock()
		}
	}
	for dir, owners := range pending {
		kids, err := b.children(ctx, dir)
		if err != nil {
			continue
		}
		for _, o := range owners {
			ok := true
			for _, k := range kids {
				if strings.HasPrefix(k, "w-"+o+"-") && b.deleteNode(ctx, dir+"/"+k, -1) != nil {
					ok = false
				}
			}
			if ok {
				b.mu.Lock()
				delete(b.pending[dir], o)
				if len(b.pending[dir]) == 0 {
					delete(b.pending, dir)
				}
				b.mu.Unlock()
			}
		}
	}
}
