package redislock_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/redislock"
)

// The benchmarks come in pairs, oncecron and its raw floor on the same server,
// with the same client settings (go-redis retries off, as Dial sets them) and the
// same counting hook on every client:
//
//	BenchmarkClaimComplete         Locker.Claim + Lease.Complete      2 round trips
//	BenchmarkRawSetNXCompareDelete SET NX PX + compare-and-delete     2 round trips
//	BenchmarkBackendClaimComplete  the same two scripts without Locker 2 round trips (diagnostic)
//	BenchmarkClaimLostRace         8 clients race, winner completes   1 round trip per racer, +1
//	BenchmarkRawLostRace           8 clients SET NX, winner deletes   1 round trip per racer, +1
//
// scripts/bench.sh runs them and prints medians and the ratios oncecron/raw.

const (
	benchTTL       = 10 * time.Second // long enough that no watchdog renewal fires during an op
	benchRetention = time.Minute
	benchRacers    = 8
)

// roundTrips counts the requests a client sends: one per command, one per
// pipeline. Dialing a connection is not counted (its HELLO is).
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// benchBackend dials a Redis backend as Dial does for production (go-redis
// retries off) with a round-trip counter, closed when b ends. (dial in
// redislock_test.go takes a *testing.T.)
func benchBackend(b *testing.B, addr, ns string) (*redislock.Backend, *roundTrips) {
	b.Helper()
	be, err := redislock.Dial(redislock.Config{Addrs: []string{addr}, DialTimeout: time.Second, Options: redislock.Options{Namespace: ns}})
	if err != nil {
		b.Fatalf("dial %s: %v", addr, err)
	}
	b.Cleanup(func() { _ = be.Close() })
	h := &roundTrips{}
	be.Client().AddHook(h)
	return be, h
}

// rawClient is a plain go-redis client with the settings Dial uses.
func rawClient(b *testing.B, addr string) (*redis.Client, *roundTrips) {
	b.Helper()
	c := redis.NewClient(&redis.Options{
		Addr: addr, DialTimeout: time.Second,
		MaxRetries: -1, ContextTimeoutEnabled: true,
	})
	b.Cleanup(func() { _ = c.Close() })
	h := &roundTrips{}
	c.AddHook(h)
	return c, h
}

func benchLocker(b *testing.B, be locking.Backend) *locking.Locker {
	b.Helper()
	l, err := locking.New(be)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// unlockScript is the classic Redis unlock: delete the key only if it still
// holds our random value.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// claimComplete is one scheduler tick without the work: claim key, complete it.
func claimComplete(ctx context.Context, l *locking.Locker, key locking.Key) error {
	lease, err := l.Claim(ctx, key, benchTTL)
	if err != nil {
		return err
	}
	return lease.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, benchRetention)
}

// rawLockUnlock is the floor of claimComplete: SET NX PX with a fresh random
// value, then the compare-and-delete script.
func rawLockUnlock(ctx context.Context, c *redis.Client, key string) error {
	val := locking.NewOwner()
	ok, err := c.SetNX(ctx, key, val, benchTTL).Result()
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("raw: SET NX lost on a fresh key")
	}
	n, err := unlockScript.Run(ctx, c, []string{key}, val).Int()
	if err != nil {
		return err
	}
	if n != 1 {
		return errors.New("raw: compare-and-delete found no key")
	}
	return nil
}

// BenchmarkClaimComplete: an uncontended Claim of a fresh key and its Complete
// (retention 1m) through a Locker; the floor is BenchmarkRawSetNXCompareDelete.
func BenchmarkClaimComplete(b *testing.B) {
	ctx := context.Background()
	be, rt := benchBackend(b, testenv.RedisAddr(b), namespace())
	l := benchLocker(b, be)
	// Warm up: dial the connection and load both scripts (NOSCRIPT costs an EVAL once).
	if err := claimComplete(ctx, l, locking.Key{Scope: "bench", Name: "warmup"}); err != nil {
		b.Fatal(err)
	}
	rt.n.Store(0)
	b.ResetTimer()
	for i := range b.N {
		if err := claimComplete(ctx, l, locking.Key{Scope: "bench", Name: strconv.Itoa(i)}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rt.n.Load())/float64(b.N), "roundtrips/op")
}

// BenchmarkRawSetNXCompareDelete is the floor of BenchmarkClaimComplete: plain
// go-redis SET key val NX PX and the classic compare-and-delete script.
func BenchmarkRawSetNXCompareDelete(b *testing.B) {
	ctx := context.Background()
	c, rt := rawClient(b, testenv.RedisAddr(b))
	prefix := namespace() + ":{raw}:l:"
	if err := rawLockUnlock(ctx, c, prefix+"warmup"); err != nil {
		b.Fatal(err)
	}
	rt.n.Store(0)
	b.ResetTimer()
	for i := range b.N {
		if err := rawLockUnlock(ctx, c, prefix+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rt.n.Load())/float64(b.N), "roundtrips/op")
}

// BenchmarkBackendClaimComplete is BenchmarkClaimComplete without the Locker:
// the backend's claim and complete scripts alone, to tell the server's share of
// the gap to the raw floor from the Locker's (lease, watchdog goroutine).
func BenchmarkBackendClaimComplete(b *testing.B) {
	ctx := context.Background()
	be, rt := benchBackend(b, testenv.RedisAddr(b), namespace())
	rec := locking.Record{Outcome: locking.OutcomeSucceeded}
	do := func(name string) error {
		owner := locking.NewOwner()
		g, err := be.Claim(ctx, locking.Key{Scope: "bench", Name: name}, owner, benchTTL)
		if err != nil {
			return err
		}
		rec.Key, rec.Owner, rec.Token = g.Key, g.Owner, g.Token
		return be.Complete(ctx, g, rec, benchRetention)
	}
	if err := do("warmup"); err != nil {
		b.Fatal(err)
	}
	rt.n.Store(0)
	b.ResetTimer()
	for i := range b.N {
		if err := do(strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rt.n.Load())/float64(b.N), "roundtrips/op")
}

