package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
)

// EventKind says what happened to a tick.
type EventKind string

// Event kinds.
const (
	EventFired        EventKind = "fired"         // the tick's instant came on this replica (after EventWon when the race was won ahead of it)
	EventWon          EventKind = "won"           // this replica won the tick's race (usually ahead of its instant)
	EventLostRace     EventKind = "lost_race"     // another replica holds the tick
	EventAlreadyDone  EventKind = "already_done"  // the tick was completed already
	EventTakeover     EventKind = "takeover"      // this replica took over a tick whose runner died
	EventSkipped      EventKind = "skipped"       // skipped by the overlap policy
	EventMissed       EventKind = "missed"        // recorded as missed (misfire, backend down)
	EventCatchUp      EventKind = "catch_up"      // ticks found that fell while no replica ran them
	EventFinished     EventKind = "finished"      // a run ended; Outcome says how
	EventLeaseLost    EventKind = "lease_lost"    // a run lost its lease
	EventUnavailable  EventKind = "unavailable"   // the backend could not be reached
	EventReloaded     EventKind = "reloaded"      // a new cron table was applied
	EventReloadFailed EventKind = "reload_failed" // a new cron table was refused; the old one runs on
	EventClockOffset  EventKind = "clock_offset"  // a new estimate of the clock offset (Duration)
	EventClockSkewed  EventKind = "clock_skewed"  // a critical tick was left to other replicas: clock offset over budget
)

// Event describes one step of a tick, for metrics and tests.
//
// A replica claims a tick up to a tenth of the TTL ahead of its instant, so
// the answer to its claim (EventWon, EventLostRace, EventAlreadyDone,
// EventUnavailable) usually comes before EventFired.
type Event struct {
	Kind    EventKind
	Replica string
	Job     string
	Tick    time.Time
	Token   uint64
	Attempt int
	Outcome locking.Outcome
	// Duration is the run's duration (EventFinished), the clock offset
	// (EventClockOffset), or for an event with FirstClaim set how long after
	// the tick's start (its instant plus jitter) the answer came: 0 if it came
	// ahead of it.
	Duration time.Duration
	Detail   string
	// FirstClaim is set on the answer (EventWon, EventLostRace,
	// EventAlreadyDone, EventUnavailable) to this replica's first claim of a
	// tick that it fired on time; not for catch-ups, takeovers and retries.
	FirstClaim bool
}

// Keys of a job other than its ticks. They live in the job's fence scope, so
// their tokens rise together with the ticks'.
const (
	runningName = "running" // held while a run of the job is in progress (overlap)
	bufferName  = "buffered"
	cancelName  = "cancel"
)

// claimed is the outcome of a tick's first claim, made ahead of its instant
// (see fireDue) or for a catch-up.
type claimed struct {
	lease    *locking.Lease
	err      error
	answered time.Time // when the answer came
	// For a tick that fireDue claimed: timed is set, and late is how long
	// after the tick's start (instant plus jitter) the answer came, 0 if
	// before (Event.FirstClaim).
	timed bool
	late  time.Duration
	// For a won tick of an overlap skip job, claimed in a batch: whether its
	// running key was claimed in a batch too, and the lease if it was won.
	runTried bool
	running  *locking.Lease
}

