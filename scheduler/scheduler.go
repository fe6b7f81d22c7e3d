package scheduler

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
)

// Causes with which a run's context is cancelled (see context.Cause).
var (
	// ErrShutdown: the replica shut down and the run outlived the grace period.
	ErrShutdown = errors.New("scheduler: shutting down")
	// ErrTimeout: the run exceeded its job's timeout.
	ErrTimeout = errors.New("scheduler: job timeout")
	// ErrCancelledByNewer: a newer tick of the job cancelled this run (overlap
	// policy cancel_other).
	ErrCancelledByNewer = errors.New("scheduler: cancelled by a newer tick")
)

// Defaults of Options.
const (
	DefaultRetention       = 48 * time.Hour
	DefaultShutdownTimeout = 30 * time.Second
	// maxCatchUp bounds how many missed ticks of one job are examined at once.
	maxCatchUp = 100
)

// Options configures a Scheduler.
type Options struct {
	// Jobs is the cron table.
	Jobs []Job
	// Locker hands out the tick leases.
	Locker *locking.Locker
	// Replica names this replica in records and in jobs.Run.
	Replica string
	// TTL is the lease TTL of every tick.
	TTL time.Duration
	// Retention is how long completed ticks stay marked done (default
	// DefaultRetention). It must exceed every job's starting deadline plus the
	// largest clock skew between replicas, or a late replica could run a tick
	// again.
	Retention time.Duration
	// ShutdownTimeout is how long Run waits for running jobs after its context
	// ends before cancelling them (default DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// Logger logs (default: none).
	Logger *zap.Logger
	// Clock drives the schedule (default locking.SystemClock).
	Clock locking.Clock
	// Observe, if set, is called for every event (from many goroutines).
	Observe func(Event)
	// MaxClockOffset is how far this replica's clock may be from the backend's
	// before it stops claiming critical jobs (default DefaultMaxClockOffset;
	// negative: never checked).
	MaxClockOffset time.Duration
	// Version and ConfigHash are published in the replica's heartbeats.
	Version, ConfigHash string
	// HeartbeatInterval is how often the replica publishes a heartbeat record
	// (default DefaultHeartbeatInterval; negative: never).
	HeartbeatInterval time.Duration
	// SkipCatchUp turns off the search for ticks missed before Run started:
	// for a backend that starts empty (memory), where every recent tick would
	// look missed.
	SkipCatchUp bool
}

// Scheduler runs a cron table as one replica among several.
type Scheduler struct {
	o      Options
	log    *zap.Logger
	locker *locking.Locker
	jobs   []*Job // the current table; read with jobList

	mu     sync.Mutex  // guards jobs
	reload chan []*Job // a new table for the dispatcher (Reload)

	clock clockState // the clock offset from the backend's (skew.go)

	runs     sync.WaitGroup // running tick handlers
	jobsCtx  context.Context
	stopJobs context.CancelCauseFunc
	status   status // what Jobs and Readiness report (status.go)
	lag      lagMeter
	wavesMu  sync.Mutex
	waves    []*wave // waves whose runs may not all have started (see claimAfterStarts)
}

// New returns a Scheduler for o.
func New(o Options) (*Scheduler, error) {
	if o.Locker == nil {
		return nil, fmt.Errorf("%w: nil locker", locking.ErrInvalid)
	}
	if o.Replica == "" {
		return nil, fmt.Errorf("%w: empty replica name", locking.ErrInvalid)
	}
	if o.TTL <= 0 {
		return nil, fmt.Errorf("%w: ttl %v must be positive", locking.ErrInvalid, o.TTL)
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Clock == nil {
		o.Clock = locking.SystemClock{}
	}
	s := &Scheduler{o: o, log: o.Logger, locker: o.Locker, reload: make(chan []*Job, 1)}
	s.jobsCtx, s.stopJobs = context.WithCancelCause(context.Background())
	jobs, err := s.prepare(o.Jobs)
	if err != nil {
		return nil, err
	}
	s.jobs = jobs
	return s, nil
}

// prepare validates a table and applies the defaults.
func (s *Scheduler) prepare(table []Job) ([]*Job, error) {
	var out []*Job
	seen := map[string]bool{}
	for i := range table {
		j := table[i]
		if err := j.validate(s.o.TTL); err != nil {
			return nil, err
		}
		if seen[j.Name] {
			return nil, fmt.Errorf("%w: job %q defined twice", locking.ErrInvalid, j.Name)
		}
		seen[j.Name] = true
		if j.Retention == 0 {
			j.Retention = s.o.Retention
		}
		if j.Retention < j.StartingDeadline {
			return nil, fmt.Errorf("%w: job %q: retention %v is shorter than its starting deadline %v", locking.ErrInvalid, j.Name, j.Retention, j.StartingDeadline)
		}
		out = append(out, &j)
	}
	return out, nil
}

// jobList returns the current table.
func (s *Scheduler) jobList() []*Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs
}

