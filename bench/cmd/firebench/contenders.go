package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	bsm "github.com/bsm/redislock"
	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"
	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
	"github.com/oncecron/oncecron/locking/memlock"
	"github.com/oncecron/oncecron/locking/redislock"
	"github.com/oncecron/oncecron/locking/zklock"
	"github.com/oncecron/oncecron/schedule"
	"github.com/oncecron/oncecron/scheduler"
)

// Every contender runs `jobs` jobs that fire every second ("* * * * * *"),
// each of which only records its start.
const spec = "* * * * * *"

// ttl of oncecron's ticks and of gocron's Redis lock: the default lock.ttl of
// the cron table.
const ttl = 10 * time.Second

// servers are the addresses of the backends.
type servers struct{ redis, etcd, zk string }

// contender starts its instances, which record their runs in rec, and returns
// a function that stops them. off(k) is the clock offset of instance k.
type contender struct {
	name  string
	start func(ctx context.Context, n int, rec *recorder, off func(k int) time.Duration) (stop func() error, err error)
}

// robfigContender is robfig/cron v3 alone: one instance, no lock at all. It
// is the floor: the cost of a timer per job and a goroutine per run.
func robfigContender() contender {
	return contender{name: "robfig-cron", start: func(_ context.Context, n int, rec *recorder, _ func(int) time.Duration) (func() error, error) {
		c := cron.New(cron.WithSeconds())
		for i := range n {
			if _, err := c.AddFunc(spec, func() {
				now := time.Now()
				rec.record(i, now.Truncate(time.Second), now)
			}); err != nil {
				return nil, err
			}
		}
		c.Start()
		return func() error { <-c.Stop().Done(); return nil }, nil
	}}
}

// gocronLocker is the distributed locker of gocron v2 that users write on
// Redis (as go-co-op/gocron-redis-lock does with redsync and WithTries(1)):
// one try of SET NX PX on a key named after the job, released when the run
// returns. Here on bsm/redislock, without retries.
type gocronLocker struct {
	c      *bsm.Client
	prefix string
}

func (l gocronLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	lk, err := l.c.Obtain(ctx, l.prefix+key, ttl, nil)
	if err != nil {
		return nil, err
	}
	return gocronLock{lk}, nil
}

type gocronLock struct{ l *bsm.Lock }

func (l gocronLock) Unlock(ctx context.Context) error { return l.l.Release(ctx) }

// skewedClockwork is the real clock, off by a fixed offset (for gocron).
type skewedClockwork struct {
	clockwork.Clock
	off time.Duration
}

func (c skewedClockwork) Now() time.Time                  { return c.Clock.Now().Add(c.off) }
func (c skewedClockwork) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c skewedClockwork) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// skewedClock is the real clock, off by a fixed offset (for oncecron's
// scheduler; time.Now().Add keeps the monotonic reading).
type skewedClock struct {
	locking.SystemClock
	off time.Duration
}

func (c skewedClock) Now() time.Time { return time.Now().Add(c.off) }

func redisClient(addr string) (*redis.Client, error) {
	// The settings of redislock.Dial: go-redis retries off, context timeouts on.
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 5 * time.Second, MaxRetries: -1, ContextTimeoutEnabled: true})
	// go-redis probes CLIENT MAINT_NOTIFICATIONS on the first connection and
	// dials again after Redis 7.0 rejects it: warm up with two requests.
	for range 2 {
		if err := c.Ping(context.Background()).Err(); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("redis %s: %w", addr, err)
		}
	}
	return c, nil
}

// gocronContender is go-co-op/gocron v2 on `replicas` schedulers, each with
// its own Redis client and WithDistributedLocker(gocronLocker). prefix makes
// its lock keys unique to the run.
func gocronContender(srv servers, replicas int, prefix func() string) contender {
	return contender{name: "gocron-redis", start: func(_ context.Context, n int, rec *recorder, off func(int) time.Duration) (stop func() error, err error) {
		var scheds []gocron.Scheduler
		var clients []*redis.Client
		stop = func() error {
			var errs []error
			for _, s := range scheds {
				errs = append(errs, s.Shutdown())
			}
			for _, c := range clients {
				errs = append(errs, c.Close())
			}
			return errors.Join(errs...)
		}
		keys := prefix()
		for k := range replicas {
			c, err := redisClient(srv.redis)
			if err != nil {
				return nil, errors.Join(err, stop())
			}
			clients = append(clients, c)
			clk := skewedClockwork{clockwork.NewRealClock(), off(k)}
			s, err := gocron.NewScheduler(gocron.WithDistributedLocker(gocronLocker{bsm.New(c), keys}), gocron.WithClock(clk),
				gocron.WithLocation(time.UTC))
			if err != nil {
				return nil, errors.Join(err, stop())
			}
			scheds = append(scheds, s)
			for i := range n {
				if _, err := s.NewJob(gocron.CronJob(spec, true), gocron.NewTask(func() {
					now := clk.Now()
					rec.record(i, now.Truncate(time.Second), now)
				}), gocron.WithName(fmt.Sprintf("job-%05d", i))); err != nil {
					return nil, errors.Join(err, stop())
				}
			}
		}
		for _, s := range scheds {
			s.Start()
		}
		return stop, nil
	}}
}