// handle takes part in one tick: race for it and run it (run=true), or make sure
// it is recorded as missed (run=false). first, if not nil, is the outcome of
// the tick's first claim, made already.
func (s *Scheduler) handle(ctx context.Context, j *Job, fire time.Time, run bool, first *claimed) {
	key := locking.Key{Scope: j.Name, Name: TickName(fire)}
	// Lazy: a thousand ticks of one instant log only when something goes
	// wrong, and encoding their fields up front would delay their starts.
	log := s.log.WithLazy(zap.String("job", j.Name), zap.String("tick", key.Name))
	if j.Critical && s.skewed() {
		off, _ := s.ClockOffset()
		log.Error("critical tick left to other replicas: this replica's clock is off the backend's by more than the budget",
			zap.Duration("offset", off), zap.Duration("budget", s.maxOffset()))
		s.emit(Event{Kind: EventClockSkewed, Job: j.Name, Tick: fire, Duration: off})
		if first != nil && first.lease != nil {
			_ = first.lease.Release(context.WithoutCancel(ctx))
		}
		if run {
			// If every replica's clock is off, nobody runs the tick: make sure it
			// is then recorded as missed, once a replica whose clock is right
			// could no longer have started it.
			wait := fire.Add(j.StartingDeadline + max(off, -off) + s.o.TTL).Sub(s.o.Clock.Now())
			s.spawn(func() {
				if sleep(ctx, s.o.Clock, wait) == nil {
					s.recordMissed(ctx, j, fire, fmt.Sprintf("critical tick not started before its deadline: this replica's clock is off the backend's by %v (budget %v)",
						off.Round(time.Millisecond), s.maxOffset()))
				}
			})
		}
		return
	}
	deadline := fire.Add(j.StartingDeadline)
	attempt, takeover := 1, false
	var lease *locking.Lease
	backoff := 100 * time.Millisecond
	var answer Event // the answer to the claim: its kind is set below
	for lease == nil {
		var err error
		answer = Event{Job: j.Name, Tick: fire}
		if first != nil {
			lease, err = first.lease, first.err
			answer.FirstClaim, answer.Duration = first.timed, first.late
			first = nil
		} else {
			lease, err = s.locker.Claim(ctx, key, s.o.TTL)
		}
		switch {
		case err == nil:
		case errors.Is(err, locking.ErrDone):
			answer.Kind = EventAlreadyDone
			s.emit(answer)
			return
		case errors.Is(err, locking.ErrHeld):
			answer.Kind = EventLostRace
			s.emit(answer)
			s.noteStarted(ctx) // its wave's runs need not wait for this one
			if !run {
				return // someone is running or recording it
			}
			if lease = s.await(ctx, j, key, deadline, log); lease == nil {
				return
			}
			attempt, takeover = 2, true
		case ctx.Err() != nil:
			return
		case errors.Is(err, locking.ErrUnavailable):
			answer.Kind, answer.Detail = EventUnavailable, err.Error()
			s.emit(answer)
			if s.o.Clock.Now().After(deadline) {
				log.Error("backend unavailable past the tick's starting deadline; it will be recorded as missed", zap.Error(err))
				s.spawn(func() { s.recordMissed(ctx, j, fire, "backend unavailable until the starting deadline") })
				return
			}
			log.Warn("backend unavailable; retrying the claim", zap.Error(err))
			if sleep(ctx, s.o.Clock, backoff) != nil {
				return
			}
			backoff = min(2*backoff, time.Second)
		default:
			log.Error("claim failed", zap.Error(err))
			return
		}
	}
	started := true // whether an earlier holder may have started the job (on_holder_loss: abandon)
	if run && (takeover || s.o.Clock.Now().After(fire.Add(s.o.TTL/2))) {
		// Someone may have run this tick before and lost it: number this run
		// after every attempt the records know of.
		var next int
		next, started = s.priorRuns(ctx, key)
		attempt = max(attempt, next)
	}
	if takeover {
		// Tell a later taker which attempt this is, should this replica die too.
		s.spawn(func() {
			// No owner: backends that key records by (token, name, owner) must
			// not confuse the marker with the run's own record.
			s.addRecord(ctx, locking.Record{Key: key, Outcome: OutcomeTakeover, Replica: s.o.Replica,
				Token: lease.Token(), Attempt: attempt, Started: s.o.Clock.Now(), Ended: s.o.Clock.Now()})
		})
		s.emit(Event{Kind: EventTakeover, Job: j.Name, Tick: fire, Token: lease.Token(), Attempt: attempt})
		log.Warn("the tick's runner did not complete it; taking over", zap.Uint64("token", lease.Token()))
		if j.OnHolderLoss == HolderLossAbandon && started {
			s.finish(lease, j, fire, log, locking.Record{Outcome: locking.OutcomeAbandoned, Attempt: attempt,
				Error: "runner lost its lease; on_holder_loss: abandon"})
			return
		}
	} else {
		answer.Kind, answer.Token = EventWon, lease.Token()
		s.emit(answer)
	}
	if !run || s.o.Clock.Now().After(deadline) {
		s.finish(lease, j, fire, log, locking.Record{Outcome: locking.OutcomeMissed, Attempt: attempt,
			Error: "no replica ran it before its starting deadline"})
		s.emit(Event{Kind: EventMissed, Job: j.Name, Tick: fire})
		return
	}
	s.run(ctx, j, lease, fire, attempt, log)
}

