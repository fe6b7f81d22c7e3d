package zklock

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
)

// waitSent waits until n has counted want requests since before (the loser's
// watch is set), and a moment more for the server to register it. It may run
// in a goroutine of the test: it reports a timeout with Error.
func waitSent(t *testing.T, n *atomic.Int64, before, want int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); n.Load()-before < want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the loser sent %d requests, want %d", n.Load()-before, want)
			return
		}
	}
	time.Sleep(50 * time.Millisecond)
}

// TestTakeOverWaits: a replica that lost a key's race waits on a watch of the
// held node: a completion costs it one request beyond its lost claim and ends
// in ErrDone; a release, or the end of the holder's session, lets it take the
// key over at once.
func TestTakeOverWaits(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	scope := testScope(t)
	winner := newLocker(t, newBackend(t, ""))
	lb, n := countedBackend(t)
	loser := newLocker(t, lb)
	const ttl = testTTL
	// The loser's first claim in the scope checks the scope's nodes once.
	if l, err := loser.Claim(ctx, locking.Key{Scope: scope, Name: "warm"}, ttl); err != nil {
		t.Fatal(err)
	} else if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	claimLost := func(t *testing.T, name string) (*locking.Lease, locking.Key) {
		t.Helper()
		key := locking.Key{Scope: scope, Name: name}
		w, err := winner.Claim(ctx, key, ttl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := loser.Claim(ctx, key, ttl); !errors.Is(err, locking.ErrHeld) {
			t.Fatalf("loser's claim: %v, want ErrHeld", err)
		}
		return w, key
	}

	t.Run("completed", func(t *testing.T) {
		before := n.Load()
		w, key := claimLost(t, "completed")
		go func() {
			waitSent(t, n, before, 2)
			_ = w.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Minute)
		}()
		if _, err := loser.TakeOver(ctx, key, ttl); !errors.Is(err, locking.ErrDone) {
			t.Fatalf("TakeOver: %v, want ErrDone", err)
		}
		if k := n.Load() - before; k != 2 {
			t.Errorf("%d requests for the loser, want 2 (its lost claim and the watch)", k)
		}
	})
	t.Run("released", func(t *testing.T) {
		before := n.Load()
		w, key := claimLost(t, "released")
		released := make(chan time.Time, 1)
		go func() {
			waitSent(t, n, before, 2)
			released <- time.Now()
			_ = w.Release(ctx)
		}()
		l, err := loser.TakeOver(ctx, key, ttl)
		if err != nil {
			t.Fatalf("TakeOver: %v", err)
		}
		defer func() { _ = l.Release(ctx) }()
		if d := time.Since(<-released); d > time.Second {
			t.Errorf("taken over %v after the release, want at once", d)
		}
		if k := n.Load() - before; k != 3 {
			t.Errorf("%d requests for the loser, want 3 (lost claim, watch, claim)", k)
		}
	})
	t.Run("holder closed", func(t *testing.T) {
		dead := newBackend(t, "")
		key := locking.Key{Scope: scope, Name: "closed"}
		if _, err := dead.Claim(ctx, key, locking.NewOwner(), ttl); err != nil {
			t.Fatal(err)
		}
		if _, err := loser.Claim(ctx, key, ttl); !errors.Is(err, locking.ErrHeld) {
			t.Fatalf("loser's claim: %v, want ErrHeld", err)
		}
		start := time.Now()
		go func() {
			time.Sleep(200 * time.Millisecond)
			_ = dead.Close() // ends the session: its ephemeral nodes go
		}()
		l, err := loser.TakeOver(ctx, key, ttl)
		if err != nil {
			t.Fatalf("TakeOver: %v", err)
		}
		defer func() { _ = l.Release(ctx) }()
		if d := time.Since(start); d > time.Second {
			t.Errorf("taken over %v after the claim, want right after the holder closed (200ms)", d)
		}
	})
	t.Run("holder cut off", func(t *testing.T) {
		const session = 2 * time.Second
		p := newProxy(t, testenv.ZKAddr(t))
		dead := newBackend(t, p.Addr(), WithSessionTimeout(session))
		key := locking.Key{Scope: scope, Name: "cut"}
		if _, err := dead.Claim(ctx, key, locking.NewOwner(), time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := loser.Claim(ctx, key, ttl); !errors.Is(err, locking.ErrHeld) {
			t.Fatalf("loser's claim: %v, want ErrHeld", err)
		}
		start := time.Now()
		p.Cut() // the server expires the holder's session
		defer p.Heal()
		l, err := loser.TakeOver(ctx, key, ttl)
		if err != nil {
			t.Fatalf("TakeOver: %v", err)
		}
		defer func() { _ = l.Release(ctx) }()
		d := time.Since(start)
		t.Logf("taken over %v after the holder was cut off (session timeout %v)", d, session)
		if d > session+2*time.Second {
			t.Errorf("taken over %v after the holder was cut off, want within its session timeout (%v) and 2s", d, session)
		}
	})
	t.Run("without a claim", func(t *testing.T) {
		w, key := claimLost(t, "read")
		if err := w.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := lb.Wait(ctx, key); !errors.Is(err, locking.ErrDone) {
			t.Errorf("Wait on a done key: %v, want ErrDone", err)
		}
		if err := lb.Wait(ctx, locking.Key{Scope: scope, Name: "free"}); err != nil {
			t.Errorf("Wait on a free key: %v, want nil", err)
		}
		// A done marker past its retention is no reason to stop: the claim
		// replaces it.
		w, key = claimLost(t, "expired")
		if err := w.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		if err := lb.Wait(ctx, key); err != nil {
			t.Errorf("Wait on an expired done key: %v, want nil", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		w, key = claimLost(t, "held")
		defer func() { _ = w.Release(ctx) }()
		if err := lb.Wait(wctx, key); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait on a held key until ctx ends: %v, want DeadlineExceeded", err)
		}
	})
}

// TestWaitOlderHolder: a key held the way older versions claim (lock and own
// nodes, no held node) is waited for on its lock node, not polled.
func TestWaitOlderHolder(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	b, n := countedBackend(t)
	c := rawConn(t)
	scope := testScope(t)
	if err := b.ensureScope(ctx, scope); err != nil {
		t.Fatal(err)
	}
	key := locking.Key{Scope: scope, Name: "k"}
	old := locking.NewOwner()
	claimAsOlder(t, b, c, key, old)
	before := n.Load()
	done := make(chan error, 1)
	go func() { done <- b.Wait(ctx, key) }()
	waitSent(t, n, before, 3) // held node, lock node, lock node with a watch
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v while the key is held", err)
	default:
	}
	if _, err := c.Multi(
		&zk.DeleteRequest{Path: b.ownPath(key, old), Version: -1},
		&zk.DeleteRequest{Path: b.lockPath(key), Version: -1},
	); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Wait after the release: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after the release")
	}
	if k := n.Load() - before; k != 3 {
		t.Errorf("%d requests, want 3", k)
	}
}

// TestWaitSessionExpires: a Wait whose own session expires (its watches with
// it) returns, and the caller claims again.
func TestWaitSessionExpires(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	const session = 2 * time.Second
	scope := testScope(t)
	holder := newBackend(t, "")
	p := newProxy(t, testenv.ZKAddr(t))
	b := newBackend(t, p.Addr(), WithSessionTimeout(session))
	key := locking.Key{Scope: scope, Name: "k"}
	g, err := holder.Claim(ctx, key, locking.NewOwner(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Release(ctx, g) }()
	if _, err := b.Claim(ctx, key, locking.NewOwner(), time.Second); !errors.Is(err, locking.ErrHeld) {
		t.Fatalf("claim: %v, want ErrHeld", err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Wait(ctx, key) }()
	time.Sleep(200 * time.Millisecond)
	p.Cut()
	time.Sleep(session + time.Second) // the server expires the session
	p.Heal()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Wait after its session expired: %v, want nil", err)
		}
	case <-time.After(5 * session):
		t.Fatal("Wait did not return after its session expired")
	}
}
