package scheduler

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/oncecron/oncecron/locking"
)

// JobStatus is a read-only snapshot of one job as this replica sees it.
type JobStatus struct {
	// Name names the job.
	Name string
	// Spec is the schedule's text as written in the table ("@every 10s",
	// "CRON_TZ=Europe/Paris 0 30 2 * * *"), or "" if the Schedule does not
	// implement fmt.Stringer.
	Spec string
	// Next is the job's next fire instant after now, in UTC (zero: none
	// within the schedule's horizon). With jitter, the race starts up to
	// Jitter later; the tick is still named by Next.
	Next time.Time
	// Jitter, Timeout and StartingDeadline are the job's settings.
	Jitter           time.Duration
	Timeout          time.Duration
	StartingDeadline time.Duration
	// Last is the end of the newest tick of the job that ended on this
	// replica (a run it finished, a tick it skipped or recorded missed, a
	// lease it lost); nil if none since it started. Ticks run by other replicas are not seen:
	// read the stored records (Locker.Records) for those.
	Last *TickResult
	// Running lists the ticks of the job that this replica holds now (won or
	// taken over and not yet ended), oldest first. A tick is won up to a
	// tenth of the TTL ahead of its instant, and listed from then on.
	Running []RunningTick
}

// TickResult is how a tick ended on this replica.
type TickResult struct {
	Tick    time.Time
	Outcome locking.Outcome
	// Duration is the run's duration (zero for skipped and missed ticks).
	Duration time.Duration
	// At is when this replica saw the end.
	At time.Time
	// Detail is the event's detail (an error, a reason to skip).
	Detail string
}

// RunningTick is a tick this replica holds.
type RunningTick struct {
	// Tick is the tick's scheduled instant; zero for a manual run (Trigger).
	Tick     time.Time
	Token    uint64
	Takeover bool      // taken over from a replica whose lease expired
	Manual   bool      // a manual run (Trigger)
	Since    time.Time // when this replica won it (usually a little ahead of the tick's instant)
}

// Readiness says whether the backend answered this replica's recent claims.
type Readiness struct {
	// Ready is false when the most recent claim found the backend
	// unreachable, until a claim gets an answer again. It is true before the
	// first claim: the replica reached the backend to start.
	Ready bool
	// Reason explains Ready in a few words.
	Reason string
	// Since is when the current state began (zero before the first claim).
	Since time.Time
}

// status is what a Scheduler remembers of its own events for the snapshot
// methods. Its zero value is ready for use.
type status struct {
	mu      sync.Mutex
	last    map[string]TickResult
	running map[runKey]RunningTick

	ready  bool // valid when seen
	seen   bool
	since  time.Time // start of the current readiness state
	reason string
}

type runKey struct {
	job  string
	tick time.Time
}

// size makes room for the ticks of n jobs that start together, so that the
// running map does not grow (under the lock every start takes) while the
// first of them start; at most 1,024, which a large table of rare jobs never
// comes close to. (last is written when runs end, after their wave started.)
func (st *status) size(n int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.last == nil {
		st.last = map[string]TickResult{}
		st.running = make(map[runKey]RunningTick, min(n, 1024))
	}
}

