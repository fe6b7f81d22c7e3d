package locktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/oncecron/oncecron/locking"
)

// caseTimeout bounds every case, so a hang fails the test instead of stalling CI.
const caseTimeout = 90 * time.Second

// Run runs the conformance suite against the backend h describes.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("locktest: Harness.New is nil")
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"MutualExclusion/Rounds", testRounds},
		{"MutualExclusion/CriticalSection", testCriticalSection},
		{"MutualExclusion/SameClient", testSameClient},
		{"MutualExclusion/Batch", testBatch},
		{"Fencing/Sequential", testFencingSequential},
		{"Fencing/Concurrent", testFencingConcurrent},
		{"Expiry/Takeover", testTakeover},
		{"Expiry/RenewAfterLoss", testRenewAfterLoss},
		{"Watchdog/KeepsAlive", testWatchdogKeepsAlive},
		{"Watchdog/SurvivesHiccup", testHiccup},
		{"Watchdog/LateCheck", testLateCheck},
		{"Complete/ThenDone", testCompleteThenDone},
		{"Complete/Repeat", testCompleteRepeat},
		{"Complete/Concurrent", testCompleteConcurrent},
		{"Complete/Batch", testFinishBatch},
		{"Release/LetsOtherWin", testReleaseLetsOtherWin},
		{"Acquire/WaitsForRelease", testAcquireWaits},
		{"Acquire/Bounded", testAcquireBounded},
		{"History", testHistory},
		{"BadInput", testBadInput},
		{"Unreachable", testUnreachable},
		{"ClockOffset", testClockOffset},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, &suite{h: h, ttl: h.ttl()})
		})
	}
}

// RunRestart checks that fencing tokens keep rising and done markers survive a
// restart of the server (with its data kept). h.Restart must be set.
func RunRestart(t *testing.T, h Harness) {
	t.Helper()
	if h.Restart == nil {
		t.Fatal("locktest: RunRestart needs Harness.Restart")
	}
	s := &suite{h: h, ttl: h.ttl()}
	ctx := s.ctx(t)
	scope := s.scope(t)
	l := s.locker(t, s.backend(t))
	first, err := l.Claim(ctx, locking.Key{Scope: scope, Name: "before"}, s.ttl)
	if err != nil {
		t.Fatalf("claim before restart: %v", err)
	}
	if err := first.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
		t.Fatalf("complete before restart: %v", err)
	}
	h.Restart(t)
	// A fresh client, as a replica started after the restart would have. Its first
	// calls may meet a server still loading: retry for a bounded time.
	l2 := s.locker(t, s.backend(t))
	var second *locking.Lease
	for deadline := time.Now().Add(30 * time.Second); ; {
		second, err = l2.Claim(ctx, locking.Key{Scope: scope, Name: "after"}, s.ttl)
		if err == nil || !errors.Is(err, locking.ErrUnavailable) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("claim after restart: %v", err)
	}
	defer second.Release(context.Background()) //nolint:errcheck // cleanup
	if second.Token() <= first.Token() {
		t.Errorf("token after restart %d, want > %d (before restart)", second.Token(), first.Token())
	}
	if _, err := l2.Claim(ctx, locking.Key{Scope: scope, Name: "before"}, s.ttl); !errors.Is(err, locking.ErrDone) {
		t.Errorf("claim of a key completed before the restart: got %v, want ErrDone", err)
	}
	recs, err := l2.Records(ctx, scope, 10)
	if err != nil || len(recs) != 1 || recs[0].Token != first.Token() {
		t.Errorf("records after restart: %+v, %v; want the one completion with token %d", recs, err, first.Token())
	}
}

type suite struct {
	h   Harness
	ttl time.Duration
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite) backend(t *testing.T) locking.Backend {
	t.Helper()
	b := s.h.New(t)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func (s *suite) faulty(t *testing.T) (locking.Backend, Fault) {
	t.Helper()
	if s.h.NewFaulty == nil {
		t.Fatal("locktest: Harness.NewFaulty is nil; every backend must be tested under a cut connection")
	}
	b, f := s.h.NewFaulty(t)
	t.Cleanup(func() { f.Heal(); _ = b.Close() })
	return b, f
}

func (s *suite) locker(t *testing.T, b locking.Backend) *locking.Locker {
	t.Helper()
	l, err := locking.New(b, locking.WithLogger(zaptest.NewLogger(t)), locking.WithPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatalf("locking.New: %v", err)
	}
	return l
}

// scope returns a fence scope unique to this test and run.
func (s *suite) scope(t *testing.T) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, t.Name())
	if len(name) > 100 {
		name = name[len(name)-100:]
	}
	return name + "." + hex.EncodeToString(b[:])
}

