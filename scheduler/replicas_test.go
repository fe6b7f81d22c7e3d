package scheduler_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

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
// that every tick ran exactly once with tokens rising per job.
func testReplicas(t *testing.T, newBackend func(t *testing.T) locking.Backend) {
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
}

func TestReplicasRedis(t *testing.T) {
	addr := testenv.RedisAddr(t)
	ns := randomNamespace()
	testReplicas(t, func(t *testing.T) locking.Backend {
		b, err := redislock.Dial(redislock.Config{Addrs: []string{addr}, Options: redislock.Options{Namespace: ns}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
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
