package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/locktest"
	"github.com/oncecron/oncecron/locking/memlock"
	"github.com/oncecron/oncecron/schedule"
	"github.com/oncecron/oncecron/scheduler"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runLog records the runs of jobs across replicas.
type runLog struct {
	mu   sync.Mutex
	runs []jobs.Run
}

func (l *runLog) add(r jobs.Run) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.Logger = nil
	l.runs = append(l.runs, r)
}

func (l *runLog) all() []jobs.Run {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]jobs.Run(nil), l.runs...)
}

func mustSchedule(t *testing.T, spec string) schedule.Schedule {
	t.Helper()
	s, err := schedule.Parse(spec, schedule.Options{})
	if err != nil {
		t.Fatalf("parse %q: %v", spec, err)
	}
	return s
}

func newLocker(t *testing.T, b locking.Backend, ttl time.Duration) *locking.Locker {
	t.Helper()
	l, err := locking.New(b, locking.WithLogger(zaptest.NewLogger(t)), locking.WithPollInterval(min(time.Second, ttl/3)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newScheduler(t *testing.T, l *locking.Locker, replica string, ttl time.Duration, js []scheduler.Job, observe func(scheduler.Event)) *scheduler.Scheduler {
	t.Helper()
	s, err := scheduler.New(scheduler.Options{
		Jobs: js, Locker: l, Replica: replica, TTL: ttl,
		ShutdownTimeout: 5 * time.Second, Logger: zaptest.NewLogger(t).Named(replica), Observe: observe,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// start runs s until the test's cleanup and reports Run's error.
func start(t *testing.T, s *scheduler.Scheduler) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(2 * time.Minute):
				_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
				t.Fatal("Run did not return within 2 minutes of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// checkOnce checks that every tick ran at most once and tokens rise with ticks.
func checkOnce(t *testing.T, runs []jobs.Run) map[string]map[time.Time]jobs.Run {
	t.Helper()
	byJob := map[string]map[time.Time]jobs.Run{}
	for _, r := range runs {
		if byJob[r.Job] == nil {
			byJob[r.Job] = map[time.Time]jobs.Run{}
		}
		if prev, ok := byJob[r.Job][r.Scheduled]; ok {
			t.Errorf("job %s tick %s ran twice: on %s (token %d) and %s (token %d)",
				r.Job, scheduler.TickName(r.Scheduled), prev.Replica, prev.Token, r.Replica, r.Token)
		}
		byJob[r.Job][r.Scheduled] = r
	}
	for job, ticks := range byJob {
		var ts []time.Time
		for at := range ticks {
			ts = append(ts, at)
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for i := 1; i < len(ts); i++ {
			if a, b := ticks[ts[i-1]], ticks[ts[i]]; b.Token <= a.Token {
				t.Errorf("job %s: tick %s has token %d, not above the earlier tick's %d", job, scheduler.TickName(b.Scheduled), b.Token, a.Token)
			}
		}
	}
	return byJob
}

// ran returns the runs scheduled in (from, to].
func ran(runs []jobs.Run, from, to time.Time) []jobs.Run {
	var out []jobs.Run
	for _, r := range runs {
		if r.Scheduled.After(from) && !r.Scheduled.After(to) {
			out = append(out, r)
		}
	}
	return out
}

// outcomes counts a job's records by outcome, among ticks scheduled after from.
func outcomes(t *testing.T, b locking.Backend, job string, from time.Time) map[locking.Outcome]int {
	t.Helper()
	recs, err := b.Records(context.Background(), job, 1000)
	if err != nil {
		t.Fatalf("records of %s: %v", job, err)
	}
	out := map[locking.Outcome]int{}
	for _, r := range recs {
		if at, err := time.Parse(time.RFC3339Nano, r.Key.Name); err == nil && at.After(from) {
			out[r.Outcome]++
		}
	}
	return out
}

func TestEveryTickOnceSingleReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log runLog
		b := memlock.New()
		js := []scheduler.Job{{
			Name: "every-second", Schedule: mustSchedule(t, "@every 1s"),
			Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil },
		}}
		s := newScheduler(t, newLocker(t, b, 3*time.Second), "r1", 3*time.Second, js, nil)
		begin := time.Now()
		stop := start(t, s)
		time.Sleep(10*time.Second + 500*time.Millisecond)
		stop()
		checkOnce(t, log.all())
		runs := ran(log.all(), begin, begin.Add(10*time.Second))
		if len(runs) != 10 {
			t.Fatalf("%d runs in 10.5s of an @every 1s job, want 10", len(runs))
		}
		for i, r := range runs {
			want := begin.Truncate(time.Second).Add(time.Duration(i+1) * time.Second)
			if !r.Scheduled.Equal(want) {
				t.Errorf("run %d scheduled %v, want %v", i, r.Scheduled, want)
			}
			if r.Attempt != 1 || r.Replica != "r1" {
				t.Errorf("run %d: attempt %d replica %q", i, r.Attempt, r.Replica)
			}
		}
		if got := outcomes(t, b, "every-second", begin); got[locking.OutcomeSucceeded] != 10 || len(got) != 1 {
			t.Errorf("records: %v, want 10 succeeded", got)
		}
	})
}

func TestThreeReplicasInProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log runLog
		b := memlock.New()
		var js []scheduler.Job
		for i := range 20 {
			js = append(js, scheduler.Job{
				Name: fmt.Sprintf("job-%02d", i), Schedule: mustSchedule(t, "* * * * * *"),
				Func: func(ctx context.Context, r jobs.Run) error {
					time.Sleep(100 * time.Millisecond)
					log.add(r)
					return nil
				},
			})
		}
		begin := time.Now()
		for _, name := range []string{"a", "b", "c"} {
			start(t, newScheduler(t, newLocker(t, b, 2*time.Second), name, 2*time.Second, js, nil))
		}
		time.Sleep(10*time.Second + 500*time.Millisecond)
		byJob := checkOnce(t, ran(log.all(), begin, begin.Add(10*time.Second)))
		for _, j := range js {
			if n := len(byJob[j.Name]); n != 10 {
				t.Errorf("job %s ran %d ticks in 10.5s, want 10", j.Name, n)
			}
		}
	})
}

func TestCatchUpRunLatest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log runLog
		b := memlock.New()
		var events sync.Map
		js := []scheduler.Job{
			{Name: "latest", Schedule: mustSchedule(t, "@every 10s"), StartingDeadline: 35 * time.Second,
				Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil }},
			{Name: "all", Schedule: mustSchedule(t, "@every 10s"), StartingDeadline: 35 * time.Second, Misfire: scheduler.MisfireRunAll,
				Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil }},
			{Name: "skip", Schedule: mustSchedule(t, "@every 10s"), StartingDeadline: 35 * time.Second, Misfire: scheduler.MisfireSkip,
				Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil }},
		}
		time.Sleep(5 * time.Second) // start 5s after a multiple of 10s
		s := newScheduler(t, newLocker(t, b, 2*time.Second), "r1", 2*time.Second, js, func(e scheduler.Event) {
			if e.Kind == scheduler.EventMissed {
				n, _ := events.LoadOrStore(e.Job, new(int))
				*n.(*int)++
			}
		})
		begin := time.Now()
		stop := start(t, s)
		// Missed ticks are recorded once their starting deadline has passed
		// (until then a runner might still be at work on them): 35s at most.
		time.Sleep(36 * time.Second)
		stop()
		count := map[string]int{}
		for _, r := range ran(log.all(), begin.Add(-time.Minute), begin) {
			count[r.Job]++
		}
		// Ticks at -5s, -15s, -25s fell within the 35s starting deadline.
		want := map[string]int{"latest": 1, "all": 3, "skip": 0}
		for job, n := range want {
			if count[job] != n {
				t.Errorf("job %s: %d catch-up runs, want %d", job, count[job], n)
			}
			recs, _ := b.Records(context.Background(), job, 100)
			old := 0
			for _, r := range recs {
				if at, err := time.Parse(time.RFC3339, r.Key.Name); err == nil && at.Before(begin) {
					old++
				}
			}
			if old != 3 {
				t.Errorf("job %s: %d records of missed ticks, want 3 (each missed tick recorded either way)", job, old)
			}
		}
	})
}

