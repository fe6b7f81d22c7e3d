package chaos

import (
	"context"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oncecron/oncecron/locking"
)

var (
	flagDuration = flag.Duration("chaos.duration", 30*time.Second, "how long faults are injected per backend")
	flagSeed     = flag.Uint64("chaos.seed", 20260101, "seed of the fault schedule")
	flagBackends = flag.String("chaos.backends", "redis,etcd,zookeeper", "backends to run, in order")
	flagKeep     = flag.Bool("chaos.keep", false, "keep every run's directory (it is kept anyway on a violation)")
)

// logWriter sends progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestChaosShort runs the chaos suite against each backend in turn, about
// 50s each with the default -chaos.duration, with a fixed seed. It needs the
// server programs that scripts/test.sh exports, and fails without them.
func TestChaosShort(t *testing.T) {
	backends := strings.Split(*flagBackends, ",")
	progs, err := ProgramsFromEnv(backends...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(backends))*(*flagDuration+3*time.Minute))
	defer cancel()
	bin, err := Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var reps []Report
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			rep, err := Run(ctx, Options{Backend: b, Duration: *flagDuration, Seed: *flagSeed, Scheduler: bin,
				Programs: progs, Keep: *flagKeep, Log: logWriter{t}})
			if err != nil {
				t.Fatalf("chaos run on %s (seed %d) could not be carried out: %v", b, *flagSeed, err)
			}
			reps = append(reps, rep)
			for _, v := range rep.Violations {
				t.Errorf("%s (seed %d): %s", b, *flagSeed, v)
			}
			if !rep.OK() {
				t.Errorf("%s: files kept in %s", b, rep.Dir)
			}
		})
	}
	t.Logf("chaos summary (seed %d):\n%s", *flagSeed, Table(reps))
}

// TestCheck feeds the checker a made-up history with one violation of each
// kind and one explained duplicate, without servers.
func TestCheck(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return base.Add(time.Duration(s * float64(time.Second))) }
	rec := func(job string, tick float64, out locking.Outcome, replica string, token uint64) locking.Record {
		return locking.Record{Key: locking.Key{Scope: job, Name: at(tick).Format(time.RFC3339)}, Outcome: out, Replica: replica, Token: token}
	}
	var runs []*run
	var recs []locking.Record
	// Every tick of every job from 10s to 30s ran once on a and completed,
	// except as changed below.
	for _, js := range jobSpecs {
		for s := 10.0; s <= 30; s += js.every.Seconds() {
			if js.name == "quick" && (s == 20 || s == 21 || s == 22 || s == 23) || js.name == "slow" && s == 25 {
				continue
			}
			// Tokens rise with the start time: a hundredth of a second each.
			token := uint64(s*100) + 1
			runs = append(runs, &run{job: js.name, tick: at(s), token: token, replica: "a", attempt: 1, start: at(s + 0.01), end: at(s + 0.3)})
			recs = append(recs, rec(js.name, s, locking.OutcomeSucceeded, "a", token))
		}
	}
	// quick@20: completed twice.
	runs = append(runs, &run{job: "quick", tick: at(20), token: 2001, replica: "b", attempt: 1, start: at(20.01)})
	recs = append(recs, rec("quick", 20, locking.OutcomeSucceeded, "b", 2001), rec("quick", 20, locking.OutcomeSucceeded, "b", 2001))
	// quick@21: started on b, which was killed; taken over by c: explained.
	runs = append(runs, &run{job: "quick", tick: at(21), token: 2101, replica: "b", attempt: 1, start: at(21.01)},
		&run{job: "quick", tick: at(21), token: 2450, replica: "c", attempt: 2, start: at(24.5), end: at(24.8)})
	recs = append(recs, rec("quick", 21, locking.OutcomeSucceeded, "c", 2450))
	// quick@22: started twice without a fault.
	runs = append(runs, &run{job: "quick", tick: at(22), token: 2201, replica: "a", attempt: 1, start: at(22.01)},
		&run{job: "quick", tick: at(22), token: 2250, replica: "c", attempt: 2, start: at(22.5), end: at(22.8)})
	recs = append(recs, rec("quick", 22, locking.OutcomeSucceeded, "c", 2250))
	// quick@23: never run.
	// slow@25: started on b, which was killed; the backend restarted before
	// b's key expired, so the key was freed (restart + TTL) too close to the
	// deadline for a takeover: recorded missed, and excused.
	runs = append(runs, &run{job: "slow", tick: at(25), token: 2501, replica: "b", attempt: 1, start: at(25.01)})
	recs = append(recs, rec("slow", 25, locking.OutcomeMissed, "c", 3600))
	faults := []Fault{{Kind: FaultKill, Replica: "b", Start: at(21.2), End: at(23)},
		{Kind: FaultKill, Replica: "b", Start: at(25.5), End: at(26.5)},
		{Kind: FaultBackend, Start: at(27), End: at(31)}}

	rep := Report{Faults: map[string]int{}}
	check(&rep, checkInput{runs: runs, records: recs, faults: faults, replicas: []string{"a", "b", "c"},
		from: at(10), to: at(30), hold: TTL, deadline: 10 * time.Second})
	want := []string{"quick@2026-01-01T00:00:20Z completed 2 times", "quick@2026-01-01T00:00:22Z started twice",
		"quick@2026-01-01T00:00:23Z fell while"}
	if len(rep.Violations) != len(want) {
		t.Errorf("got %d violations, want %d:\n%s", len(rep.Violations), len(want), strings.Join(rep.Violations, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(rep.Violations, func(v string) bool { return strings.Contains(v, w) }) {
			t.Errorf("no violation mentions %q:\n%s", w, strings.Join(rep.Violations, "\n"))
		}
	}
	if rep.DupExplained != 1 || rep.DupUnexplained != 1 || rep.Misses != 1 || rep.LateTakeover != 2 {
		// slow@25 counts once per fault that hit it: the kill and the restart.
		t.Errorf("duplicates %d/%d, misses %d, late takeovers %d; want 1/1, 1, 2", rep.DupExplained, rep.DupUnexplained, rep.Misses, rep.LateTakeover)
	}
	if len(rep.Takeovers) != 1 || rep.Takeovers[0] != 3300*time.Millisecond {
		t.Errorf("takeovers %v, want [3.3s]", rep.Takeovers)
	}
	if len(rep.KillTakeovers) != 1 || rep.KillTakeovers[0] != 3300*time.Millisecond {
		t.Errorf("takeovers after a kill %v, want [3.3s]", rep.KillTakeovers)
	}
}