// Run runs the table until ctx ends, then shuts down gracefully: it stops
// claiming ticks, waits up to the shutdown timeout for running jobs, cancels the
// rest (their leases are released so another replica can take the tick over) and
// returns nil. Ticks that fell within their starting deadline before Run started
// are caught up according to each job's misfire policy.
func (s *Scheduler) Run(ctx context.Context) error {
	defer s.stopJobs(nil)
	start := s.o.Clock.Now()
	table := s.jobList()
	s.log.Info("scheduler started", zap.Int("jobs", len(table)), zap.Duration("ttl", s.o.TTL))

	q := &tickQueue{}
	var catchUps []catchUpOf
	s.status.size(len(table))
	for _, j := range table {
		var missed []time.Time
		if !s.o.SkipCatchUp {
			missed = j.Schedule.Between(start.Add(-j.StartingDeadline), start, 1<<14)
		}
		if len(missed) > maxCatchUp {
			missed = missed[len(missed)-maxCatchUp:]
		}
		if len(missed) > 0 {
			catchUps = append(catchUps, catchUpOf{job: j, missed: missed})
		}
		if next := j.Schedule.Next(start); !next.IsZero() {
			at := s.startAt(j, next)
			prev := start
			if len(missed) > 0 {
				// Its missed ticks are claimed first (below): no claim ahead of
				// this one's instant.
				prev = at
			}
			heap.Push(q, &tick{job: j, fire: next, at: at, claimAt: s.claimAt(j, at, prev)})
		}
	}
	// The missed ticks to run are claimed before any new tick, oldest first, so
	// that a job's tokens keep rising with its ticks across a restart.
	s.claimCatchUps(ctx, catchUps)
	for _, c := range catchUps {
		s.spawn(func() { s.catchUp(ctx, c) })
	}
	if s.o.MaxClockOffset >= 0 {
		ckDone := make(chan struct{})
		go func() { defer close(ckDone); s.watchClock(ctx) }()
		defer func() { <-ckDone }()
	}
	if s.o.HeartbeatInterval >= 0 {
		hbDone := make(chan struct{})
		go func() { defer close(hbDone); s.heartbeats(ctx, start) }()
		defer func() { <-hbDone }()
	}
	s.dispatch(ctx, q)
	return s.shutdown()
}

func (s *Scheduler) spawn(f func()) {
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		f()
	}()
}