// A catch-up whose runs take longer than the job's interval: the new ticks
// that fire meanwhile (overlap allow) get tokens above every caught-up tick's.
func TestCatchUpTokensRiseWithTicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log runLog
		var begin time.Time
		js := []scheduler.Job{{Name: "all", Schedule: mustSchedule(t, "@every 10s"), StartingDeadline: 35 * time.Second,
			Misfire: scheduler.MisfireRunAll, Overlap: scheduler.OverlapAllow,
			Func: func(ctx context.Context, r jobs.Run) error {
				if r.Scheduled.Before(begin) {
					time.Sleep(12 * time.Second) // longer than the interval
				}
				log.add(r)
				return nil
			}}}
		time.Sleep(5 * time.Second) // start 5s after a multiple of 10s
		s := newScheduler(t, newLocker(t, memlock.New(), 2*time.Second), "r1", 2*time.Second, js, nil)
		begin = time.Now()
		stop := start(t, s)
		time.Sleep(40 * time.Second)
		stop()
		// Ticks at -25s, -15s, -5s caught up (one after the other, until
		// +36s), and +5s, +15s, +25s, +35s.
		runs := checkOnce(t, log.all())["all"]
		if len(runs) != 7 {
			t.Errorf("%d ticks ran, want 7", len(runs))
		}
	})
}

func TestOverlapSkip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log runLog
		b := memlock.New()
		js := []scheduler.Job{{
			Name: "slow", Schedule: mustSchedule(t, "@every 1s"),
			Func: func(ctx context.Context, r jobs.Run) error {
				log.add(r)
				time.Sleep(2500 * time.Millisecond)
				return nil
			},
		}}
		for _, name := range []string{"a", "b"} {
			start(t, newScheduler(t, newLocker(t, b, 2*time.Second), name, 2*time.Second, js, nil))
		}
		time.Sleep(9*time.Second + 500*time.Millisecond)
		runs := log.all()
		for i := 1; i < len(runs); i++ {
			if gap := runs[i].Scheduled.Sub(runs[i-1].Scheduled); gap < 3*time.Second {
				t.Errorf("runs at %v and %v overlap (a run takes 2.5s)", runs[i-1].Scheduled, runs[i].Scheduled)
			}
		}
		if len(runs) < 2 {
			t.Errorf("%d runs, want at least 2", len(runs))
		}
		recs, _ := b.Records(context.Background(), "slow", 100)
		skipped := 0
		for _, r := range recs {
			if r.Outcome == locking.OutcomeSkipped {
				skipped++
			}
		}
		if skipped == 0 {
			t.Error("no tick recorded as skipped")
		}
	})
}

func TestTimeoutCancelsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		var cause error
		var mu sync.Mutex
		js := []scheduler.Job{{
			Name: "stuck", Schedule: mustSchedule(t, "@every 10s"), Timeout: time.Second,
			Func: func(ctx context.Context, r jobs.Run) error {
				<-ctx.Done()
				mu.Lock()
				cause = context.Cause(ctx)
				mu.Unlock()
				return ctx.Err()
			},
		}}
		begin := time.Now()
		start(t, newScheduler(t, newLocker(t, b, 2*time.Second), "r1", 2*time.Second, js, nil))
		time.Sleep(12 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		if !errors.Is(cause, scheduler.ErrTimeout) {
			t.Errorf("cause = %v, want ErrTimeout", cause)
		}
		if got := outcomes(t, b, "stuck", begin); got[locking.OutcomeFailed] != 1 || len(got) != 1 {
			t.Errorf("records: %v, want one failed run", got)
		}
	})
}

func TestRetriesWithinTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		var log runLog
		js := []scheduler.Job{{
			Name: "flaky", Schedule: mustSchedule(t, "@every 1m"), Retries: 3, RetryBackoff: 100 * time.Millisecond,
			Func: func(ctx context.Context, r jobs.Run) error {
				log.add(r)
				if r.Attempt < 3 {
					return errors.New("transient")
				}
				return nil
			},
		}}
		begin := time.Now()
		start(t, newScheduler(t, newLocker(t, b, 2*time.Second), "r1", 2*time.Second, js, nil))
		time.Sleep(61 * time.Second)
		runs := ran(log.all(), begin, begin.Add(time.Minute))
		if len(runs) != 3 || runs[2].Attempt != 3 || runs[0].Token != runs[2].Token {
			t.Fatalf("runs: %+v; want attempts 1..3 under one token", runs)
		}
		recs, _ := b.Records(context.Background(), "flaky", 10)
		if len(recs) == 0 || recs[0].Outcome != locking.OutcomeSucceeded || recs[0].Attempt != 3 {
			t.Errorf("records: %+v", recs)
		}
	})
}

// TestLeaseLossCancelsAndTakeover cuts the runner of a tick off the backend: its
// job is cancelled with ErrLost, the other replica takes the tick over with a
// higher token and attempt 2, and the lost run is recorded once the backend is
// back.
func TestLeaseLossCancelsAndTakeover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		fa := locktest.NewFaultyBackend(b)
		var log runLog
		var mu sync.Mutex
		var causes []error
		js := []scheduler.Job{{
			Name: "long", Schedule: mustSchedule(t, "@every 1m"), StartingDeadline: 30 * time.Second,
			Func: func(ctx context.Context, r jobs.Run) error {
				log.add(r)
				if r.Replica == "a" {
					fa.Cut() // a loses its backend in the middle of the run
				}
				select {
				case <-ctx.Done():
					mu.Lock()
					causes = append(causes, context.Cause(ctx))
					mu.Unlock()
					return ctx.Err()
				case <-time.After(5 * time.Second):
					return nil
				}
			},
		}}
		ttl := 3 * time.Second
		fb := locktest.NewFaultyBackend(b)
		time.Sleep(31 * time.Second) // no catch-up: the tick at 0 is past its starting deadline
		begin := time.Now()
		start(t, newScheduler(t, newLocker(t, fa, ttl), "a", ttl, js, nil))
		start(t, newScheduler(t, newLocker(t, fb, ttl), "b", ttl, js, nil))
		time.Sleep(begin.Add(29*time.Second - 200*time.Millisecond).Sub(time.Now()))
		fb.Cut() // b is slow to reach the backend at the tick (claimed ahead), so a wins it
		time.Sleep(250 * time.Millisecond)
		fb.Heal()
		time.Sleep(45 * time.Second)
		fa.Heal()
		time.Sleep(5 * time.Second)
		runs := ran(log.all(), begin, begin.Add(time.Minute))
		if len(runs) != 2 || runs[0].Replica != "a" || runs[1].Replica != "b" {
			t.Fatalf("runs: %+v; want a's run then b's takeover", runs)
		}
		if runs[1].Token <= runs[0].Token || runs[1].Attempt != 2 || !runs[1].Scheduled.Equal(runs[0].Scheduled) {
			t.Errorf("takeover run %+v after %+v: want the same tick, a higher token, attempt 2", runs[1], runs[0])
		}
		mu.Lock()
		if len(causes) != 1 || !errors.Is(causes[0], locking.ErrLost) {
			t.Errorf("causes of cancellation: %v, want one ErrLost", causes)
		}
		mu.Unlock()
		if got := outcomes(t, b, "long", begin); got[locking.OutcomeLost] != 1 || got[locking.OutcomeSucceeded] != 1 {
			t.Errorf("records: %v; want one lost (a) and one succeeded (b)", got)
		}
	})
}

