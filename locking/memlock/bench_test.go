package memlock_test

import (
	"context"
	"runtime"
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

// steppedClock is a clock that a benchmark moves by hand (timers are real
// ones; the backend only reads Now).
type steppedClock struct{ now time.Time }

func (c *steppedClock) Now() time.Time { return c.now }
func (c *steppedClock) NewTimer(d time.Duration) locking.Timer {
	return locking.SystemClock{}.NewTimer(d)
}
func (c *steppedClock) AfterFunc(d time.Duration, f func()) locking.Timer {
	return locking.SystemClock{}.AfterFunc(d, f)
}

// BenchmarkSteadyStateHeap: 10,000 jobs each complete a tick every minute,
// on a clock that moves a minute per round, for an hour; the heap that the
// backend holds at the end, with the bounds the CLI sets for 10,000 jobs
// (markers for the longest starting deadline + TTL + 1 min, 10 records per
// job) and with none (lock.retention's 48 h, 1,000 records per job): the
// latter grows by about 430 bytes a tick, without end.
func BenchmarkSteadyStateHeap(b *testing.B) {
	const jobs, minutes = 10000, 60
	for _, tc := range []struct {
		name string
		opts []memlock.Option
	}{
		{"cli-bounds", []memlock.Option{memlock.WithMaxRetention(20*time.Second + 10*time.Second + time.Minute), memlock.WithMaxRecords(10)}},
		{"unbounded", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				ctx := context.Background()
				clk := &steppedClock{now: time.Unix(1_800_000_000, 0)}
				be := memlock.New(append(tc.opts, memlock.WithClock(clk))...)
				names := make([]string, jobs)
				for j := range names {
					names[j] = "job-" + strconv.Itoa(j)
				}
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for m := range minutes {
					tick := clk.now.UTC().Format(time.RFC3339)
					for j := range jobs {
						key := locking.Key{Scope: names[j], Name: tick}
						owner := locking.NewOwner()
						g, err := be.Claim(ctx, key, owner, 10*time.Second)
						if err != nil {
							b.Fatalf("minute %d: %v", m, err)
						}
						rec := locking.Record{Key: key, Owner: owner, Token: g.Token, Outcome: locking.OutcomeSucceeded, Replica: "r1", Started: clk.now, Ended: clk.now}
						if err := be.Complete(ctx, g, rec, 48*time.Hour); err != nil {
							b.Fatal(err)
						}
					}
					clk.now = clk.now.Add(time.Minute)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "heap-MiB")
				runtime.KeepAlive(be)
			}
		})
	}
}