// observe updates the status with e. It is called for every event, before
// Options.Observe.
func (s *Scheduler) observe(e Event) {
	switch e.Kind {
	case EventWon, EventTakeover, EventFinished, EventSkipped, EventMissed, EventLeaseLost,
		EventLostRace, EventAlreadyDone, EventUnavailable:
	default:
		return // no change to the status (a tick fired, a clock estimate, ...)
	} // (keep this list in step with the two switches below)
	now := s.o.Clock.Now()
	st := &s.status
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.last == nil {
		st.last = map[string]TickResult{}
		st.running = map[runKey]RunningTick{}
	}
	k := runKey{e.Job, e.Tick.UTC()}
	// last keeps the end of the newest tick: catch-up records older ticks as
	// missed after it ran the newest.
	last := func(o locking.Outcome) {
		if prev, ok := st.last[e.Job]; !ok || !k.tick.Before(prev.Tick) {
			st.last[e.Job] = TickResult{Tick: k.tick, Outcome: o, Duration: e.Duration, At: now, Detail: e.Detail}
		}
	}
	end := func(o locking.Outcome) {
		if _, ok := st.running[k]; ok {
			delete(st.running, k)
		} else if m, ok := st.running[runKey{job: e.Job}]; ok && e.Kind != EventMissed && !k.tick.Before(m.Since) {
			// A manual run (Trigger) is won with no tick and ends with the
			// instant it started, just after it was won, as its tick.
			delete(st.running, runKey{job: e.Job})
		}
		last(o)
	}
	switch e.Kind {
	case EventWon:
		st.running[k] = RunningTick{Tick: k.tick, Token: e.Token, Manual: e.Tick.IsZero(), Since: now}
	case EventTakeover:
		if j := s.job(e.Job); j == nil || j.OnHolderLoss != HolderLossAbandon {
			st.running[k] = RunningTick{Tick: k.tick, Token: e.Token, Takeover: true, Since: now}
		}
	case EventFinished:
		end(e.Outcome)
	case EventSkipped:
		end(locking.OutcomeSkipped)
	case EventMissed:
		end(locking.OutcomeMissed)
	case EventLeaseLost:
		end(locking.OutcomeLost)
	}
	switch e.Kind {
	case EventWon, EventTakeover, EventLostRace, EventAlreadyDone, EventMissed:
		// The backend answered a claim.
		if !st.seen || !st.ready {
			st.since = now
		}
		st.seen, st.ready, st.reason = true, true, "the backend answered the last claim"
	case EventUnavailable:
		if !st.seen || st.ready {
			st.since = now
		}
		st.seen, st.ready = true, false
		st.reason = fmt.Sprintf("backend unreachable on the last claim (job %s, tick %s): %s", e.Job, TickName(e.Tick), e.Detail)
	}
}

// drop forgets a tick held by this replica that it released unrun (shutdown
// before its instant).
func (st *status) drop(k runKey) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.running, k)
}

// job returns the job named name, or nil.
func (s *Scheduler) job(name string) *Job {
	for _, j := range s.jobList() {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// Replica returns this replica's name.
func (s *Scheduler) Replica() string { return s.o.Replica }

// Jobs returns a snapshot of every job of the current table (see Reload), in
// table order. It is safe to call at any time, from any goroutine, also
// before Run.
func (s *Scheduler) Jobs() []JobStatus {
	now := s.o.Clock.Now()
	st := &s.status
	st.mu.Lock()
	defer st.mu.Unlock()
	table := s.jobList()
	out := make([]JobStatus, 0, len(table))
	for _, j := range table {
		js := JobStatus{
			Name: j.Name, Next: j.Schedule.Next(now),
			Jitter: j.Jitter, Timeout: j.Timeout, StartingDeadline: j.StartingDeadline,
		}
		if str, ok := j.Schedule.(fmt.Stringer); ok {
			js.Spec = str.String()
		}
		if r, ok := st.last[j.Name]; ok {
			js.Last = &r
		}
		for k, r := range st.running {
			if k.job == j.Name {
				js.Running = append(js.Running, r)
			}
		}
		sort.Slice(js.Running, func(a, b int) bool { return js.Running[a].Tick.Before(js.Running[b].Tick) })
		out = append(out, js)
	}
	return out
}

// Job returns the snapshot of the job named name, and whether there is one.
func (s *Scheduler) Job(name string) (JobStatus, bool) {
	for _, js := range s.Jobs() {
		if js.Name == name {
			return js, true
		}
	}
	return JobStatus{}, false
}

// Ready reports whether the backend answered this replica's most recent
// claim (true before the first one). See Readiness.
func (s *Scheduler) Ready() bool { return s.Readiness().Ready }

// Readiness reports backend reachability as seen by this replica's recent
// claims: every claim that got an answer (won, lost the race, already done,
// takeover, recorded missed) makes it ready, every claim that found the
// backend unreachable makes it not ready.
func (s *Scheduler) Readiness() Readiness {
	st := &s.status
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.seen {
		return Readiness{Ready: true, Reason: "no claim yet"}
	}
	return Readiness{Ready: st.ready, Reason: st.reason, Since: st.since}
}
