package etcdlock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
)

// countingWatcher counts the watches opened through an etcd client.
type countingWatcher struct {
	clientv3.Watcher
	n *atomic.Int64
}

func (c countingWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	c.n.Add(1)
	return c.Watcher.Watch(ctx, key, opts...)
}

// waitHelpers returns, for keys of scope: lose, which has holder claim a key
// and waiter lose it; wait, which starts waiter's Wait for a key; and result,
// which returns what that Wait returned (failing the test after 10 s).
func waitHelpers(t *testing.T, holder, waiter *etcdlock.Backend, scope string) (
	lose func(name string) (locking.Key, locking.Grant), wait func(locking.Key) <-chan error, result func(<-chan error) error) {
	ctx := testCtx(t)
	lose = func(name string) (locking.Key, locking.Grant) {
		t.Helper()
		key := locking.Key{Scope: scope, Name: name}
		g, err := holder.Claim(ctx, key, locking.NewOwner(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := waiter.Claim(ctx, key, locking.NewOwner(), ttl); !errors.Is(err, locking.ErrHeld) {
			t.Fatalf("waiter's claim of %s: %v, want ErrHeld", name, err)
		}
		return key, g
	}
	wait = func(key locking.Key) <-chan error {
		c := make(chan error, 1)
		go func() { c <- waiter.Wait(ctx, key) }()
		return c
	}
	result = func(c <-chan error) error {
		t.Helper()
		select {
		case err := <-c:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Wait did not return")
			return nil
		}
	}
	return lose, wait, result
}

// TestWaitsShareOneWatch: the Waits of one backend share one watch of the
// namespace, each learns its own key's completion (ErrDone) or release (nil),
// a Wait that comes after its key's event finds it at once, a Wait for a claim
// older than the shared watch watches its own key, and Close ends a Wait.
func TestWaitsShareOneWatch(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	holder := newBackend(t, ns)
	cli := rawClient(t)
	watches := new(atomic.Int64)
	cli.Watcher = countingWatcher{cli.Watcher, watches}
	waiter, err := etcdlock.NewFromClient(cli, etcdlock.WithNamespace(ns), etcdlock.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = waiter.Close() })
	rec := locking.Record{Outcome: locking.OutcomeSucceeded}
	lose, wait, result := waitHelpers(t, holder, waiter, "hub")
	oldKey, oldGrant := lose("old") // lost before the shared watch starts

	const n = 20
	waits := make([]<-chan error, n)
	grants := make([]locking.Grant, n)
	for i := range n {
		var key locking.Key
		key, grants[i] = lose(fmt.Sprint("k", i))
		waits[i] = wait(key)
	}
	for i, g := range grants {
		if i%2 == 0 {
			err = holder.Complete(ctx, g, rec, time.Hour)
		} else {
			err = holder.Release(ctx, g)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range waits {
		err := result(c)
		if i%2 == 0 && !errors.Is(err, locking.ErrDone) {
			t.Errorf("Wait of completed key %d: %v, want ErrDone", i, err)
		}
		if i%2 == 1 && err != nil {
			t.Errorf("Wait of released key %d: %v, want nil", i, err)
		}
	}
	if w := watches.Load(); w != 1 {
		t.Errorf("%d watches for %d Waits, want 1", w, n)
	}

	t.Run("event before the Wait", func(t *testing.T) {
		early, g := lose("early")
		if err := holder.Complete(ctx, g, rec, time.Hour); err != nil {
			t.Fatal(err)
		}
		// Once a later event reached the hub, so did early's completion.
		later, lg := lose("later")
		c := wait(later)
		if err := holder.Release(ctx, lg); err != nil {
			t.Fatal(err)
		}
		if err := result(c); err != nil {
			t.Fatalf("Wait of later: %v", err)
		}
		if err := result(wait(early)); !errors.Is(err, locking.ErrDone) {
			t.Errorf("Wait after the completion: %v, want ErrDone", err)
		}
		if w := watches.Load(); w != 1 {
			t.Errorf("%d watches, want 1", w)
		}
	})
	t.Run("claim older than the watch", func(t *testing.T) {
		c := wait(oldKey)
		time.Sleep(50 * time.Millisecond) // let it start its own watch
		if err := holder.Complete(ctx, oldGrant, rec, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := result(c); !errors.Is(err, locking.ErrDone) {
			t.Errorf("Wait: %v, want ErrDone", err)
		}
		if w := watches.Load(); w != 2 {
			t.Errorf("%d watches, want 2 (the shared one and its own)", w)
		}
	})
	t.Run("close", func(t *testing.T) {
		key, _ := lose("close")
		c := wait(key)
		time.Sleep(50 * time.Millisecond)
		if err := waiter.Close(); err != nil {
			t.Fatal(err)
		}
		if err := result(c); err != nil && !errors.Is(err, locking.ErrClosed) {
			t.Errorf("Wait after Close: %v, want nil or ErrClosed", err)
		}
	})
}

// cuttableWatcher records the keys watched through an etcd client and can end
// every watch opened so far, as a broken stream would.
type cuttableWatcher struct {
	clientv3.Watcher
	mu   sync.Mutex
	keys []string
	cuts []context.CancelFunc
}

func (c *cuttableWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.keys = append(c.keys, key)
	c.cuts = append(c.cuts, cancel)
	c.mu.Unlock()
	return c.Watcher.Watch(ctx, key, opts...)
}

func (c *cuttableWatcher) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cancel := range c.cuts {
		cancel()
	}
}

func (c *cuttableWatcher) watched() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.keys...)
}

// TestWaitAfterTheSharedWatchFails: when the shared watch ends, its Waits
// return (their callers claim again); Waits in the second after it watch
// their own key, and later ones start the shared watch again.
func TestWaitAfterTheSharedWatchFails(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	holder := newBackend(t, ns)
	cli := rawClient(t)
	cw := &cuttableWatcher{Watcher: cli.Watcher}
	cli.Watcher = cw
	waiter, err := etcdlock.NewFromClient(cli, etcdlock.WithNamespace(ns), etcdlock.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = waiter.Close() })
	lose, wait, result := waitHelpers(t, holder, waiter, "cut")
	prefix := "/" + ns + "/"

	a, _ := lose("a")
	ca := wait(a)
	time.Sleep(50 * time.Millisecond) // registered on the shared watch
	cw.cut()
	if err := result(ca); err != nil {
		t.Errorf("Wait when the shared watch ended: %v, want nil", err)
	}

	b, gb := lose("b")
	cb := wait(b)
	time.Sleep(50 * time.Millisecond)
	if err := holder.Complete(ctx, gb, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := result(cb); !errors.Is(err, locking.ErrDone) {
		t.Errorf("Wait right after the failure: %v, want ErrDone", err)
	}

	time.Sleep(time.Second) // past the retry delay
	c, gc := lose("c")
	cc := wait(c)
	time.Sleep(50 * time.Millisecond)
	if err := holder.Release(ctx, gc); err != nil {
		t.Fatal(err)
	}
	if err := result(cc); err != nil {
		t.Errorf("Wait after the retry delay: %v, want nil", err)
	}
	want := []string{prefix, prefix + "cut/lock/b", prefix}
	if got := cw.watched(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("watched %q, want %q", got, want)
	}
}