// markStarted writes, before a run of a job with on_holder_loss: abandon
// starts the job, the OutcomeStarted marker that tells a later taker of the
// tick that this run may have started it (see priorRuns). If the marker
// cannot be written, the job is not started and the tick is completed as
// failed (a taker could not tell that it never started), or recorded lost if
// even that fails; ok is false and rec is that record.
func (s *Scheduler) markStarted(lease *locking.Lease, j *Job, fire time.Time, attempt int, log *zap.Logger) (rec locking.Record, ok bool) {
	now := s.o.Clock.Now()
	mctx, cancel := context.WithTimeout(lease.Context(), s.o.TTL/3)
	defer cancel()
	// Owner "started": backends that key records by (token, name, owner)
	// (etcd) must confuse it neither with the run's own record (the lease's
	// owner) nor with the takeover marker of the same token (no owner), which
	// is written concurrently and would otherwise overwrite it.
	err := s.locker.AddRecord(mctx, locking.Record{Key: lease.Key(), Outcome: OutcomeStarted, Owner: string(OutcomeStarted), Replica: s.o.Replica,
		Token: lease.Token(), Attempt: attempt, Started: now, Ended: now})
	if err == nil {
		return locking.Record{}, true
	}
	log.Error("could not record the run's start, which on_holder_loss: abandon needs; not starting the job", zap.Error(err))
	rec = locking.Record{Outcome: locking.OutcomeFailed, Attempt: attempt, Started: now, Ended: now,
		Error: "not started: could not record the run's start (on_holder_loss: abandon): " + err.Error()}
	if s.finish(lease, j, fire, log, rec) {
		s.emit(Event{Kind: EventFinished, Job: j.Name, Tick: fire, Token: lease.Token(), Attempt: attempt,
			Outcome: rec.Outcome, Detail: rec.Error})
	}
	return rec, false
}

// recordGrace is how long past a tick's deadline a waiting replica stays, to
// record the tick as missed if its runner turns out to have died: long enough
// for a dead runner's lease (TTL) or session to expire.
func recordGrace(ttl time.Duration) time.Duration { return 2*ttl + 10*time.Second }

// OutcomeTakeover marks, in a job's history, that a replica took a tick over
// from a runner that lost it, and with which attempt number.
const OutcomeTakeover locking.Outcome = "takeover"

// OutcomeStarted marks, in the history of a job with on_holder_loss: abandon,
// that a run was about to start the job of a tick (attempt and token): a
// replica that takes the tick over abandons it only if such a marker shows
// that an earlier holder may have started it, and runs it otherwise.
const OutcomeStarted locking.Outcome = "started"

// priorRuns reads the job's recent records for key. It returns 1 + the
// highest attempt they know of (runs lost, interrupted or taken over), and at
// least 2 when there is any such record; and whether a run of key may have
// started its job: a job with on_holder_loss: abandon writes an
// OutcomeStarted marker before each start (see run), so no marker means that
// no earlier holder started it (it released the tick unrun: shutdown before
// the instant, a clock over the skew budget, an overlap check that failed).
// When the records cannot be read it says 2 and true.
func (s *Scheduler) priorRuns(ctx context.Context, key locking.Key) (next int, started bool) {
	rctx, cancel := context.WithTimeout(ctx, s.o.TTL/2)
	defer cancel()
	recs, err := s.locker.Records(rctx, key.Scope, 100)
	if err != nil {
		return 2, true // a takeover at least; the records say no more
	}
	next = 1
	for _, r := range recs {
		if r.Key == key {
			next = max(next, r.Attempt+1, 2)
			started = started || r.Outcome == OutcomeStarted
		}
	}
	return next, started
}

