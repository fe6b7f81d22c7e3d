package scheduler_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/locktest"
	"github.com/oncecron/oncecron/locking/memlock"
	"github.com/oncecron/oncecron/scheduler"
)

// TestStatus checks the snapshots of Jobs and Readiness as ticks run, hold,
// end and find the backend cut, on the bubble's clock (from
// 2000-01-01T00:00:00Z).
func TestStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fb := locktest.NewFaultyBackend(memlock.New())
		release := make(chan struct{})
		js := []scheduler.Job{
			{Name: "quick", Schedule: mustSchedule(t, "@every 10s"), Func: func(ctx context.Context, r jobs.Run) error { return nil }},
			{Name: "long", Schedule: mustSchedule(t, "@every 1h"), Timeout: time.Hour, Jitter: time.Second,
				Func: func(ctx context.Context, r jobs.Run) error {
					select {
					case <-release:
					case <-ctx.Done():
					}
					return nil
				}},
		}
		// Start at 00:30 so that no tick of long falls within its starting
		// deadline (catch-up); quick catches up its tick at 00:30:00.
		time.Sleep(30 * time.Minute)
		s := newScheduler(t, newLocker(t, fb, 3*time.Second), "r1", 3*time.Second, js, nil)
		base := time.Now()
		at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

		type want struct {
			next    time.Time
			last    locking.Outcome // "": none seen
			running int
		}
		check := func(step string, ready bool, jobs map[string]want) {
			t.Helper()
			if got := s.Ready(); got != ready {
				t.Errorf("%s: Ready() = %v, want %v (%+v)", step, got, ready, s.Readiness())
			}
			for _, js := range s.Jobs() {
				w := jobs[js.Name]
				var last locking.Outcome
				if js.Last != nil {
					last = js.Last.Outcome
				}
				if !js.Next.Equal(w.next) || last != w.last || len(js.Running) != w.running {
					t.Errorf("%s: job %s: next %v last %q running %d, want %v %q %d", step, js.Name, js.Next, last, len(js.Running), w.next, w.last, w.running)
				}
			}
		}
		if got := s.Jobs(); len(got) != 2 || got[0].Name != "quick" || got[0].Spec != "@every 10s" || got[1].Jitter != time.Second || got[1].Timeout != time.Hour {
			t.Errorf("Jobs() = %+v", got)
		}
		if r := s.Readiness(); !r.Ready || r.Reason != "no claim yet" {
			t.Errorf("Readiness() before Run = %+v", r)
		}
		check("before Run", true, map[string]want{"quick": {next: at(10)}, "long": {next: at(1800)}})

		stop := start(t, s)
		time.Sleep(15 * time.Second)
		check("after a tick", true, map[string]want{"quick": {next: at(20), last: locking.OutcomeSucceeded}, "long": {next: at(1800)}})

		time.Sleep(30 * time.Minute) // long's tick at 01:00 (plus jitter) runs until released
		check("holding", true, map[string]want{"quick": {next: at(1820), last: locking.OutcomeSucceeded}, "long": {next: at(5400), running: 1}})
		if r, ok := s.Job("long"); !ok || len(r.Running) != 1 || !r.Running[0].Tick.Equal(at(1800)) || r.Running[0].Token == 0 {
			t.Errorf("Job(long) = %+v, %v", r, ok)
		}

		close(release)
		time.Sleep(time.Second)
		check("released", true, map[string]want{"quick": {next: at(1820), last: locking.OutcomeSucceeded}, "long": {next: at(5400), last: locking.OutcomeSucceeded}})

		fb.Cut() // the next claim of quick hangs for an hour, then fails
		time.Sleep(time.Hour + 10*time.Second)
		if r := s.Readiness(); r.Ready || r.Since.IsZero() || r.Reason == "" {
			t.Errorf("Readiness() cut = %+v", r)
		}
		fb.Heal()
		time.Sleep(20 * time.Second)
		if r := s.Readiness(); !r.Ready {
			t.Errorf("Readiness() healed = %+v", r)
		}
		stop()
	})
}
