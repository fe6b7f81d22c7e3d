package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/oncecron/oncecron/config"
)

// FailoverOptions configures Failover.
type FailoverOptions struct {
	// Backend is redis, etcd or zookeeper.
	Backend string
	// Kills is how many times the runner of a tick is killed (default 5).
	Kills int
	// Scheduler is the path of a built scheduler binary (see Build).
	Scheduler string
	// Programs names the server programs (see ProgramsFromEnv).
	Programs Programs
	// TTL is lock.ttl of the table (default TTL, 3s).
	TTL time.Duration
	// ZKSessionTimeout is backend.zookeeper.session_timeout (default
	// ZKSessionTimeout, the TTL); at least TTL.
	ZKSessionTimeout time.Duration
	// Every is the period of the long job (default 5s); each run takes 8s.
	Every time.Duration
	// Dir and Keep are as in Options.
	Dir  string
	Keep bool
	// Log receives progress lines (default: none).
	Log io.Writer
}

// FailoverReport is what Failover measured.
type FailoverReport struct {
	Backend string
	TTL     time.Duration
	// Hold is how long the server keeps a dead runner's key: the TTL, or the
	// session timeout on ZooKeeper.
	Hold  time.Duration
	Kills int
	// Takeovers are the times from each kill -9 of a tick's runner to the
	// start of the same tick on another replica, sorted.
	Takeovers []time.Duration
	// NoTakeover counts kills after which no other replica started the tick
	// within the wait (the starting deadline and then some).
	NoTakeover int
	Dir        string
	Took       time.Duration
}

// Goal is the takeover time the README aims at: TTL + 1s.
func (r FailoverReport) Goal() time.Duration { return r.TTL + time.Second }

// failoverJob runs longer than a takeover takes, so the kill lands mid-run.
const failoverJob = "long"

func failoverTable(backend, addr, dir string, o FailoverOptions) string {
	var b strings.Builder
	switch backend {
	case "redis":
		fmt.Fprintf(&b, "backend: {type: redis, redis: {addr: %q}}\n", addr)
	case "etcd":
		fmt.Fprintf(&b, "backend: {type: etcd, etcd: {endpoints: [%q], dial_timeout: 2s}}\n", addr)
	case "zookeeper":
		fmt.Fprintf(&b, "backend: {type: zookeeper, zookeeper: {servers: [%q], session_timeout: %s}}\n", addr, o.ZKSessionTimeout)
	}
	fmt.Fprintf(&b, "lock: {ttl: %s, namespace: failover}\nshutdown_timeout: %s\njobs:\n", o.TTL, shutdownTimeout)
	fmt.Fprintf(&b, "  - name: %s\n    schedule: \"@every %s\"\n    overlap: allow\n", failoverJob, o.Every)
	fmt.Fprintf(&b, "    command: [\"/bin/sh\", %q, %q, \"8\"]\n", filepath.Join(dir, "job.sh"), dir)
	return b.String()
}