// await waits, without hammering the backend, for the runner of a tick to end it;
// it is called right after this replica's claim found the tick held. It returns
// a lease if the runner died or released it within the starting deadline (a
// takeover), and nil if the tick was completed, or is still held at its
// deadline. It does not claim again before the runner may have ended
// (Locker.TakeOver): on Redis, etcd and memory a runner that completes the tick
// costs the waiting replica nothing more than its lost claim, on ZooKeeper one
// request (its watch). A backend outage while
// waiting does not end the wait: the wait goes on until the deadline. At the
// deadline, a tick that nobody holds and nobody completed is claimed so that it
// is recorded as missed, never dropped silently.
func (s *Scheduler) await(ctx context.Context, j *Job, key locking.Key, deadline time.Time, log *zap.Logger) *locking.Lease {
	backoff := 100 * time.Millisecond
	wait := s.locker.TakeOver // the last claim found the tick held
	for {
		actx, cancel := context.WithDeadline(ctx, deadline)
		lease, err := wait(actx, key, s.o.TTL)
		cancel()
		wait = s.locker.Acquire // from now on the last claim may have failed
		switch {
		case err == nil:
			return lease
		case errors.Is(err, locking.ErrDone):
			s.emit(Event{Kind: EventAlreadyDone, Job: j.Name, Tick: deadline.Add(-j.StartingDeadline)})
			return nil
		case ctx.Err() != nil:
			return nil
		case !s.o.Clock.Now().Before(deadline):
			// The deadline passed: the holder may still be running (a long
			// job), or the tick may have been orphaned by a runner whose lease
			// or session has not expired yet. Wait a little longer, only to
			// record an orphan as missed: it is never run this late.
			lctx, lcancel := context.WithTimeout(ctx, recordGrace(s.o.TTL))
			lease, err := s.locker.Acquire(lctx, key, s.o.TTL)
			lcancel()
			if err == nil {
				return lease // handle records it as missed: it is past its deadline
			}
			if errors.Is(err, locking.ErrUnavailable) {
				log.Error("backend unavailable at the tick's starting deadline; it will be recorded as missed", zap.Error(err))
				fire := deadline.Add(-j.StartingDeadline)
				s.spawn(func() { s.recordMissed(ctx, j, fire, "backend unavailable until the starting deadline") })
			}
			log.Debug("tick still held or done at its starting deadline; no takeover", zap.Error(err))
			return nil
		case errors.Is(err, locking.ErrUnavailable):
			log.Warn("backend unavailable while waiting for the tick's runner; still waiting", zap.Error(err))
			if sleep(ctx, s.o.Clock, min(backoff, time.Until(deadline))) != nil {
				return nil
			}
			backoff = min(2*backoff, time.Second)
		default:
			log.Error("waiting for the tick's runner failed; the tick may be missed", zap.Error(err))
			return nil
		}
	}
}