// TestLostRunFreesItsClaim: a runner that lost its lease (cut off past its local
// deadline) deletes its own claim once its job stopped and the backend answers,
// so the waiting replica takes the tick over at once, not when the claim would
// have expired on the server (here a margin of 4s later).
func TestLostRunFreesItsClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		fa := locktest.NewFaultyBackend(b)
		var log runLog
		var mu sync.Mutex
		var lostAt, takenAt time.Time
		js := []scheduler.Job{{
			Name: "long", Schedule: mustSchedule(t, "@every 1m"), StartingDeadline: 30 * time.Second,
			Func: func(ctx context.Context, r jobs.Run) error {
				log.add(r)
				mu.Lock()
				defer mu.Unlock()
				if r.Replica != "a" {
					takenAt = time.Now()
					return nil
				}
				fa.Cut()
				mu.Unlock()
				<-ctx.Done() // the lease is lost at its local deadline
				mu.Lock()
				lostAt = time.Now()
				fa.Heal()
				return ctx.Err()
			},
		}}
		ttl := 10 * time.Second
		la, err := locking.New(fa, locking.WithLogger(zaptest.NewLogger(t)), locking.WithMargin(4*time.Second), locking.WithPollInterval(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(31 * time.Second) // no catch-up: the tick at 0 is past its starting deadline
		begin := time.Now()
		start(t, newScheduler(t, la, "a", ttl, js, nil))
		time.Sleep(begin.Add(29*time.Second + 500*time.Millisecond).Sub(time.Now()))
		start(t, newScheduler(t, newLocker(t, b, ttl), "b", ttl, js, nil)) // starts after a won the tick
		time.Sleep(30 * time.Second)
		runs := ran(log.all(), begin, begin.Add(time.Minute))
		if len(runs) != 2 || runs[0].Replica != "a" || runs[1].Replica != "b" {
			t.Fatalf("runs: %+v; want a's run then b's takeover", runs)
		}
		mu.Lock()
		defer mu.Unlock()
		if wait := takenAt.Sub(lostAt); wait > 2*time.Second {
			t.Errorf("b took over %v after a lost its lease; want at once (the claim would have expired 4s later)", wait)
		}
	})
}

func TestShutdownWaitsForRunningJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		var finished bool
		var mu sync.Mutex
		js := []scheduler.Job{{
			Name: "finishing", Schedule: mustSchedule(t, "@every 10s"),
			Func: func(ctx context.Context, r jobs.Run) error {
				time.Sleep(2 * time.Second)
				mu.Lock()
				finished = true
				mu.Unlock()
				return nil
			},
		}}
		time.Sleep(time.Second)
		begin := time.Now()
		stop := start(t, newScheduler(t, newLocker(t, b, 2*time.Second), "r1", 2*time.Second, js, nil))
		time.Sleep(10 * time.Second) // the run started at 10s
		stop()
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			t.Error("shutdown returned before the running job finished")
		}
		if got := outcomes(t, b, "finishing", begin); got[locking.OutcomeSucceeded] != 1 || len(got) != 1 {
			t.Errorf("records: %v, want one succeeded", got)
		}
	})
}

func TestOverlapBufferOneAndCancelOther(t *testing.T) {
	for _, tc := range []struct {
		name    string
		overlap scheduler.Overlap
		// want: the ticks (seconds after the first) that start, and whether the
		// first run is cancelled.
		wantStarts    []int
		wantCancelled bool
	}{
		// Runs take 2.5s and ticks come every second: after the run of tick 0
		// ends at 2.5s, tick 1 (buffered) runs until 5s; ticks 2 and 3 found one
		// waiting already and were skipped; tick 5 then runs, and so on.
		{"buffer_one", scheduler.OverlapBufferOne, []int{0, 1}, false},
		// Each new tick cancels the run before it.
		{"cancel_other", scheduler.OverlapCancelOther, []int{0, 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var log runLog
				var mu sync.Mutex
				cancelled := map[time.Time]error{}
				b := memlock.New()
				js := []scheduler.Job{{
					Name: "slow", Schedule: mustSchedule(t, "@every 1s"), Overlap: tc.overlap,
					Func: func(ctx context.Context, r jobs.Run) error {
						log.add(r)
						select {
						case <-time.After(2500 * time.Millisecond):
							return nil
						case <-ctx.Done():
							mu.Lock()
							cancelled[r.Scheduled] = context.Cause(ctx)
							mu.Unlock()
							return ctx.Err()
						}
					},
				}}
				time.Sleep(500 * time.Millisecond)
				begin := time.Now().Truncate(time.Second)
				for _, name := range []string{"a", "b"} {
					s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, b, 3*time.Second), Replica: name,
						TTL: 3 * time.Second, Logger: zaptest.NewLogger(t), SkipCatchUp: true})
					if err != nil {
						t.Fatal(err)
					}
					start(t, s)
				}
				time.Sleep(4 * time.Second)
				runs := ran(log.all(), begin, begin.Add(time.Hour))
				if len(runs) < 2 {
					t.Errorf("%d runs, want at least 2", len(runs))
					return
				}
				first, second := runs[0], runs[1]
				// The first run is tick 1; the next is a later tick (with
				// cancel_other, ticks 2 and 3 may race for the slot at once).
				if !first.Scheduled.Equal(begin.Add(time.Second)) || !second.Scheduled.After(first.Scheduled) {
					t.Errorf("first runs at %v and %v, want tick 1s then a later one", first.Scheduled, second.Scheduled)
				}
				mu.Lock()
				cause, wasCancelled := cancelled[first.Scheduled]
				mu.Unlock()
				if wasCancelled != tc.wantCancelled {
					t.Errorf("first run cancelled: %v (%v), want %v", wasCancelled, cause, tc.wantCancelled)
				}
				if tc.wantCancelled && !errors.Is(cause, scheduler.ErrCancelledByNewer) {
					t.Errorf("cause %v, want ErrCancelledByNewer", cause)
				}
				time.Sleep(10 * time.Second)
				checkOnce(t, log.all())
				// Never two runs at once: each started after the previous ended
				// (2.5s later) or was cancelled.
				all := ran(log.all(), begin, begin.Add(time.Hour))
				got := outcomes(t, b, "slow", begin)
				if tc.overlap == scheduler.OverlapBufferOne && got[locking.OutcomeSkipped] == 0 {
					t.Errorf("buffer_one: no tick skipped although ticks come faster than runs: %v", got)
				}
				t.Logf("%d runs, outcomes %v", len(all), got)
			})
		})
	}
}

func TestTriggerRunsOncePerID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		var log runLog
		js := []scheduler.Job{{
			Name: "manual", Schedule: mustSchedule(t, "@yearly"),
			Func: func(ctx context.Context, r jobs.Run) error {
				log.add(r)
				time.Sleep(time.Second)
				return nil
			},
		}}
		a := newScheduler(t, newLocker(t, b, 3*time.Second), "a", 3*time.Second, js, nil)
		c := newScheduler(t, newLocker(t, b, 3*time.Second), "c", 3*time.Second, js, nil)
		var wg sync.WaitGroup
		results := make([]error, 2)
		for i, s := range []*scheduler.Scheduler{a, c} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, results[i] = s.Trigger(context.Background(), "manual", "t1")
			}()
		}
		wg.Wait()
		if n := len(log.all()); n != 1 {
			t.Fatalf("trigger t1 sent to two replicas ran %d times, want 1", n)
		}
		held := 0
		for _, err := range results {
			if errors.Is(err, locking.ErrHeld) || errors.Is(err, scheduler.ErrAlreadyTriggered) {
				held++
			} else if err != nil {
				t.Errorf("trigger: %v", err)
			}
		}
		if held != 1 {
			t.Errorf("results %v: want one run and one refusal", results)
		}
		if _, err := a.Trigger(context.Background(), "manual", "t1"); !errors.Is(err, scheduler.ErrAlreadyTriggered) {
			t.Errorf("repeated trigger t1: %v, want ErrAlreadyTriggered", err)
		}
		rec, err := a.Trigger(context.Background(), "manual", "t2")
		if err != nil || rec.Outcome != locking.OutcomeSucceeded || rec.Key.Name != "manual-t2" {
			t.Errorf("trigger t2: %+v, %v", rec, err)
		}
		if _, err := a.Trigger(context.Background(), "nope", "t3"); !errors.Is(err, scheduler.ErrUnknownJob) {
			t.Errorf("trigger of an unknown job: %v", err)
		}
		recs, _ := b.Records(context.Background(), "manual", 10)
		if len(recs) != 2 {
			t.Errorf("%d records, want 2", len(recs))
		}
	})
}

func TestReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		var log runLog
		job := func(name, spec string) scheduler.Job {
			return scheduler.Job{Name: name, Schedule: mustSchedule(t, spec),
				Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil }}
		}
		time.Sleep(500 * time.Millisecond)
		begin := time.Now()
		s := newScheduler(t, newLocker(t, b, 3*time.Second), "r1", 3*time.Second, []scheduler.Job{job("a", "@every 1s")}, nil)
		stop := start(t, s)
		time.Sleep(3 * time.Second) // a runs at 1, 2, 3
		if err := s.Reload([]scheduler.Job{job("b", "@every 1s"), job("b", "@every 2s")}); err == nil {
			t.Error("a table with a duplicate job was accepted")
		}
		time.Sleep(time.Second) // a still runs at 4
		if err := s.Reload([]scheduler.Job{job("b", "@every 2s")}); err != nil {
			t.Fatalf("reload: %v", err)
		}
		time.Sleep(4 * time.Second) // b runs at 6 and 8; a no more
		stop()
		count := map[string]int{}
		for _, r := range ran(log.all(), begin, begin.Add(time.Hour)) {
			count[r.Job]++
		}
		if count["a"] != 4 || count["b"] != 2 {
			t.Errorf("runs %v, want a 4 times (before the reload), b 2 times (after)", count)
		}
	})
}

func TestHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		js := []scheduler.Job{{Name: "j", Schedule: mustSchedule(t, "@hourly"), Func: func(ctx context.Context, r jobs.Run) error { return nil }}}
		for _, name := range []string{"a", "b"} {
			s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, b, 3*time.Second), Replica: name, TTL: 3 * time.Second,
				Logger: zaptest.NewLogger(t), Version: "v1", ConfigHash: "hash-" + name})
			if err != nil {
				t.Fatal(err)
			}
			start(t, s)
		}
		time.Sleep(25 * time.Second)
		l := newLocker(t, b, 3*time.Second)
		reps, err := scheduler.Replicas(context.Background(), l, 100)
		if err != nil || len(reps) != 2 {
			t.Fatalf("replicas: %+v, %v", reps, err)
		}
		for _, r := range reps {
			if r.Version != "v1" || r.ConfigHash != "hash-"+r.Name || time.Since(r.LastSeen) > scheduler.DefaultHeartbeatInterval {
				t.Errorf("replica %+v", r)
			}
		}
	})
}

// skewedBackend reports a server clock off by off from the process's.
type skewedBackend struct {
	locking.Backend
	off time.Duration
}

func (s skewedBackend) ServerTime(ctx context.Context) (time.Time, error) {
	return time.Now().Add(-s.off), nil
}

func TestClockSkewLeavesCriticalJobsToOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		var log runLog
		js := []scheduler.Job{
			{Name: "pay", Critical: true, Schedule: mustSchedule(t, "@every 10s"), Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil }},
			{Name: "plain", Schedule: mustSchedule(t, "@every 10s"), Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil }},
		}
		time.Sleep(time.Second)
		begin := time.Now()
		var skewedEvents atomic.Int32
		skewed, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, skewedBackend{b, 5 * time.Second}, 3*time.Second),
			Replica: "skewed", TTL: 3 * time.Second, Logger: zaptest.NewLogger(t), SkipCatchUp: true,
			Observe: func(e scheduler.Event) {
				if e.Kind == scheduler.EventClockSkewed {
					skewedEvents.Add(1)
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		start(t, skewed)
		time.Sleep(100 * time.Millisecond) // the skewed replica measures its offset, and races first
		if off, ok := skewed.ClockOffset(); !ok || off < 4*time.Second {
			t.Fatalf("offset %v, %v; want about 5s", off, ok)
		}
		s2, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, skewedBackend{b, 0}, 3*time.Second),
			Replica: "good", TTL: 3 * time.Second, Logger: zaptest.NewLogger(t), SkipCatchUp: true})
		if err != nil {
			t.Fatal(err)
		}
		start(t, s2)
		time.Sleep(35 * time.Second)
		runs := ran(log.all(), begin, begin.Add(time.Hour))
		pay := 0
		for _, r := range runs {
			if r.Job == "pay" {
				pay++
				if r.Replica != "good" {
					t.Errorf("critical tick %v ran on the skewed replica", r.Scheduled)
				}
			}
		}
		if pay != 3 || skewedEvents.Load() == 0 {
			t.Errorf("%d critical runs (want 3), %d skew events", pay, skewedEvents.Load())
		}
	})
}

// TestClockSkewEverywhereRecordsMissed: when every replica's clock is off, a
// critical tick runs nowhere, and is recorded as missed rather than dropped.
func TestClockSkewEverywhereRecordsMissed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		var log runLog
		js := []scheduler.Job{{Name: "pay", Critical: true, Schedule: mustSchedule(t, "@every 30s"), StartingDeadline: 10 * time.Second,
			Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil }}}
		time.Sleep(time.Second)
		l := newLocker(t, skewedBackend{b, 5 * time.Second}, 3*time.Second)
		for _, name := range []string{"a", "b"} {
			s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, skewedBackend{b, 5 * time.Second}, 3*time.Second),
				Replica: name, TTL: 3 * time.Second, Logger: zaptest.NewLogger(t), SkipCatchUp: true})
			if err != nil {
				t.Fatal(err)
			}
			start(t, s)
		}
		time.Sleep(90 * time.Second)
		if n := len(log.all()); n != 0 {
			t.Fatalf("%d critical runs on skewed replicas", n)
		}
		recs, err := l.Records(context.Background(), "pay", 100)
		if err != nil {
			t.Fatal(err)
		}
		missed := map[string]int{}
		for _, r := range recs {
			if r.Outcome != locking.OutcomeMissed || !strings.Contains(r.Error, "clock is off") {
				t.Errorf("record %+v", r)
			}
			missed[r.Key.Name]++
		}
		// The ticks at 30s and 60s are past their deadline + grace; each recorded once.
		if len(missed) < 2 {
			t.Errorf("missed records %v, want the first two ticks", missed)
		}
		for k, n := range missed {
			if n != 1 {
				t.Errorf("tick %s recorded %d times", k, n)
			}
		}
	})
}

// TestJitterIsDeterministic: a jittered job starts late by the same amount on
// every replica, within its bound, and its tick keeps the scheduled instant.
func TestJitterIsDeterministic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		var mu sync.Mutex
		delays := map[time.Time]time.Duration{}
		js := []scheduler.Job{{
			Name: "spread", Schedule: mustSchedule(t, "@every 10s"), Jitter: 3 * time.Second,
			Func: func(ctx context.Context, r jobs.Run) error {
				mu.Lock()
				delays[r.Scheduled] = time.Since(r.Scheduled)
				mu.Unlock()
				return nil
			},
		}}
		time.Sleep(time.Second)
		for _, name := range []string{"a", "b", "c"} {
			s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, b, 3*time.Second), Replica: name,
				TTL: 3 * time.Second, Logger: zaptest.NewLogger(t), SkipCatchUp: true})
			if err != nil {
				t.Fatal(err)
			}
			start(t, s)
		}
		time.Sleep(64 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		if len(delays) != 6 {
			t.Fatalf("%d runs, want 6", len(delays))
		}
		distinct := map[time.Duration]bool{}
		for at, d := range delays {
			if d < 0 || d >= 3*time.Second || at.Second()%10 != 0 {
				t.Errorf("tick %v started %v late, want in [0, 3s) and the tick on its instant", at, d)
			}
			distinct[d] = true
		}
		if len(distinct) < 2 {
			t.Errorf("every tick got the same delay %v: the jitter should vary with the tick", delays)
		}
	})
}

