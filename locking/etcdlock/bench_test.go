package etcdlock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/oncecron/oncecron/locking"
)

// BenchmarkClaimComplete: an uncontended Claim and Complete through a Locker
// (two transactions; the retention leases are shared).
func BenchmarkClaimComplete(b *testing.B) {
	ctx := context.Background()
	be := newBackend(b, newNamespace())
	l := newLocker(b, be)
	rec := locking.Record{Outcome: locking.OutcomeSucceeded}
	b.ResetTimer()
	for i := range b.N {
		lease, err := l.Claim(ctx, locking.Key{Scope: "bench", Name: fmt.Sprint("t", i)}, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if err := lease.Complete(ctx, rec, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawTxnPutDelete is the floor of BenchmarkClaimComplete: a raw
// put-if-absent transaction on an existing lease and a delete.
func BenchmarkRawTxnPutDelete(b *testing.B) {
	ctx := context.Background()
	cli := rawClient(b)
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Revoke(ctx, lease.ID) //nolint:errcheck // cleanup
	prefix := "/" + newNamespace() + "/raw/"
	b.ResetTimer()
	for i := range b.N {
		k := prefix + fmt.Sprint(i)
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, "owner", clientv3.WithLease(lease.ID))).
			Commit()
		if err != nil || !resp.Succeeded {
			b.Fatal(err)
		}
		if _, err := cli.Delete(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClaimLostRace: per round, 8 goroutines (on two backends) race for one
// key; the losers cost one request each, the winner releases. ns/op is per
// round.
func BenchmarkClaimLostRace(b *testing.B) {
	ctx := context.Background()
	ns := newNamespace()
	be1, txns1, other1 := countingBackend(b, ns)
	be2, txns2, other2 := countingBackend(b, ns)
	ls := []*locking.Locker{newLocker(b, be1), newLocker(b, be2)}
	const racers = 8
	b.ResetTimer()
	for i := range b.N {
		key := locking.Key{Scope: "race", Name: fmt.Sprint("r", i)}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won *locking.Lease
		for r := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lease, err := ls[r%2].Claim(ctx, key, 10*time.Second)
				if err == nil {
					mu.Lock()
					won = lease
					mu.Unlock()
				} else if !errors.Is(err, locking.ErrHeld) {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		if won == nil {
			b.Fatal("no winner")
		}
		if err := won.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reqs := txns1.Load() + txns2.Load() + other1.Load() + other2.Load()
	b.ReportMetric(float64(reqs)/float64(b.N), "requests/round")
}