// run runs a won tick under its lease and completes it with the run's record.
func (s *Scheduler) run(ctx context.Context, j *Job, lease *locking.Lease, fire time.Time, attempt int, log *zap.Logger) locking.Record {
	rctx, cancel := context.WithCancelCause(lease.Context())
	defer cancel(nil)
	stop := context.AfterFunc(s.jobsCtx, func() { cancel(context.Cause(s.jobsCtx)) })
	defer stop()

	guard, ok := s.overlap(ctx, j, lease, fire, attempt, log, cancel)
	if !ok {
		return locking.Record{Outcome: locking.OutcomeSkipped}
	}
	if guard != nil {
		defer func() {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.TTL)
			defer rcancel()
			_ = guard.Release(rctx)
		}()
		stopGuard := context.AfterFunc(guard.Context(), func() { cancel(context.Cause(guard.Context())) })
		defer stopGuard()
		if j.Overlap == OverlapCancelOther {
			go s.watchCancel(rctx, j, cancel)
		}
	}
	// A tick won ahead of its instant waits for it here, with all of the above
	// done (see start).
	if !s.untilInstant(ctx, lease) {
		return locking.Record{}
	}
	// The lease must still be valid when the job starts, not only when it was
	// won: a replica paused (or cut off from the backend) between its claim and
	// the job's start may find the lease's local deadline passed before its
	// watchdog has noticed, and another replica may be running the tick. Check
	// also renews from the session where the backend keeps one.
	if err := lease.Check(); err != nil {
		now := s.o.Clock.Now()
		rec := locking.Record{Outcome: locking.OutcomeLost, Replica: s.o.Replica, Attempt: attempt, Started: now, Ended: now,
			Error: fmt.Sprintf("lease lost before the job started; not started: %v", err)}
		log.Error("lease lost before the job started; not starting it", zap.Error(err))
		s.emit(Event{Kind: EventLeaseLost, Job: j.Name, Tick: fire, Token: lease.Token(), Attempt: attempt, Detail: rec.Error})
		s.spawn(func() { s.freeLost(s.jobsCtx, lease, fire.Add(j.StartingDeadline)) })
		s.recordRun(ctx, j, fire, lease, rec)
		return rec
	}
	if j.OnHolderLoss == HolderLossAbandon {
		if rec, ok := s.markStarted(lease, j, fire, attempt, log); !ok {
			return rec
		}
	}
	if j.Timeout > 0 {
		var tcancel context.CancelFunc
		rctx, tcancel = context.WithTimeoutCause(rctx, j.Timeout, ErrTimeout)
		defer tcancel()
	}

	started := s.o.Clock.Now()
	base := jobs.Run{Job: j.Name, Scheduled: fire, Token: lease.Token(), Replica: s.o.Replica, Args: j.Args}
	last := attempt
	s.noteStarted(ctx)
	err := jobs.Retry(rctx, j.Retries+1, j.RetryBackoff, func(ctx context.Context, n int) error {
		if n > 1 {
			// As before the first attempt: a pause during the backoff may have
			// outlived the lease (Check then ends it, and its context).
			if err := lease.Check(); err != nil {
				return err
			}
		}
		r := base
		r.Attempt = attempt + n - 1
		last = r.Attempt
		r = r.WithLogger(s.log)
		r.Logger.Info("job started")
		return j.Func(ctx, r)
	})
	ended := s.o.Clock.Now()
	// Let the other ticks that fell at this instant start their jobs before this
	// one does its bookkeeping (completion, records): with a thousand jobs on
	// one instant, starts come first and the fire precision does not depend on
	// how long the completions of the ticks before take.
	s.afterStarts(ctx)
	rec := locking.Record{Key: lease.Key(), Token: lease.Token(), Owner: lease.Owner(), Outcome: locking.OutcomeSucceeded,
		Replica: s.o.Replica, Attempt: last, Started: started, Ended: ended}
	if err != nil {
		rec.Outcome, rec.Error = locking.OutcomeFailed, err.Error()
	}
	log = log.With(zap.Uint64("token", lease.Token()), zap.Int("attempt", last), zap.Duration("took", ended.Sub(started)))
	switch {
	case lease.Err() != nil:
		// The lease was lost: the job was cancelled and may not complete the tick.
		rec.Outcome = locking.OutcomeLost
		rec.Error = fmt.Sprintf("lease lost: %v; job returned: %v", lease.Err(), err)
		log.Error("run lost its lease; the tick is not completed", zap.Error(lease.Err()))
		s.emit(Event{Kind: EventLeaseLost, Job: j.Name, Tick: fire, Token: lease.Token(), Attempt: last})
		s.spawn(func() { s.freeLost(s.jobsCtx, lease, fire.Add(j.StartingDeadline)) })
		s.recordRun(ctx, j, fire, lease, rec)
		return rec
	case errors.Is(context.Cause(rctx), ErrShutdown):
		// Cut short by shutdown: release the tick so another replica takes it over.
		rec.Outcome = locking.OutcomeFailed
		rec.Error = "interrupted by shutdown; released for takeover: " + rec.Error
		log.Warn("run interrupted by shutdown; releasing the tick")
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.TTL)
		_ = lease.Release(rctx)
		rcancel()
		s.recordRun(ctx, j, fire, lease, rec)
		return rec
	}
	completed := s.finish(lease, j, fire, log, rec)
	switch {
	case !completed:
		// finish logged why and recorded the run.
	case err != nil:
		log.Error("job failed", zap.Error(err))
	default:
		log.Info("job succeeded")
	}
	s.emit(Event{Kind: EventFinished, Job: j.Name, Tick: fire, Token: lease.Token(), Attempt: last,
		Outcome: rec.Outcome, Duration: ended.Sub(started), Detail: rec.Error})
	return rec
}

