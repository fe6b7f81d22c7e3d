// Package chaos is oncecron's chaos suite: it runs the real scheduler binary
// as several replicas against a private backend server, injects faults on a
// schedule drawn from a seed, and then checks the failure semantics the
// README promises from what the jobs wrote and what the backend recorded.
//
// For one backend, Run:
//
//   - starts a private server (redis, etcd or zookeeper) from the programs
//     named by ONCECRON_TEST_REDIS_SERVER, ONCECRON_TEST_ETCD_SERVER,
//     ONCECRON_TEST_ZK_CLASSPATH and ONCECRON_TEST_JAVA, in a directory of
//     its own, keeping its data across restarts;
//   - starts Options.Replicas replicas (default 3) of `scheduler run`, each
//     talking to the server through its own loopback TCP proxy, with a table
//     of program jobs firing every second or two (lock.ttl 3s, zookeeper
//     session_timeout 3s, the TTL) that append "start"/"end" lines with the job, the
//     tick, the token, the replica, the attempt and the wall time to a file
//     per replica;
//   - injects faults one at a time, drawn with math/rand/v2 from Options.Seed:
//     kill -9 of a replica and a restart after a while, SIGSTOP/SIGCONT of a
//     replica for less than the TTL and for more, a restart of the backend
//     server over its data (SIGTERM, then start), and a partition of one
//     replica (its proxy black-holes all traffic) for longer than the TTL;
//   - lets the system settle, stops the replicas with SIGTERM, reads the
//     run records back through the backend, and checks them (see Report).
//
// Every process it starts it stops by PID, also on error or cancellation;
// on Linux the kernel kills them too if the caller dies (Pdeathsig).
package chaos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oncecron/oncecron/config"
	"github.com/oncecron/oncecron/internal/faultnet"
)

// Fault kinds.
const (
	FaultKill       = "kill"        // kill -9 a replica, restart it later
	FaultPauseShort = "pause-short" // SIGSTOP a replica for less than the TTL
	FaultPauseLong  = "pause-long"  // SIGSTOP a replica for more than the TTL
	FaultPartition  = "partition"   // black-hole a replica's proxy for more than the TTL
	FaultBackend    = "backend"     // restart the backend server over its data
)

// FaultKinds lists the fault kinds in the order reports show them.
var FaultKinds = []string{FaultKill, FaultPauseShort, FaultPauseLong, FaultPartition, FaultBackend}

// Timing of the system under test.
const (
	TTL              = 3 * time.Second // lock.ttl of the table
	ZKSessionTimeout = 3 * time.Second // = TTL: a dead runner's session, and so its claim, ends within the TTL
	shutdownTimeout  = 6 * time.Second
	warmup           = 4 * time.Second // after the replicas started, before the first checked tick
	settle           = 9 * time.Second // after the last fault, before the replicas are stopped
	maxFaults        = 10000
)

// Options configures Run.
type Options struct {
	// Backend is redis, etcd or zookeeper.
	Backend string
	// Duration is how long faults are injected (at least one of each kind
	// is injected, however short it is). The whole run takes about 25s more.
	Duration time.Duration
	// Seed drives the fault schedule.
	Seed uint64
	// Scheduler is the path of a built scheduler binary (see Build).
	Scheduler string
	// Programs names the server programs (see ProgramsFromEnv).
	Programs Programs
	// Dir is where the run keeps its files (server data and log, replica
	// logs, job output); empty: a new temporary directory, removed after a
	// run without violations unless Keep is set.
	Dir  string
	Keep bool
	// Replicas is the number of replicas (default 3).
	Replicas int
	// Log receives progress lines (default: none).
	Log io.Writer
}

// Fault is one injected fault.
type Fault struct {
	Kind    string
	Replica string // empty for FaultBackend
	Start   time.Time
	// End is when the fault was lifted: the replica restarted or resumed,
	// the proxy healed, the server answering again.
	End time.Time
}

// Build builds cmd/scheduler into dir and returns the binary's path. It must
// run inside the oncecron module (a test's or the repository's directory).
func Build(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	out := filepath.Join(dir, "scheduler")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "github.com/oncecron/oncecron/cmd/scheduler")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("chaos: go build ./cmd/scheduler: %v\n%s", err, b)
	}
	return out, nil
}

// jobSpec is one job of the table the replicas run.
type jobSpec struct {
	name    string
	every   time.Duration
	sleep   string // how long each run takes
	overlap string
}