// Failover measures takeover after kill -9 on one backend: it starts a
// private server and three replicas of `scheduler run` (directly connected,
// no proxy) with one job that fires every FailoverOptions.Every and runs 8s,
// writing start and end lines as in Run. Then, Kills times: it waits for a
// tick's first start line, kill -9s the replica that wrote it 500ms later,
// and waits for a start line of the same tick from another replica; the time
// from the kill to that start is a takeover. The killed replica is started
// again before the next tick is picked.
func Failover(ctx context.Context, o FailoverOptions) (rep FailoverReport, err error) {
	if o.Kills == 0 {
		o.Kills = 5
	}
	if o.TTL == 0 {
		o.TTL = TTL
	}
	if o.ZKSessionTimeout == 0 {
		o.ZKSessionTimeout = ZKSessionTimeout
	}
	if o.Every == 0 {
		o.Every = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Scheduler == "" {
		return rep, errors.New("chaos: FailoverOptions.Scheduler is empty (see Build)")
	}
	began := time.Now()
	r := &runner{o: Options{Backend: o.Backend, Scheduler: o.Scheduler, Programs: o.Programs, Log: o.Log}}
	r.log = func(format string, args ...any) {
		fmt.Fprintf(o.Log, "failover %s %7.2fs: %s\n", o.Backend, time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	rep = FailoverReport{Backend: o.Backend, TTL: o.TTL, Hold: o.TTL}
	if o.Backend == "zookeeper" {
		rep.Hold = o.ZKSessionTimeout
	}
	done, err := r.makeDir("oncecron-failover-"+o.Backend+"-", o.Dir)
	if err != nil {
		return rep, err
	}
	defer func() { done(o.Keep || err != nil || rep.NoTakeover > 0) }()
	rep.Dir = r.dir
	srvDir := filepath.Join(r.dir, "server")
	if err := os.MkdirAll(srvDir, 0o755); err != nil {
		return rep, err
	}
	if r.server, err = newServer(o.Backend, srvDir, o.Programs); err != nil {
		return rep, err
	}
	if err := r.server.start(); err != nil {
		return rep, err
	}
	defer func() {
		if serr := r.server.stop(syscall.SIGTERM); serr != nil && err == nil {
			err = serr
		}
	}()
	r.log("%s on %s; ttl %v, the server frees a dead runner's key after %v; %d kills", o.Backend, r.server.addr, o.TTL, rep.Hold, o.Kills)
	defer func() {
		for _, rp := range r.replicas {
			rp.stop(0)
		}
	}()
	for i := range 3 {
		name := string(rune('a' + i))
		rp := &replica{name: name, config: filepath.Join(r.dir, "table-"+name+".yaml"), logf: filepath.Join(r.dir, "replica-"+name+".log")}
		r.replicas = append(r.replicas, rp)
		if err := os.WriteFile(rp.config, []byte(failoverTable(o.Backend, r.server.addr, r.dir, o)), 0o644); err != nil {
			return rep, err
		}
		if err := r.startReplica(rp); err != nil {
			return rep, err
		}
	}
	ready := time.Now().Add(warmup)
	cfg, err := config.Parse("failover.yaml", []byte(failoverTable(o.Backend, "127.0.0.1:1", r.dir, o)))
	if err != nil {
		return rep, fmt.Errorf("chaos: parsing the failover table: %w", err)
	}
	wait := cfg.Jobs[0].StartingDeadline + rep.Hold + 5*time.Second
	for k := 0; k < o.Kills; k++ {
		tick := nextTick(ready, o.Every)
		first, err := r.awaitRun(ctx, tick, "", time.Time{}, time.Until(tick)+o.Every+10*time.Second)
		if err != nil {
			return rep, err
		}
		if first == nil {
			return rep, fmt.Errorf("chaos: tick %s did not start on any replica; see %s", tick.Format(time.RFC3339), r.dir)
		}
		victim := r.replicas[slices.IndexFunc(r.replicas, func(rp *replica) bool { return rp.name == first.replica })]
		if err := sleepCtx(ctx, time.Until(first.start.Add(500*time.Millisecond))); err != nil {
			return rep, err
		}
		killed := time.Now()
		if err := victim.kill(); err != nil {
			return rep, err
		}
		rep.Kills++
		next, err := r.awaitRun(ctx, tick, victim.name, killed, wait)
		if err != nil {
			return rep, err
		}
		if next == nil {
			rep.NoTakeover++
			r.log("kill %d: tick %s of %s, killed at %s: no takeover within %v",
				k+1, tick.Format(time.RFC3339), victim.name, killed.Format("15:04:05.000"), wait)
		} else {
			d := next.start.Sub(killed)
			rep.Takeovers = append(rep.Takeovers, d)
			r.log("kill %d: tick %s, runner %s killed at %s, taken over by %s after %v (token %d → %d)",
				k+1, tick.Format(time.RFC3339), victim.name, killed.Format("15:04:05.000"), next.replica,
				d.Round(time.Millisecond), first.token, next.token)
		}
		if err := r.startReplica(victim); err != nil {
			return rep, err
		}
		ready = time.Now().Add(2 * time.Second)
	}
	slices.Sort(rep.Takeovers)
	rep.Took = time.Since(began)
	return rep, nil
}

// nextTick returns the first multiple of every (since the epoch) after t.
func nextTick(t time.Time, every time.Duration) time.Time {
	return t.Truncate(every).Add(every).UTC()
}

// awaitRun polls the job's output until a run of tick starts on a replica
// other than not (any, if empty) after after, and returns it; nil after wait.
func (r *runner) awaitRun(ctx context.Context, tick time.Time, not string, after time.Time, wait time.Duration) (*run, error) {
	deadline := time.Now().Add(wait)
	for {
		runs, err := readRuns(r.dir, r.replicas)
		if err != nil {
			return nil, err
		}
		var found *run
		for _, x := range runs {
			if x.job == failoverJob && x.tick.Equal(tick) && x.replica != not && !x.start.IsZero() && x.start.After(after) &&
				(found == nil || x.start.Before(found.start)) {
				found = x
			}
		}
		if found != nil {
			return found, nil
		}
		if time.Now().After(deadline) {
			return nil, nil
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// FailoverTable formats failover reports as a Markdown table.
func FailoverTable(reps []FailoverReport) string {
	var b strings.Builder
	b.WriteString("| backend | kills | taken over | takeover p50 | max | goal (TTL + 1 s) | the server frees a dead runner's key after | goal |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range reps {
		p50, mx, verdict := "—", "—", "missed"
		if n := len(r.Takeovers); n > 0 {
			p50 = fmt.Sprintf("%.2f s", percentile(r.Takeovers, 0.5).Seconds())
			mx = fmt.Sprintf("%.2f s", r.Takeovers[n-1].Seconds())
			if r.NoTakeover == 0 && r.Takeovers[n-1] <= r.Goal() {
				verdict = "met"
			}
		}
		what := fmt.Sprintf("%v (lock.ttl)", r.Hold)
		if r.Backend == "zookeeper" {
			what = fmt.Sprintf("%v (session timeout)", r.Hold)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %v | %s | **%s** |\n", r.Backend, r.Kills, len(r.Takeovers), p50, mx, r.Goal(), what, verdict)
	}
	return b.String()
}
