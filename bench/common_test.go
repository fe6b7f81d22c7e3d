package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	mrand "math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oncecron/oncecron/locking"
)

// Every benchmark here is a set of sub-benchmarks, one per contender, in one
// function, so that a run interleaves them on the same server and the same
// machine state:
//
//	Benchmark<Backend>LockUnlock/<contender>   uncontended lock + unlock of a fresh key
//	Benchmark<Backend>Interleaved              the same, the contenders taking turns of
//	                                           16 operations (one function: see interleave)
//	Benchmark<Backend>Race/<contender>         8 clients race for one key per round
//	Benchmark<Backend>Burst/<contender>        3 replicas claim the same 1,000 ticks at once
//
// Contender "raw" (and "raw-<variant>") is the floor: the cheapest thing the same
// client can do on the same server. scripts/benchsummary pairs every other
// contender with the raw one of its group whose name ends like it ("-batch",
// "-one-by-one"), or else with plain "raw".
//
// Metrics besides ns/op:
//
//	reqs/op          requests sent per operation (Redis: go-redis hook, one per command
//	                 or pipeline; etcd: gRPC unary interceptor; ZooKeeper: request
//	                 packets on the connection, pings and the handshake excluded)
//	reqs/loser       requests a losing racer sent before it knew it lost
//	reqs/winner      requests of the winning racer: its lock and its unlock
//	ns/winner        median over the run's rounds: from the start of the round until
//	                 the winner holds the key
//	ns/lost          median over the run's rounds: until every loser knows it lost
//	zero-winner      rounds (or burst ticks) that nobody won (total; must be 0)
//	two-winner       rounds (or burst ticks) that more than one racer won (total; must be 0)
//	reqs/tick        burst: requests of all replicas over the ticks of the burst
//	ns/<contender>   interleaved: the contender's mean time per lock + unlock
//	<contender>/raw  interleaved: the median over the turns of the contender's time
//	                 over raw's time in the same turn

const (
	// ttl of every lock: long enough that no watchdog renewal (ttl/3) fires during
	// an uncontended operation, and within ZooKeeper's default session timeout.
	ttl       = 5 * time.Second
	retention = time.Minute // oncecron's Complete: how long the done marker stays
	racers    = 8
	replicas  = 3
	ticks     = 1000
)

// Environment variables, as scripts/servers.sh and scripts/bench.sh export them.
const (
	envRedis = "ONCECRON_TEST_REDIS"
	envEtcd  = "ONCECRON_TEST_ETCD"
	envZK    = "ONCECRON_TEST_ZK"
)

// addr returns the host:port in the environment variable name, or fails b with
// instructions: these benchmarks need real servers and never skip.
func addr(b *testing.B, name string) string {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		b.Fatalf("%s is not set. These benchmarks need real servers: run scripts/bench.sh (it starts its own), "+
			"or from the repository root start them with\n\teval \"$(scripts/servers.sh start)\"\n"+
			"and run `go test -run '^$' -bench .` in bench/ again", name)
	}
	return v
}

// runID is unique to this process: every key, prefix and node path includes it,
// so runs never see each other's leftovers.
var runID = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "b" + hex.EncodeToString(b[:])
}()

var seq atomic.Int64

// fresh returns the first of n indices that no other call in this process
// returns: a benchmark function runs several times (once per b.N it tries),
// and completed keys stay done for their retention.
func fresh(n int) int { return int(seq.Add(int64(n))) - n }

// counter counts requests; each client of a benchmark has its own.
type counter struct{ n atomic.Int64 }

func (c *counter) load() int64 { return c.n.Load() }

func sum(cs []*counter) int64 {
	var t int64
	for _, c := range cs {
		t += c.load()
	}
	return t
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	ys := slices.Clone(xs)
	slices.Sort(ys)
	n := len(ys)
	if n%2 == 1 {
		return ys[n/2]
	}
	return (ys[n/2-1] + ys[n/2]) / 2
}

// lockUnlock runs op (one lock and unlock of a fresh key, i unique in the process) b.N times after
// one warm-up call (which dials the connection and loads scripts), and reports
// the requests per op counted by c.
func lockUnlock(b *testing.B, c *counter, op func(i int) error) {
	b.Helper()
	first := fresh(b.N + 1)
	if err := op(first); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	before := c.load()
	b.ResetTimer()
	for i := range b.N {
		if err := op(first + 1 + i); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(c.load()-before)/float64(b.N), "reqs/op")
}