func testRounds(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	scope := s.scope(t)
	const clients, perClient, rounds = 3, 4, 15
	var lockers []*locking.Locker
	for range clients {
		lockers = append(lockers, s.locker(t, s.backend(t)))
	}
	rec := newRecorder()
	for round := range rounds {
		key := locking.Key{Scope: scope, Name: fmt.Sprintf("r%03d", round)}
		start := make(chan struct{})
		var wg sync.WaitGroup
		var winners atomic.Int32
		errs := make(chan error, clients*perClient)
		for c := range clients {
			for g := range perClient {
				id := c*perClient + g
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					call := rec.now()
					lease, err := lockers[c].Claim(ctx, key, s.ttl)
					switch {
					case err == nil:
						rec.add(id, key, opClaim, lease.Owner(), call, outOK)
						winners.Add(1)
						call = rec.now()
						if err := lease.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
							errs <- fmt.Errorf("complete: %w", err)
							return
						}
						rec.add(id, key, opComplete, lease.Owner(), call, outOK)
					case errors.Is(err, locking.ErrHeld):
						rec.add(id, key, opClaim, "", call, outHeld)
					case errors.Is(err, locking.ErrDone):
						rec.add(id, key, opClaim, "", call, outDone)
					default:
						errs <- fmt.Errorf("claim: %w", err)
					}
				}()
			}
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		if n := winners.Load(); n != 1 {
			t.Fatalf("round %d: %d winners among %d racers, want exactly 1", round, n, clients*perClient)
		}
	}
	rec.check(t)
}

func testCriticalSection(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	key := locking.Key{Scope: s.scope(t), Name: "shared"}
	const clients, perClient, iterations = 3, 2, 12
	rec := newRecorder()
	var inside, maxInside, wins atomic.Int32
	var wg sync.WaitGroup
	deadline := time.Now().Add(30 * time.Second)
	for c := range clients {
		l := s.locker(t, s.backend(t))
		for g := range perClient {
			id := c*perClient + g
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < iterations && time.Now().Before(deadline); i++ {
					call := rec.now()
					lease, err := l.Claim(ctx, key, s.ttl)
					if errors.Is(err, locking.ErrHeld) {
						rec.add(id, key, opClaim, "", call, outHeld)
						time.Sleep(time.Duration(1+i%4) * time.Millisecond)
						continue
					}
					if err != nil {
						t.Errorf("claim: %v", err)
						return
					}
					rec.add(id, key, opClaim, lease.Owner(), call, outOK)
					wins.Add(1)
					n := inside.Add(1)
					for {
						m := maxInside.Load()
						if n <= m || maxInside.CompareAndSwap(m, n) {
							break
						}
					}
					time.Sleep(2 * time.Millisecond)
					inside.Add(-1)
					call = rec.now()
					if err := lease.Release(ctx); err != nil {
						t.Errorf("release: %v", err)
						return
					}
					rec.add(id, key, opRelease, lease.Owner(), call, outOK)
				}
			}()
		}
	}
	wg.Wait()
	if m := maxInside.Load(); m != 1 {
		t.Errorf("at most %d holders at once, want 1", m)
	}
	if wins.Load() == 0 {
		t.Error("nobody ever won the key")
	}
	rec.check(t)
}

