package zklock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/oncecron/oncecron/locking"
)

// BenchmarkClaimComplete is one scheduler tick through the Locker: claim a fresh
// key (one multi) and complete it (one multi).
func BenchmarkClaimComplete(b *testing.B) {
	ctx := context.Background()
	l := newLocker(b, newBackend(b, ""))
	scope := "bench-cc." + locking.NewOwner()[:8]
	b.ResetTimer()
	for i := range b.N {
		lease, err := l.Claim(ctx, locking.Key{Scope: scope, Name: fmt.Sprint(i)}, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if err := lease.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawCreateDelete is the floor: two plain requests of the client,
// create an ephemeral node and delete it.
func BenchmarkRawCreateDelete(b *testing.B) {
	be := newBackend(b, "")
	c := be.conn
	dir := be.root + "/bench-raw"
	if _, err := c.Create(be.root, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		b.Fatal(err)
	}
	if _, err := c.Create(dir, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		p := fmt.Sprintf("%s/n%d", dir, i)
		if _, err := c.Create(p, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			b.Fatal(err)
		}
		if err := c.Delete(p, -1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClaimLostRace is one round of 8 replicas racing for a tick: one wins
// and completes, seven lose (ErrHeld or ErrDone).
func BenchmarkClaimLostRace(b *testing.B) {
	ctx := context.Background()
	const racers = 8
	var ls []*locking.Locker
	for range racers {
		ls = append(ls, newLocker(b, newBackend(b, "")))
	}
	scope := "bench-race." + locking.NewOwner()[:8]
	b.ResetTimer()
	for i := range b.N {
		key := locking.Key{Scope: scope, Name: fmt.Sprint(i)}
		var wg sync.WaitGroup
		for _, l := range ls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lease, err := l.Claim(ctx, key, time.Second)
				switch {
				case err == nil:
					if err := lease.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
						b.Error(err)
					}
				case errors.Is(err, locking.ErrHeld), errors.Is(err, locking.ErrDone):
				default:
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
}