// lockContender is one contender of a lock + unlock benchmark: setup dials its
// clients and returns their request counter and the operation, one lock +
// unlock of a fresh key (i is unique in the process).
type lockContender struct {
	name  string
	setup func(b *testing.B) (*counter, func(i int) error)
}

// oncecronLockUnlock is oncecron's lock + unlock on the Locker that locker
// makes: Claim, then Complete (complete) or Release.
func oncecronLockUnlock(complete bool, locker func(b *testing.B) (*locking.Locker, *counter)) func(b *testing.B) (*counter, func(int) error) {
	ctx := context.Background()
	rec := locking.Record{Outcome: locking.OutcomeSucceeded}
	scope := map[bool]string{true: "lu-complete", false: "lu-release"}[complete]
	return func(b *testing.B) (*counter, func(int) error) {
		l, n := locker(b)
		return n, func(i int) error {
			lease, err := l.Claim(ctx, tick(scope, i), ttl)
			if err != nil {
				return err
			}
			if complete {
				return lease.Complete(ctx, rec, retention)
			}
			return lease.Release(ctx)
		}
	}
}

// lockUnlockEach runs each contender as a sub-benchmark of its own, one after
// another (see lockUnlock).
func lockUnlockEach(b *testing.B, cs []lockContender) {
	for _, c := range cs {
		b.Run(c.name, func(b *testing.B) {
			n, op := c.setup(b)
			lockUnlock(b, n, op)
		})
	}
}

// interleaveTurn is how many operations a contender runs in one turn.
const interleaveTurn = 16

// interleave runs the contenders' operations in turns: in each round every
// contender runs interleaveTurn operations, in an order shuffled per round, and
// each round's time of a contender is divided by raw's time in the same round.
// A round lasts a few milliseconds, so drift on the machine (other processes,
// the servers' background work, a slower disk for a while) hits every
// contender of a ratio alike, which contenders run one after another for a
// second each (lockUnlockEach) cannot promise. One iteration (b.N) is one
// operation of every contender. The first contender is the floor.
func interleave(b *testing.B, cs []lockContender) {
	type state struct {
		n     *counter
		op    func(i int) error
		first int // index of the first fresh key
		total time.Duration
		reqs  int64
		ratio []float64
	}
	st := make([]*state, len(cs))
	for k, c := range cs {
		n, op := c.setup(b)
		first := fresh(b.N + 1)
		if err := op(first); err != nil { // dials, loads scripts
			b.Fatalf("%s: warm-up: %v", c.name, err)
		}
		st[k] = &state{n: n, op: op, first: first + 1}
	}
	rng := mrand.New(mrand.NewPCG(uint64(b.N), uint64(len(cs))))
	turn := make([]time.Duration, len(cs))
	b.ResetTimer()
	for done := 0; done < b.N; done += interleaveTurn {
		m := min(interleaveTurn, b.N-done)
		for _, k := range rng.Perm(len(cs)) {
			s := st[k]
			before := s.n.load()
			t0 := time.Now()
			for i := done; i < done+m; i++ {
				if err := s.op(s.first + i); err != nil {
					b.Fatalf("%s: %v", cs[k].name, err)
				}
			}
			turn[k] = time.Since(t0)
			s.total += turn[k]
			s.reqs += s.n.load() - before
		}
		for k := 1; k < len(cs); k++ {
			st[k].ratio = append(st[k].ratio, float64(turn[k])/float64(turn[0]))
		}
	}
	b.StopTimer()
	for k, s := range st {
		b.ReportMetric(float64(s.total.Nanoseconds())/float64(b.N), "ns/"+cs[k].name)
		b.ReportMetric(float64(s.reqs)/float64(b.N), "reqs/"+cs[k].name)
		if k > 0 {
			b.ReportMetric(median(s.ratio), cs[k].name+"/"+cs[0].name)
		}
	}
}

// raceStats tallies the rounds of a race benchmark.
type raceStats struct {
	winnerNs, lostNs                      []float64
	losers, loserReqs, winnerReqs, rounds int64
	zeroWinner, twoWinner                 int64
	noLosersMetric                        bool
}

