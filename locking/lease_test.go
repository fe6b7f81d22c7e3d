package locking_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/memlock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// slowBackend delays requests on their way to the server and replies on their
// way back, and notes when each claim or renewal reached the server.
type slowBackend struct {
	locking.Backend
	there, back time.Duration
	mu          sync.Mutex
	arrived     time.Time
}

func (s *slowBackend) delay() (there, back time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.there, s.back
}

func (s *slowBackend) Claim(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	there, back := s.delay()
	time.Sleep(there)
	s.mu.Lock()
	s.arrived = time.Now()
	s.mu.Unlock()
	g, err := s.Backend.Claim(ctx, key, owner, ttl)
	time.Sleep(back)
	return g, err
}

func (s *slowBackend) Renew(ctx context.Context, g locking.Grant, ttl time.Duration) (locking.Grant, error) {
	there, back := s.delay()
	time.Sleep(there) // ignores ctx, as a stuck call would
	s.mu.Lock()
	s.arrived = time.Now()
	s.mu.Unlock()
	g, err := s.Backend.Renew(ctx, g, ttl)
	time.Sleep(back)
	return g, err
}

// TestDeadlineIsConservative: whatever the request and reply delays, the
// lease's local deadline is at least the margin before the server would expire
// the key, and a slow reply shortens validity instead of extending it.
func TestDeadlineIsConservative(t *testing.T) {
	const ttl = 3 * time.Second
	for _, d := range []struct{ there, back time.Duration }{
		{0, 0}, {0, time.Second}, {time.Second, 0}, {500 * time.Millisecond, 1500 * time.Millisecond},
		{0, 2500 * time.Millisecond}, {2 * time.Second, 0},
	} {
		synctest.Test(t, func(t *testing.T) {
			b := &slowBackend{Backend: memlock.New(), there: d.there, back: d.back}
			l, err := locking.New(b)
			if err != nil {
				t.Fatal(err)
			}
			lease, err := l.Claim(context.Background(), locking.Key{Scope: "s", Name: "n"}, ttl)
			if err != nil {
				t.Fatalf("claim with delays %v/%v: %v", d.there, d.back, err)
			}
			defer lease.Release(context.Background()) //nolint:errcheck // cleanup
			b.mu.Lock()
			serverExpiry := b.arrived.Add(ttl)
			b.mu.Unlock()
			if limit := serverExpiry.Add(-l.Margin(ttl)); lease.Deadline().After(limit) {
				t.Errorf("delays %v/%v: local deadline %v after server expiry − margin %v", d.there, d.back, lease.Deadline(), limit)
			}
		})
	}
}

// TestWatchdogRenewsAndLosesInTime drives the watchdog on fake time: it keeps a
// lease for many TTLs, and once renewals stop getting through it declares the
// lease lost before the server frees the key.
func TestWatchdogRenewsAndLosesInTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 3 * time.Second
		mem := memlock.New()
		b := &slowBackend{Backend: mem}
		l, _ := locking.New(b)
		key := locking.Key{Scope: "s", Name: "n"}
		lease, err := l.Claim(context.Background(), key, ttl)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * ttl)
		if err := lease.Check(); err != nil {
			t.Fatalf("after 10 TTLs: %v", err)
		}
		// From now on every renewal takes longer than the TTL to get there.
		b.mu.Lock()
		b.there = 2 * ttl
		b.mu.Unlock()
		var mu sync.Mutex
		var lostAt time.Time
		go func() { <-lease.Done(); mu.Lock(); lostAt = time.Now(); mu.Unlock() }()
		var freeAt time.Time
		for {
			if _, err := mem.Claim(context.Background(), key, locking.NewOwner(), ttl); err == nil {
				freeAt = time.Now()
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if lostAt.IsZero() || !lostAt.Before(freeAt) {
			t.Errorf("lease lost at %v, key free at %v: the loss must come first", lostAt, freeAt)
		}
		if !errors.Is(lease.Err(), locking.ErrLost) {
			t.Errorf("Err() = %v, want ErrLost", lease.Err())
		}
		time.Sleep(3 * ttl) // let the slow renewal return
	})
}

func TestLeaseEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		count := map[locking.LeaseEventKind]int{}
		b := &slowBackend{Backend: memlock.New()}
		l, _ := locking.New(b, locking.WithLeaseEvents(func(e locking.LeaseEvent) {
			mu.Lock()
			count[e.Kind]++
			mu.Unlock()
		}))
		lease, err := l.Claim(context.Background(), locking.Key{Scope: "s", Name: "n"}, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second) // about ten renewals
		b.mu.Lock()
		b.there = 10 * time.Second // renewals stop getting through
		b.mu.Unlock()
		time.Sleep(20 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		if count[locking.LeaseRenewed] < 8 || count[locking.LeaseLost] != 1 {
			t.Errorf("events %v: want about ten renewals and one loss", count)
		}
		if !errors.Is(lease.Err(), locking.ErrLost) {
			t.Errorf("Err() = %v", lease.Err())
		}
	})
}

// staleBackend grants claims whose validity began before the claim (as a
// session-based backend does, counting from its last keep-alive).
type staleBackend struct {
	locking.Backend
	age time.Duration
}

func (s *staleBackend) Claim(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	g, err := s.Backend.Claim(ctx, key, owner, ttl)
	g.Since = time.Now().Add(-s.age)
	return g, err
}

// TestLeaseEndsAtDeadlineBeforeFirstRenewal: a lease whose local deadline
// comes before its first renewal is due ends at the deadline, not at the
// renewal.
func TestLeaseEndsAtDeadlineBeforeFirstRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 3 * time.Second
		l, _ := locking.New(&staleBackend{Backend: memlock.New(), age: 2 * time.Second})
		lease, err := l.Claim(context.Background(), locking.Key{Scope: "s", Name: "n"}, ttl)
		if err != nil {
			t.Fatal(err)
		}
		deadline := lease.Deadline()
		if wait := deadline.Sub(time.Now()); wait <= 0 || wait >= ttl/4 {
			t.Fatalf("deadline in %v; the test needs one before the first renewal", wait)
		}
		<-lease.Done()
		if now := time.Now(); now.After(deadline) {
			t.Errorf("lease ended at %v, %v after its deadline", now, now.Sub(deadline))
		}
		if !errors.Is(lease.Err(), locking.ErrLost) {
			t.Errorf("Err() = %v, want ErrLost", lease.Err())
		}
	})
}