// TestSecondTakeoverCountsAttempts: a tick whose runner dies twice is run a
// third time as attempt 3.
func TestSecondTakeoverCountsAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		faults := map[string]*locktest.FaultyBackend{"a": locktest.NewFaultyBackend(b), "b": locktest.NewFaultyBackend(b), "c": locktest.NewFaultyBackend(b)}
		var log runLog
		js := []scheduler.Job{{
			Name: "fragile", Schedule: mustSchedule(t, "@every 1m"), StartingDeadline: 50 * time.Second,
			Func: func(ctx context.Context, r jobs.Run) error {
				log.add(r)
				if r.Replica != "c" {
					time.Sleep(200 * time.Millisecond) // a taker has recorded its attempt by now
					faults[r.Replica].Cut()            // this runner loses its backend mid-run
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			},
		}}
		time.Sleep(51 * time.Second) // no catch-up of the tick at 0
		begin := time.Now()
		ttl := 3 * time.Second
		start(t, newScheduler(t, newLocker(t, faults["a"], ttl), "a", ttl, js, nil))
		time.Sleep(9*time.Second + 100*time.Millisecond) // a alone wins the tick at 1m
		start(t, newScheduler(t, newLocker(t, faults["b"], ttl), "b", ttl, js, nil))
		time.Sleep(8 * time.Second) // b takes over, then is cut too
		start(t, newScheduler(t, newLocker(t, faults["c"], ttl), "c", ttl, js, nil))
		time.Sleep(15 * time.Second)
		runs := ran(log.all(), begin, begin.Add(time.Minute))
		if len(runs) != 3 {
			t.Fatalf("runs %+v, want three (a, b, c)", runs)
		}
		for i, want := range []struct {
			replica string
			attempt int
		}{{"a", 1}, {"b", 2}, {"c", 3}} {
			if runs[i].Replica != want.replica || runs[i].Attempt != want.attempt {
				t.Errorf("run %d: %s attempt %d, want %s attempt %d", i, runs[i].Replica, runs[i].Attempt, want.replica, want.attempt)
			}
			if i > 0 && runs[i].Token <= runs[i-1].Token {
				t.Errorf("run %d: token %d not above %d", i, runs[i].Token, runs[i-1].Token)
			}
		}
	})
}

// TestTakeoverWaitsForDeadRunnersRunningKey: a runner of an overlap-skip
// job died holding the tick's key and the job's running key, whose last
// renewals were apart, so the running key outlives the tick's key. The
// survivor that takes the tick over waits for the running key instead of
// skipping the tick as overlapping.
func TestTakeoverWaitsForDeadRunnersRunningKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		var log runLog
		ttl := 3 * time.Second
		js := []scheduler.Job{{Name: "j", Schedule: mustSchedule(t, "@every 1m"), StartingDeadline: 30 * time.Second,
			Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil }}}
		time.Sleep(59 * time.Second)
		start(t, noCatchUp(t, newLocker(t, b, ttl), js))
		tick := time.Now().Truncate(time.Minute).Add(time.Minute)
		time.Sleep(time.Until(tick) - 150*time.Millisecond) // before the survivor claims it
		// The dead runner: its tick key claimed ahead, its running key's last
		// renewal 0.9 s after the tick key's; then nothing more.
		ctx := context.Background()
		if _, err := b.Claim(ctx, locking.Key{Scope: "j", Name: scheduler.TickName(tick)}, locking.NewOwner(), ttl); err != nil {
			t.Fatal(err)
		}
		time.Sleep(950 * time.Millisecond)
		if _, err := b.Claim(ctx, locking.Key{Scope: "j", Name: "running"}, locking.NewOwner(), ttl); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		runs := log.all()
		if len(runs) != 1 || runs[0].Attempt != 2 || !runs[0].Scheduled.Equal(tick) {
			t.Fatalf("runs %+v, want the tick taken over (attempt 2)", runs)
		}
		if got := outcomes(t, b, "j", tick.Add(-time.Second)); got[locking.OutcomeSkipped] != 0 {
			t.Errorf("outcomes %v: the tick was skipped", got)
		}
	})
}

// jumpClock is the system clock moved ahead by a settable offset: a process
// that was paused, or whose clock jumped.
type jumpClock struct {
	locking.Clock
	mu  sync.Mutex
	off time.Duration
}

func (c *jumpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Clock.Now().Add(c.off)
}

func (c *jumpClock) jump(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// TestStalledReplicaCatchesUpInOrder: a replica whose dispatcher stalled past
// the starting deadline of its next ticks catches them up (run_all), and the
// job's next tick is claimed only after the caught-up ones, so its tokens keep
// rising with its ticks.
func TestStalledReplicaCatchesUpInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log runLog
		clock := &jumpClock{Clock: locking.SystemClock{}}
		js := []scheduler.Job{{Name: "all", Schedule: mustSchedule(t, "@every 10s"), StartingDeadline: 15 * time.Second,
			Misfire: scheduler.MisfireRunAll, Overlap: scheduler.OverlapAllow,
			Func: func(ctx context.Context, r jobs.Run) error {
				time.Sleep(3 * time.Second) // the catch-up runs one after the other
				log.add(r)
				return nil
			}}}
		time.Sleep(5 * time.Second)
		s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, memlock.New(), 3*time.Second), Replica: "r1",
			TTL: 3 * time.Second, Clock: clock, Logger: zaptest.NewLogger(t), SkipCatchUp: true, HeartbeatInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, s)
		time.Sleep(time.Second) // waiting for the tick at 10s
		clock.jump(34 * time.Second)
		// Now 00:40 on the replica's clock: the ticks at 10s .. 40s are late by
		// more than the deadline for the first ones; all are caught up, then 50s
		// and 60s come as usual.
		time.Sleep(35 * time.Second)
		stop()
		runs := checkOnce(t, log.all())["all"]
		var got []string
		for at := range runs {
			got = append(got, at.Format("04:05"))
		}
		sort.Strings(got)
		// 00:10 and 00:20 are past their deadline at 00:40: recorded missed.
		want := []string{"00:30", "00:40", "00:50", "01:00", "01:10"}
		if !slices.Equal(got, want) {
			t.Errorf("ticks run %v, want %v", got, want)
		}
	})
}

// claimTimes notes when each key's first claim reached the backend, and
// answers the claims of the jobs in delay that much later.
type claimTimes struct {
	*memlock.Backend
	delay map[string]time.Duration // how long claims take to answer, by job (scope)
	mu    sync.Mutex
	at    map[locking.Key]time.Time
}

func (c *claimTimes) note(key locking.Key) {
	c.mu.Lock()
	if c.at == nil {
		c.at = map[locking.Key]time.Time{}
	}
	if _, ok := c.at[key]; !ok {
		c.at[key] = time.Now()
	}
	c.mu.Unlock()
	time.Sleep(c.delay[key.Scope])
}

func (c *claimTimes) Claim(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	c.note(key)
	return c.Backend.Claim(ctx, key, owner, ttl)
}

func (c *claimTimes) ClaimBatch(ctx context.Context, reqs []locking.ClaimRequest) []locking.ClaimResult {
	for _, r := range reqs {
		c.note(r.Key)
	}
	return c.Backend.ClaimBatch(ctx, reqs)
}

// namedJobs returns one job per name, on spec, with the overlap policy that
// overlaps gives it (allow if none); each run calls note and succeeds.
func namedJobs(t *testing.T, spec string, names []string, overlaps map[string]scheduler.Overlap, note func(jobs.Run)) []scheduler.Job {
	t.Helper()
	var js []scheduler.Job
	for _, name := range names {
		overlap, ok := overlaps[name]
		if !ok {
			overlap = scheduler.OverlapAllow
		}
		js = append(js, scheduler.Job{Name: name, Schedule: mustSchedule(t, spec), Overlap: overlap,
			Func: func(ctx context.Context, r jobs.Run) error {
				note(r)
				return nil
			}})
	}
	return js
}