func (s *raceStats) report(b *testing.B) {
	if s.losers > 0 {
		b.ReportMetric(float64(s.loserReqs)/float64(s.losers), "reqs/loser")
	}
	if s.rounds > 0 {
		b.ReportMetric(float64(s.winnerReqs)/float64(s.rounds), "reqs/winner")
	}
	if len(s.winnerNs) > 0 {
		b.ReportMetric(median(s.winnerNs), "ns/winner")
	}
	if len(s.lostNs) > 0 {
		b.ReportMetric(median(s.lostNs), "ns/lost")
	}
	b.ReportMetric(float64(s.zeroWinner), "zero-winner")
	b.ReportMetric(float64(s.twoWinner), "two-winner")
}

// race runs b.N rounds. In round i every racer r calls try(r, i) at the same
// instant (as far as the scheduler allows); try reports whether r won. After all
// of them returned, unlock(r, i) is called for every racer that won (normally
// one; a second winner is counted and unlocked too). reqs are the racers'
// request counters (one client each).
func race(b *testing.B, reqs []*counter, try func(r, i int) (bool, error), unlock func(r, i int) error) {
	b.Helper()
	n := len(reqs)
	var st raceStats
	first := fresh(b.N)
	won := make([]bool, n)
	took := make([]time.Duration, n)
	sent := make([]int64, n)
	b.ResetTimer()
	for k := range b.N {
		i := first + k
		var wg sync.WaitGroup
		start := make(chan struct{})
		var t0 time.Time
		for r := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				before := reqs[r].load()
				ok, err := try(r, i)
				took[r] = time.Since(t0)
				sent[r] = reqs[r].load() - before
				if err != nil {
					b.Errorf("racer %d: %v", r, err)
				}
				won[r] = ok
			}()
		}
		t0 = time.Now()
		close(start)
		wg.Wait()
		winners := 0
		var lost time.Duration
		for r := range n {
			if won[r] {
				winners++
				st.winnerReqs += sent[r]
				st.winnerNs = append(st.winnerNs, float64(took[r]))
			} else {
				st.losers++
				st.loserReqs += sent[r]
				lost = max(lost, took[r])
			}
		}
		st.lostNs = append(st.lostNs, float64(lost))
		st.rounds++
		switch winners {
		case 0:
			st.zeroWinner++
		case 1:
		default:
			st.twoWinner++
			st.winnerNs = st.winnerNs[:len(st.winnerNs)-winners+1] // keep the first
		}
		for r := range n {
			if !won[r] {
				continue
			}
			before := reqs[r].load()
			if err := unlock(r, i); err != nil {
				b.Fatalf("racer %d: unlock: %v", r, err)
			}
			st.winnerReqs += reqs[r].load() - before
		}
	}
	b.StopTimer()
	st.report(b)
}

// burst runs b.N bursts. In burst i every replica r calls claim(r, i, won) at
// the same instant, which tries to claim each of the ticks once and sets won[t]
// for each tick t it won. ns/op is the time until all replicas returned, that
// is until every tick is claimed and every replica knows which it got. Then,
// with the timer stopped, release(r, i, won) frees what r won. reqs counts the
// requests of each replica's client during the claims.
func burst(b *testing.B, reqs []*counter, claim func(r, i int, won []bool) error, release func(r, i int, won []bool) error) {
	b.Helper()
	n := len(reqs)
	won := make([][]bool, n)
	var zero, two, sent int64
	first := fresh(b.N)
	b.ResetTimer()
	for k := range b.N {
		i := first + k
		for r := range n {
			won[r] = make([]bool, ticks)
		}
		before := sum(reqs)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for r := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := claim(r, i, won[r]); err != nil {
					b.Errorf("replica %d: %v", r, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		b.StopTimer()
		sent += sum(reqs) - before
		for t := range ticks {
			w := 0
			for r := range n {
				if won[r][t] {
					w++
				}
			}
			switch {
			case w == 0:
				zero++
			case w > 1:
				two++
			}
		}
		var rwg sync.WaitGroup
		for r := range n {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				if err := release(r, i, won[r]); err != nil {
					b.Errorf("replica %d: release: %v", r, err)
				}
			}()
		}
		rwg.Wait()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(sent)/float64(b.N*ticks), "reqs/tick")
	b.ReportMetric(float64(zero), "zero-winner")
	b.ReportMetric(float64(two), "two-winner")
}

// parallel runs f(t) for every t in [0, n) with at most limit at once, and
// returns the first error.
func parallel(n, limit int, f func(t int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, limit)
	for t := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f(t); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
