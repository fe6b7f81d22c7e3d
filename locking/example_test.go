package locking_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/memlock"
)

// A tick is claimed once; the winner works under its lease and completes it,
// and later claims of the same tick find it done.
func Example() {
	ctx := context.Background()
	locker, err := locking.New(memlock.New())
	if err != nil {
		panic(err)
	}
	tick := locking.Key{Scope: "reconcile-payments", Name: "2026-11-25T02:30:00Z"}

	lease, err := locker.Claim(ctx, tick, 10*time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Println("won with token", lease.Token())

	// Work under lease.Context(): it is cancelled if the lease is lost.
	if err := lease.Check(); err != nil {
		panic(err)
	}
	err = lease.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded, Replica: "a"}, 48*time.Hour)
	fmt.Println("completed:", err == nil)

	_, err = locker.Claim(ctx, tick, 10*time.Second)
	fmt.Println("claim again:", errors.Is(err, locking.ErrDone))

	next, _ := locker.Claim(ctx, locking.Key{Scope: "reconcile-payments", Name: "2026-11-26T02:30:00Z"}, 10*time.Second)
	fmt.Println("next tick's token is higher:", next.Token() > lease.Token())
	_ = next.Release(ctx)

	recs, _ := locker.Records(ctx, "reconcile-payments", 10)
	fmt.Println(recs[0].Key.Name, recs[0].Outcome, recs[0].Token)
	// Output:
	// won with token 1
	// completed: true
	// claim again: true
	// next tick's token is higher: true
	// 2026-11-25T02:30:00Z succeeded 1
}

// Two claims race; exactly one wins and the other learns who holds the key.
func ExampleLocker_Claim() {
	ctx := context.Background()
	locker, _ := locking.New(memlock.New())
	key := locking.Key{Scope: "job", Name: "2026-11-25T00:00:00Z"}
	a, _ := locker.Claim(ctx, key, 5*time.Second)
	_, err := locker.Claim(ctx, key, 5*time.Second)
	fmt.Println(errors.Is(err, locking.ErrHeld))
	_ = a.Release(ctx)
	b, err := locker.Claim(ctx, key, 5*time.Second)
	fmt.Println(err == nil, b.Token() > a.Token())
	_ = b.Release(ctx)
	// Output:
	// true
	// true true
}

// A replica that lost the race for a tick waits for the winner without asking
// the backend again: it learns that the winner completed the tick, or takes the
// tick over when the winner releases it (or dies and its lease expires).
func ExampleLocker_TakeOver() {
	ctx := context.Background()
	locker, _ := locking.New(memlock.New())
	ttl := 5 * time.Second
	for _, winnerEnds := range []string{"completes", "releases"} {
		tick := locking.Key{Scope: "job", Name: "2026-11-25T00:00:00Z-" + winnerEnds}
		winner, _ := locker.Claim(ctx, tick, ttl)
		if _, err := locker.Claim(ctx, tick, ttl); !errors.Is(err, locking.ErrHeld) {
			panic(err)
		}
		go func() {
			time.Sleep(10 * time.Millisecond) // the winner's run
			if winnerEnds == "completes" {
				_ = winner.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour)
			} else {
				_ = winner.Release(ctx)
			}
		}()
		lease, err := locker.TakeOver(ctx, tick, ttl)
		switch {
		case errors.Is(err, locking.ErrDone):
			fmt.Println("the winner", winnerEnds, "the tick: nothing to take over")
		case err == nil:
			fmt.Println("the winner", winnerEnds, "the tick: taken over with a higher token:", lease.Token() > winner.Token())
			_ = lease.Release(ctx)
		}
	}
	// Output:
	// the winner completes the tick: nothing to take over
	// the winner releases the tick: taken over with a higher token: true
}
