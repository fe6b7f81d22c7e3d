package etcdlock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/oncecron/oncecron/locking"
)

// TestTakeOverWaits: a replica that lost a key's race waits on a watch, with
// no request beyond its lost claim when the winner completes, takes the key
// over at once when the winner releases it, and when the winner's lease
// expires unrenewed.
func TestTakeOverWaits(t *testing.T) {
	ns := newNamespace()
	winner := newLocker(t, newBackend(t, ns))
	lb, txns, other := countingBackend(t, ns)
	loser := newLocker(t, lb)
	ctx := testCtx(t)
	const ttl = 2 * time.Second
	// The loser's session exists before counting.
	if l, err := loser.Claim(ctx, locking.Key{Scope: "warm", Name: "up"}, ttl); err != nil {
		t.Fatal(err)
	} else if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	claimLost := func(name string) (*locking.Lease, locking.Key) {
		t.Helper()
		key := locking.Key{Scope: "job", Name: name}
		w, err := winner.Claim(ctx, key, ttl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := loser.Claim(ctx, key, ttl); !errors.Is(err, locking.ErrHeld) {
			t.Fatalf("loser's claim: %v, want ErrHeld", err)
		}
		return w, key
	}
	requests := func() int64 { return txns.Load() + other.Load() }

	t.Run("completed", func(t *testing.T) {
		w, key := claimLost("completed")
		before := requests() - 1 // the lost claim
		go func() {
			time.Sleep(200 * time.Millisecond)
			_ = w.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Minute)
		}()
		if _, err := loser.TakeOver(ctx, key, ttl); !errors.Is(err, locking.ErrDone) {
			t.Fatalf("TakeOver: %v, want ErrDone", err)
		}
		if n := requests() - before; n != 1 {
			t.Errorf("%d requests for the loser, want 1 (its lost claim)", n)
		}
	})
	t.Run("released", func(t *testing.T) {
		w, key := claimLost("released")
		start := time.Now()
		go func() {
			time.Sleep(200 * time.Millisecond)
			_ = w.Release(ctx)
		}()
		l, err := loser.TakeOver(ctx, key, ttl)
		if err != nil {
			t.Fatalf("TakeOver: %v", err)
		}
		defer func() { _ = l.Release(ctx) }()
		if d := time.Since(start); d > ttl {
			t.Errorf("taken over %v after the claim, want right after the release (200ms)", d)
		}
	})
	t.Run("expired", func(t *testing.T) {
		dead := newBackend(t, ns) // a holder that stops renewing
		key := locking.Key{Scope: "job", Name: "expired"}
		if _, err := dead.Claim(ctx, key, locking.NewOwner(), ttl); err != nil {
			t.Fatal(err)
		}
		if _, err := loser.Claim(ctx, key, ttl); !errors.Is(err, locking.ErrHeld) {
			t.Fatalf("loser's claim: %v, want ErrHeld", err)
		}
		start := time.Now()
		_ = dead.Close() // keep-alives stop: the lease expires on the server
		l, err := loser.TakeOver(ctx, key, ttl)
		if err != nil {
			t.Fatalf("TakeOver: %v", err)
		}
		defer func() { _ = l.Release(ctx) }()
		if d := time.Since(start); d > ttl+time.Second {
			t.Errorf("taken over %v after the holder stopped, want within the TTL (%v) and a second", d, ttl)
		}
	})
	t.Run("without a claim", func(t *testing.T) {
		w, key := claimLost("read")
		if err := w.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := lb.Wait(ctx, key); !errors.Is(err, locking.ErrDone) {
			t.Errorf("Wait: %v, want ErrDone", err)
		}
		if err := lb.Wait(ctx, locking.Key{Scope: "job", Name: "free"}); err != nil {
			t.Errorf("Wait of a free key: %v, want nil", err)
		}
	})
}