// openBackend opens one replica's backend of kind (not memory) in namespace ns.
func openBackend(ctx context.Context, kind string, srv servers, ns string) (locking.Backend, error) {
	switch kind {
	case "redis":
		b, err := redislock.Dial(redislock.Config{Addrs: []string{srv.redis}, Options: redislock.Options{Namespace: ns}})
		if err != nil {
			return nil, err
		}
		for range 2 {
			if err := b.Client().Ping(ctx).Err(); err != nil {
				_ = b.Close()
				return nil, fmt.Errorf("redis %s: %w", srv.redis, err)
			}
		}
		return b, nil
	case "etcd":
		return etcdlock.New(ctx, []string{srv.etcd}, etcdlock.WithNamespace(ns))
	case "zookeeper":
		// As cli.OpenBackend opens it, with the default session timeout.
		return zklock.New(ctx, []string{srv.zk}, zklock.WithNamespace(ns), zklock.WithJanitor(time.Minute, 100))
	}
	return nil, fmt.Errorf("unknown backend %q", kind)
}

// oncecronContender is oncecron with `replicas` schedulers on backend kind,
// each with its own client (memory: one in-process backend shared by all, a
// floor without a network). ns(kind, n) names the namespace of a run with n
// jobs; runs of the same size reuse it, so the per-scope nodes and keys exist
// after the first, as they do in a deployment that has been up for a while.
// Its jobs have overlap allow, or, with skip, the default overlap skip (the
// contender is then named oncecron-<kind>-skip).
func oncecronContender(kind string, skip bool, srv servers, replicas int, ns func(kind string, n int) string) contender {
	sched, err := schedule.Parse(spec, schedule.Options{})
	if err != nil {
		panic(err)
	}
	name, overlap := "oncecron-"+kind, scheduler.OverlapAllow
	if skip {
		name, overlap = name+"-skip", scheduler.OverlapSkip
	}
	return contender{name: name, start: func(ctx context.Context, n int, rec *recorder, off func(int) time.Duration) (stop func() error, err error) {
		var shared locking.Backend
		if kind == "memory" {
			shared = memlock.New()
		}
		var backends []locking.Backend
		rctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var mu sync.Mutex
		var runErr error
		stop = func() error {
			cancel()
			wg.Wait()
			errs := []error{runErr}
			for _, b := range backends {
				errs = append(errs, b.Close())
			}
			return errors.Join(errs...)
		}
		var ss []*scheduler.Scheduler
		for k := range replicas {
			b := shared
			if b == nil {
				if b, err = openBackend(ctx, kind, srv, ns(strings.TrimPrefix(name, "oncecron-"), n)); err != nil {
					return nil, errors.Join(err, stop())
				}
				backends = append(backends, b)
			}
			// The Locker options of `scheduler run`.
			l, err := locking.New(b, locking.WithPollInterval(min(time.Second, ttl/3)))
			if err != nil {
				return nil, errors.Join(err, stop())
			}
			clk := skewedClock{off: off(k)}
			js := make([]scheduler.Job, n)
			for i := range n {
				js[i] = scheduler.Job{Name: fmt.Sprintf("job-%05d", i), Schedule: sched, Overlap: overlap,
					Func: func(_ context.Context, r jobs.Run) error {
						rec.record(i, r.Scheduled, clk.Now())
						return nil
					}}
			}
			s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: l, Replica: fmt.Sprintf("r%d", k), TTL: ttl,
				ShutdownTimeout: 2 * time.Second, Logger: zap.NewNop(), Clock: clk,
				// Every run starts a fresh table: no search for ticks missed before it.
				SkipCatchUp: true})
			if err != nil {
				return nil, errors.Join(err, stop())
			}
			ss = append(ss, s)
		}
		for k, s := range ss {
			wg.Go(func() {
				if err := s.Run(rctx); err != nil && rctx.Err() == nil {
					mu.Lock()
					runErr = errors.Join(runErr, fmt.Errorf("replica r%d: %w", k, err))
					mu.Unlock()
				}
			})
		}
		return stop, nil
	}}
}