// noCatchUp returns a replica "r1" that does not catch up ticks missed before
// it started (the first ticks it claims are then claimed ahead too).
func noCatchUp(t *testing.T, l *locking.Locker, js []scheduler.Job) *scheduler.Scheduler {
	t.Helper()
	s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: l, Replica: "r1", TTL: 3 * time.Second,
		Logger: zaptest.NewLogger(t), SkipCatchUp: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestClaimAheadRunAtInstant: ticks of jobs with overlap allow or skip are
// claimed shortly before their instant (in a batch when they share it), even
// when a tick of another policy, claimed at the instant, shares it; their runs
// start exactly at it.
func TestClaimAheadRunAtInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &claimTimes{Backend: memlock.New()}
		var mu sync.Mutex
		started := map[locking.Key]time.Time{}
		js := namedJobs(t, "@every 10s", []string{"a", "b", "skip", "buffer"},
			map[string]scheduler.Overlap{"skip": scheduler.OverlapSkip, "buffer": scheduler.OverlapBufferOne},
			func(r jobs.Run) {
				mu.Lock()
				started[locking.Key{Scope: r.Job, Name: scheduler.TickName(r.Scheduled)}] = time.Now()
				mu.Unlock()
			})
		type seen struct {
			at time.Time
			e  scheduler.Event
		}
		var events []seen
		time.Sleep(time.Second)
		s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, b, 3*time.Second), Replica: "r1", TTL: 3 * time.Second,
			Logger: zaptest.NewLogger(t), SkipCatchUp: true, Observe: func(e scheduler.Event) {
				mu.Lock()
				events = append(events, seen{time.Now(), e})
				mu.Unlock()
			}})
		if err != nil {
			t.Fatal(err)
		}
		start(t, s)
		begin := time.Now()
		time.Sleep(25 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		// Won ahead of the instant, with the answer's delay (0) in the event;
		// fired at it.
		won, fired := map[locking.Key]bool{}, map[locking.Key]bool{}
		for _, ev := range events {
			key := locking.Key{Scope: ev.e.Job, Name: scheduler.TickName(ev.e.Tick)}
			switch ev.e.Kind {
			case scheduler.EventWon:
				won[key] = true
				if !ev.e.FirstClaim || ev.e.Duration != 0 {
					t.Errorf("%s won with FirstClaim %v, Duration %v; want true, 0", key, ev.e.FirstClaim, ev.e.Duration)
				}
				if key.Scope != "buffer" && !ev.at.Before(ev.e.Tick) {
					t.Errorf("%s won at %v, want before its instant", key, ev.at)
				}
				if fired[key] && key.Scope != "buffer" {
					t.Errorf("%s fired before it was won", key)
				}
			case scheduler.EventFired:
				fired[key] = true
				if !ev.at.Equal(ev.e.Tick) {
					t.Errorf("%s fired at %v, want at its instant", key, ev.at)
				}
			}
		}
		if len(won) != 8 || len(fired) != 8 {
			t.Errorf("%d ticks won and %d fired, want 8 each", len(won), len(fired))
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		n := 0
		for key, at := range started {
			tick, _ := time.Parse(time.RFC3339Nano, key.Name)
			if tick.Before(begin) {
				t.Errorf("%s ran; it fell before the start", key)
			}
			n++
			if !at.Equal(tick) {
				t.Errorf("%s started at %v, want at its instant", key, at)
			}
			claimed := b.at[key]
			switch {
			case key.Scope == "buffer":
				if !claimed.Equal(tick) {
					t.Errorf("%s claimed at %v, want at its instant", key, claimed)
				}
			case claimed.IsZero() || !claimed.Before(tick) || tick.Sub(claimed) > 100*time.Millisecond:
				t.Errorf("%s claimed at %v, want in the 100ms before its instant", key, claimed)
			}
		}
		if n != 8 {
			t.Errorf("%d runs of ticks after the start, want 8", n)
		}
		// The skip job's first run took its running key ahead of the instant too.
		first := begin.Truncate(10 * time.Second).Add(10 * time.Second)
		if at := b.at[locking.Key{Scope: "skip", Name: "running"}]; !at.Before(first) || first.Sub(at) > 100*time.Millisecond {
			t.Errorf("skip's running key first claimed at %v, want in the 100ms before %v", at, first)
		}
	})
}

// TestShutdownBeforeInstantReleasesClaim: a replica that stops between
// claiming a tick and its instant (its run prepared, waiting for the instant)
// leaves the tick unrun and free for others, with the running key of an
// overlap skip job, and lists no tick as running.
func TestShutdownBeforeInstantReleasesClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &claimTimes{Backend: memlock.New()}
		var log runLog
		var js []scheduler.Job
		for name, overlap := range map[string]scheduler.Overlap{"allow": scheduler.OverlapAllow, "skip": scheduler.OverlapSkip} {
			js = append(js, scheduler.Job{Name: name, Schedule: mustSchedule(t, "@every 10s"), Overlap: overlap,
				Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil }})
		}
		time.Sleep(time.Second)
		s := noCatchUp(t, newLocker(t, b, 3*time.Second), js)
		stop := start(t, s)
		time.Sleep(9*time.Second - 50*time.Millisecond) // the ticks at 10s are claimed
		tick := time.Now().Truncate(10 * time.Second).Add(10 * time.Second)
		var keys []locking.Key
		for _, j := range js {
			keys = append(keys, locking.Key{Scope: j.Name, Name: scheduler.TickName(tick)})
		}
		keys = append(keys, locking.Key{Scope: "skip", Name: "running"})
		b.mu.Lock()
		for _, key := range keys {
			if _, claimed := b.at[key]; !claimed {
				t.Errorf("%s not claimed 50ms before its instant", key)
			}
		}
		b.mu.Unlock()
		stop()
		if runs := ran(log.all(), tick.Add(-time.Second), tick); len(runs) != 0 {
			t.Errorf("runs %+v after a shutdown before the instant, want none", runs)
		}
		for _, key := range keys {
			if _, err := b.Claim(context.Background(), key, locking.NewOwner(), time.Second); err != nil {
				t.Errorf("claim of %s after the replica stopped: %v, want it free", key, err)
			}
		}
		for _, j := range s.Jobs() {
			if len(j.Running) != 0 {
				t.Errorf("job %s lists running ticks %+v after the shutdown, want none", j.Name, j.Running)
			}
		}
	})
}

// runningClaims counts the claims of running keys, alone and in batches.
type runningClaims struct {
	*memlock.Backend
	alone, batched atomic.Int64
}

func (c *runningClaims) Claim(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	if key.Name == "running" {
		c.alone.Add(1)
	}
	return c.Backend.Claim(ctx, key, owner, ttl)
}

func (c *runningClaims) ClaimBatch(ctx context.Context, reqs []locking.ClaimRequest) []locking.ClaimResult {
	for _, r := range reqs {
		if r.Key.Name == "running" {
			c.batched.Add(1)
		}
	}
	return c.Backend.ClaimBatch(ctx, reqs)
}

// TestSkipRunningKeysClaimedInBatch: on a backend that batches claims, the
// running keys of won overlap skip ticks are claimed in a batch right after
// their ticks, not one request each; every tick still runs once.
func TestSkipRunningKeysClaimedInBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &runningClaims{Backend: memlock.New()}
		var runs atomic.Int64
		var js []scheduler.Job
		for i := range 20 {
			js = append(js, scheduler.Job{Name: fmt.Sprint("job", i), Schedule: mustSchedule(t, "* * * * * *"), Overlap: scheduler.OverlapSkip,
				Func: func(ctx context.Context, r jobs.Run) error { runs.Add(1); return nil }})
		}
		time.Sleep(100 * time.Millisecond)
		start(t, noCatchUp(t, newLocker(t, b, 3*time.Second), js))
		time.Sleep(5 * time.Second)
		if n := b.alone.Load(); n != 0 {
			t.Errorf("%d running keys claimed alone, want none", n)
		}
		if n := b.batched.Load(); n < 4*20 {
			t.Errorf("%d running keys claimed in batches in 5 s of 20 jobs every second, want at least 80", n)
		}
		if n := runs.Load(); n < 4*20 || n > 6*20 {
			t.Errorf("%d runs in 5 s of 20 jobs every second", n)
		}
	})
}