var jobSpecs = []jobSpec{
	{name: "quick", every: time.Second, sleep: "0.3", overlap: "allow"},
	{name: "slow", every: time.Second, sleep: "2.5", overlap: "allow"},     // kills land mid-run
	{name: "guarded", every: 2 * time.Second, sleep: "3", overlap: "skip"}, // the default overlap policy
}

const jobScript = `#!/bin/sh
# chaos job: $1 = output directory, $2 = seconds to run
out="$1/out-$ONCECRON_REPLICA.txt"
echo "start $ONCECRON_JOB $ONCECRON_FIRE_TIME $ONCECRON_TOKEN $ONCECRON_REPLICA $ONCECRON_ATTEMPT $(date +%s%N)" >>"$out"
sleep "$2"
echo "end $ONCECRON_JOB $ONCECRON_FIRE_TIME $ONCECRON_TOKEN $ONCECRON_REPLICA $ONCECRON_ATTEMPT $(date +%s%N)" >>"$out"
`

// table returns the cron table of a replica that reaches the backend at addr.
func table(backend, addr, dir string) string {
	var b strings.Builder
	switch backend {
	case "redis":
		fmt.Fprintf(&b, "backend: {type: redis, redis: {addr: %q}}\n", addr)
	case "etcd":
		fmt.Fprintf(&b, "backend: {type: etcd, etcd: {endpoints: [%q], dial_timeout: 2s}}\n", addr)
	case "zookeeper":
		fmt.Fprintf(&b, "backend: {type: zookeeper, zookeeper: {servers: [%q], session_timeout: %s}}\n", addr, ZKSessionTimeout)
	}
	fmt.Fprintf(&b, "lock: {ttl: %s, namespace: chaos}\nshutdown_timeout: %s\njobs:\n", TTL, shutdownTimeout)
	for _, j := range jobSpecs {
		fmt.Fprintf(&b, "  - name: %s\n    schedule: \"@every %s\"\n    overlap: %s\n", j.name, j.every, j.overlap)
		fmt.Fprintf(&b, "    command: [\"/bin/sh\", %q, %q, %q]\n", filepath.Join(dir, "job.sh"), dir, j.sleep)
	}
	return b.String()
}

// replica is one scheduler process (restarted under the same name).
type replica struct {
	name   string
	config string
	logf   string
	proxy  *faultnet.Proxy

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
}

type runner struct {
	o        Options
	log      func(format string, args ...any)
	dir      string
	server   *server
	replicas []*replica
	faults   []Fault
}

