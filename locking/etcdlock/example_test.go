package etcdlock_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
)

// Every replica runs the same code; for each tick exactly one of them wins the
// claim and runs the job, the others get ErrHeld (while it runs) or ErrDone
// (after it completed). It needs an etcd server, so it is compiled but not run.
func Example() {
	ctx := context.Background()
	b, err := etcdlock.New(ctx, []string{"127.0.0.1:2379"}, etcdlock.WithNamespace("prod"))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	l, err := locking.New(b)
	if err != nil {
		log.Fatal(err)
	}

	tick := locking.Key{Scope: "nightly-report", Name: "2026-11-25T02:30:00Z"}
	lease, err := l.Claim(ctx, tick, 10*time.Second)
	switch {
	case errors.Is(err, locking.ErrHeld), errors.Is(err, locking.ErrDone):
		return // another replica runs or ran this tick
	case err != nil:
		log.Fatal(err)
	}
	started := time.Now()
	// Run the job under lease.Context(), passing lease.Token() to the systems it
	// writes to so that they can fence off a former holder.
	runErr := runJob(lease.Context(), lease.Token())
	rec := locking.Record{Outcome: locking.OutcomeSucceeded, Started: started, Ended: time.Now()}
	if runErr != nil {
		rec.Outcome, rec.Error = locking.OutcomeFailed, runErr.Error()
	}
	if err := lease.Complete(ctx, rec, 48*time.Hour); err != nil {
		log.Print(err) // lost: another replica may run the tick again
	}
}

func runJob(ctx context.Context, token uint64) error { return ctx.Err() }
