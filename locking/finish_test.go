package locking_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/memlock"
)

// gatedFinisher is the memory backend with batched completions that wait at
// a gate, so a test can hold batches in flight; it notes each batch's size.
type gatedFinisher struct {
	*memlock.Backend
	gate  chan struct{}
	mu    sync.Mutex
	sizes []int
}

func (g *gatedFinisher) FinishBatch(ctx context.Context, reqs []locking.FinishRequest) []error {
	g.mu.Lock()
	g.sizes = append(g.sizes, len(reqs))
	gate := g.gate
	g.mu.Unlock()
	<-gate
	errs := make([]error, len(reqs))
	for i, r := range reqs {
		if r.Record != nil {
			errs[i] = g.Complete(ctx, r.Grant, *r.Record, r.Retention)
		} else {
			errs[i] = g.Release(ctx, r.Grant)
		}
	}
	return errs
}

// hold makes the next batches wait until the returned function is called.
func (g *gatedFinisher) hold() (open func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = make(chan struct{})
	return func() { close(g.gate) }
}

func (g *gatedFinisher) batches() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Sorted(slices.Values(g.sizes))
}

func claimN(t *testing.T, l *locking.Locker, n int) []*locking.Lease {
	t.Helper()
	var keys []locking.Key
	for i := range n {
		keys = append(keys, locking.Key{Scope: "s", Name: fmt.Sprint(i)})
	}
	leases, errs := l.ClaimBatch(t.Context(), keys, 10*time.Second)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	return leases
}

// TestFinishCoalesces: the first completions are sent at once, one by one;
// those that come while they are in flight go together in the next batch,
// and each caller gets its own result.
func TestFinishCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &gatedFinisher{Backend: memlock.New()}
		l, err := locking.New(b)
		if err != nil {
			t.Fatal(err)
		}
		leases := claimN(t, l, 11)
		b.hold()() // the gate is open
		if err := leases[10].Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		b.sizes = nil
		b.mu.Unlock()
		open := b.hold()
		errs := make([]error, 11)
		var wg sync.WaitGroup
		end := func(i int) {
			wg.Go(func() {
				if i%2 == 0 {
					errs[i] = leases[i].Complete(t.Context(), locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour)
				} else {
					errs[i] = leases[i].Release(t.Context())
				}
			})
		}
		end(0)
		synctest.Wait()
		end(1)
		synctest.Wait() // two batches of one in flight
		for i := 2; i <= 10; i++ {
			end(i)
		}
		synctest.Wait() // eight queued (the released lease is refused at once)
		open()
		wg.Wait()
		if got := b.batches(); !slices.Equal(got, []int{1, 1, 8}) {
			t.Errorf("batch sizes %v, want [1 1 8]", got)
		}
		for i, err := range errs {
			switch {
			case i == 10 && !errors.Is(err, locking.ErrNotHeld):
				t.Errorf("ending a released lease: %v, want ErrNotHeld", err)
			case i < 10 && err != nil:
				t.Errorf("lease %d: %v", i, err)
			}
		}
		for i := range 10 {
			_, err := l.Claim(t.Context(), leases[i].Key(), time.Second)
			if done := errors.Is(err, locking.ErrDone); done != (i%2 == 0) {
				t.Errorf("key %d after its lease ended: claim %v", i, err)
			}
		}
	})
}

// TestFinishCallerLeaves: a completion whose caller gives up while it waits
// for a batch returns ErrUnavailable and is not sent; its lease stays held.
func TestFinishCallerLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &gatedFinisher{Backend: memlock.New()}
		l, err := locking.New(b)
		if err != nil {
			t.Fatal(err)
		}
		leases := claimN(t, l, 3)
		open := b.hold()
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() { _ = leases[i].Release(t.Context()) })
			synctest.Wait() // a batch of one in flight
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		err = leases[2].Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour)
		if !errors.Is(err, locking.ErrUnavailable) {
			t.Errorf("complete whose caller left: %v, want ErrUnavailable", err)
		}
		open()
		wg.Wait()
		synctest.Wait()
		if got := b.batches(); !slices.Equal(got, []int{1, 1}) {
			t.Errorf("batch sizes %v, want [1 1]: the abandoned completion was sent", got)
		}
		if err := leases[2].Check(); err != nil {
			t.Errorf("lease after an abandoned completion: %v, want held", err)
		}
		if err := leases[2].Release(t.Context()); err != nil {
			t.Errorf("release: %v", err)
		}
	})
}
