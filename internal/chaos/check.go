package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/oncecron/oncecron/locking"
)

// Report is the outcome of one Run.
//
// What is checked, for the ticks (job, instant) that fell between the end of
// the warm-up and 3s before the replicas were stopped:
//
//   - No tick is completed twice: at most one record with outcome succeeded
//     or failed per tick. (Violation.)
//   - A completed tick's record carries the highest token any run of that
//     tick started with, and names a run that did start (a start line with
//     that replica and token). (Violation.)
//   - No token is given to two runs: tokens are unique per job. (Violation.)
//   - A tick started more than once (a duplicate) is explained only when
//     every later run has a higher token and attempt ≥ 2 and the run before
//     it was hit, between its start and the later start, by a fault that
//     takes a lease away: its replica killed, paused past the TTL or
//     partitioned, or the backend restarted (its effects counted until 5s
//     after it answers again). Anything else is an unexplained duplicate.
//     (Violation.)
//   - Tokens rise per job in the order runs started: a run that started more
//     than 500ms after another run of the job but has a lower token is an
//     inversion, explained only when its own replica was paused or cut off
//     (or the backend down) between its tick and its start. (Unexplained:
//     violation.)
//   - Every tick that fell while the backend was up and at least one
//     replica healthy was handled: it has a start line or a record with
//     outcome succeeded, failed, skipped or abandoned. (Violation: a miss.)
//     The windows are conservative: a replica counts as unhealthy from
//     500ms before its fault until 3s after a restart, 1s after a SIGCONT
//     and TTL+1s after its partition healed; the backend counts as down
//     from 1s before a restart until 5s after it answers again. Ticks that
//     fell outside the healthy windows and were not run are counted as
//     excused.
//   - A run in flight on a replica when it was killed, paused past the TTL
//     or partitioned, or when the backend restarted, is completed or taken
//     over: the takeover time is from the fault to the next start of the
//     same tick (elsewhere, or on the restarted replica). A tick neither
//     completed nor run again is a violation, unless the server could free
//     the runner's key (TTL after the fault, or after the restart; the
//     session timeout on zookeeper; a backend restart before then starts that
//     clock again) only within 1.5s of the tick's starting deadline, after
//     which no takeover is allowed: those are counted as LateTakeover.
type Report struct {
	Backend string
	Seed    uint64
	Dir     string
	Took    time.Duration

	Ticks  int            // ticks checked
	Runs   int            // runs started in the checked ticks
	Faults map[string]int // faults injected, by kind
	// FaultLog lists the faults injected (also in Dir/faults.txt).
	FaultLog []Fault
	Skipped  int // ticks completed as skipped (overlap: skip)

	DupExplained   int
	DupUnexplained int
	Misses         int             // ticks not handled although a replica was healthy and the backend up
	Excused        int             // ticks not handled that fell outside the healthy windows
	MissedRecords  int             // records with outcome missed, in the checked ticks
	LostRecords    int             // records with outcome lost
	Incomplete     int             // ticks started but never completed (no succeeded/failed/skipped record)
	Inversions     int             // token inversions explained by a pause or cut-off of the late runner
	Takeovers      []time.Duration // fault to the tick running again, every kind of fault
	KillTakeovers  []time.Duration // the same after a kill -9 of the runner (the failover goal: TTL + 1s)
	NoTakeover     int             // in-flight runs hit by a fault whose tick was never run again nor completed
	LateTakeover   int             // the same, where the key was freed too close to the starting deadline to expect one

	Violations []string
}

// OK reports whether the run found no violation.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

func (r *Report) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

type checkInput struct {
	runs     []*run
	records  []locking.Record
	faults   []Fault
	replicas []string
	from, to time.Time // the ticks checked
	started  time.Time // when the replicas were started
	// hold is how long the server keeps a key of a replica that stopped
	// renewing: the TTL, or the ZooKeeper session timeout.
	hold time.Duration
	// deadline is the jobs' starting deadline.
	deadline time.Duration
}

type window struct{ from, to time.Time }

func (w window) has(t time.Time) bool { return !t.Before(w.from) && !t.After(w.to) }

