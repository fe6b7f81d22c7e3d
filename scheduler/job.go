package scheduler

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/schedule"
)

// Misfire says what a replica does with ticks that fell while no replica could
// run them (all down, or the backend unreachable), found within the job's
// starting deadline.
type Misfire int

// Misfire policies.
const (
	// MisfireRunLatest runs the newest missed tick once and records the older
	// ones as missed.
	MisfireRunLatest Misfire = iota
	// MisfireRunAll runs every missed tick, oldest first.
	MisfireRunAll
	// MisfireSkip runs none and records every one as missed.
	MisfireSkip
)

// Overlap says what happens when a tick comes while an earlier run of the same
// job is still running, on any replica.
type Overlap int

// Overlap policies.
const (
	// OverlapSkip skips the new tick (recorded as skipped).
	OverlapSkip Overlap = iota
	// OverlapAllow runs it alongside.
	OverlapAllow
	// OverlapBufferOne runs it once the earlier run ends; at most one tick
	// waits, later ones are skipped.
	OverlapBufferOne
	// OverlapCancelOther cancels the running one, then runs the new tick.
	OverlapCancelOther
)

// HolderLoss says what a replica does when the replica running a tick dies (its
// lease expires before completion).
type HolderLoss int

// Holder-loss policies.
const (
	// HolderLossRetry takes the tick over and runs it again, with a higher token
	// and the next attempt number.
	HolderLossRetry HolderLoss = iota
	// HolderLossAbandon records the tick as abandoned and does not rerun it,
	// if an earlier holder may have started its job: each run writes an
	// OutcomeStarted record before it starts the job, and a tick that its
	// holder released unrun (shutdown before the instant) is run, not
	// abandoned.
	HolderLossAbandon
)

// Job is one entry of the cron table, as the scheduler runs it.
type Job struct {
	// Name names the job; it is the fence scope of its ticks.
	Name string
	// Schedule computes the job's fire instants.
	Schedule schedule.Schedule
	// Func runs one attempt of the job.
	Func func(ctx context.Context, run jobs.Run) error
	// Args is passed to Func in jobs.Run.Args.
	Args any
	// Timeout bounds one run (all attempts); zero means none.
	Timeout time.Duration
	// Retries is how many times a failed attempt is retried within the tick.
	Retries int
	// RetryBackoff is the first wait between attempts (doubled each time).
	RetryBackoff time.Duration
	// StartingDeadline is how late after its instant a tick may still start,
	// also for catch-up and takeover. Zero means DefaultStartingDeadline(ttl).
	StartingDeadline time.Duration
	// Misfire, Overlap and OnHolderLoss are the job's policies.
	Misfire      Misfire
	Overlap      Overlap
	OnHolderLoss HolderLoss
	// Jitter delays each tick's start by a deterministic amount in [0, Jitter),
	// the same on every replica, to spread jobs that share an instant.
	Jitter time.Duration
	// Retention is how long a completed tick stays marked done; zero means the
	// scheduler's default.
	Retention time.Duration
	// Critical marks a job that must only run on a backend whose fencing
	// tokens survive failover.
	Critical bool
}

func (j *Job) validate(ttl time.Duration) error {
	switch {
	case j.Name == "":
		return fmt.Errorf("%w: job with empty name", locking.ErrInvalid)
	case j.Schedule == nil:
		return fmt.Errorf("%w: job %q has no schedule", locking.ErrInvalid, j.Name)
	case j.Func == nil:
		return fmt.Errorf("%w: job %q has no function", locking.ErrInvalid, j.Name)
	case j.Timeout < 0 || j.Retries < 0 || j.RetryBackoff < 0 || j.StartingDeadline < 0 || j.Jitter < 0 || j.Retention < 0:
		return fmt.Errorf("%w: job %q has a negative duration or count", locking.ErrInvalid, j.Name)
	}
	if err := locking.ValidateScope(j.Name); err != nil {
		return fmt.Errorf("job %q: %w", j.Name, err)
	}
	if j.StartingDeadline == 0 {
		j.StartingDeadline = DefaultStartingDeadline(ttl)
	}
	if j.RetryBackoff == 0 {
		j.RetryBackoff = time.Second
	}
	return nil
}

// DefaultStartingDeadline is the starting deadline of jobs that set none: long
// enough that a tick whose claimer died before finishing is still taken over
// (TTL + 1s at least), and at least a minute so that a replica restart does not
// lose a tick.
func DefaultStartingDeadline(ttl time.Duration) time.Duration {
	return max(ttl+time.Second, time.Minute)
}

// TickName names a tick by its scheduled instant in UTC, RFC 3339 with a
// fractional second only when it is not zero: "2026-11-25T02:30:00Z".
func TickName(at time.Time) string {
	// The ticks of one instant are named a thousand times over in a burst:
	// remember the last name.
	if c := lastTickName.Load(); c != nil && c.at.Equal(at) {
		return c.name
	}
	name := jobs.FireTime(at)
	lastTickName.Store(&tickName{at: at, name: name})
	return name
}

type tickName struct {
	at   time.Time
	name string
}

var lastTickName atomic.Pointer[tickName]
