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

// BenchmarkClaim1000 claims 1,000 keys of distinct scopes (1,000 jobs firing in
// the same second) per op: in one ClaimBatch (transactions of 64 nested
// claims), and as 1,000 Claims sent 64 at a time (what a Locker does for a
// backend without BatchClaimer).
func BenchmarkClaim1000(b *testing.B) {
	const n, parallel = 1000, 64
	reqs := func(i int) []locking.ClaimRequest {
		r := make([]locking.ClaimRequest, n)
		for j := range r {
			r[j] = locking.ClaimRequest{
				Key:   locking.Key{Scope: fmt.Sprint("job", j), Name: fmt.Sprint("t", i)},
				Owner: locking.NewOwner(), TTL: time.Minute, // no expiry cleanup during the run
			}
		}
		return r
	}
	b.Run("Batch", func(b *testing.B) {
		ctx := context.Background()
		be, txns, other := countingBackend(b, newNamespace())
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			rs := reqs(i)
			b.StartTimer()
			for _, r := range be.ClaimBatch(ctx, rs) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(txns.Load()+other.Load())/float64(b.N), "requests/op")
	})
	b.Run("Single", func(b *testing.B) {
		ctx := context.Background()
		be, txns, other := countingBackend(b, newNamespace())
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			rs := reqs(i)
			b.StartTimer()
			var wg sync.WaitGroup
			sem := make(chan struct{}, parallel)
			for _, r := range rs {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					if _, err := be.Claim(ctx, r.Key, r.Owner, r.TTL); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
		}
		b.StopTimer()
		b.ReportMetric(float64(txns.Load()+other.Load())/float64(b.N), "requests/op")
	})
}