// dispatch fires ticks from q until ctx ends.
func (s *Scheduler) dispatch(ctx context.Context, q *tickQueue) {
	for {
		if q.Len() == 0 {
			select {
			case <-ctx.Done():
				return
			case table := <-s.reload:
				s.requeue(q, table)
				continue
			}
		}
		top := (*q)[0]
		if wait := top.claimAt.Sub(s.o.Clock.Now()); wait > 0 {
			t := s.o.Clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case table := <-s.reload:
				t.Stop()
				s.requeue(q, table)
			case <-t.C():
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		s.fireDue(ctx, q)
	}
}

// claimAhead is how long before a tick's start the replica claims it, at
// least: the claims of a thousand ticks that share an instant then travel,
// and their leases are built, before the instant; at the instant only the
// runs start. When the backend took longer to answer the claims of the last
// ten to twenty seconds, twice that. A run never starts before its instant,
// and the overlap policy is applied at the instant. Capped at a tenth of the
// TTL (see Scheduler.lead).
//
// Only ticks of jobs with overlap allow or skip are claimed ahead. With skip,
// the winner of a tick also claims the job's running key (held while the run
// lasts) as soon as it won, ahead of the instant too; if an earlier run still
// holds it then, it tries again at the instant. The tick's key and the
// running key are claimed one right after the other, so that if the runner
// dies they expire close together; a survivor taking the tick over waits a
// bounded time for the running key (see Scheduler.overlap). buffer_one and
// cancel_other wait for the running key, at the instant.
const claimAhead = 100 * time.Millisecond

// lead is how long before its start a tick of j is claimed.
func (s *Scheduler) lead(j *Job) time.Duration {
	if j.Overlap != OverlapAllow && j.Overlap != OverlapSkip {
		return 0
	}
	return min(max(claimAhead, 2*s.lag.get()), maxLead(s.o.TTL))
}

// maxLead is the longest lead of a claim for a TTL.
func maxLead(ttl time.Duration) time.Duration { return ttl / 10 }

// claimAt is when the dispatcher claims a tick of j that starts at at, the
// tick before it of the same job starting at prev: lead before at, but never
// before prev, so that a job's claims keep the order of its ticks at least as
// far apart as the ticks themselves. (After a catch-up, prev is at: the
// catch-up claims the older ticks first, as it did before claims went ahead.)
func (s *Scheduler) claimAt(j *Job, at, prev time.Time) time.Time {
	c := at.Add(-s.lead(j))
	if c.Before(prev) {
		c = prev
	}
	if c.After(at) {
		c = at
	}
	return c
}

// fireDue pops every tick that is due to be claimed and races for them: the
// ticks are claimed ahead of their instant (claimAhead), in batches (one round
// trip each on backends that pipeline), and each tick's run starts at its
// instant, or as soon as its own claim's result arrives if that is later.
func (s *Scheduler) fireDue(ctx context.Context, q *tickQueue) {
	var batch []*tick
	now := s.o.Clock.Now()
	for q.Len() > 0 && !(*q)[0].claimAt.After(now) {
		top := heap.Pop(q).(*tick)
		j, fire, prev := top.job, top.fire, top.at
		var after <-chan struct{}
		if late := now.Sub(fire); late > j.StartingDeadline {
			// The replica was paused or its clock jumped: everything between
			// fire and now fell without it. Treat it as a catch-up.
			missed := j.Schedule.Between(fire.Add(-time.Nanosecond), now, 1<<14)
			if len(missed) > maxCatchUp {
				s.log.Warn("ticks missed while this replica was stalled; examining the newest only",
					zap.String("job", j.Name), zap.Int("missed", len(missed)), zap.Int("examined", maxCatchUp))
				missed = missed[len(missed)-maxCatchUp:]
			}
			c := catchUpOf{job: j, missed: missed, claimed: make(chan struct{})}
			s.spawn(func() {
				cs := []catchUpOf{c}
				s.claimCatchUps(ctx, cs) // sets cs[0].claims
				s.catchUp(ctx, cs[0])
			})
			fire = missed[len(missed)-1]
			prev = time.Time{} // the next tick: no claim ahead of its instant
			after = c.claimed  // nor before the catch-up claimed the older ones
		} else {
			batch = append(batch, top)
		}
		if next := j.Schedule.Next(fire); !next.IsZero() {
			at := s.startAt(j, next)
			if prev.IsZero() {
				prev = at
			}
			heap.Push(q, &tick{job: j, fire: next, at: at, claimAt: s.claimAt(j, at, prev), after: after})
		}
	}
	if len(batch) == 0 {
		return
	}
	// One gate per instant: closed when the instant comes, it lets the runs of
	// the ticks that start then go, all at once.
	for lo := 0; lo < len(batch); {
		hi := lo + 1
		for hi < len(batch) && batch[hi].at.Equal(batch[lo].at) {
			hi++
		}
		s.gate(ctx, batch[lo].at, now, batch[lo:hi])
		lo = hi
	}
	// A tick that must wait for a catch-up's claims is claimed alone.
	n := 0
	for _, t := range batch {
		if t.after == nil {
			batch[n] = t
			n++
			continue
		}
		// Not delayed by claimAfterStarts: the catch-up's claims come first.
		s.spawn(func() {
			select {
			case <-t.after:
			case <-ctx.Done():
			}
			s.start(ctx, t, s.claimTick(ctx, t))
		})
	}
	batch = batch[:n]
	// Ticks that start now first, then those claimed ahead of their instant,
	// so that no chunk mixes the two (see claimAfterStarts).
	slices.SortStableFunc(batch, func(a, b *tick) int {
		return cmpBool(a.at.After(now), b.at.After(now))
	})
	if len(batch) <= 1 || !s.locker.Batches() {
		for _, t := range batch {
			s.spawn(func() {
				s.claimAfterStarts(ctx, t.at, now)
				s.start(ctx, t, s.claimTick(ctx, t))
			})
		}
		return
	}
	// Chunks of batchSize, claimed concurrently: a few round trips in all, and
	// each run may start as soon as its own chunk is claimed.
	ahead := sort.Search(len(batch), func(i int) bool { return batch[i].at.After(now) })
	for lo := 0; lo < len(batch); {
		hi := min(lo+batchSize, len(batch))
		if lo < ahead {
			hi = min(hi, ahead)
		}
		chunk := batch[lo:hi]
		lo = hi
		s.runs.Add(1)
		go func() {
			defer s.runs.Done()
			s.claimAfterStarts(ctx, chunk[0].at, now) // all due, or all ahead
			keys := make([]locking.Key, len(chunk))
			for i, t := range chunk {
				keys[i] = locking.Key{Scope: t.job.Name, Name: TickName(t.fire)}
			}
			sent := s.o.Clock.Now()
			leases, errs := s.locker.ClaimBatch(ctx, keys, s.o.TTL)
			answered := s.o.Clock.Now()
			s.lag.note(sent, answered)
			running, tried := s.claimRunning(ctx, chunk, leases)
			for i, t := range chunk {
				first := &claimed{lease: leases[i], err: errs[i], answered: answered, runTried: tried, running: running[i]}
				s.spawn(func() { s.start(ctx, t, first) })
			}
		}()
	}
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// claimAfterStarts waits, before claims sent at now ahead of their ticks'
// instant at, until the runs of every wave whose instant has come have
// started (at most each wave's bound, maxStartWait, after its gate opened).
// With a lead as long as the interval between a job's ticks (a slow backend's
// lead grows to a tenth of the TTL: a second with a 10 s TTL), the claims of
// the next tick of a thousand jobs went out at the very instant their current
// runs started, and on ZooKeeper those starts came 10 to 50 ms late. Claims of
// ticks that are due (at is not after now) never wait: their runs are due too,
// and a wave may be waiting for them.
func (s *Scheduler) claimAfterStarts(ctx context.Context, at, now time.Time) {
	if !at.After(now) {
		return
	}
	s.wavesMu.Lock()
	s.pruneWaves()
	var wait []*wave
	for _, w := range s.waves {
		if !w.at.After(now) {
			wait = append(wait, w)
		}
	}
	s.wavesMu.Unlock()
	for _, w := range wait {
		select {
		case <-w.started:
		case <-ctx.Done():
			return
		}
	}
}

// pruneWaves forgets the waves whose runs have all started; the caller holds
// wavesMu.
func (s *Scheduler) pruneWaves() {
	keep := s.waves[:0]
	for _, w := range s.waves {
		select {
		case <-w.started:
		default:
			keep = append(keep, w)
		}
	}
	clear(s.waves[len(keep):])
	s.waves = keep
}

// claimRunning claims, in one batch, the running keys of the ticks of chunk
// that were won (leases) and whose job skips overlapping runs (see start). It
// returns the won running leases by index in chunk, and whether it tried.
func (s *Scheduler) claimRunning(ctx context.Context, chunk []*tick, leases []*locking.Lease) (running []*locking.Lease, tried bool) {
	running = make([]*locking.Lease, len(chunk))
	var keys []locking.Key
	var idx []int
	for i, t := range chunk {
		if leases[i] != nil && t.job.Overlap == OverlapSkip {
			keys = append(keys, locking.Key{Scope: t.job.Name, Name: runningName})
			idx = append(idx, i)
		}
	}
	if len(keys) == 0 {
		return running, false
	}
	won, _ := s.locker.ClaimBatch(ctx, keys, s.o.TTL)
	for n, i := range idx {
		running[i] = won[n]
	}
	return running, true
}

// claimTick claims t alone, noting how long the answer took.
func (s *Scheduler) claimTick(ctx context.Context, t *tick) *claimed {
	sent := s.o.Clock.Now()
	lease, err := s.locker.Claim(ctx, locking.Key{Scope: t.job.Name, Name: TickName(t.fire)}, s.o.TTL)
	answered := s.o.Clock.Now()
	s.lag.note(sent, answered)
	return &claimed{lease: lease, err: err, answered: answered}
}

// batchSize is how many ticks of one instant a batch claim carries.
const batchSize = 64

// gate makes the wave of ticks, which start at the instant at (now is the
// current time): its gate is opened when the instant comes, or when ctx ends
// first (then the wave is cancelled). Once the wave started, it emits
// EventFired for those of its ticks whose handling did not wait for the
// instant (lost or done ahead of it).
func (s *Scheduler) gate(ctx context.Context, at, now time.Time, ticks []*tick) {
	w := &wave{at: at, gate: make(chan struct{}), started: make(chan struct{})}
	w.waiting.Store(int64(len(ticks)))
	for _, t := range ticks {
		t.wave = w
	}
	ticks = slices.Clone(ticks)
	s.wavesMu.Lock()
	s.pruneWaves()
	s.waves = append(s.waves, w)
	s.wavesMu.Unlock()
	bound := min(maxStartWait, s.o.TTL/10)
	wait := at.Sub(now)
	s.spawn(func() {
		if wait > 0 && sleep(ctx, s.o.Clock, wait) != nil {
			w.cancelled = true
		}
		w.open(s.o.Clock, bound)
		if w.cancelled {
			return
		}
		select {
		case <-w.started:
		case <-ctx.Done():
			return // shutting down: the fired events of ticks handled ahead are left out
		}
		for _, t := range ticks {
			s.fired(t)
		}
	})
}

// fired emits EventFired for t, once.
func (s *Scheduler) fired(t *tick) {
	if t.fired.CompareAndSwap(false, true) {
		s.emit(Event{Kind: EventFired, Job: t.job.Name, Tick: t.fire})
	}
}

// maxStartWait bounds how long after its instant a run that ended waits for
// the other runs of its wave to start (capped at a tenth of the TTL): a tick
// may wait inside its handling (a lost race, an overlap policy) for a long
// time without starting.
const maxStartWait = 50 * time.Millisecond

// A wave is the ticks that start at one instant: their runs start together
// when its gate opens, and the bookkeeping of runs that end (completion,
// records) waits until every tick of the wave has started its job or ended
// its handling (or maxStartWait passed), so that with a thousand ticks on one
// instant the starts come first, and a start that had to wait for a lock (or
// for its claim's answer) does not queue behind a thousand completions.
type wave struct {
	at        time.Time     // the instant
	gate      chan struct{} // closed at the instant, or at shutdown before it
	cancelled bool          // shut down before the instant; set before gate is closed
	started   chan struct{} // closed once its ticks have started
	waiting   atomic.Int64  // its ticks that have not started
	opened    atomic.Bool
	once      sync.Once
}

// open opens the gate, and bounds the wait for the starts.
func (w *wave) open(c locking.Clock, bound time.Duration) {
	w.opened.Store(true)
	close(w.gate)
	if w.waiting.Load() == 0 {
		w.release()
		return
	}
	c.AfterFunc(bound, w.release)
}

// release lets the runs that ended go on.
func (w *wave) release() { w.once.Do(func() { close(w.started) }) }

// markStarted counts, once, a tick of its wave as started: its job started,
// or its handling ended, or the replica shut down before the instant.
func (t *tick) markStarted() {
	if t.started.CompareAndSwap(false, true) && t.wave.waiting.Add(-1) == 0 && t.wave.opened.Load() {
		t.wave.release()
	}
}

type tickKey struct{}

// noteStarted notes, in a run about to call its job or in the handling of a
// tick that has no job to start here (lost), that the tick of ctx (if it is
// one of a wave) started.
func (s *Scheduler) noteStarted(ctx context.Context) {
	if t, ok := ctx.Value(tickKey{}).(*tick); ok {
		t.markStarted()
	}
}

// afterStarts waits, in a run that ended, until the other ticks of its wave
// (if it has one) started.
func (s *Scheduler) afterStarts(ctx context.Context) {
	if t, ok := ctx.Value(tickKey{}).(*tick); ok {
		<-t.wave.started
	}
}

// runStack is about the stack that handling a tick takes below start: its
// handling, the run, the job's call, and the completion through the Locker to
// the backend. The deepest frames, in a CPU profile of FirePrecision, need a
// 16 KiB stack; a goroutine starts with 8 KiB.
const runStack = 12 << 10

// waitGate waits until w's gate opens and reports whether the instant came
// (false: shutdown came first). It waits on the gate alone, not also on the
// context that a thousand ticks share. Its frame holds runStack bytes, so
// that the goroutine's stack grows to what the tick's handling needs while it
// waits, when the stack is shallow and cheap to copy, and is not shrunk by a
// collection meanwhile (it is in use). Otherwise it grows twice during the
// run, each time copying and adjusting every frame of a deep stack: a fifth
// of the CPU time of a thousand ticks, measured. (More than runStack would
// grow it to 32 KiB instead.)
//
//go:noinline
func waitGate(w *wave) bool {
	var pad [runStack]byte
	<-w.gate
	// pad is all zero: reading it keeps it, and the stack it takes, until here.
	return !w.cancelled && pad[len(pad)-1] == 0
}

// runFrames is about the stack that start, handle, run, overlap and
// untilInstant take above the place where a run prepared ahead waits for its
// instant (their frames, as compiled, are about 4.5 KiB).
const runFrames = 4 << 10

// waitGateInRun is waitGate for a run prepared ahead of its instant: it waits
// deeper in the stack, so it holds runFrames bytes less, and the stack grows to
// the same 16 KiB.
//
//go:noinline
func waitGateInRun(w *wave) bool {
	var pad [runStack - runFrames]byte
	<-w.gate
	return !w.cancelled && pad[len(pad)-1] == 0
}

// start takes part in a claimed tick with its claim's outcome.
//
// A tick whose claim was answered ahead of its instant (the usual case) is
// handled at once. If it was won, its run is prepared (the contexts, the
// overlap guard claimed ahead), and only its job waits for the instant
// (untilInstant): when a thousand ticks start at one instant, each goroutine
// the instant wakes then has little to do before its job, and the last job
// starts about as soon after the instant as with bare robfig/cron. If it was
// lost, the wait for its runner starts at once, and the instant wakes nothing
// (with three replicas, two of every three ticks). If the backend was
// unavailable, the claim is tried again at the instant.
//
// If the replica shuts down before the instant, the tick is released
// untouched, as if it had never been claimed.
func (s *Scheduler) start(ctx context.Context, t *tick, first *claimed) {
	defer t.markStarted() // if its job did not start
	first.timed, first.late = true, max(0, first.answered.Sub(t.at))
	if first.lease != nil && t.job.Overlap == OverlapSkip {
		// Won: take the job's running key now too (see claimAhead), unless
		// the batch that claimed the tick tried already.
		if first.runTried {
			t.running = first.running
		} else if g, err := s.locker.Claim(ctx, locking.Key{Scope: t.job.Name, Name: runningName}, s.o.TTL); err == nil {
			t.running = g
		}
		defer func() {
			if t.running != nil { // not used by the run (shutdown, skew, deadline)
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.TTL)
				_ = t.running.Release(rctx)
				cancel()
			}
		}()
	}
	tctx := context.WithValue(ctx, tickKey{}, t)
	if first.lease != nil || errors.Is(first.err, locking.ErrHeld) || errors.Is(first.err, locking.ErrDone) {
		s.handle(tctx, t.job, t.fire, true, first)
		return
	}
	if !s.untilInstant(tctx, nil) {
		return
	}
	s.handle(tctx, t.job, t.fire, true, first)
}

// untilInstant waits, in the handling of a tick that fireDue started ahead of
// its instant, until the instant comes, and emits EventFired; it returns at
// once if the instant came already, or if ctx is not a tick's. It reports
// false if the replica shut down before the instant: then it released lease
// (if not nil), untouched, as if it had never been claimed.
func (s *Scheduler) untilInstant(ctx context.Context, lease *locking.Lease) bool {
	t, ok := ctx.Value(tickKey{}).(*tick)
	if !ok || t.reached {
		return true
	}
	t.reached = true // only the tick's own goroutine reads and writes it
	var came bool
	if lease == nil {
		came = waitGate(t.wave)
	} else {
		came = waitGateInRun(t.wave)
	}
	if !came {
		if lease != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.TTL)
			_ = lease.Release(rctx)
			cancel()
			s.status.drop(runKey{t.job.Name, t.fire.UTC()})
		}
		return false
	}
	s.fired(t)
	return true
}