// finish completes a tick with rec and reports whether it did.
func (s *Scheduler) finish(lease *locking.Lease, j *Job, fire time.Time, log *zap.Logger, rec locking.Record) bool {
	if rec.Replica == "" {
		rec.Replica = s.o.Replica
	}
	if rec.Started.IsZero() {
		rec.Started = s.o.Clock.Now()
		rec.Ended = rec.Started
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.TTL)
	defer cancel()
	if err := lease.Complete(ctx, rec, j.Retention); err != nil {
		log.Error("completing the tick failed; it may be run again by another replica", zap.Error(err))
		// Whatever the run did, this record does not complete the tick: another
		// replica may run it again, and the history must not show two runs
		// that each completed it. The run's own outcome goes into Error.
		how := "completion refused"
		if !errors.Is(err, locking.ErrLost) {
			how = "completion not confirmed before the lease ended"
		}
		outcome := string(rec.Outcome)
		if rec.Error != "" {
			outcome += ": " + rec.Error
		}
		rec.Outcome = locking.OutcomeLost
		rec.Error = how + ": " + err.Error() + "; run outcome: " + outcome
		s.emit(Event{Kind: EventLeaseLost, Job: j.Name, Tick: fire, Token: lease.Token(), Attempt: rec.Attempt})
		// The lease may have been lost here only (its local deadline passed
		// while the backend was down): free the claim if it is still ours.
		s.spawn(func() { s.freeLost(s.jobsCtx, lease, fire.Add(j.StartingDeadline)) })
		s.recordRun(context.Background(), j, fire, lease, rec)
		return false
	}
	return true
}

// freeLost removes a lost lease's entry from the backend if it is still this
// replica's, now that the job has stopped, so that a replica waiting for the tick
// takes it over as soon as the backend answers rather than when the entry
// expires (after a backend restart, etcd and ZooKeeper give leases and sessions
// their whole TTL again). It retries while the backend is unreachable, until the
// tick's starting deadline, after which nobody takes the tick over.
func (s *Scheduler) freeLost(ctx context.Context, lease *locking.Lease, until time.Time) {
	backoff := 100 * time.Millisecond
	for {
		err := lease.Release(ctx)
		if !errors.Is(err, locking.ErrUnavailable) || !s.o.Clock.Now().Before(until) {
			return
		}
		if sleep(ctx, s.o.Clock, backoff) != nil {
			return
		}
		backoff = min(2*backoff, time.Second)
	}
}