func testSameClient(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.backend(t)
	l1, l2 := s.locker(t, b), s.locker(t, b)
	key := locking.Key{Scope: s.scope(t), Name: "k"}
	lease, err := l1.Claim(ctx, key, s.ttl)
	if err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if _, err := l2.Claim(ctx, key, s.ttl); !errors.Is(err, locking.ErrHeld) {
		t.Errorf("second claim through the same client: got %v, want ErrHeld", err)
	}
	if _, err := l1.Claim(ctx, key, s.ttl); !errors.Is(err, locking.ErrHeld) {
		t.Errorf("second claim through the same locker: got %v, want ErrHeld", err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
	if err := lease.Release(ctx); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("second release: got %v, want ErrNotHeld", err)
	}
}

// testBatch: three clients claim the same 40 keys in one batch each, at once;
// every key has exactly one winner, and a key completed before the batch
// reports ErrDone in it.
func testBatch(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	scope := s.scope(t)
	var keys []locking.Key
	for i := range 40 {
		keys = append(keys, locking.Key{Scope: scope, Name: fmt.Sprintf("b%02d", i)})
	}
	first := s.locker(t, s.backend(t))
	done, err := first.Claim(ctx, keys[0], s.ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if err := done.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
		t.Fatalf("complete: %v", err)
	}
	var mu sync.Mutex
	winners := map[locking.Key]int{}
	tokens := map[uint64]bool{}
	var held []*locking.Lease // released only after every batch returned
	var wg sync.WaitGroup
	for range 3 {
		l := s.locker(t, s.backend(t))
		wg.Add(1)
		go func() {
			defer wg.Done()
			leases, errs := l.ClaimBatch(ctx, keys, s.ttl)
			for i := range keys {
				switch {
				case errs[i] == nil && leases[i] != nil:
					mu.Lock()
					winners[keys[i]]++
					if tokens[leases[i].Token()] {
						t.Errorf("token %d given twice", leases[i].Token())
					}
					tokens[leases[i].Token()] = true
					held = append(held, leases[i])
					mu.Unlock()
				case i == 0 && errors.Is(errs[i], locking.ErrDone), i > 0 && errors.Is(errs[i], locking.ErrHeld):
				default:
					t.Errorf("batch claim of %s: %v", keys[i], errs[i])
				}
			}
		}()
	}
	wg.Wait()
	for _, l := range held {
		_ = l.Release(ctx)
	}
	for i, k := range keys {
		if want := min(i, 1); winners[k] != want {
			t.Errorf("key %s: %d winners, want %d", k, winners[k], want)
		}
	}
}

func testFencingSequential(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	scope := s.scope(t)
	ls := []*locking.Locker{s.locker(t, s.backend(t)), s.locker(t, s.backend(t))}
	var last uint64
	for i := range 20 {
		lease, err := ls[i%2].Claim(ctx, locking.Key{Scope: scope, Name: fmt.Sprintf("n%02d", i%7)}, s.ttl)
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
		if lease.Token() <= last {
			t.Errorf("claim %d: token %d, want > %d", i, lease.Token(), last)
		}
		last = lease.Token()
		if err := lease.Release(ctx); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
}

func testFencingConcurrent(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	scope := s.scope(t)
	type grant struct {
		token         uint64
		call, return_ time.Time
	}
	var mu sync.Mutex
	var grants []grant
	var wg sync.WaitGroup
	for c := range 3 {
		l := s.locker(t, s.backend(t))
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 8 {
					call := time.Now()
					lease, err := l.Claim(ctx, locking.Key{Scope: scope, Name: fmt.Sprintf("c%d-g%d-%d", c, g, i)}, s.ttl)
					ret := time.Now()
					if err != nil {
						t.Errorf("claim: %v", err)
						return
					}
					mu.Lock()
					grants = append(grants, grant{lease.Token(), call, ret})
					mu.Unlock()
					if err := lease.Release(ctx); err != nil {
						t.Errorf("release: %v", err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, a := range grants {
		if seen[a.token] {
			t.Errorf("token %d issued twice", a.token)
		}
		seen[a.token] = true
		for _, b := range grants {
			if a.return_.Before(b.call) && a.token >= b.token {
				t.Errorf("claim returning token %d ended before a claim returning %d began", a.token, b.token)
			}
		}
	}
}

// testTakeover: a holder cut off from the server loses its lease, learns of it
// before anyone else can win the key, and the next winner has a higher token.
func testTakeover(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	key := locking.Key{Scope: s.scope(t), Name: "k"}
	fb, fault := s.faulty(t)
	la := s.locker(t, fb)
	lb := s.locker(t, s.backend(t))
	a, err := la.Claim(ctx, key, s.ttl)
	if err != nil {
		t.Fatalf("claim by A: %v", err)
	}
	var lostAt atomic.Int64
	go func() {
		<-a.Done()
		lostAt.Store(time.Now().UnixNano())
	}()
	fault.Cut()
	var b *locking.Lease
	limit := time.Now().Add(5*s.ttl + 20*time.Second)
	for b == nil {
		if time.Now().After(limit) {
			t.Fatalf("B did not win the key of a cut-off holder within %v", 5*s.ttl+20*time.Second)
		}
		lease, err := lb.Claim(ctx, key, s.ttl)
		switch {
		case err == nil:
			b = lease
		case errors.Is(err, locking.ErrHeld):
			time.Sleep(10 * time.Millisecond)
		default:
			t.Fatalf("claim by B: %v", err)
		}
	}
	wonAt := time.Now().UnixNano()
	defer b.Release(context.Background()) //nolint:errcheck // cleanup
	lost := lostAt.Load()
	if lost == 0 || lost >= wonAt {
		t.Errorf("A learned of the loss at %d, B won at %d: the loss must be signalled first", lost, wonAt)
	}
	if !errors.Is(a.Err(), locking.ErrLost) {
		t.Errorf("A.Err() = %v, want ErrLost", a.Err())
	}
	if !errors.Is(context.Cause(a.Context()), locking.ErrLost) {
		t.Errorf("cause of A's context = %v, want ErrLost", context.Cause(a.Context()))
	}
	if b.Token() <= a.Token() {
		t.Errorf("B's token %d, want > A's %d", b.Token(), a.Token())
	}
	fault.Heal()
	if err := a.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); !errors.Is(err, locking.ErrLost) {
		t.Errorf("complete after loss: got %v, want ErrLost", err)
	}
	if err := a.Release(ctx); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("release after loss: got %v, want ErrNotHeld", err)
	}
	if err := b.Check(); err != nil {
		t.Errorf("B's lease after A's late calls: %v", err)
	}
	if _, err := lb.Claim(ctx, key, s.ttl); !errors.Is(err, locking.ErrHeld) {
		t.Errorf("claim while B holds: got %v, want ErrHeld", err)
	}
}

// testRenewAfterLoss: renewing or releasing a grant that passed to another owner
// fails with ErrNotHeld and never re-creates or steals the key.
func testRenewAfterLoss(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	key := locking.Key{Scope: s.scope(t), Name: "k"}
	fb, fault := s.faulty(t)
	a, err := fb.Claim(ctx, key, locking.NewOwner(), s.ttl)
	if err != nil {
		t.Fatalf("claim by A: %v", err)
	}
	fault.Cut()
	lb := s.locker(t, s.backend(t))
	var b *locking.Lease
	for limit := time.Now().Add(5*s.ttl + 20*time.Second); b == nil; {
		if time.Now().After(limit) {
			t.Fatal("B never won the key")
		}
		if b, err = lb.Claim(ctx, key, s.ttl); err != nil && !errors.Is(err, locking.ErrHeld) {
			t.Fatalf("claim by B: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer b.Release(context.Background()) //nolint:errcheck // cleanup
	fault.Heal()
	// The healed client may need a moment to reconnect; what matters is that it never succeeds.
	for i := range 50 {
		_, rerr := fb.Renew(ctx, a, s.ttl)
		if errors.Is(rerr, locking.ErrNotHeld) {
			break
		}
		if rerr == nil {
			t.Fatal("renewal of a grant that passed to B succeeded")
		}
		if i == 49 {
			t.Fatalf("renewal after loss: %v, want ErrNotHeld", rerr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := fb.Release(ctx, a); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("release after loss: got %v, want ErrNotHeld", err)
	}
	if err := fb.Complete(ctx, a, locking.Record{Key: key, Outcome: locking.OutcomeSucceeded}, time.Hour); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("complete after loss: got %v, want ErrNotHeld", err)
	}
	if err := b.Renew(ctx); err != nil {
		t.Errorf("B's renewal after A's late calls: %v", err)
	}
	if _, err := lb.Claim(ctx, key, s.ttl); !errors.Is(err, locking.ErrHeld) {
		t.Errorf("claim while B holds: got %v, want ErrHeld", err)
	}
}

func testWatchdogKeepsAlive(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	key := locking.Key{Scope: s.scope(t), Name: "k"}
	l := s.locker(t, s.backend(t))
	other := s.locker(t, s.backend(t))
	lease, err := l.Claim(ctx, key, s.ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	for i := range 7 { // 3.5 TTLs
		time.Sleep(s.ttl / 2)
		if err := lease.Check(); err != nil {
			t.Fatalf("after %v the lease is %v", time.Duration(i+1)*s.ttl/2, err)
		}
		if _, err := other.Claim(ctx, key, s.ttl); !errors.Is(err, locking.ErrHeld) {
			t.Fatalf("claim by another client while held: got %v, want ErrHeld", err)
		}
	}
	if err := lease.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
		t.Fatalf("complete: %v", err)
	}
}

func testHiccup(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	key := locking.Key{Scope: s.scope(t), Name: "k"}
	fb, fault := s.faulty(t)
	l := s.locker(t, fb)
	lease, err := l.Claim(ctx, key, s.ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	fault.Cut()
	time.Sleep(s.ttl * 2 / 5)
	fault.Heal()
	time.Sleep(2 * s.ttl)
	if err := lease.Check(); err != nil {
		t.Fatalf("a cut of 0.4 TTL lost the lease: %v", err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
}

// testLateCheck stalls a lease's watchdog past its local deadline, as a paused
// process would, and checks the lease then: on a backend that renews from a
// session kept alive meanwhile (locking.SessionRenewer) it renews and stays
// held, with a deadline ahead; on any other it is lost.
func testLateCheck(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	key := locking.Key{Scope: s.scope(t), Name: "k"}
	b := s.backend(t)
	c := &stallClock{}
	l, err := locking.New(b, locking.WithLogger(zaptest.NewLogger(t)), locking.WithPollInterval(20*time.Millisecond), locking.WithClock(c))
	if err != nil {
		t.Fatalf("locking.New: %v", err)
	}
	lease, err := l.Claim(ctx, key, s.ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	c.stall()
	defer c.resume()
	time.Sleep(time.Until(lease.Deadline()) + 100*time.Millisecond)
	sr, ok := b.(locking.SessionRenewer)
	fromSession := ok && sr.RenewsFromSession()
	err = lease.Check()
	if !fromSession {
		if !errors.Is(err, locking.ErrLost) {
			t.Fatalf("Check past the deadline = %v, want ErrLost", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Check past the deadline, session alive: %v", err)
	}
	if !lease.Deadline().After(time.Now()) {
		t.Errorf("deadline %v not moved ahead", lease.Deadline())
	}
	c.resume()
	time.Sleep(s.ttl)
	if err := lease.Check(); err != nil {
		t.Fatalf("after the watchdog resumed: %v", err)
	}
	if _, err := l.Claim(ctx, key, s.ttl); !errors.Is(err, locking.ErrHeld) {
		t.Errorf("another claim: got %v, want ErrHeld", err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
}

// stallClock is the system clock whose AfterFunc callbacks can be held back,
// as if the process were paused, while time goes on.
type stallClock struct {
	locking.SystemClock
	mu      sync.Mutex
	stalled chan struct{} // closed on resume; nil while running
}

func (c *stallClock) stall() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stalled == nil {
		c.stalled = make(chan struct{})
	}
}

func (c *stallClock) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stalled != nil {
		close(c.stalled)
		c.stalled = nil
	}
}

func (c *stallClock) AfterFunc(d time.Duration, f func()) locking.Timer {
	return c.SystemClock.AfterFunc(d, func() {
		c.mu.Lock()
		ch := c.stalled
		c.mu.Unlock()
		if ch != nil {
			<-ch
		}
		f()
	})
}

func testCompleteThenDone(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	key := locking.Key{Scope: s.scope(t), Name: "k"}
	l := s.locker(t, s.backend(t))
	other := s.locker(t, s.backend(t))
	lease, err := l.Claim(ctx, key, s.ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	retention := 2 * time.Second
	completedAt := time.Now()
	if err := lease.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, retention); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if !errors.Is(lease.Err(), locking.ErrReleased) {
		t.Errorf("Err after Complete = %v, want ErrReleased", lease.Err())
	}
	select {
	case <-lease.Done():
	default:
		t.Error("Done not closed after Complete")
	}
	if err := lease.Complete(ctx, locking.Record{}, retention); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("second Complete: got %v, want ErrNotHeld", err)
	}
	for _, l := range []*locking.Locker{l, other} {
		if _, err := l.Claim(ctx, key, s.ttl); !errors.Is(err, locking.ErrDone) {
			t.Errorf("claim after complete: got %v, want ErrDone", err)
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := l.Acquire(actx, key, s.ttl)
		cancel()
		if !errors.Is(err, locking.ErrDone) {
			t.Errorf("acquire after complete: got %v, want ErrDone", err)
		}
	}
	// After the retention the key can be claimed again, with a higher token.
	for limit := completedAt.Add(retention + 20*time.Second); ; {
		next, err := other.Claim(ctx, key, s.ttl)
		if err == nil {
			if time.Since(completedAt) < retention {
				t.Errorf("claim won %v after completion, before the retention of %v ran out", time.Since(completedAt), retention)
			}
			if next.Token() <= lease.Token() {
				t.Errorf("token after retention %d, want > %d", next.Token(), lease.Token())
			}
			_ = next.Release(ctx)
			return
		}
		if !errors.Is(err, locking.ErrDone) || time.Now().After(limit) {
			t.Fatalf("claim after the retention: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func testCompleteRepeat(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	key := locking.Key{Scope: s.scope(t), Name: "k"}
	b := s.backend(t)
	owner := locking.NewOwner()
	g, err := b.Claim(ctx, key, owner, s.ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	again, err := b.Claim(ctx, key, owner, s.ttl)
	if err != nil || again.Token != g.Token {
		t.Errorf("repeated claim by the same owner: %v, token %d; want the same grant (token %d)", err, again.Token, g.Token)
	}
	rec := locking.Record{Key: key, Outcome: locking.OutcomeSucceeded, Owner: owner, Token: g.Token}
	for i := range 2 {
		if err := b.Complete(ctx, g, rec, time.Hour); err != nil {
			t.Errorf("complete #%d: %v (a repeated complete must succeed)", i+1, err)
		}
	}
	recs, err := b.Records(ctx, key.Scope, 10)
	if err != nil || len(recs) != 1 {
		t.Errorf("records after a repeated complete: %d, %v; want exactly 1", len(recs), err)
	}
}

// testCompleteConcurrent: 40 leases of one Locker end at once, half
// completed and half released (on a BatchFinisher they share pipelines);
// every one ends as asked, a lease released before is refused, the completed
// keys are done with their records, and the released ones can be won again.
func testCompleteConcurrent(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	scope := s.scope(t)
	var keys []locking.Key
	for i := range 40 {
		keys = append(keys, locking.Key{Scope: scope, Name: fmt.Sprintf("c%02d", i)})
	}
	l := s.locker(t, s.backend(t))
	leases, errs := l.ClaimBatch(ctx, keys, s.ttl)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("claim of %s: %v", keys[i], err)
		}
	}
	if err := leases[39].Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
	var wg sync.WaitGroup
	for i, ls := range leases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			switch {
			case i == 39:
				if err := ls.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); !errors.Is(err, locking.ErrNotHeld) {
					t.Errorf("complete of a released lease: %v, want ErrNotHeld", err)
				}
				return
			case i%2 == 0:
				err = ls.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded, Attempt: i + 1}, time.Hour)
			default:
				err = ls.Release(ctx)
			}
			if err != nil {
				t.Errorf("lease %d: %v", i, err)
			}
			if !errors.Is(ls.Err(), locking.ErrReleased) {
				t.Errorf("lease %d: Err = %v after it ended, want ErrReleased", i, ls.Err())
			}
		}()
	}
	wg.Wait()
	other := s.locker(t, s.backend(t))
	for i, k := range keys {
		ls, err := other.Claim(ctx, k, s.ttl)
		switch {
		case i%2 == 0 && !errors.Is(err, locking.ErrDone):
			t.Errorf("claim of completed %s: %v, want ErrDone", k, err)
		case i%2 == 1 && err != nil:
			t.Errorf("claim of released %s: %v, want a win", k, err)
		case err == nil:
			if ls.Token() <= leases[i].Token() {
				t.Errorf("%s: token %d after release, want > %d", k, ls.Token(), leases[i].Token())
			}
			_ = ls.Release(ctx)
		}
	}
	recs, err := other.Records(ctx, scope, 100)
	if err != nil || len(recs) != 20 {
		t.Fatalf("records: %d, %v; want 20", len(recs), err)
	}
	for _, r := range recs {
		var n int
		if _, err := fmt.Sscanf(r.Key.Name, "c%02d", &n); err != nil || n%2 != 0 || r.Attempt != n+1 || r.Token != leases[n].Token() || r.Owner != leases[n].Owner() {
			t.Errorf("record %+v does not belong to the completion of lease %d", r, n)
		}
	}
}

// testFinishBatch: a backend that batches completions and releases answers
// each request of a batch on its own: held grants end, a grant of another
// owner is refused with ErrNotHeld and left alone, and a repeated completion
// succeeds.
func testFinishBatch(t *testing.T, s *suite) {
	b := s.backend(t)
	bf, ok := b.(locking.BatchFinisher)
	if !ok {
		t.Log("the backend does not batch completions (Complete/Concurrent covers its Locker)")
		return
	}
	ctx := s.ctx(t)
	scope := s.scope(t)
	key := func(n string) locking.Key { return locking.Key{Scope: scope, Name: n} }
	claim := func(k locking.Key) locking.Grant {
		t.Helper()
		g, err := b.Claim(ctx, k, locking.NewOwner(), s.ttl)
		if err != nil {
			t.Fatalf("claim %s: %v", k, err)
		}
		return g
	}
	done, rel, kept := claim(key("done")), claim(key("rel")), claim(key("kept"))
	stranger := kept
	stranger.Owner = locking.NewOwner()
	rec := locking.Record{Key: done.Key, Outcome: locking.OutcomeSucceeded, Owner: done.Owner, Token: done.Token}
	strangerRec := locking.Record{Key: kept.Key, Outcome: locking.OutcomeSucceeded, Owner: stranger.Owner, Token: kept.Token}
	errs := bf.FinishBatch(ctx, []locking.FinishRequest{
		{Grant: done, Record: &rec, Retention: time.Hour},
		{Grant: rel},
		{Grant: stranger, Record: &strangerRec, Retention: time.Hour},
		{Grant: stranger},
		{Grant: done, Record: &rec, Retention: time.Hour},
	})
	want := []error{nil, nil, locking.ErrNotHeld, locking.ErrNotHeld, nil}
	if len(errs) != len(want) {
		t.Fatalf("FinishBatch returned %d results for 5 requests", len(errs))
	}
	for i, w := range want {
		if (w == nil) != (errs[i] == nil) || w != nil && !errors.Is(errs[i], w) {
			t.Errorf("request %d: %v, want %v", i, errs[i], w)
		}
	}
	if _, err := b.Claim(ctx, done.Key, locking.NewOwner(), s.ttl); !errors.Is(err, locking.ErrDone) {
		t.Errorf("claim of the completed key: %v, want ErrDone", err)
	}
	if g, err := b.Claim(ctx, rel.Key, locking.NewOwner(), s.ttl); err != nil {
		t.Errorf("claim of the released key: %v, want a win", err)
	} else {
		_ = b.Release(ctx, g)
	}
	if _, err := b.Claim(ctx, kept.Key, locking.NewOwner(), s.ttl); !errors.Is(err, locking.ErrHeld) {
		t.Errorf("claim of the key a stranger tried to end: %v, want ErrHeld", err)
	}
	if _, err := b.Renew(ctx, kept, s.ttl); err != nil {
		t.Errorf("the holder's renewal after a stranger tried to end its key: %v", err)
	}
	_ = b.Release(ctx, kept)
	recs, err := b.Records(ctx, scope, 10)
	if err != nil || len(recs) != 1 || recs[0].Token != done.Token {
		t.Errorf("records: %+v, %v; want the one completion (token %d)", recs, err, done.Token)
	}
}

func testReleaseLetsOtherWin(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	key := locking.Key{Scope: s.scope(t), Name: "k"}
	la, lb := s.locker(t, s.backend(t)), s.locker(t, s.backend(t))
	a, err := la.Claim(ctx, key, s.ttl)
	if err != nil {
		t.Fatalf("claim by A: %v", err)
	}
	if _, err := lb.Claim(ctx, key, s.ttl); !errors.Is(err, locking.ErrHeld) {
		t.Fatalf("claim by B while A holds: got %v, want ErrHeld", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("release by A: %v", err)
	}
	if !errors.Is(a.Err(), locking.ErrReleased) {
		t.Errorf("A.Err() after release = %v, want ErrReleased", a.Err())
	}
	b, err := lb.Claim(ctx, key, s.ttl)
	if err != nil {
		t.Fatalf("claim by B after release: %v", err)
	}
	if b.Token() <= a.Token() {
		t.Errorf("B's token %d, want > A's %d", b.Token(), a.Token())
	}
	if err := a.Release(ctx); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("A's second release: got %v, want ErrNotHeld", err)
	}
	if err := la.Backend().Release(ctx, locking.Grant{Key: key, Owner: a.Owner()}); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("release by A's owner id while B holds: got %v, want ErrNotHeld", err)
	}
	if err := b.Check(); err != nil {
		t.Errorf("B after A's late release: %v", err)
	}
	if err := b.Release(ctx); err != nil {
		t.Errorf("release by B: %v", err)
	}
}

func testAcquireWaits(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	key := locking.Key{Scope: s.scope(t), Name: "k"}
	la, lb := s.locker(t, s.backend(t)), s.locker(t, s.backend(t))
	a, err := la.Claim(ctx, key, s.ttl)
	if err != nil {
		t.Fatalf("claim by A: %v", err)
	}
	got := make(chan *locking.Lease, 1)
	errc := make(chan error, 1)
	go func() {
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		b, err := lb.Acquire(actx, key, s.ttl)
		if err != nil {
			errc <- err
			return
		}
		got <- b
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case b := <-got:
		t.Fatalf("B acquired token %d while A held the key", b.Token())
	case err := <-errc:
		t.Fatalf("acquire by B: %v", err)
	default:
	}
	released := time.Now()
	if err := a.Release(ctx); err != nil {
		t.Fatalf("release by A: %v", err)
	}
	select {
	case b := <-got:
		t.Logf("B acquired %v after A released", time.Since(released))
		if b.Token() <= a.Token() {
			t.Errorf("B's token %d, want > A's %d", b.Token(), a.Token())
		}
		// A waiter that sees the key completed gets ErrDone.
		go func() {
			time.Sleep(100 * time.Millisecond)
			_ = b.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour)
		}()
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := la.Acquire(actx, key, s.ttl); !errors.Is(err, locking.ErrDone) {
			t.Errorf("acquire of a key completed while waiting: got %v, want ErrDone", err)
		}
	case err := <-errc:
		t.Fatalf("acquire by B: %v", err)
	}
}

func testAcquireBounded(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	key := locking.Key{Scope: s.scope(t), Name: "k"}
	la, lb := s.locker(t, s.backend(t)), s.locker(t, s.backend(t))
	a, err := la.Claim(ctx, key, s.ttl)
	if err != nil {
		t.Fatalf("claim by A: %v", err)
	}
	defer a.Release(context.Background()) //nolint:errcheck // cleanup
	actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := lb.Acquire(actx, key, s.ttl); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire of a held key past its deadline: got %v, want context.DeadlineExceeded", err)
	}
	if err := a.Check(); err != nil {
		t.Errorf("A after B gave up: %v", err)
	}
	// A cancelled waiter leaves nothing behind: the next waiter is served normally.
	if err := a.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
	actx2, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	b, err := lb.Acquire(actx2, key, s.ttl)
	if err != nil {
		t.Fatalf("acquire of a free key: %v", err)
	}
	_ = b.Release(ctx)
}

func testHistory(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	scope := s.scope(t)
	l := s.locker(t, s.backend(t))
	started := time.Date(2026, 11, 25, 2, 30, 0, 123456789, time.UTC)
	var want []locking.Record
	for i := range 3 {
		key := locking.Key{Scope: scope, Name: fmt.Sprintf("2026-11-25T02:3%d:00Z", i)}
		lease, err := l.Claim(ctx, key, s.ttl)
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		rec := locking.Record{
			Outcome: locking.OutcomeFailed, Replica: "replica-" + fmt.Sprint(i), Attempt: i + 1,
			Started: started.Add(time.Duration(i) * time.Minute), Ended: started.Add(time.Duration(i)*time.Minute + 1500*time.Millisecond),
			Error: "exit status 3: \"quoted\" and ünïcode",
		}
		if err := lease.Complete(ctx, rec, time.Hour); err != nil {
			t.Fatalf("complete: %v", err)
		}
		rec.Key, rec.Token, rec.Owner = key, lease.Token(), lease.Owner()
		want = append(want, rec.Normalize())
	}
	missed := locking.Record{Key: locking.Key{Scope: scope, Name: "2026-11-25T02:40:00Z"}, Outcome: locking.OutcomeMissed, Started: started, Ended: started}
	if err := l.AddRecord(ctx, missed); err != nil {
		t.Fatalf("add record: %v", err)
	}
	want = append(want, missed.Normalize())
	got, err := l.Records(ctx, scope, 10)
	if err != nil {
		t.Fatalf("records: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %+v", len(got), len(want), got)
	}
	for i := range got {
		w := want[len(want)-1-i] // newest first
		if !recordsEqual(got[i], w) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got[i], w)
		}
	}
	two, err := l.Records(ctx, scope, 2)
	if err != nil || len(two) != 2 || !recordsEqual(two[0], want[3]) {
		t.Errorf("records with limit 2: %+v, %v", two, err)
	}
	none, err := l.Records(ctx, s.scope(t)+"x", 10)
	if err != nil || len(none) != 0 {
		t.Errorf("records of an unused scope: %+v, %v; want none", none, err)
	}
}

func recordsEqual(a, b locking.Record) bool {
	return a.Key == b.Key && a.Outcome == b.Outcome && a.Replica == b.Replica && a.Owner == b.Owner &&
		a.Token == b.Token && a.Attempt == b.Attempt && a.Started.Equal(b.Started) && a.Ended.Equal(b.Ended) && a.Error == b.Error
}

func testBadInput(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	l := s.locker(t, s.backend(t))
	scope := s.scope(t)
	keys := []struct {
		name string
		key  locking.Key
	}{
		{"empty scope", locking.Key{Scope: "", Name: "a"}},
		{"empty name", locking.Key{Scope: scope, Name: ""}},
		{"slash", locking.Key{Scope: scope, Name: "a/b"}},
		{"space", locking.Key{Scope: scope, Name: "a b"}},
		{"brace", locking.Key{Scope: "{x}", Name: "a"}},
		{"non-ASCII", locking.Key{Scope: scope, Name: "ä"}},
		{"newline", locking.Key{Scope: scope, Name: "a\nb"}},
		{"dot-dot", locking.Key{Scope: "..", Name: "a"}},
		{"long scope", locking.Key{Scope: strings.Repeat("s", locking.MaxScopeLen+1), Name: "a"}},
		{"long name", locking.Key{Scope: scope, Name: strings.Repeat("n", locking.MaxNameLen+1)}},
	}
	for _, tc := range keys {
		if _, err := l.Claim(ctx, tc.key, s.ttl); !errors.Is(err, locking.ErrInvalid) {
			t.Errorf("claim with %s key: got %v, want ErrInvalid", tc.name, err)
		}
		if _, err := l.Acquire(ctx, tc.key, s.ttl); !errors.Is(err, locking.ErrInvalid) {
			t.Errorf("acquire with %s key: got %v, want ErrInvalid", tc.name, err)
		}
	}
	good := locking.Key{Scope: scope, Name: "a"}
	for _, ttl := range []time.Duration{0, -time.Second, time.Millisecond, 25 * time.Hour} {
		if _, err := l.Claim(ctx, good, ttl); !errors.Is(err, locking.ErrInvalid) {
			t.Errorf("claim with ttl %v: got %v, want ErrInvalid", ttl, err)
		}
	}
	if _, err := l.Records(ctx, scope, 0); !errors.Is(err, locking.ErrInvalid) {
		t.Errorf("records with limit 0: got %v, want ErrInvalid", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Claim(cctx, good, s.ttl); !errors.Is(err, context.Canceled) {
		t.Errorf("claim with a cancelled context: got %v, want context.Canceled", err)
	}
	if _, err := l.Acquire(cctx, good, s.ttl); !errors.Is(err, context.Canceled) {
		t.Errorf("acquire with a cancelled context: got %v, want context.Canceled", err)
	}
	lease, err := l.Claim(ctx, good, s.ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if err := lease.Complete(ctx, locking.Record{}, 0); !errors.Is(err, locking.ErrInvalid) {
		t.Errorf("complete with retention 0: got %v, want ErrInvalid", err)
	}
	if err := lease.Check(); err != nil {
		t.Errorf("lease after a refused complete: %v", err)
	}
	_ = lease.Release(ctx)
}

func testUnreachable(t *testing.T, s *suite) {
	if s.h.Unreachable == nil {
		t.Fatal("locktest: Harness.Unreachable is nil; every networked backend must be tested against a dead address")
	}
	ctx := s.ctx(t)
	start := time.Now()
	b, err := s.h.Unreachable(t)
	if err != nil {
		if !errors.Is(err, locking.ErrUnavailable) {
			t.Fatalf("constructing a client of an unreachable server: got %v, want ErrUnavailable", err)
		}
		return
	}
	t.Cleanup(func() { _ = b.Close() })
	l := s.locker(t, b)
	const wait = 2 * time.Second
	for _, op := range []struct {
		name      string
		mayExpire bool // a waiting call may end with just the context's error
		do        func(ctx context.Context) error
	}{
		{"claim", false, func(ctx context.Context) error {
			_, err := l.Claim(ctx, locking.Key{Scope: s.scope(t), Name: "a"}, s.ttl)
			return err
		}},
		{"acquire", true, func(ctx context.Context) error {
			_, err := l.Acquire(ctx, locking.Key{Scope: s.scope(t), Name: "a"}, s.ttl)
			return err
		}},
		{"records", false, func(ctx context.Context) error {
			_, err := l.Records(ctx, s.scope(t), 5)
			return err
		}},
	} {
		start = time.Now()
		octx, cancel := context.WithTimeout(ctx, wait)
		err := op.do(octx)
		cancel()
		took := time.Since(start)
		if !errors.Is(err, locking.ErrUnavailable) && !(op.mayExpire && errors.Is(err, context.DeadlineExceeded)) {
			t.Errorf("%s on an unreachable server: got %v, want ErrUnavailable", op.name, err)
		}
		// Generous bound: this checks that the context is honoured at all, not speed.
		if took > wait+5*time.Second {
			t.Errorf("%s on an unreachable server took %v with a %v deadline", op.name, took, wait)
		}
	}
}

// testClockOffset: a backend that can read its server's clock gives an offset
// near zero (server and test share this machine's clock); others say they
// cannot.
func testClockOffset(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.backend(t)
	l := s.locker(t, b)
	off, rtt, err := l.ClockOffset(ctx)
	if _, ok := b.(locking.ServerClock); !ok {
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("ClockOffset on a backend without ServerClock: %v, want errors.ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("ClockOffset: %v", err)
	}
	// ZooKeeper stamps milliseconds; allow that, plus half the round trip.
	if limit := rtt/2 + 50*time.Millisecond; off > limit || off < -limit {
		t.Errorf("offset %v from a server on this machine (rtt %v), want within %v", off, rtt, limit)
	}
}
