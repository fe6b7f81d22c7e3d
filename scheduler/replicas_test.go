package scheduler_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
	"github.com/oncecron/oncecron/locking/redislock"
	"github.com/oncecron/oncecron/locking/zklock"
	"github.com/oncecron/oncecron/scheduler"
)

func randomNamespace() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "sched-" + hex.EncodeToString(b[:])
}

// testReplicas runs three schedulers, each with its own client of a real
// backend, with twenty jobs firing every second for about ten seconds, and checks
// that every tick ran exactly once with tokens rising per job. It returns when
// it started.
func testReplicas(t *testing.T, newBackend func(t *testing.T) locking.Backend) time.Time {
	const ttl = 3 * time.Second
	var log runLog
	var js []scheduler.Job
	for i := range 20 {
		js = append(js, scheduler.Job{
			Name: fmt.Sprintf("job-%02d", i), Schedule: mustSchedule(t, "* * * * * *"),
			Func: func(ctx context.Context, r jobs.Run) error {
				log.add(r)
				time.Sleep(50 * time.Millisecond)
				return nil
			},
		})
	}
	var stops []func()
	for _, name := range []string{"a", "b", "c"} {
		b := newBackend(t)
		t.Cleanup(func() { _ = b.Close() })
		s := newScheduler(t, newLocker(t, b, ttl), name, ttl, js, nil)
		stops = append(stops, start(t, s))
	}
	begin := time.Now()
	time.Sleep(10 * time.Second)
	end := time.Now()
	for _, stop := range stops {
		stop()
	}
	// Ticks from one second after the start to one second before the end fell
	// while all three replicas were up: each must have run exactly once.
	from, to := begin.Add(time.Second).Truncate(time.Second), end.Add(-time.Second).Truncate(time.Second)
	byJob := checkOnce(t, log.all())
	replicas := map[string]int{}
	for _, j := range js {
		for at := from.Add(time.Second); !at.After(to); at = at.Add(time.Second) {
			r, ok := byJob[j.Name][at.UTC()]
			if !ok {
				t.Errorf("job %s: tick %s never ran", j.Name, scheduler.TickName(at))
				continue
			}
			replicas[r.Replica]++
		}
	}
	t.Logf("runs per replica: %v", replicas)
	return begin
}

// tickScripts counts the Lua scripts a Redis client runs on each tick's lock
// key, by tick name, one by one also in pipelines.
type tickScripts struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *tickScripts) add(cmd redis.Cmder) {
	// EVALSHA sha numkeys key...: the lock key is <ns>:{<job>}:l:<tick>.
	if a := cmd.Args(); (cmd.Name() == "evalsha" || cmd.Name() == "eval") && len(a) > 3 {
		if k, ok := a[3].(string); ok {
			if _, tick, ok := strings.Cut(k, "}:l:"); ok {
				h.mu.Lock()
				h.n[tick]++
				h.mu.Unlock()
			}
		}
	}
}

func (h *tickScripts) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *tickScripts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add(cmd)
		return next(ctx, cmd)
	}
}

func (h *tickScripts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.add(c)
		}
		return next(ctx, cmds)
	}
}

// TestReplicasRedis also counts the scripts of the ticks that fell while all
// three replicas ran: each needs three claims and one completion. The two
// losers of a tick wait for its completion without asking Redis again.
func TestReplicasRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	ns := randomNamespace()
	h := &tickScripts{n: map[string]int{}}
	begin := testReplicas(t, func(t *testing.T) locking.Backend {
		b, err := redislock.Dial(redislock.Config{Addrs: []string{addr}, Options: redislock.Options{Namespace: ns}})
		if err != nil {
			t.Fatal(err)
		}
		b.Client().AddHook(h)
		return b
	})
	// The ticks of the 20 jobs from 3 s after the start (the losers of the
	// first ticks claim once more when their subscription is confirmed) for
	// 5 s, when all have ended.
	first := begin.Truncate(time.Second).Add(3 * time.Second)
	ticks, n := 0, 0
	for at := first; at.Before(first.Add(5 * time.Second)); at = at.Add(time.Second) {
		ticks += 20
		n += h.n[scheduler.TickName(at)]
	}
	perTick := float64(n) / float64(ticks)
	t.Logf("%d scripts for %d ticks: %.2f per tick", n, ticks, perTick)
	if perTick > 4.5 {
		t.Errorf("%.2f scripts per tick, want about 4 (3 claims and a completion)", perTick)
	}
}

func TestReplicasEtcd(t *testing.T) {
	addr := testenv.EtcdAddr(t)
	ns := randomNamespace()
	testReplicas(t, func(t *testing.T) locking.Backend {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := etcdlock.New(ctx, []string{addr}, etcdlock.WithNamespace(ns))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestReplicasZooKeeper(t *testing.T) {
	addr := testenv.ZKAddr(t)
	ns := randomNamespace()
	testReplicas(t, func(t *testing.T) locking.Backend {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := zklock.New(ctx, []string{addr}, zklock.WithNamespace(ns), zklock.WithSessionTimeout(6*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}