// recordRun stores the record of a run that could not complete its tick, retrying
// while the backend is unreachable, for a bounded time. If it cannot, the record
// goes to the log in full, so it is never lost without a trace.
func (s *Scheduler) recordRun(ctx context.Context, j *Job, fire time.Time, lease *locking.Lease, rec locking.Record) {
	rec.Key = locking.Key{Scope: j.Name, Name: TickName(fire)}
	rec.Token, rec.Owner = lease.Token(), lease.Owner()
	if rec.Replica == "" {
		rec.Replica = s.o.Replica
	}
	s.spawn(func() { s.addRecord(s.jobsCtx, rec) })
}

// maxRecordWait bounds how long a replica keeps trying to store a run record
// while the backend is unreachable.
const maxRecordWait = time.Hour

// addRecord stores rec, retrying until the backend answers, maxRecordWait
// passes, or the replica's shutdown timeout ends (ctx); then it logs rec in full.
func (s *Scheduler) addRecord(ctx context.Context, rec locking.Record) {
	backoff := 200 * time.Millisecond
	limit := s.o.Clock.Now().Add(maxRecordWait)
	for {
		actx, cancel := context.WithTimeout(ctx, s.o.TTL)
		err := s.locker.AddRecord(actx, rec)
		cancel()
		if err == nil {
			return
		}
		if s.o.Clock.Now().After(limit) || !errors.Is(err, locking.ErrUnavailable) {
			s.log.Error("could not store a run record; here it is", zap.Any("record", rec), zap.Error(err))
			return
		}
		if sleep(ctx, s.o.Clock, backoff) != nil {
			s.log.Error("shutting down before a run record could be stored; here it is", zap.Any("record", rec), zap.Error(err))
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// recordMissed marks a tick that nobody ran as missed, exactly once across the
// replicas (claim and complete), once the backend is reachable again.
func (s *Scheduler) recordMissed(ctx context.Context, j *Job, fire time.Time, why string) {
	key := locking.Key{Scope: j.Name, Name: TickName(fire)}
	backoff := time.Second
	for range 60 {
		lease, err := s.locker.Claim(ctx, key, s.o.TTL)
		switch {
		case err == nil:
			s.finish(lease, j, fire, s.log, locking.Record{Outcome: locking.OutcomeMissed, Error: why})
			s.emit(Event{Kind: EventMissed, Job: j.Name, Tick: fire})
			return
		case errors.Is(err, locking.ErrDone), errors.Is(err, locking.ErrHeld), ctx.Err() != nil:
			return
		}
		if sleep(ctx, s.o.Clock, backoff) != nil {
			return
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	s.log.Error("could not record a missed tick", zap.String("job", j.Name), zap.Time("tick", fire))
}

// overlap applies j's overlap policy before a run. It returns the guard lease
// (held while the run lasts) and whether to run at all; when not, the tick has
// been completed as skipped.
func (s *Scheduler) overlap(ctx context.Context, j *Job, lease *locking.Lease, fire time.Time, attempt int, log *zap.Logger, cancelRun context.CancelCauseFunc) (*locking.Lease, bool) {
	if j.Overlap == OverlapAllow {
		return nil, true
	}
	running := locking.Key{Scope: j.Name, Name: runningName}
	skip := func(why string) (*locking.Lease, bool) {
		log.Info("tick skipped: " + why)
		s.finish(lease, j, fire, log, locking.Record{Outcome: locking.OutcomeSkipped, Error: why})
		s.emit(Event{Kind: EventSkipped, Job: j.Name, Tick: fire, Detail: why})
		return nil, false
	}
	if g := claimedGuard(ctx); g != nil {
		if g.Err() == nil {
			return g, true
		}
		_ = g.Release(context.WithoutCancel(ctx)) // lost before the instant: claim again
	}
	// The policy looks at the earlier run at the tick's instant, not ahead:
	// the earlier run may end in between.
	if !s.untilInstant(ctx, lease) {
		return nil, false
	}
	// A bounded context: the tick's lease, and shutdown.
	gctx, cancel := context.WithCancel(lease.Context())
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	guard, err := s.locker.Claim(gctx, running, s.o.TTL)
	if err == nil {
		return guard, true
	}
	if errors.Is(err, locking.ErrHeld) && attempt > 1 && j.Overlap == OverlapSkip {
		// Taking the tick over (or running it again): the runner that died
		// held the running key too, claimed right after the tick's key, and
		// renewed on its own schedule; it expires up to a third of the TTL
		// after the tick's key (plus the claims' gap). Wait that long for it,
		// rather than skip the tick because of the dead run.
		wctx, wcancel := context.WithTimeout(gctx, s.o.TTL/3+maxLead(s.o.TTL)+s.o.TTL/10)
		guard, err = s.locker.Acquire(wctx, running, s.o.TTL)
		wcancel()
		switch {
		case err == nil:
			return guard, true
		case gctx.Err() != nil: // the tick's lease ended, or shutdown: release it
			err = fmt.Errorf("waiting for the running key: %w", context.Cause(gctx))
		case errors.Is(err, locking.ErrHeld) || errors.Is(err, context.DeadlineExceeded):
			err = locking.ErrHeld // still running: skip
		default:
			log.Warn("waiting for the earlier run's running key failed", zap.Error(err))
			err = locking.ErrHeld
		}
	}
	if !errors.Is(err, locking.ErrHeld) {
		log.Error("overlap check failed; releasing the tick", zap.Error(err))
		rctx, rcancel := context.WithTimeout(context.Background(), s.o.TTL)
		_ = lease.Release(rctx)
		rcancel()
		return nil, false
	}
	switch j.Overlap {
	case OverlapSkip:
		return skip("an earlier run is still running")
	case OverlapBufferOne:
		buf, berr := s.locker.Claim(gctx, locking.Key{Scope: j.Name, Name: bufferName}, s.o.TTL)
		if berr != nil {
			return skip("an earlier run is still running and another tick already waits for it")
		}
		defer buf.Release(context.WithoutCancel(gctx)) //nolint:errcheck // best effort; it expires
		guard, err = s.locker.Acquire(gctx, running, s.o.TTL)
	case OverlapCancelOther:
		// Hold the cancel key until the running one ends: the runner probes it
		// every TTL/3 and cancels itself when it finds it held. The probe holds
		// it only for an instant, so wait for it rather than give up.
		req, cerr := s.locker.Acquire(gctx, locking.Key{Scope: j.Name, Name: cancelName}, s.o.TTL)
		if cerr == nil {
			defer req.Release(context.WithoutCancel(gctx)) //nolint:errcheck // best effort; it expires
		}
		log.Info("cancelling the running run of the job")
		guard, err = s.locker.Acquire(gctx, running, s.o.TTL)
		if err == nil {
			// While this tick waited, a newer one may have come: the newest wins.
			if next := j.Schedule.Next(fire); !next.IsZero() && !next.After(s.o.Clock.Now()) {
				_ = guard.Release(context.WithoutCancel(gctx))
				return skip("superseded by a newer tick while waiting for the earlier run to end")
			}
		}
	}
	if err != nil {
		return skip("could not take over from the earlier run: " + err.Error())
	}
	return guard, true
}

// watchCancel cancels a run when a newer tick of its job asks for it (overlap
// policy cancel_other): the newer tick holds the job's cancel key.
func (s *Scheduler) watchCancel(ctx context.Context, j *Job, cancel context.CancelCauseFunc) {
	key := locking.Key{Scope: j.Name, Name: cancelName}
	for sleep(ctx, s.o.Clock, s.o.TTL/3) == nil {
		probe, err := s.locker.Claim(ctx, key, s.o.TTL)
		if err == nil {
			_ = probe.Release(context.WithoutCancel(ctx))
			continue
		}
		if errors.Is(err, locking.ErrHeld) {
			cancel(ErrCancelledByNewer)
			return
		}
	}
}

func sleep(ctx context.Context, c locking.Clock, d time.Duration) error {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
