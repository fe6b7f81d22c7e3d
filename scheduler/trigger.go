package scheduler

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
)

// Errors of Trigger.
var (
	// ErrUnknownJob: no job of that name in the table.
	ErrUnknownJob = errors.New("scheduler: unknown job")
	// ErrAlreadyTriggered: a run with this trigger id already completed.
	ErrAlreadyTriggered = errors.New("scheduler: trigger already ran")
)

// TriggerPrefix starts the key name of a manual run: "manual-<id>".
const TriggerPrefix = "manual-"

// Trigger runs a job now, outside its schedule, through the same lock as its
// ticks: the run's key is (job, "manual-"+id), so a trigger sent with the same
// id to several replicas runs exactly once, and its record is stored like any
// run's. The job's overlap policy applies. Trigger returns the run's record when
// this replica ran it, an error wrapping locking.ErrHeld if another replica is
// running it, and ErrAlreadyTriggered if it already ran.
func (s *Scheduler) Trigger(ctx context.Context, job, id string) (locking.Record, error) {
	j, lease, err := s.claimTrigger(ctx, job, id)
	if err != nil {
		return locking.Record{}, err
	}
	s.runs.Add(1)
	defer s.runs.Done()
	return s.runTrigger(ctx, j, lease, id), nil
}

// TriggerAsync is Trigger for callers that cannot wait for the run (the admin
// API): it claims the trigger's key, returns it, and runs the job in the
// background under the scheduler's lifetime (a running Run waits for it at
// shutdown).
func (s *Scheduler) TriggerAsync(ctx context.Context, job, id string) (locking.Key, error) {
	j, lease, err := s.claimTrigger(ctx, job, id)
	if err != nil {
		return locking.Key{}, err
	}
	s.spawn(func() { s.runTrigger(s.jobsCtx, j, lease, id) })
	return lease.Key(), nil
}

func (s *Scheduler) claimTrigger(ctx context.Context, job, id string) (*Job, *locking.Lease, error) {
	var j *Job
	for _, c := range s.jobList() {
		if c.Name == job {
			j = c
		}
	}
	if j == nil {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownJob, job)
	}
	key := locking.Key{Scope: j.Name, Name: TriggerPrefix + id}
	if err := key.Validate(); err != nil {
		return nil, nil, fmt.Errorf("trigger id %q: %w", id, err)
	}
	lease, err := s.locker.Claim(ctx, key, s.o.TTL)
	switch {
	case errors.Is(err, locking.ErrDone):
		return nil, nil, fmt.Errorf("%w: %s", ErrAlreadyTriggered, key)
	case err != nil:
		return nil, nil, fmt.Errorf("trigger %s: %w", key, err)
	}
	return j, lease, nil
}

func (s *Scheduler) runTrigger(ctx context.Context, j *Job, lease *locking.Lease, id string) locking.Record {
	log := s.log.With(zap.String("job", j.Name), zap.String("trigger", id))
	log.Info("manual run triggered", zap.Uint64("token", lease.Token()))
	// A manual run is won with no tick (Tick zero), which tells it from ticks.
	s.emit(Event{Kind: EventWon, Job: j.Name, Token: lease.Token(), Detail: "trigger " + id})
	return s.run(ctx, j, lease, s.o.Clock.Now(), 1, log)
}