// claimedGuard returns, once, the running key that the tick of ctx claimed
// ahead of its instant, if it did.
func claimedGuard(ctx context.Context) *locking.Lease {
	t, ok := ctx.Value(tickKey{}).(*tick)
	if !ok || t.running == nil {
		return nil
	}
	g := t.running
	t.running = nil
	return g
}

// startAt is when this replica starts racing for a tick: its instant plus the
// job's deterministic jitter.
func (s *Scheduler) startAt(j *Job, fire time.Time) time.Time {
	if j.Jitter <= 0 {
		return fire
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(j.Name + "@" + TickName(fire)))
	return fire.Add(time.Duration(h.Sum64() % uint64(j.Jitter)))
}

// catchUpOf is the catch-up of a job's ticks that fell before this replica
// could fire them.
type catchUpOf struct {
	job    *Job
	missed []time.Time // oldest first
	// claims[k] is the claim of missed[len(missed)-len(claims)+k]: the ticks
	// the misfire policy runs (run_all: every one; run_latest: the newest).
	claims  []*claimed
	claimed chan struct{} // if not nil, closed once claims are made
}

// toRun is how many of the newest missed ticks c's misfire policy runs.
func (c *catchUpOf) toRun() int {
	switch c.job.Misfire {
	case MisfireRunAll:
		return len(c.missed)
	case MisfireRunLatest:
		return 1
	}
	return 0
}