// raceStats tallies a race benchmark's rounds.
type raceStats struct {
	loserReqs, losers, winnerReqs, zeroWinner, twoWinner int64
}

func (s *raceStats) report(b *testing.B) {
	if s.losers > 0 {
		b.ReportMetric(float64(s.loserReqs)/float64(s.losers), "reqs/loser")
	}
	b.ReportMetric(float64(s.winnerReqs)/float64(b.N), "reqs/winner")
	b.ReportMetric(float64(s.zeroWinner), "zero-winner")
	b.ReportMetric(float64(s.twoWinner), "two-winner")
}

// race runs one round: every racer calls try once, all at the same time; try
// reports whether it won. It returns the index of the single winner, or -1 after
// counting a zero- or two-winner round. reqs counts each racer's own requests.
func race(b *testing.B, st *raceStats, counters []*roundTrips, try func(r int) (bool, error)) int {
	var wg sync.WaitGroup
	won := make([]bool, len(counters))
	reqs := make([]int64, len(counters))
	start := make(chan struct{})
	for r := range counters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			before := counters[r].n.Load()
			ok, err := try(r)
			reqs[r] = counters[r].n.Load() - before
			if err != nil {
				b.Error(err)
			}
			won[r] = ok
		}()
	}
	close(start)
	wg.Wait()
	winner, winners := -1, 0
	for r, ok := range won {
		if ok {
			winner, winners = r, winners+1
			st.winnerReqs += reqs[r]
		} else {
			st.losers++
			st.loserReqs += reqs[r]
		}
	}
	switch winners {
	case 0:
		st.zeroWinner++
		return -1
	case 1:
		return winner
	default:
		st.twoWinner++
		return -1
	}
}

// BenchmarkClaimLostRace: per round, 8 replicas (each its own client) race for
// one fresh key through their Lockers; the winner then completes it. ns/op is
// per round. reqs/loser must be 1; zero-winner and two-winner must be 0.
func BenchmarkClaimLostRace(b *testing.B) {
	ctx := context.Background()
	addr, ns := testenv.RedisAddr(b), namespace()
	ls := make([]*locking.Locker, benchRacers)
	rts := make([]*roundTrips, benchRacers)
	for r := range ls {
		be, rt := benchBackend(b, addr, ns)
		ls[r], rts[r] = benchLocker(b, be), rt
		if err := claimComplete(ctx, ls[r], locking.Key{Scope: "race", Name: "warmup" + strconv.Itoa(r)}); err != nil {
			b.Fatal(err)
		}
	}
	leases := make([]*locking.Lease, benchRacers)
	var st raceStats
	b.ResetTimer()
	for i := range b.N {
		key := locking.Key{Scope: "race", Name: strconv.Itoa(i)}
		w := race(b, &st, rts, func(r int) (bool, error) {
			lease, err := ls[r].Claim(ctx, key, benchTTL)
			leases[r] = lease
			switch {
			case err == nil:
				return true, nil
			case errors.Is(err, locking.ErrHeld), errors.Is(err, locking.ErrDone):
				return false, nil
			default:
				return false, err
			}
		})
		for r, lease := range leases {
			if lease == nil {
				continue
			}
			leases[r] = nil
			before := rts[r].n.Load()
			if r != w { // a second winner: do not leave its watchdog running
				_ = lease.Release(ctx)
			} else if err := lease.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, benchRetention); err != nil {
				b.Fatal(err)
			}
			st.winnerReqs += rts[r].n.Load() - before
		}
	}
	b.StopTimer()
	st.report(b)
}

// BenchmarkRawLostRace is the floor of BenchmarkClaimLostRace: 8 plain clients
// race with SET NX PX; the winner then runs the compare-and-delete script.
func BenchmarkRawLostRace(b *testing.B) {
	ctx := context.Background()
	addr, prefix := testenv.RedisAddr(b), namespace()+":{rawrace}:l:"
	cs := make([]*redis.Client, benchRacers)
	rts := make([]*roundTrips, benchRacers)
	for r := range cs {
		cs[r], rts[r] = rawClient(b, addr)
		if err := rawLockUnlock(ctx, cs[r], prefix+"warmup"+strconv.Itoa(r)); err != nil {
			b.Fatal(err)
		}
	}
	vals := make([]string, benchRacers)
	var st raceStats
	b.ResetTimer()
	for i := range b.N {
		key := prefix + strconv.Itoa(i)
		w := race(b, &st, rts, func(r int) (bool, error) {
			vals[r] = locking.NewOwner()
			return cs[r].SetNX(ctx, key, vals[r], benchTTL).Result()
		})
		if w < 0 {
			continue // counted; a two-winner round cannot happen with SET NX
		}
		before := rts[w].n.Load()
		if n, err := unlockScript.Run(ctx, cs[w], []string{key}, vals[w]).Int(); err != nil || n != 1 {
			b.Fatalf("raw unlock: %d, %v", n, err)
		}
		st.winnerReqs += rts[w].n.Load() - before
	}
	b.StopTimer()
	st.report(b)
}
