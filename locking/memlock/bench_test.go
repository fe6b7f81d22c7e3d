package memlock_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/memlock"
)

// The in-process backend has no server, so these measure the Locker's own cost
// (owner id, lease, watchdog goroutine, record) plus memlock's map updates.

func benchLocker(b *testing.B) *locking.Locker {
	b.Helper()
	be := memlock.New()
	b.Cleanup(func() { _ = be.Close() })
	l, err := locking.New(be)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkClaimComplete: an uncontended Claim of a fresh key and its Complete
// (retention 1m, as the Redis benchmark) through a Locker. Key names are made
// before the timer starts, so allocs/op are the Locker's and memlock's only
// (including memlock's done map growing by one entry per op).
func BenchmarkClaimComplete(b *testing.B) {
	ctx := context.Background()
	l := benchLocker(b)
	names := make([]string, b.N)
	for i := range names {
		names[i] = strconv.Itoa(i)
	}
	rec := locking.Record{Outcome: locking.OutcomeSucceeded}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		lease, err := l.Claim(ctx, locking.Key{Scope: "bench", Name: names[i]}, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if err := lease.Complete(ctx, rec, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClaimRelease: Claim and Release of the same key through a Locker.
func BenchmarkClaimRelease(b *testing.B) {
	ctx := context.Background()
	l := benchLocker(b)
	key := locking.Key{Scope: "bench", Name: "release"}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		lease, err := l.Claim(ctx, key, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if err := lease.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
