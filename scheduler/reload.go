package scheduler

import (
	"container/heap"
	"time"

	"go.uber.org/zap"
)

// Reload replaces the cron table of a running scheduler. The new table is
// validated first; if it is invalid, Reload returns the error and the old table
// keeps running. Jobs that are gone stop firing (their running runs finish);
// new jobs fire from their next instant; changed jobs keep their place in time:
// their next tick is the new schedule's first instant at or after the tick that
// was pending.
func (s *Scheduler) Reload(table []Job) error {
	jobs, err := s.prepare(table)
	if err != nil {
		s.emit(Event{Kind: EventReloadFailed, Detail: err.Error()})
		return err
	}
	s.mu.Lock()
	s.jobs = jobs
	s.mu.Unlock()
	select { // keep only the newest pending table
	case <-s.reload:
	default:
	}
	s.reload <- jobs
	s.emit(Event{Kind: EventReloaded, Detail: time.Now().UTC().Format(time.RFC3339)})
	s.log.Info("cron table reloaded", zap.Int("jobs", len(jobs)))
	return nil
}

// ReloadFailed reports a table that could not even be loaded (the caller keeps
// the old one), so that it shows in events and metrics.
func (s *Scheduler) ReloadFailed(err error) {
	s.emit(Event{Kind: EventReloadFailed, Detail: err.Error()})
}

// requeue rebuilds the dispatch queue for a new table.
func (s *Scheduler) requeue(q *tickQueue, table []*Job) {
	pending := map[string]*tick{}
	for _, t := range *q {
		pending[t.job.Name] = t
	}
	*q = (*q)[:0]
	now := s.o.Clock.Now()
	for _, j := range table {
		from, prev := now, now
		var after <-chan struct{}
		if t, ok := pending[j.Name]; ok {
			// Its tick before started no later than the pending one's claim.
			from, prev, after = t.fire.Add(-time.Nanosecond), t.claimAt, t.after
		}
		if next := j.Schedule.Next(from); !next.IsZero() {
			at := s.startAt(j, next)
			heap.Push(q, &tick{job: j, fire: next, at: at, claimAt: s.claimAt(j, at, prev), after: after})
		}
	}
}