// TestLoserAheadOfInstant: with two replicas, the loser of a tick learns that
// it lost ahead of the instant and fires at the instant with nothing more to
// do; when the winner stops before the instant, the loser takes the tick over
// and runs it at the instant, not before.
func TestLoserAheadOfInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		type seen struct {
			at time.Time
			e  scheduler.Event
		}
		var mu sync.Mutex
		events := map[string][]seen{}
		type run struct {
			replica string
			at      time.Time
		}
		runs := map[int64][]run{} // by tick, in Unix nanoseconds
		js := []scheduler.Job{{Name: "job", Schedule: mustSchedule(t, "@every 10s"), Overlap: scheduler.OverlapSkip,
			Func: func(ctx context.Context, r jobs.Run) error {
				mu.Lock()
				defer mu.Unlock()
				runs[r.Scheduled.UnixNano()] = append(runs[r.Scheduled.UnixNano()], run{r.Replica, time.Now()})
				return nil
			}}}
		stops := map[string]func(){}
		time.Sleep(time.Second)
		for _, name := range []string{"r1", "r2"} {
			s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, b, 3*time.Second), Replica: name, TTL: 3 * time.Second,
				Logger: zaptest.NewLogger(t).Named(name), SkipCatchUp: true, Observe: func(e scheduler.Event) {
					mu.Lock()
					events[name] = append(events[name], seen{time.Now(), e})
					mu.Unlock()
				}})
			if err != nil {
				t.Fatal(err)
			}
			stops[name] = start(t, s)
		}
		// kinds returns what happened to the tick at on replica, and when.
		kinds := func(replica string, at time.Time) map[scheduler.EventKind][]time.Time {
			mu.Lock()
			defer mu.Unlock()
			out := map[scheduler.EventKind][]time.Time{}
			for _, ev := range events[replica] {
				if ev.e.Tick.Equal(at) {
					out[ev.e.Kind] = append(out[ev.e.Kind], ev.at)
				}
			}
			return out
		}
		winner := func(at time.Time) (won, lost string) {
			if len(kinds("r1", at)[scheduler.EventWon]) == 1 {
				return "r1", "r2"
			}
			return "r2", "r1"
		}
		epoch := time.Now().Truncate(10 * time.Second)

		// The tick at 10 s: both replicas up.
		first := epoch.Add(10 * time.Second)
		time.Sleep(first.Add(-50 * time.Millisecond).Sub(time.Now()))
		won, lost := winner(first)
		if k := kinds(lost, first); len(k[scheduler.EventLostRace]) != 1 {
			t.Errorf("%s: events %v of the tick 50ms before its instant, want it lost", lost, k)
		}
		time.Sleep(5 * time.Second)
		if k := kinds(lost, first); len(k[scheduler.EventFired]) != 1 || !k[scheduler.EventFired][0].Equal(first) {
			t.Errorf("%s (lost): fired at %v, want once at the instant %v", lost, k[scheduler.EventFired], first)
		}
		if k := kinds(won, first); len(k[scheduler.EventFired]) != 1 || !k[scheduler.EventFired][0].Equal(first) {
			t.Errorf("%s (won): fired at %v, want once at the instant %v", won, k[scheduler.EventFired], first)
		}

		// The tick at 20 s: its winner stops 50 ms before the instant.
		second := epoch.Add(20 * time.Second)
		time.Sleep(second.Add(-50 * time.Millisecond).Sub(time.Now()))
		won, lost = winner(second)
		stops[won]()
		time.Sleep(5 * time.Second)
		if k := kinds(lost, second); len(k[scheduler.EventTakeover]) != 1 || len(k[scheduler.EventFired]) != 1 || !k[scheduler.EventFired][0].Equal(second) {
			t.Errorf("%s: events %v of the tick its winner dropped, want a takeover, fired once at %v", lost, k, second)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, at := range []time.Time{first, second} {
			if rs := runs[at.UnixNano()]; len(rs) != 1 || !rs[0].at.Equal(at) {
				t.Errorf("tick %v: runs %+v, want one, at its instant", at, rs)
			}
		}
		if rs := runs[second.UnixNano()]; len(rs) == 1 && rs[0].replica != lost {
			t.Errorf("tick %v ran on %s, want on %s (the winner stopped)", second, rs[0].replica, lost)
		}
	})
}

// TestLeaseLostBeforeJobStarts: a replica that won a tick ahead of its instant
// and was then paused past its lease's local deadline (its clock jumps ahead)
// does not start the job at the instant, although its watchdog has not yet
// noticed: it records the run as lost and frees the tick, and the replica that
// lost the race takes it over and runs it, once.
func TestLeaseLostBeforeJobStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		var log runLog
		js := []scheduler.Job{{Name: "job", Schedule: mustSchedule(t, "@every 10s"), Overlap: scheduler.OverlapAllow,
			Func: func(ctx context.Context, r jobs.Run) error { log.add(r); return nil }}}
		clock := &jumpClock{Clock: locking.SystemClock{}}
		l1, err := locking.New(b, locking.WithLogger(zaptest.NewLogger(t)), locking.WithClock(clock))
		if err != nil {
			t.Fatal(err)
		}
		won := make(chan struct{}, 1)
		time.Sleep(time.Second)
		r1, err := scheduler.New(scheduler.Options{Jobs: js, Locker: l1, Replica: "r1", TTL: 3 * time.Second,
			Logger: zaptest.NewLogger(t).Named("r1"), SkipCatchUp: true, Observe: func(e scheduler.Event) {
				if e.Kind == scheduler.EventWon {
					select {
					case won <- struct{}{}:
					default:
					}
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		start(t, r1)
		tick := time.Now().Truncate(10 * time.Second).Add(10 * time.Second)
		time.Sleep(tick.Add(-50 * time.Millisecond).Sub(time.Now()))
		select {
		case <-won:
		default:
			t.Fatal("r1 did not win the tick ahead of its instant")
		}
		start(t, newScheduler(t, newLocker(t, b, 3*time.Second), "r2", 3*time.Second, js, nil)) // loses, and waits
		time.Sleep(10 * time.Millisecond)
		clock.jump(10 * time.Second) // r1 "paused" past its lease
		time.Sleep(5 * time.Second)
		runs := ran(log.all(), tick.Add(-time.Second), tick)
		if len(runs) != 1 || runs[0].Replica != "r2" {
			t.Fatalf("runs %+v of the tick, want one, on r2", runs)
		}
		recs, err := b.Records(context.Background(), "job", 10)
		if err != nil {
			t.Fatal(err)
		}
		var lost bool
		for _, r := range recs {
			if r.Replica == "r1" && r.Outcome == locking.OutcomeLost && strings.Contains(r.Error, "not started") {
				lost = true
			}
		}
		if !lost {
			t.Errorf("records %+v, want r1's run recorded lost, not started", recs)
		}
	})
}

// TestLeaseLostDuringRetryBackoff: a replica paused past its lease's local
// deadline while a failed job waits to retry does not retry it.
func TestLeaseLostDuringRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memlock.New()
		var attempts atomic.Int64
		js := []scheduler.Job{{Name: "job", Schedule: mustSchedule(t, "@every 10s"), Overlap: scheduler.OverlapAllow,
			Retries: 2, RetryBackoff: 300 * time.Millisecond, // the retry comes before the watchdog's first renewal
			Func: func(ctx context.Context, r jobs.Run) error { attempts.Add(1); return errors.New("failed") }}}
		clock := &jumpClock{Clock: locking.SystemClock{}}
		l, err := locking.New(b, locking.WithLogger(zaptest.NewLogger(t)), locking.WithClock(clock))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: l, Replica: "r1", TTL: 3 * time.Second,
			Logger: zaptest.NewLogger(t), SkipCatchUp: true})
		if err != nil {
			t.Fatal(err)
		}
		start(t, s)
		tick := time.Now().Truncate(10 * time.Second).Add(10 * time.Second)
		time.Sleep(tick.Add(100 * time.Millisecond).Sub(time.Now()))
		if n := attempts.Load(); n != 1 {
			t.Fatalf("%d attempts 100ms after the instant, want 1", n)
		}
		clock.jump(10 * time.Second) // paused during the backoff
		time.Sleep(3 * time.Second)
		if n := attempts.Load(); n != 1 {
			t.Errorf("%d attempts after the lease's deadline passed in the backoff, want 1", n)
		}
	})
}