// claimCatchUps claims the missed ticks that the catch-ups cs run, each job's
// oldest first: the k-th tick to run of every job goes in the k-th batch, sent
// once the batch before it returned (the claims of one batch are not ordered),
// so that a job's fencing tokens rise with its ticks.
func (s *Scheduler) claimCatchUps(ctx context.Context, cs []catchUpOf) {
	for i := range cs {
		cs[i].claims = make([]*claimed, cs[i].toRun())
	}
	for k := 0; ; k++ {
		var keys []locking.Key
		var into []**claimed
		for i := range cs {
			c := &cs[i]
			if k < len(c.claims) {
				fire := c.missed[len(c.missed)-len(c.claims)+k]
				keys = append(keys, locking.Key{Scope: c.job.Name, Name: TickName(fire)})
				into = append(into, &c.claims[k])
			}
		}
		if len(keys) == 0 {
			break
		}
		for lo := 0; lo < len(keys); lo += batchSize {
			hi := min(lo+batchSize, len(keys))
			leases, errs := s.locker.ClaimBatch(ctx, keys[lo:hi], s.o.TTL)
			for n := range leases {
				*into[lo+n] = &claimed{lease: leases[n], err: errs[n]}
			}
		}
	}
	for _, c := range cs {
		if c.claimed != nil {
			close(c.claimed)
		}
	}
}