// Run runs the chaos suite against one backend and checks the outcome. The
// error is for a run that could not be carried out (a server that does not
// start, a binary that cannot run); violations of the semantics are in the
// Report (Report.Violations).
func Run(ctx context.Context, o Options) (rep Report, err error) {
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if o.Scheduler == "" {
		return rep, errors.New("chaos: Options.Scheduler is empty (see Build)")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	r := &runner{o: o}
	began := time.Now()
	r.log = func(format string, args ...any) {
		fmt.Fprintf(o.Log, "chaos %s %7.2fs: %s\n", o.Backend, time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	rep = Report{Backend: o.Backend, Seed: o.Seed, Faults: map[string]int{}}
	done, err := r.makeDir("oncecron-chaos-"+o.Backend+"-", o.Dir)
	if err != nil {
		return rep, err
	}
	defer func() { done(o.Keep || err != nil || len(rep.Violations) > 0) }()
	rep.Dir = r.dir
	r.log("seed %d, %d replicas, faults for %v, files in %s", o.Seed, o.Replicas, o.Duration, r.dir)

	srvDir := filepath.Join(r.dir, "server")
	if err := os.MkdirAll(srvDir, 0o755); err != nil {
		return rep, err
	}
	r.server, err = newServer(o.Backend, srvDir, o.Programs)
	if err != nil {
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
	r.log("%s on %s", o.Backend, r.server.addr)

	defer r.cleanup()
	for i := range o.Replicas {
		name := string(rune('a' + i))
		p, err := faultnet.Listen(r.server.addr)
		if err != nil {
			return rep, err
		}
		rp := &replica{name: name, proxy: p,
			config: filepath.Join(r.dir, "table-"+name+".yaml"), logf: filepath.Join(r.dir, "replica-"+name+".log")}
		r.replicas = append(r.replicas, rp)
		if err := os.WriteFile(rp.config, []byte(table(o.Backend, p.Addr(), r.dir)), 0o644); err != nil {
			return rep, err
		}
		if err := r.startReplica(rp); err != nil {
			return rep, err
		}
	}
	started := time.Now()
	if sleepCtx(ctx, warmup) != nil {
		return rep, ctx.Err()
	}
	checkFrom := time.Now()

	if err := r.inject(ctx); err != nil {
		return rep, err
	}
	r.log("faults done; settling for %v", settle)
	if sleepCtx(ctx, settle) != nil {
		return rep, ctx.Err()
	}
	stopAt := time.Now()
	r.log("stopping the replicas")
	r.stopReplicas()
	// Job programs run in process groups of their own and outlive a killed
	// replica; give the last ones time to write their end lines.
	if sleepCtx(ctx, 4*time.Second) != nil {
		return rep, ctx.Err()
	}

	var fl strings.Builder
	for i, f := range r.faults {
		fmt.Fprintf(&fl, "%d %s %s %s %s\n", i, f.Kind, cmp.Or(f.Replica, "-"),
			f.Start.UTC().Format(time.RFC3339Nano), f.End.UTC().Format(time.RFC3339Nano))
	}
	if err := os.WriteFile(filepath.Join(r.dir, "faults.txt"), []byte(fl.String()), 0o644); err != nil {
		return rep, err
	}
	rep.FaultLog = r.faults

	recs, err := r.readRecords(ctx)
	if err != nil {
		return rep, err
	}
	runs, err := readRuns(r.dir, r.replicas)
	if err != nil {
		return rep, err
	}
	deadline, err := startingDeadline(o.Backend)
	if err != nil {
		return rep, err
	}
	check(&rep, checkInput{
		runs: runs, records: recs, faults: r.faults,
		replicas: names(r.replicas), from: checkFrom, to: stopAt.Add(-3 * time.Second), started: started,
		hold: hold(o.Backend), deadline: deadline,
	})
	rep.Took = time.Since(began)
	r.log("done: %d ticks, %d violations", rep.Ticks, len(rep.Violations))
	return rep, nil
}

// startingDeadline is the starting deadline the replicas give the jobs of the
// table: the default of the config package for the backend, read from the
// table itself so that the checker expects what the replicas do.
func startingDeadline(backend string) (time.Duration, error) {
	cfg, err := config.Parse("chaos.yaml", []byte(table(backend, "127.0.0.1:1", "/tmp")))
	if err != nil {
		return 0, fmt.Errorf("chaos: parsing the table: %w", err)
	}
	d := cfg.Jobs[0].StartingDeadline
	for _, j := range cfg.Jobs {
		if j.StartingDeadline != d {
			return 0, fmt.Errorf("chaos: jobs %s and %s have different starting deadlines", cfg.Jobs[0].Name, j.Name)
		}
	}
	return d, nil
}

// hold is how long the server keeps the key of a replica that stopped
// renewing it.
func hold(backend string) time.Duration {
	if backend == "zookeeper" {
		return ZKSessionTimeout
	}
	return TTL
}

func names(rs []*replica) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.name)
	}
	return out
}

// inject injects faults until Options.Duration has passed and every kind has
// been injected at least once.
func (r *runner) inject(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(r.o.Seed, r.o.Seed^0x9e3779b97f4a7c15))
	first := slices.Clone(FaultKinds)
	rng.Shuffle(len(first), func(i, j int) { first[i], first[j] = first[j], first[i] })
	begin := time.Now()
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	for n := 0; n < maxFaults; n++ {
		if n >= len(first) && time.Since(begin) >= r.o.Duration {
			return nil
		}
		kind := FaultKinds[rng.IntN(len(FaultKinds))]
		if n < len(first) {
			kind = first[n]
		}
		rp := r.replicas[rng.IntN(len(r.replicas))]
		f := Fault{Kind: kind, Replica: rp.name}
		var err error
		switch kind {
		case FaultKill:
			down := between(1500*time.Millisecond, 4*time.Second)
			r.log("fault %d: kill -9 replica %s, restart after %v", n, rp.name, down)
			f.Start = time.Now()
			if err = rp.kill(); err == nil {
				err = sleepCtx(ctx, down)
				if err == nil {
					err = r.startReplica(rp)
				}
			}
		case FaultPauseShort, FaultPauseLong:
			d := between(300*time.Millisecond, TTL/3+200*time.Millisecond)
			if kind == FaultPauseLong {
				d = between(TTL+time.Second, TTL+4*time.Second)
			}
			r.log("fault %d: SIGSTOP replica %s for %v", n, rp.name, d)
			f.Start = time.Now()
			if err = rp.signal(syscall.SIGSTOP); err == nil {
				err = sleepCtx(ctx, d)
				if cerr := rp.signal(syscall.SIGCONT); err == nil {
					err = cerr
				}
			}
		case FaultPartition:
			d := between(TTL+time.Second, TTL+5*time.Second)
			r.log("fault %d: partition replica %s for %v", n, rp.name, d)
			f.Start = time.Now()
			rp.proxy.Blackhole()
			err = sleepCtx(ctx, d)
			rp.proxy.Unblackhole()
		case FaultBackend:
			f.Replica = ""
			d := between(300*time.Millisecond, 2*time.Second)
			r.log("fault %d: restart %s, down for %v", n, r.o.Backend, d)
			f.Start = time.Now()
			if err = r.server.stop(syscall.SIGTERM); err == nil {
				err = sleepCtx(ctx, d)
				if err == nil {
					err = r.server.start()
				}
			}
		}
		f.End = time.Now()
		r.faults = append(r.faults, f)
		if err != nil {
			return err
		}
		r.log("fault %d lifted after %v", n, f.End.Sub(f.Start).Round(time.Millisecond))
		if err := sleepCtx(ctx, between(1500*time.Millisecond, 3*time.Second)); err != nil {
			return err
		}
	}
	return nil
}

