package scheduler_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/memlock"
	"github.com/oncecron/oncecron/locking/redislock"
	"github.com/oncecron/oncecron/schedule"
	"github.com/oncecron/oncecron/scheduler"
)

// latencies collects scheduled-instant → start delays, the runs of each
// tick (to count duplicates) and the process's CPU time.
type latencies struct {
	mu   sync.Mutex
	d    []time.Duration
	runs []tickID      // the tick of each run, when known
	cpu  time.Duration // at start (see begin)
}

func (l *latencies) begin() { l.cpu = cpuTime() }

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

type tickID struct {
	job string
	at  int64 // Unix nanoseconds
}

// addRun is add for a run of job's tick at, which is noted to count
// duplicates (under the same lock: the job does no more than bare cron's).
func (l *latencies) addRun(d time.Duration, job string, at time.Time) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.runs = append(l.runs, tickID{job, at.UnixNano()})
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	cpu := cpuTime() - l.cpu
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		b.Fatal("no samples")
	}
	slices.Sort(l.d)
	q := func(p float64) float64 { return float64(l.d[int(p*float64(len(l.d)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(l.d[len(l.d)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(len(l.d)), "samples")
	// CPU time of the whole process (this side of the backend) per tick: less
	// noisy than the latencies on a shared machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(l.d)), "cpu-us/tick")
	if l.runs != nil {
		runs := map[tickID]int{}
		for _, k := range l.runs {
			runs[k]++
		}
		dups := 0
		for k, n := range runs {
			if n > 1 {
				b.Errorf("tick %s@%s ran %d times", k.job, time.Unix(0, k.at).UTC(), n)
				dups += n - 1
			}
		}
		b.ReportMetric(float64(dups), "dups")
	}
}

// cpuTime returns the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const (
	precisionJobs = 1000
	precisionRun  = 3*time.Second + 500*time.Millisecond
)

// BenchmarkFirePrecision measures how late jobs start after their scheduled
// instant with 1,000 jobs firing every second: bare robfig/cron (the floor: no
// lock at all), oncecron on the in-memory backend, and oncecron on Redis (one
// replica; every tick is a claim and a completion), with overlap allow (no
// other key per run), and with the default overlap skip. Run with
// -benchtime=1x.
func BenchmarkFirePrecision(b *testing.B) {
	b.Run("robfig-cron", func(b *testing.B) {
		for b.Loop() {
			var lat latencies
			lat.begin()
			c := cron.New(cron.WithSeconds())
			for range precisionJobs {
				if _, err := c.AddFunc("* * * * * *", func() {
					now := time.Now()
					lat.add(now.Sub(now.Truncate(time.Second)))
				}); err != nil {
					b.Fatal(err)
				}
			}
			c.Start()
			time.Sleep(precisionRun)
			<-c.Stop().Done()
			lat.report(b)
		}
	})
	b.Run("oncecron-memory", func(b *testing.B) {
		for b.Loop() {
			precision(b, memlock.New(), scheduler.OverlapAllow)
		}
	})
	// The default overlap policy (skip): each run also holds the job's
	// running key, claimed ahead right after its tick (in a batch of its
	// own), and released after the run's completion.
	b.Run("oncecron-memory-overlap-skip", func(b *testing.B) {
		for b.Loop() {
			precision(b, memlock.New(), scheduler.OverlapSkip)
		}
	})
	redis := func(overlap scheduler.Overlap) func(b *testing.B) {
		return func(b *testing.B) {
			addr := os.Getenv("ONCECRON_TEST_REDIS")
			if addr == "" {
				b.Fatal("ONCECRON_TEST_REDIS is not set: run scripts/bench.sh, or eval \"$(scripts/servers.sh start)\"")
			}
			for b.Loop() {
				rb, err := redislock.Dial(redislock.Config{Addrs: []string{addr}, Options: redislock.Options{Namespace: randomNamespace()}})
				if err != nil {
					b.Fatal(err)
				}
				precision(b, rb, overlap)
				_ = rb.Close()
			}
		}
	}
	b.Run("oncecron-redis", redis(scheduler.OverlapAllow))
	b.Run("oncecron-redis-overlap-skip", redis(scheduler.OverlapSkip))
}

func precision(b *testing.B, backend locking.Backend, overlap scheduler.Overlap) {
	var lat latencies
	var js []scheduler.Job
	for i := range precisionJobs {
		js = append(js, scheduler.Job{
			Name: fmt.Sprintf("job-%04d", i), Schedule: mustScheduleB(b, "* * * * * *"), Overlap: overlap,
			Func: func(ctx context.Context, r jobs.Run) error {
				lat.addRun(time.Since(r.Scheduled), r.Job, r.Scheduled)
				return nil
			},
		})
	}
	lat.begin()
	run(b, backend, js, precisionRun)
	lat.report(b)
}

func run(b *testing.B, backend locking.Backend, js []scheduler.Job, d time.Duration) {
	l, err := locking.New(backend)
	if err != nil {
		b.Fatal(err)
	}
	s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: l, Replica: "bench", TTL: 10 * time.Second,
		Logger: zap.NewNop(), SkipCatchUp: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkTenThousandJobs runs one replica with 10,000 jobs firing every minute
// (so the table, the timer queue and the idle cost dominate) plus their ticks
// over a few seconds, and reports heap in use and CPU time per wall second.
func BenchmarkTenThousandJobs(b *testing.B) {
	for b.Loop() {
		var js []scheduler.Job
		for i := range 10000 {
			js = append(js, scheduler.Job{
				Name: fmt.Sprintf("job-%05d", i), Schedule: mustScheduleB(b, fmt.Sprintf("%d * * * * *", i%60)),
				Func: func(ctx context.Context, r jobs.Run) error { return nil },
			})
		}
		var before, after syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		start := time.Now()
		var heap uint64
		done := make(chan struct{})
		go func() {
			defer close(done)
			run(b, memlock.New(), js, 5*time.Second)
		}()
		time.Sleep(4 * time.Second)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = ms.HeapInuse
		<-done
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
		b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
		b.ReportMetric(cpu.Seconds()/time.Since(start).Seconds(), "cpu-cores")
	}
}

func mustScheduleB(b *testing.B, spec string) schedule.Schedule {
	b.Helper()
	s, err := schedule.Parse(spec, schedule.Options{})
	if err != nil {
		b.Fatalf("parse %q: %v", spec, err)
	}
	return s
}