// catchUp applies c's misfire policy to its ticks, oldest first, with the
// claims that claimCatchUps made.
func (s *Scheduler) catchUp(ctx context.Context, c catchUpOf) {
	j, missed := c.job, c.missed
	s.emit(Event{Kind: EventCatchUp, Job: j.Name, Tick: missed[len(missed)-1], Detail: fmt.Sprint(len(missed), " ticks")})
	run := len(missed) - len(c.claims) // the first tick to run
	defer func() {
		// Claims not handled (shutdown): released, as if never made.
		for _, cl := range c.claims {
			if cl != nil && cl.lease != nil {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.TTL)
				_ = cl.lease.Release(rctx)
				cancel()
			}
		}
	}()
	// The ticks it runs first, so that the newest starts as early as it can.
	for k := range c.claims {
		first := c.claims[k]
		c.claims[k] = nil
		if s.handle(ctx, j, missed[run+k], true, first); ctx.Err() != nil {
			return
		}
	}
	// Then the older ones are recorded as missed, unless some replica ran them;
	// but only once their starting deadline has passed: until then a replica
	// may still be running one, or waiting to take it over from a runner that
	// died, and a "missed" record would take that tick from it.
	for _, fire := range missed[:run] {
		if wait := fire.Add(j.StartingDeadline).Sub(s.o.Clock.Now()); wait > 0 {
			if sleep(ctx, s.o.Clock, wait) != nil {
				return
			}
		}
		if s.handle(ctx, j, fire, false, nil); ctx.Err() != nil {
			return
		}
	}
}

