package scheduler_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
	"github.com/oncecron/oncecron/locking/locktest"
	"github.com/oncecron/oncecron/locking/redislock"
	"github.com/oncecron/oncecron/locking/zklock"
	"github.com/oncecron/oncecron/schedule"
	"github.com/oncecron/oncecron/scheduler"
)

// realBackend connects a replica to a real server, directly or through a
// proxy the test can cut.
type realBackend struct {
	name string
	ttl  time.Duration
	dial func(t *testing.T, addr, ns string) locking.Backend
	addr func(t *testing.T) string
}

func realBackends() []realBackend {
	ctx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 10*time.Second)
	}
	return []realBackend{
		{"redis", 2 * time.Second, func(t *testing.T, addr, ns string) locking.Backend {
			b, err := redislock.Dial(redislock.Config{Addrs: []string{addr}, DialTimeout: time.Second, Options: redislock.Options{Namespace: ns}})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, func(t *testing.T) string { return testenv.RedisAddr(t) }},
		{"etcd", 2 * time.Second, func(t *testing.T, addr, ns string) locking.Backend {
			c, cancel := ctx()
			defer cancel()
			b, err := etcdlock.New(c, []string{addr}, etcdlock.WithNamespace(ns), etcdlock.WithDialTimeout(2*time.Second), etcdlock.WithRequestTimeout(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, func(t *testing.T) string { return testenv.EtcdAddr(t) }},
		{"zookeeper", 2 * time.Second, func(t *testing.T, addr, ns string) locking.Backend {
			c, cancel := ctx()
			defer cancel()
			b, err := zklock.New(c, []string{addr}, zklock.WithNamespace(ns), zklock.WithSessionTimeout(6*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, func(t *testing.T) string { return testenv.ZKAddr(t) }},
	}
}

type proxyCut struct{ p *testenv.Proxy }

func (c proxyCut) Cut()  { c.p.Blackhole() }
func (c proxyCut) Heal() { c.p.Unblackhole() }

// TestTakeoverOnEveryBackend: the runner of a tick is cut off from the backend
// in the middle of its run. Its job is cancelled with ErrLost; a replica started
// afterwards finds the tick held, waits, and takes it over with a higher token
// and attempt 2 (with on_holder_loss: abandon it finds the runner's started
// marker and records the tick abandoned instead of running it); the lost run is
// recorded once the runner reaches the backend again.
func TestTakeoverOnEveryBackend(t *testing.T) {
	for _, rb := range realBackends() {
		for _, loss := range []struct {
			name string
			h    scheduler.HolderLoss
		}{{"retry", scheduler.HolderLossRetry}, {"abandon", scheduler.HolderLossAbandon}} {
			t.Run(rb.name+"/"+loss.name, func(t *testing.T) {
				t.Parallel()
				testTakeover(t, rb, loss.h)
			})
		}
	}
}

func testTakeover(t *testing.T, rb realBackend, loss scheduler.HolderLoss) {
	addr, ns := rb.addr(t), randomNamespace()
	proxy := testenv.NewProxy(t, addr)
	var cut locktest.Fault = proxyCut{proxy}
	var mu sync.Mutex
	var runs []jobs.Run
	var causes []error
	abandon := loss == scheduler.HolderLossAbandon
	js := []scheduler.Job{{
		// One tick, 5s ago, within the starting deadline; the next in an hour.
		Name: "takeover", Schedule: anchored(t, "@every 1h", time.Now().Add(-5*time.Second)), StartingDeadline: 40 * time.Second,
		OnHolderLoss: loss,
		Func: func(ctx context.Context, r jobs.Run) error {
			mu.Lock()
			runs = append(runs, r)
			mu.Unlock()
			if r.Replica == "a" {
				cut.Cut()
				<-ctx.Done()
				mu.Lock()
				causes = append(causes, context.Cause(ctx))
				mu.Unlock()
				return ctx.Err()
			}
			return nil
		},
	}}
	// a starts first and catches up the current hour's tick alone.
	ba := rb.dial(t, proxy.Addr(), ns)
	t.Cleanup(func() { _ = ba.Close() })
	stopA := start(t, newScheduler(t, newLocker(t, ba, rb.ttl), "a", rb.ttl, js, nil))
	waitFor(t, 20*time.Second, "a's run", func() bool { mu.Lock(); defer mu.Unlock(); return len(runs) == 1 })
	bb := rb.dial(t, addr, ns)
	t.Cleanup(func() { _ = bb.Close() })
	var takeovers atomic.Int32
	stopB := start(t, newScheduler(t, newLocker(t, bb, rb.ttl), "b", rb.ttl, js, func(e scheduler.Event) {
		if e.Kind == scheduler.EventTakeover {
			takeovers.Add(1)
		}
	}))
	waitFor(t, 30*time.Second, "b's takeover", func() bool {
		if abandon {
			return takeovers.Load() == 1
		}
		mu.Lock()
		defer mu.Unlock()
		return len(runs) == 2
	})
	cut.Heal()
	mu.Lock()
	if len(causes) != 1 || !errors.Is(causes[0], locking.ErrLost) {
		t.Errorf("a's job ended with %v, want ErrLost", causes)
	}
	if abandon {
		if len(runs) != 1 {
			t.Errorf("runs %+v: with on_holder_loss abandon the tick must not run again", runs)
		}
	} else if a, b := runs[0], runs[1]; b.Replica != "b" || !b.Scheduled.Equal(a.Scheduled) || b.Token <= a.Token || b.Attempt != 2 {
		t.Errorf("takeover %+v after %+v: want b, the same tick, a higher token, attempt 2", b, a)
	}
	mu.Unlock()
	ended := locking.OutcomeSucceeded
	if abandon {
		ended = locking.OutcomeAbandoned
	}
	l := newLocker(t, bb, rb.ttl)
	waitFor(t, 30*time.Second, "the lost and the "+string(ended)+" records", func() bool {
		recs, err := l.Records(context.Background(), "takeover", 10)
		if err != nil {
			return false
		}
		got := map[locking.Outcome]int{}
		for _, r := range recs {
			got[r.Outcome]++
		}
		if got[locking.OutcomeLost] == 1 && got[ended] == 1 && got[scheduler.OutcomeTakeover] == 1 &&
			(got[scheduler.OutcomeStarted] == 1) == abandon {
			return true
		}
		t.Logf("records so far: %v", got)
		return false
	})
	stopB()
	stopA()
	mu.Lock()
	defer mu.Unlock()
	if abandon && len(runs) != 1 {
		t.Errorf("runs %+v: with on_holder_loss abandon the tick must not run again", runs)
	}
}

// TestMisfireAndLateReplicaOnEveryBackend: ticks that fell while no replica
// ran are caught up by the misfire policy and recorded either way; a replica
// that arrives later finds them done and runs nothing again.
func TestMisfireAndLateReplicaOnEveryBackend(t *testing.T) {
	for _, rb := range realBackends() {
		t.Run(rb.name, func(t *testing.T) {
			t.Parallel()
			addr, ns := rb.addr(t), randomNamespace()
			var log runLog
			job := func(name string, m scheduler.Misfire) scheduler.Job {
				return scheduler.Job{Name: name, Schedule: mustSchedule(t, "@every 2s"), StartingDeadline: 7 * time.Second, Misfire: m,
					Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil }}
			}
			js := []scheduler.Job{job("latest", scheduler.MisfireRunLatest), job("all", scheduler.MisfireRunAll), job("skip", scheduler.MisfireSkip)}
			// No replica ran the last 7 seconds of this new namespace: three or
			// four ticks per job fall in the starting deadline.
			b1 := rb.dial(t, addr, ns)
			t.Cleanup(func() { _ = b1.Close() })
			s1 := newScheduler(t, newLocker(t, b1, rb.ttl), "first", rb.ttl, js, nil)
			// Start just after a tick, so that no tick falls between begin and
			// the start (it would be a regular tick, not a caught-up one).
			time.Sleep(time.Until(time.Now().Truncate(2 * time.Second).Add(2*time.Second + 50*time.Millisecond)))
			begin := time.Now()
			stop1 := start(t, s1)
			// Missed ticks are recorded once their starting deadline (7s) passed.
			time.Sleep(8 * time.Second)
			stop1()
			caught := map[string]int{}
			for _, r := range ran(log.all(), begin.Add(-8*time.Second), begin) {
				caught[r.Job]++
			}
			if caught["latest"] != 1 || caught["all"] < 3 || caught["skip"] != 0 {
				t.Errorf("catch-up runs %v: want latest 1, all 3 or 4, skip 0", caught)
			}
			l := newLocker(t, b1, rb.ttl)
			for _, name := range []string{"latest", "all", "skip"} {
				recs, err := l.Records(context.Background(), name, 50)
				old := 0
				for _, r := range recs {
					if at, perr := time.Parse(time.RFC3339, r.Key.Name); perr == nil && at.Before(begin) {
						old++
					}
				}
				if err != nil || old < 3 {
					t.Errorf("%s: %d records of missed ticks, %v; want every missed tick recorded", name, old, err)
				}
			}
			// A late replica (clock behind, paused, slow start) sees them done.
			before := len(log.all())
			b2 := rb.dial(t, addr, ns)
			t.Cleanup(func() { _ = b2.Close() })
			s2, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, b2, rb.ttl), Replica: "late", TTL: rb.ttl,
				Logger: zapNop(), HeartbeatInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			stop2 := start(t, s2)
			time.Sleep(500 * time.Millisecond)
			stop2()
			for _, r := range log.all()[before:] {
				if r.Scheduled.Before(begin) {
					t.Errorf("the late replica ran %s@%v again", r.Job, r.Scheduled)
				}
			}
			checkOnce(t, log.all())
		})
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, limit)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func zapNop() *zap.Logger { return zap.NewNop() }

func anchored(t *testing.T, spec string, at time.Time) schedule.Schedule {
	t.Helper()
	s, err := schedule.Parse(spec, schedule.Options{Anchor: at.Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMarkersKeptOnEveryBackend: a taker's takeover marker (no owner) and its
// started marker (owner "started", on_holder_loss: abandon) carry the same key
// and token; a backend that keys records by (token, name, owner) keeps both,
// so that a later taker still finds the started marker.
func TestMarkersKeptOnEveryBackend(t *testing.T) {
	for _, rb := range realBackends() {
		t.Run(rb.name, func(t *testing.T) {
			t.Parallel()
			b := rb.dial(t, rb.addr(t), randomNamespace())
			t.Cleanup(func() { _ = b.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			key := locking.Key{Scope: "markers", Name: scheduler.TickName(time.Unix(1800000000, 0))}
			now := time.Now().UTC()
			for _, rec := range []locking.Record{
				{Key: key, Outcome: scheduler.OutcomeTakeover, Replica: "r2", Token: 7, Attempt: 2, Started: now, Ended: now},
				{Key: key, Outcome: scheduler.OutcomeStarted, Owner: string(scheduler.OutcomeStarted), Replica: "r2", Token: 7, Attempt: 2, Started: now, Ended: now},
			} {
				if err := b.AddRecord(ctx, rec); err != nil {
					t.Fatal(err)
				}
			}
			recs, err := b.Records(ctx, key.Scope, 10)
			if err != nil {
				t.Fatal(err)
			}
			var got []locking.Outcome
			for _, r := range recs {
				got = append(got, r.Outcome)
			}
			if !slices.Contains(got, scheduler.OutcomeTakeover) || !slices.Contains(got, scheduler.OutcomeStarted) {
				t.Errorf("records %v, want the takeover and the started marker both", got)
			}
		})
	}
}