// cutBackend is a memory backend that a replica stops reaching (its renewals,
// completions, releases and records fail) once cut: a runner cut off, as
// good as dead for the backend.
type cutBackend struct {
	*memlock.Backend
	cut atomic.Bool
}

func (c *cutBackend) Renew(ctx context.Context, g locking.Grant, ttl time.Duration) (locking.Grant, error) {
	if c.cut.Load() {
		return locking.Grant{}, locking.ErrUnavailable
	}
	return c.Backend.Renew(ctx, g, ttl)
}

func (c *cutBackend) Complete(ctx context.Context, g locking.Grant, rec locking.Record, retention time.Duration) error {
	if c.cut.Load() {
		return locking.ErrUnavailable
	}
	return c.Backend.Complete(ctx, g, rec, retention)
}

func (c *cutBackend) Release(ctx context.Context, g locking.Grant) error {
	if c.cut.Load() {
		return locking.ErrUnavailable
	}
	return c.Backend.Release(ctx, g)
}

func (c *cutBackend) AddRecord(ctx context.Context, rec locking.Record) error {
	if c.cut.Load() {
		return locking.ErrUnavailable
	}
	return c.Backend.AddRecord(ctx, rec)
}

// TestAbandonOnHolderLoss: with on_holder_loss: abandon, a survivor that
// takes over a tick whose runner started the job and was then cut off records
// it abandoned and does not run it; but a tick whose winner released it unrun
// (it stopped before the instant) is run by the survivor, not abandoned.
func TestAbandonOnHolderLoss(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stopR1   bool // r1 stops 50ms before the instant (else: it runs the job, then is cut off)
		wantRuns []string
		want     locking.Outcome
	}{
		{"runner cut off after starting", false, []string{"r1"}, locking.OutcomeAbandoned},
		{"winner released it unrun", true, []string{"r2"}, locking.OutcomeSucceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := memlock.New()
				cut := &cutBackend{Backend: mem}
				var log runLog
				js := []scheduler.Job{{Name: "job", Schedule: mustSchedule(t, "@every 30s"), Overlap: scheduler.OverlapAllow,
					OnHolderLoss: scheduler.HolderLossAbandon,
					Func: func(ctx context.Context, r jobs.Run) error {
						log.add(r)
						if r.Replica == "r1" {
							cut.cut.Store(true)
							<-ctx.Done()
							return ctx.Err()
						}
						return nil
					}}}
				time.Sleep(time.Second)
				stopR1 := start(t, noCatchUp(t, newLocker(t, cut, 3*time.Second), js)) // "r1"
				tick := time.Now().Truncate(30 * time.Second).Add(30 * time.Second)
				time.Sleep(tick.Add(-50 * time.Millisecond).Sub(time.Now())) // r1 has claimed the tick
				r2, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, mem, 3*time.Second), Replica: "r2",
					TTL: 3 * time.Second, Logger: zaptest.NewLogger(t).Named("r2"), SkipCatchUp: true})
				if err != nil {
					t.Fatal(err)
				}
				start(t, r2) // claims at once, loses, and waits for r1
				time.Sleep(20 * time.Millisecond)
				if tc.stopR1 {
					stopR1()
				}
				time.Sleep(15 * time.Second)
				var who []string
				for _, r := range ran(log.all(), tick.Add(-time.Second), tick) {
					who = append(who, r.Replica)
				}
				if !slices.Equal(who, tc.wantRuns) {
					t.Errorf("the tick ran on %v, want %v", who, tc.wantRuns)
				}
				recs, err := mem.Records(context.Background(), "job", 20)
				if err != nil {
					t.Fatal(err)
				}
				var got []locking.Outcome
				for _, r := range recs {
					if r.Key.Name == scheduler.TickName(tick) && r.Owner != "" && r.Outcome != scheduler.OutcomeStarted {
						got = append(got, r.Outcome)
					}
				}
				if !slices.Contains(got, tc.want) {
					t.Errorf("the tick's run records %v, want one %s", got, tc.want)
				}
				if tc.want != locking.OutcomeAbandoned && slices.Contains(got, locking.OutcomeAbandoned) {
					t.Errorf("the tick's run records %v: abandoned although nobody started it", got)
				}
			})
		})
	}
}

// TestClaimsAheadWaitForTheWaveToStart: when the backend answers slowly the
// claims go a whole tick interval ahead (a tenth of the TTL), so the claims of
// a job's next tick would go out at the instant its current tick starts; they
// wait until every run of that instant started. Here a buffer_one tick of the
// same instant, claimed at the instant, starts 20 ms late (its claim takes
// that long), and the allow job's claims of its next tick come no sooner.
func TestClaimsAheadWaitForTheWaveToStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &claimTimes{Backend: memlock.New(),
			delay: map[string]time.Duration{"allow": 600 * time.Millisecond, "buffer": 20 * time.Millisecond}}
		var mu sync.Mutex
		started := map[locking.Key]time.Time{}
		js := namedJobs(t, "* * * * * *", []string{"allow", "buffer"},
			map[string]scheduler.Overlap{"buffer": scheduler.OverlapBufferOne},
			func(r jobs.Run) {
				mu.Lock()
				started[locking.Key{Scope: r.Job, Name: scheduler.TickName(r.Scheduled)}] = time.Now()
				mu.Unlock()
			})
		time.Sleep(time.Second)
		ttl := 10 * time.Second
		s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: newLocker(t, b, ttl), Replica: "r1", TTL: ttl,
			Logger: zaptest.NewLogger(t), SkipCatchUp: true})
		if err != nil {
			t.Fatal(err)
		}
		start(t, s)
		time.Sleep(8 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		b.mu.Lock()
		defer b.mu.Unlock()
		atInstant := 0 // claims of the next tick sent in the second its tick started
		for key, at := range b.at {
			tick, err := time.Parse(time.RFC3339, key.Name)
			if err != nil {
				continue
			}
			if key.Scope == "buffer" {
				// Claimed at its instant, which a wave never delays.
				if !at.Equal(tick) {
					t.Errorf("the claim of %s came %v after its instant, want at it", key, at.Sub(tick))
				}
				continue
			}
			prev := tick.Add(-time.Second)
			if at.Sub(prev) >= 100*time.Millisecond {
				continue // not a whole interval ahead (yet: the lag builds up)
			}
			atInstant++
			bufferStart, ok := started[locking.Key{Scope: "buffer", Name: scheduler.TickName(prev)}]
			if !ok {
				t.Errorf("the buffer tick at %v did not run", prev)
				continue
			}
			if at.Before(bufferStart) {
				t.Errorf("the claim of %s came %v after the instant before it, before every run of that instant started (%v after it)",
					key, at.Sub(prev), bufferStart.Sub(prev))
			}
		}
		if atInstant < 3 {
			t.Errorf("%d claims went a whole interval ahead, want several (claims: %v)", atInstant, b.at)
		}
	})
}