// leaseTaking reports whether a fault of kind can take a running lease away.
func leaseTaking(kind string) bool {
	return kind == FaultKill || kind == FaultPauseLong || kind == FaultPartition || kind == FaultBackend
}

// backendAftermath is how long after a backend restart the backend still
// counts as down: the server answers, but the clients' sessions and
// keep-alives are still recovering (observed on etcd: keep-alives stalled
// for ~2s after a restart, so leases granted then were lost without a
// renewal).
const backendAftermath = 5 * time.Second

// until is when the fault's direct effects end.
func (f Fault) until() time.Time {
	if f.Kind == FaultBackend {
		return f.End.Add(backendAftermath)
	}
	return f.End
}

func (f Fault) hits(replica string) bool { return f.Kind == FaultBackend || f.Replica == replica }

func check(rep *Report, in checkInput) {
	for _, f := range in.faults {
		rep.Faults[f.Kind]++
	}
	inRange := func(t time.Time) bool { return !t.Before(in.from) && !t.After(in.to) }

	// Healthy windows.
	unhealthy := map[string][]window{}
	var backendDown []window
	for _, f := range in.faults {
		switch f.Kind {
		case FaultBackend:
			backendDown = append(backendDown, window{f.Start.Add(-time.Second), f.until()})
		case FaultKill:
			unhealthy[f.Replica] = append(unhealthy[f.Replica], window{f.Start.Add(-500 * time.Millisecond), f.End.Add(3 * time.Second)})
		case FaultPauseShort, FaultPauseLong:
			unhealthy[f.Replica] = append(unhealthy[f.Replica], window{f.Start.Add(-500 * time.Millisecond), f.End.Add(time.Second)})
		case FaultPartition:
			unhealthy[f.Replica] = append(unhealthy[f.Replica], window{f.Start.Add(-500 * time.Millisecond), f.End.Add(TTL + time.Second)})
		}
	}
	expected := func(t time.Time) bool {
		for _, w := range backendDown {
			if w.has(t) {
				return false
			}
		}
		for _, rp := range in.replicas {
			ok := true
			for _, w := range unhealthy[rp] {
				if w.has(t) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
		return false
	}

	// Index runs and records by tick.
	runsOf := map[tickKey][]*run{}
	byJob := map[string][]*run{}
	for _, r := range in.runs {
		if r.start.IsZero() {
			rep.violate("run %s has an end line but no start line", r)
			continue
		}
		byJob[r.job] = append(byJob[r.job], r)
		if inRange(r.tick) {
			runsOf[r.key()] = append(runsOf[r.key()], r)
			rep.Runs++
		}
	}
	recsOf := map[tickKey][]locking.Record{}
	for _, rec := range in.records {
		t, err := time.Parse(time.RFC3339Nano, rec.Key.Name)
		if err != nil {
			continue // not a tick (the job's running/buffered/cancel keys)
		}
		k := tickKey{rec.Key.Scope, t}
		if rec.Outcome == locking.OutcomeLost {
			rep.LostRecords++
		}
		if !inRange(t) {
			continue
		}
		recsOf[k] = append(recsOf[k], rec)
	}

	// Tokens unique per job.
	for job, rs := range byJob {
		seen := map[uint64]*run{}
		for _, r := range rs {
			if o := seen[r.token]; o != nil {
				rep.violate("token %d of job %s given to two runs: %s and %s", r.token, job, o, r)
			}
			seen[r.token] = r
		}
	}

	// Every tick in range.
	for _, js := range jobSpecs {
		first := in.from.Truncate(js.every)
		if first.Before(in.from) {
			first = first.Add(js.every)
		}
		for t := first; !t.After(in.to); t = t.Add(js.every) {
			k := tickKey{js.name, t.UTC()}
			rep.Ticks++
			runs := runsOf[k]
			sort.Slice(runs, func(i, j int) bool { return runs[i].token < runs[j].token })
			recs := recsOf[k]
			var completed []locking.Record
			handled := len(runs) > 0
			for _, rec := range recs {
				switch rec.Outcome {
				case locking.OutcomeSucceeded, locking.OutcomeFailed:
					completed = append(completed, rec)
					handled = true
				case locking.OutcomeSkipped:
					rep.Skipped++
					handled = true
				case locking.OutcomeAbandoned:
					handled = true
				case locking.OutcomeMissed:
					rep.MissedRecords++
				}
			}
			if len(completed) > 1 {
				var s []string
				for _, c := range completed {
					s = append(s, fmt.Sprintf("%s by %s token %d attempt %d", c.Outcome, c.Replica, c.Token, c.Attempt))
				}
				rep.violate("tick %s completed %d times: %s", k, len(completed), strings.Join(s, "; "))
			}
			if len(completed) > 0 && len(runs) > 0 {
				c := completed[len(completed)-1]
				top := runs[len(runs)-1]
				if c.Token != top.token {
					rep.violate("tick %s completed by %s with token %d, but a run started with the higher token %d: %s",
						k, c.Replica, c.Token, top.token, top)
				}
				if !slices.ContainsFunc(runs, func(r *run) bool { return r.token == c.Token && r.replica == c.Replica }) {
					rep.violate("tick %s completed by %s with token %d, but no run started there with that token", k, c.Replica, c.Token)
				}
			}
			if len(runs) > 0 && len(completed) == 0 && !slices.ContainsFunc(recs, func(r locking.Record) bool {
				return r.Outcome == locking.OutcomeSkipped || r.Outcome == locking.OutcomeAbandoned
			}) {
				rep.Incomplete++
			}
			if !handled {
				if expected(t) {
					rep.Misses++
					rep.violate("tick %s fell while the backend was up and a replica healthy, but no replica ran it (records: %s)", k, describe(recs))
				} else {
					rep.Excused++
				}
			}
			// Duplicates.
			for i := 1; i < len(runs); i++ {
				prev, cur := runs[i-1], runs[i]
				why := ""
				switch {
				case cur.token == prev.token:
					why = "same token"
				case cur.attempt < 2:
					why = fmt.Sprintf("attempt %d", cur.attempt)
				default:
					explained := false
					for _, f := range in.faults {
						if leaseTaking(f.Kind) && f.hits(prev.replica) &&
							!f.Start.After(cur.start) && !f.until().Before(prev.start.Add(-time.Second)) {
							explained = true
							break
						}
					}
					if !explained {
						why = "no fault took the first runner's lease"
					}
				}
				if why == "" {
					rep.DupExplained++
				} else {
					rep.DupUnexplained++
					rep.violate("tick %s started twice (%s): %s, then %s", k, why, prev, cur)
				}
			}
		}
	}

	// Token order per job.
	for job, rs := range byJob {
		sort.Slice(rs, func(i, j int) bool { return rs[i].start.Before(rs[j].start) })
		var maxRun *run
		for _, r := range rs {
			if maxRun != nil && r.token < maxRun.token && r.start.Sub(maxRun.start) > 500*time.Millisecond && inRange(r.tick) {
				explained := false
				for _, f := range in.faults {
					if f.Kind != FaultKill && f.hits(r.replica) && !f.Start.After(r.start) && !f.until().Before(r.tick.Add(-time.Second)) {
						explained = true
						break
					}
				}
				if explained {
					rep.Inversions++
				} else {
					rep.violate("job %s: token order: %s started %v after %s, with a lower token",
						job, r, r.start.Sub(maxRun.start).Round(time.Millisecond), maxRun)
				}
			}
			if maxRun == nil || r.token > maxRun.token {
				maxRun = r
			}
		}
	}

	// Takeovers.
	for _, f := range in.faults {
		if !leaseTaking(f.Kind) {
			continue
		}
		for _, r := range in.runs {
			if !f.hits(r.replica) || r.start.After(f.Start) || !inRange(r.tick) {
				continue
			}
			if !r.end.IsZero() && r.end.Before(f.Start.Add(-time.Second)) {
				continue // ended well before: its completion was most likely stored
			}
			k := r.key()
			var next *run
			for _, o := range runsOf[k] {
				if o.token > r.token && o.start.After(f.Start) && (next == nil || o.start.Before(next.start)) {
					next = o
				}
			}
			if next != nil {
				rep.Takeovers = append(rep.Takeovers, next.start.Sub(f.Start))
				if f.Kind == FaultKill && next.replica != r.replica {
					rep.KillTakeovers = append(rep.KillTakeovers, next.start.Sub(f.Start))
				}
				continue
			}
			done := slices.ContainsFunc(recsOf[k], func(rec locking.Record) bool {
				return rec.Outcome == locking.OutcomeSucceeded || rec.Outcome == locking.OutcomeFailed ||
					rec.Outcome == locking.OutcomeSkipped
			})
			// The server frees the key hold after the fault began (after the
			// restart, for the backend: leases and sessions restart their
			// clocks); a survivor may take the tick over only before its
			// starting deadline.
			freed := f.Start.Add(in.hold)
			if f.Kind == FaultBackend {
				freed = f.End.Add(in.hold)
			}
			// A backend restart before the key was freed starts its clock
			// again (leases and sessions get their whole TTL back).
			for _, g := range in.faults {
				if g.Kind == FaultBackend && g.Start.Before(freed) && g.End.After(f.Start) {
					freed = later(freed, g.End.Add(in.hold))
				}
			}
			if !done && !freed.Add(1500*time.Millisecond).Before(r.tick.Add(in.deadline)) {
				rep.LateTakeover++
				continue
			}
			if !done {
				rep.NoTakeover++
				rep.violate("run %s was in flight when %s hit (at %s) and its tick was neither completed nor taken over (records: %s)",
					r, f.Kind, f.Start.Format("15:04:05.000"), describe(recsOf[k]))
			}
		}
	}
	slices.Sort(rep.Takeovers)
	slices.Sort(rep.KillTakeovers)
}

func describe(recs []locking.Record) string {
	if len(recs) == 0 {
		return "none"
	}
	var s []string
	for _, r := range recs {
		e := ""
		if r.Error != "" {
			e = ": " + r.Error
		}
		s = append(s, fmt.Sprintf("%s by %s token %d attempt %d%s", r.Outcome, r.Replica, r.Token, r.Attempt, e))
	}
	return strings.Join(s, "; ")
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(p * float64(len(ds)-1))
	return ds[i]
}

// Table formats reports as a summary table, one row per report. Columns:
// ticks checked; runs started; faults by kind (kill, pause shorter and
// longer than the TTL, partition, backend restart); duplicate starts
// explained/unexplained; misses (violations); ticks not run outside the
// healthy windows (excused); ticks started but never completed; in-flight
// runs whose takeover would have fallen past the starting deadline; records
// with outcome lost and skipped; takeover time (fault to the tick running
// again) median and maximum, over every fault and after a kill -9 of the
// runner alone (taken over on another replica).
func Table(reps []Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %10s %6s %5s  %-22s %10s %6s %6s %6s %5s %5s %5s  %-16s %-16s %s\n",
		"backend", "seed", "ticks", "runs", "faults k/ps/pl/cut/be", "dup ok/bad", "misses", "excus", "incmpl", "late", "lost", "skip", "takeover p50/max", "after kill", "result")
	for _, r := range reps {
		faults := fmt.Sprintf("%d/%d/%d/%d/%d", r.Faults[FaultKill], r.Faults[FaultPauseShort], r.Faults[FaultPauseLong],
			r.Faults[FaultPartition], r.Faults[FaultBackend])
		tk, ktk := p50max(r.Takeovers), p50max(r.KillTakeovers)
		result := "ok"
		if !r.OK() {
			result = fmt.Sprintf("FAIL (%d violations)", len(r.Violations))
		}
		fmt.Fprintf(&b, "%-10s %10d %6d %5d  %-22s %10s %6d %6d %6d %5d %5d %5d  %-16s %-16s %s\n",
			r.Backend, r.Seed, r.Ticks, r.Runs, faults, fmt.Sprintf("%d/%d", r.DupExplained, r.DupUnexplained),
			r.Misses, r.Excused, r.Incomplete, r.LateTakeover, r.LostRecords, r.Skipped, tk, ktk, result)
	}
	return b.String()
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// p50max formats the median and the maximum of sorted durations, or "-".
func p50max(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fs/%.1fs", percentile(ds, 0.5).Seconds(), ds[len(ds)-1].Seconds())
}