// makeDir sets r.dir to dir, or to a new temporary directory named with prefix
// when dir is "", and writes the job script there. The function it returns
// removes a temporary directory unless keep is true (then it logs where it is).
func (r *runner) makeDir(prefix, dir string) (func(keep bool), error) {
	done := func(bool) {}
	if dir == "" {
		d, err := os.MkdirTemp("", prefix)
		if err != nil {
			return done, err
		}
		dir = d
		done = func(keep bool) {
			if keep {
				r.log("kept %s", d)
				return
			}
			os.RemoveAll(d)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return done, err
	}
	r.dir = dir
	if err := os.WriteFile(filepath.Join(dir, "job.sh"), []byte(jobScript), 0o755); err != nil {
		done(false)
		return func(bool) {}, err
	}
	return done, nil
}

func (r *runner) startReplica(rp *replica) error {
	logf, err := os.OpenFile(rp.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.o.Scheduler, "run", "--config", rp.config, "--replica", rp.name, "--log-format", "json")
	cmd.Dir = r.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("chaos: starting replica %s: %w", rp.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	rp.mu.Lock()
	rp.cmd, rp.done, rp.paused = cmd, done, false
	rp.mu.Unlock()
	r.log("replica %s started (pid %d)", rp.name, cmd.Process.Pid)
	return nil
}

// kill kills the replica with SIGKILL and waits until it has exited.
func (rp *replica) kill() error {
	rp.mu.Lock()
	cmd, done := rp.cmd, rp.done
	rp.cmd = nil
	rp.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("chaos: replica %s is not running", rp.name)
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(15 * time.Second):
		return fmt.Errorf("chaos: replica %s (pid %d) did not exit after SIGKILL", rp.name, cmd.Process.Pid)
	}
}

func (rp *replica) signal(sig syscall.Signal) error {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.cmd == nil {
		return fmt.Errorf("chaos: replica %s is not running", rp.name)
	}
	select {
	case <-rp.done:
		return fmt.Errorf("chaos: replica %s exited; see %s", rp.name, rp.logf)
	default:
	}
	rp.paused = sig == syscall.SIGSTOP
	return rp.cmd.Process.Signal(sig)
}

// stop stops the replica gracefully (SIGTERM), or with SIGKILL after grace.
func (rp *replica) stop(grace time.Duration) {
	rp.mu.Lock()
	cmd, done := rp.cmd, rp.done
	rp.cmd = nil
	rp.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	_ = cmd.Process.Kill()
	<-done
}

// stopReplicas stops all replicas at once, gracefully.
func (r *runner) stopReplicas() {
	var wg sync.WaitGroup
	for _, rp := range r.replicas {
		rp.proxy.Unblackhole()
		wg.Go(func() { rp.stop(shutdownTimeout + 4*time.Second) })
	}
	wg.Wait()
}

// cleanup stops what is still running: replicas (SIGKILL: a run that ended
// in an error needs no grace) and proxies.
func (r *runner) cleanup() {
	for _, rp := range r.replicas {
		rp.stop(0)
		rp.proxy.Close()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