// shutdown waits for running handlers, cancelling their jobs after the timeout.
func (s *Scheduler) shutdown() error {
	done := make(chan struct{})
	go func() { s.runs.Wait(); close(done) }()
	s.log.Info("shutting down; waiting for running jobs", zap.Duration("timeout", s.o.ShutdownTimeout))
	t := s.o.Clock.NewTimer(s.o.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
		s.log.Info("scheduler stopped")
		return nil
	case <-t.C():
	}
	s.log.Warn("shutdown timeout: cancelling running jobs")
	s.stopJobs(ErrShutdown)
	<-done
	s.log.Info("scheduler stopped")
	return nil
}

func (s *Scheduler) emit(e Event) {
	e.Replica = s.o.Replica
	s.observe(e)
	if s.o.Observe != nil {
		s.o.Observe(e)
	}
}

// tick is one pending fire in the dispatch queue.
type tick struct {
	job     *Job
	fire    time.Time       // the scheduled instant: the tick's name
	at      time.Time       // when to start racing (fire + jitter)
	claimAt time.Time       // when to claim it (see Scheduler.claimAt)
	wave    *wave           // the ticks that start together with it
	after   <-chan struct{} // if not nil, claimed once closed (a catch-up claimed the job's older ticks)
	running *locking.Lease  // the job's running key, claimed ahead with the tick (overlap skip)
	reached bool            // its handling waited for its instant (untilInstant)
	fired   atomic.Bool     // EventFired was emitted
	started atomic.Bool     // its job started, or its handling ended (markStarted)
}

// tickQueue is a min-heap of ticks by claim time, then start time.
type tickQueue []*tick

func (q tickQueue) Len() int { return len(q) }
func (q tickQueue) Less(i, j int) bool {
	a, b := q[i], q[j]
	if !a.claimAt.Equal(b.claimAt) {
		return a.claimAt.Before(b.claimAt)
	}
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	return a.job.Name < b.job.Name
}
func (q tickQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *tickQueue) Push(x any)   { *q = append(*q, x.(*tick)) }
func (q *tickQueue) Pop() any {
	old := *q
	n := len(old)
	x := old[n-1]
	old[n-1] = nil
	*q = old[:n-1]
	return x
}
