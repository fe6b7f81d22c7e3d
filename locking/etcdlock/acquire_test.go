package etcdlock_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/oncecron/oncecron/locking"
)

// waitForKeys waits until prefix holds n keys.
func waitForKeys(t *testing.T, prefix string, n int64) {
	t.Helper()
	cli := rawClient(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := countKeys(t, cli, prefix)
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d keys, want %d", prefix, got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAcquireQueue: 10 waiters queued behind a holder are served one at a time,
// in the order they queued, with one transaction per wake-up.
func TestAcquireQueue(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	const waiters, qttl = 10, 5 * time.Second // a long ttl: no fallback re-checks
	holder := newBackend(t, ns)
	key := locking.Key{Scope: "q", Name: "k"}
	hg, err := holder.Claim(ctx, key, locking.NewOwner(), qttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	b, txns, other := countingBackend(t, ns)
	waitPrefix := "/" + ns + "/q/wait/k/"
	type result struct {
		i int
		g locking.Grant
	}
	got := make(chan result, waiters)
	errc := make(chan error, waiters)
	for i := range waiters {
		go func() {
			g, err := b.Acquire(ctx, key, locking.NewOwner(), qttl)
			if err != nil {
				errc <- err
				return
			}
			got <- result{i, g}
		}()
		waitForKeys(t, waitPrefix, int64(i+1)) // queue them in order
	}
	queued := txns.Load()
	if err := holder.Release(ctx, hg); err != nil {
		t.Fatalf("release: %v", err)
	}
	last := hg.Token
	for want := range waiters {
		select {
		case r := <-got:
			if r.i != want {
				t.Errorf("waiter %d served in place %d", r.i, want)
			}
			if r.g.Token <= last {
				t.Errorf("token %d, want > %d", r.g.Token, last)
			}
			last = r.g.Token
			select {
			case r2 := <-got:
				t.Fatalf("waiter %d served while %d holds", r2.i, r.i)
			case <-time.After(20 * time.Millisecond):
			}
			if err := b.Release(ctx, r.g); err != nil {
				t.Fatalf("release: %v", err)
			}
		case err := <-errc:
			t.Fatalf("acquire: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("waiter %d not served", want)
		}
	}
	// After the release, per waiter: a claim transaction when the waiter
	// before it won (its waiter key goes with its win, and the lock is then
	// held), one when that waiter released, and its own release (made here).
	woken := txns.Load() - queued
	t.Logf("%d transactions to queue %d waiters, %d to serve them (and release); %d other requests", queued, waiters, woken, other.Load())
	if woken > 3*waiters+2 {
		t.Errorf("%d transactions to serve %d waiters, want about %d", woken, waiters, 3*waiters)
	}
	if n := countKeys(t, rawClient(t), "/"+ns+"/"); n != 0 {
		t.Errorf("%d keys left", n)
	}
}

// TestAcquireCancel: cancelled waiters remove their waiter keys, and the
// waiters behind them are still served.
func TestAcquireCancel(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b := newBackend(t, ns)
	key := locking.Key{Scope: "c", Name: "k"}
	hg, err := b.Claim(ctx, key, locking.NewOwner(), ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	waitPrefix := "/" + ns + "/c/wait/k/"
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 5)
	for i := range 5 {
		go func() {
			_, err := b.Acquire(cctx, key, locking.NewOwner(), ttl)
			errc <- err
		}()
		waitForKeys(t, waitPrefix, int64(i+1))
	}
	// One more waiter behind the five, not cancelled.
	lastc := make(chan error, 1)
	var lastGrant locking.Grant
	go func() {
		var err error
		lastGrant, err = b.Acquire(ctx, key, locking.NewOwner(), ttl)
		lastc <- err
	}()
	waitForKeys(t, waitPrefix, 6)
	cancel()
	for range 5 {
		err := <-errc
		if !errors.Is(err, context.Canceled) || !errors.Is(err, locking.ErrHeld) {
			t.Errorf("cancelled acquire: %v, want ErrHeld and context.Canceled", err)
		}
	}
	waitForKeys(t, waitPrefix, 1)
	if err := b.Release(ctx, hg); err != nil {
		t.Fatalf("release: %v", err)
	}
	select {
	case err := <-lastc:
		if err != nil {
			t.Fatalf("last waiter: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter behind the cancelled ones was not served")
	}
	if err := b.Complete(ctx, lastGrant, locking.Record{Key: key}, time.Hour); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if n := countKeys(t, rawClient(t), waitPrefix); n != 0 {
		t.Errorf("%d waiter keys left", n)
	}
	// A completed key: Acquire returns ErrDone at once.
	if _, err := b.Acquire(ctx, key, locking.NewOwner(), ttl); !errors.Is(err, locking.ErrDone) {
		t.Errorf("acquire of a completed key: %v, want ErrDone", err)
	}
}

// TestAcquireDoneWakesAll: waiters of a key that gets completed all end with
// ErrDone, one after the other.
func TestAcquireDoneWakesAll(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b := newBackend(t, ns)
	key := locking.Key{Scope: "d", Name: "k"}
	hg, err := b.Acquire(ctx, key, locking.NewOwner(), ttl)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	errc := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := b.Acquire(ctx, key, locking.NewOwner(), ttl)
			errc <- err
		}()
		waitForKeys(t, "/"+ns+"/d/wait/k/", int64(i+1))
	}
	if err := b.Complete(ctx, hg, locking.Record{Key: key}, time.Hour); err != nil {
		t.Fatalf("complete: %v", err)
	}
	for range 4 {
		select {
		case err := <-errc:
			if !errors.Is(err, locking.ErrDone) {
				t.Errorf("waiter: %v, want ErrDone", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("waiter not woken by the completion")
		}
	}
	if n := countKeys(t, rawClient(t), "/"+ns+"/d/wait/"); n != 0 {
		t.Errorf("%d waiter keys left", n)
	}
}

// TestAcquireSessionLoss: a waiter whose session is revoked queues again on a
// new session and is still served.
func TestAcquireSessionLoss(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	holder, b := newBackend(t, ns), newBackend(t, ns)
	key := locking.Key{Scope: "sl", Name: "k"}
	hg, err := holder.Claim(ctx, key, locking.NewOwner(), ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	done := make(chan error, 1)
	var g locking.Grant
	go func() {
		var err error
		g, err = b.Acquire(ctx, key, locking.NewOwner(), ttl)
		done <- err
	}()
	waitForKeys(t, "/"+ns+"/sl/wait/k/", 1)
	cli := rawClient(t)
	resp, err := cli.Get(ctx, "/"+ns+"/sl/wait/k/", clientOpts()...)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("waiter key: %v", err)
	}
	if _, err := cli.Revoke(ctx, leaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := holder.Release(ctx, hg); err != nil {
		t.Fatalf("release: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
	case <-time.After(3 * ttl):
		t.Fatal("waiter not served after its session was lost")
	}
	if g.Rev == fmt.Sprintf("%x", resp.Kvs[0].Lease) {
		t.Errorf("grant on the revoked session")
	}
}
