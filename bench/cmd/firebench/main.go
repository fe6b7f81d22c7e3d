// Command firebench measures fire precision and scale of oncecron with several
// replicas, next to robfig/cron and go-co-op/gocron v2, in the same run. It is
// part of the comparison module (bench/), so neither cron library enters
// oncecron's go.mod.
//
//	go -C bench run ./cmd/firebench precision [flags]
//	go -C bench run ./cmd/firebench scale [flags]
//
// Both start every contender in this one process, with N jobs that fire every
// second ("* * * * * *") and only note their start, let them run for a few
// seconds, and measure for every tick (job, second) of a window how many runs
// it got and the delay from its scheduled instant to the start of its first
// run. Ticks of the first -warmup seconds are not counted. A tick with no run
// before the contender is stopped (1.5 s after the window) is a miss; every run
// beyond the first of a tick is a duplicate.
//
// precision: robfig/cron v3 alone (one instance, no lock: the floor); gocron
// v2 on -replicas schedulers, each with WithDistributedLocker on Redis (one
// SET NX PX try on a key named after the job, released when the run returns,
// as go-co-op/gocron-redis-lock does); oncecron with -replicas schedulers on
// each backend (memory: one in-process backend shared by the replicas, a floor
// without network), with overlap allow, or the default overlap skip when the
// contender's name ends in -skip (oncecron-redis-skip). Contenders run one
// after the other, in a rotating order, round after round, so drift on the
// machine hits all of them alike.
//
// scale: oncecron with -replicas schedulers on each backend, for each job count
// of -rates (ticks per second), interleaved the same way; it reports the p99
// delay per rate and the highest rate at which p99 stays under -limit with no
// miss, for that rate and every lower one. A backend that missed ticks in
// every round at one rate is not run at the higher ones.
//
// Both print Markdown tables (for BENCHMARKS.md) on stdout and one line per
// run on stderr. The servers are those of scripts/servers.sh (or
// scripts/bench.sh): ONCECRON_TEST_REDIS, ONCECRON_TEST_ETCD, ONCECRON_TEST_ZK.
// It exits 1 when a run failed, 2 on bad usage.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const grace = 1500 * time.Millisecond // after the window, before the contenders stop

var runID = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "fb" + hex.EncodeToString(b[:])
}()

type common struct {
	rounds, seconds, warmup, replicas int
}

func (c *common) flags(fs *flag.FlagSet, rounds, warmup int) {
	fs.IntVar(&c.rounds, "rounds", rounds, "rounds; each runs every contender once")
	fs.IntVar(&c.seconds, "seconds", 3, "seconds of ticks measured per run")
	fs.IntVar(&c.warmup, "warmup", warmup, "seconds of ticks not measured after the contender started "+
		"(a replica's first claims in a scope create its nodes or keys)")
	fs.IntVar(&c.replicas, "replicas", 3, "schedulers per contender (robfig/cron: always one)")
}

func (c *common) check() error {
	if c.rounds < 1 || c.seconds < 1 || c.warmup < 0 || c.replicas < 1 {
		return fmt.Errorf("-rounds, -seconds and -replicas must be positive, -warmup not negative")
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: firebench precision|scale [flags]   (firebench precision -h for the flags)")
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var code int
	switch os.Args[1] {
	case "precision":
		code = precision(ctx, os.Args[2:])
	case "scale":
		code = scale(ctx, os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage(os.Stdout)
	default:
		usage(os.Stderr)
		code = 2
	}
	stop()
	os.Exit(code)
}

// env returns the servers, failing when one that a contender needs is unset.
func env(kinds []string) (servers, error) {
	s := servers{redis: os.Getenv("ONCECRON_TEST_REDIS"), etcd: os.Getenv("ONCECRON_TEST_ETCD"), zk: os.Getenv("ONCECRON_TEST_ZK")}
	need := map[string]string{"redis": s.redis, "etcd": s.etcd, "zookeeper": s.zk}
	names := map[string]string{"redis": "ONCECRON_TEST_REDIS", "etcd": "ONCECRON_TEST_ETCD", "zookeeper": "ONCECRON_TEST_ZK"}
	var missing []string
	for _, k := range kinds {
		if v, ok := need[k]; ok && v == "" && !slices.Contains(missing, names[k]) {
			missing = append(missing, names[k])
		}
	}
	if len(missing) > 0 {
		return s, fmt.Errorf("%s not set: run scripts/bench.sh -precision (it starts its own servers), "+
			"or eval \"$(scripts/servers.sh start)\" in the repository root first", strings.Join(missing, ", "))
	}
	return s, nil
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

var startLoad, startTime = loadavg(), time.Now().UTC()

// header prints what the numbers depend on: the machine, and how busy it was.
func header(w io.Writer, what string) {
	fmt.Fprintf(w, "<!-- firebench %s: %s, %s, %d CPUs, %s, load avg %s at start, %s at end -->\n\n", what,
		startTime.Format("2006-01-02 15:04 UTC"), runtime.Version(), runtime.NumCPU(), runtime.GOOS+"/"+runtime.GOARCH,
		startLoad, loadavg())
}

// run runs contender c once with n jobs and returns what it measured.
func run(ctx context.Context, c contender, n int, o common, round int, skew time.Duration) result {
	rec := newRecorder(n, o.seconds, 1<<62) // nothing counts until the window is set
	off := func(k int) time.Duration { return time.Duration(2*k-(o.replicas-1)) * skew / 2 }
	if o.replicas%2 == 0 {
		off = func(k int) time.Duration { return time.Duration(k) * skew }
	}
	cpu0, t0 := cpuTime(), time.Now()
	stop, err := c.start(ctx, n, rec, off)
	if err != nil {
		return result{contender: c.name, round: round, jobs: n, err: err}
	}
	// The window starts once the contender runs, whatever its start took.
	first := time.Now().Unix() + 1 + int64(o.warmup)
	rec.setFirst(first)
	end := time.Unix(first+int64(o.seconds), 0).Add(grace)
	t := time.NewTimer(time.Until(end))
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	t.Stop()
	serr := stop()
	res := rec.result()
	res.contender, res.round = c.name, round
	if secs := time.Since(t0).Seconds(); secs > 0 {
		res.cpuPerTick = time.Duration(float64(cpuTime()-cpu0) / (secs * float64(n)))
	}
	if ctx.Err() != nil {
		serr = ctx.Err()
	}
	res.err = serr
	return res
}

func logRun(r result) {
	if r.err != nil && r.ticks == 0 {
		fmt.Fprintf(os.Stderr, "firebench: round %d %-20s %5d jobs: FAILED: %v\n", r.round, r.contender, r.jobs, r.err)
		return
	}
	fmt.Fprintf(os.Stderr, "firebench: round %d %-20s %5d jobs: %6d ticks, p50 %8s p99 %8s max %8s, CPU/tick %s, duplicate runs %d (ticks %d), misses %d",
		r.round, r.contender, r.jobs, r.ticks, ms(r.p50), ms(r.p99), ms(r.max), us(r.cpuPerTick), r.dupRuns, r.dupTicks, r.misses)
	if r.err != nil {
		fmt.Fprintf(os.Stderr, ", error: %v", r.err)
	}
	fmt.Fprintln(os.Stderr)
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

func ms(d time.Duration) string {
	switch {
	case d >= 100*time.Millisecond || d <= -100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d >= 10*time.Millisecond || d <= -10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f ms", float64(d)/1e6)
}

// cpuTime returns the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pause lets the machine and the servers settle between runs.
func pause(ctx context.Context) {
	runtime.GC()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func precision(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("precision", flag.ContinueOnError)
	var o common
	o.flags(fs, 3, 3)
	n := fs.Int("jobs", 1000, "jobs, each firing every second")
	list := fs.String("contenders", "robfig-cron,gocron-redis,oncecron-memory,oncecron-redis,oncecron-etcd,oncecron-zookeeper",
		"contenders, comma-separated")
	skew := fs.Duration("skew", 0, "clock offsets between the replicas of gocron and oncecron: with 3, -skew, 0 and +skew")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (every contender) to this file")
	prime := fs.Int("prime", 3, "before the rounds, run each contender that uses a server unmeasured until a run's p99 "+
		"is under -prime-p99 or not a fifth below the run before, at most this many times (0: none): the servers' "+
		"caches and the ZooKeeper JVM's compiler warm up, as on a server that has been running")
	primeP99 := fs.Duration("prime-p99", 50*time.Millisecond, "a priming run with a p99 under this ends the priming of its contender")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := o.check(); err != nil || *n < 1 || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "firebench precision:", err, fs.Args())
		return 2
	}
	names := strings.Split(*list, ",")
	var kinds []string
	for _, name := range names {
		switch {
		case name == "gocron-redis":
			kinds = append(kinds, "redis")
		case strings.HasPrefix(name, "oncecron-"):
			kinds = append(kinds, strings.TrimSuffix(strings.TrimPrefix(name, "oncecron-"), "-skip"))
		}
	}
	srv, err := env(kinds)
	if err != nil {
		fmt.Fprintln(os.Stderr, "firebench:", err)
		return 2
	}
	var cs []contender
	seq := 0
	for _, name := range names {
		switch {
		case name == "robfig-cron":
			cs = append(cs, robfigContender())
		case name == "gocron-redis":
			cs = append(cs, gocronContender(srv, o.replicas, func() string { seq++; return fmt.Sprintf("%s:gocron:%d:", runID, seq) }))
		case slices.Contains([]string{"memory", "redis", "etcd", "zookeeper"}, strings.TrimSuffix(strings.TrimPrefix(name, "oncecron-"), "-skip")):
			kind, skip := strings.CutSuffix(strings.TrimPrefix(name, "oncecron-"), "-skip")
			cs = append(cs, oncecronContender(kind, skip, srv, o.replicas, namespace))
		default:
			fmt.Fprintf(os.Stderr, "firebench: unknown contender %q\n", name)
			return 2
		}
	}
	fmt.Fprintf(os.Stderr, "firebench precision: %d jobs every second, %d replicas, skew %v, %d rounds of %s, %d s measured after %d s\n",
		*n, o.replicas, *skew, o.rounds, *list, o.seconds, o.warmup)
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "firebench:", err)
			return 2
		}
		defer stopProfile()
	}
	for i, c := range cs {
		if names[i] == "robfig-cron" || strings.HasPrefix(names[i], "oncecron-memory") {
			continue // no server
		}
		var last time.Duration
		for k := 1; k <= *prime && ctx.Err() == nil; k++ {
			res := run(ctx, c, *n, o, 0, *skew)
			fmt.Fprintf(os.Stderr, "firebench: primed with %s (run %d, not measured): p99 %s, err %v\n", c.name, k, ms(res.p99), res.err)
			pause(ctx)
			if res.err == nil && (res.p99 < *primeP99 || k > 1 && res.p99 > last*4/5) {
				break // warm, or no longer getting faster
			}
			last = res.p99
		}
	}
	var all []result
	failed := false
	for r := 1; r <= o.rounds && ctx.Err() == nil; r++ {
		for i := range cs {
			c := cs[(i+r-1)%len(cs)]
			res := run(ctx, c, *n, o, r, *skew)
			logRun(res)
			failed = failed || res.err != nil
			all = append(all, res)
			pause(ctx)
		}
	}
	w := os.Stdout
	header(w, fmt.Sprintf("precision -jobs %d -replicas %d -skew %v -rounds %d -seconds %d -warmup %d", *n, o.replicas, *skew, o.rounds, o.seconds, o.warmup))
	precisionTable(w, cs, all)
	if failed {
		return 1
	}
	return 0
}

// startCPUProfile starts a CPU profile written to path; the returned function
// stops it and closes the file.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "firebench: cpu profile:", err)
		}
	}, nil
}

// namespace names the keys of a backend's runs with n jobs in this process.
func namespace(kind string, n int) string { return fmt.Sprintf("%s-%s-%d", runID, kind, n) }

// precisionTable prints, per contender, the medians over the rounds and the
// totals of duplicates and misses.
func precisionTable(w io.Writer, cs []contender, all []result) {
	floor := map[int]time.Duration{} // round -> robfig's p99
	for _, r := range all {
		if r.contender == "robfig-cron" && r.err == nil {
			floor[r.round] = r.p99
		}
	}
	fmt.Fprintln(w, "| contender | runs | ticks | p50 | p99 (min .. max over runs) | max | p99 − robfig/cron p99 (median of per-round differences) | CPU per tick | duplicate runs (ticks) | misses |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range cs {
		var p50, p99, diffs, cpu []time.Duration
		var mx time.Duration
		ticks, dup, dupTicks, miss, runs, failed := 0, 0, 0, 0, 0, 0
		for _, r := range all {
			if r.contender != c.name {
				continue
			}
			if r.err != nil {
				failed++
			}
			if r.ticks == 0 {
				continue
			}
			runs++
			ticks += r.ticks
			dup += r.dupRuns
			dupTicks += r.dupTicks
			miss += r.misses
			p50 = append(p50, r.p50)
			p99 = append(p99, r.p99)
			cpu = append(cpu, r.cpuPerTick)
			mx = max(mx, r.max)
			if f, ok := floor[r.round]; ok {
				diffs = append(diffs, r.p99-f)
			}
		}
		runsCell := strconv.Itoa(runs)
		if failed > 0 {
			runsCell += fmt.Sprintf(" (%d failed)", failed)
		}
		if runs == 0 {
			fmt.Fprintf(w, "| %s | %s | | | | | | | | |\n", c.name, runsCell)
			continue
		}
		diff := "—"
		if c.name != "robfig-cron" && len(diffs) > 0 {
			diff = "+" + ms(medianDur(diffs))
			if d := medianDur(diffs); d < 0 {
				diff = ms(d)
			}
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s (%s .. %s) | %s | %s | %s | %d (%d) | %d |\n", c.name, runsCell, ticks,
			ms(medianDur(p50)), ms(medianDur(p99)), ms(slices.Min(p99)), ms(slices.Max(p99)), ms(mx), diff, us(medianDur(cpu)), dup, dupTicks, miss)
	}
}

func scale(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	var o common
	o.flags(fs, 2, 3)
	rates := fs.String("rates", "250,500,1000,2000,4000", "job counts (ticks per second), comma-separated, ascending")
	backends := fs.String("backends", "memory,redis,etcd,zookeeper", "oncecron backends, comma-separated")
	limit := fs.Duration("limit", 100*time.Millisecond, "the p99 delay a sustained rate stays under")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := o.check(); err != nil || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "firebench scale:", err, fs.Args())
		return 2
	}
	var ns []int
	for _, f := range strings.Split(*rates, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			fmt.Fprintf(os.Stderr, "firebench scale: bad rate %q\n", f)
			return 2
		}
		ns = append(ns, v)
	}
	slices.Sort(ns)
	kinds := strings.Split(*backends, ",")
	srv, err := env(kinds)
	if err != nil {
		fmt.Fprintln(os.Stderr, "firebench:", err)
		return 2
	}
	var cs []contender
	for _, k := range kinds {
		if !slices.Contains([]string{"memory", "redis", "etcd", "zookeeper"}, k) {
			fmt.Fprintf(os.Stderr, "firebench scale: unknown backend %q\n", k)
			return 2
		}
		cs = append(cs, oncecronContender(k, false, srv, o.replicas, namespace))
	}
	fmt.Fprintf(os.Stderr, "firebench scale: rates %v, %d replicas, backends %s, %d rounds, %d s measured after %d s\n",
		ns, o.replicas, *backends, o.rounds, o.seconds, o.warmup)
	var all []result
	failed := false
	overloaded := map[string]bool{} // backends not run at higher rates
	for _, n := range ns {
		missed := map[string]int{} // rounds with misses, per backend
		for r := 1; r <= o.rounds && ctx.Err() == nil; r++ {
			for i := range cs {
				c := cs[(i+r-1)%len(cs)]
				if overloaded[c.name] {
					continue
				}
				res := run(ctx, c, n, o, r, 0)
				logRun(res)
				failed = failed || res.err != nil
				all = append(all, res)
				if res.misses > 0 {
					missed[c.name]++
				}
				pause(ctx)
			}
		}
		// A backend that missed ticks in every round is past its limit: a
		// higher rate only queues more, and takes long to start and stop.
		for name, k := range missed {
			if k == o.rounds {
				overloaded[name] = true
				fmt.Fprintf(os.Stderr, "firebench: %s missed ticks in every round at %d/s; not run at higher rates\n", name, n)
			}
		}
	}
	w := os.Stdout
	header(w, fmt.Sprintf("scale -rates %s -replicas %d -rounds %d -seconds %d -warmup %d -limit %v", *rates, o.replicas, o.rounds, o.seconds, o.warmup, *limit))
	scaleTable(w, cs, ns, all, *limit)
	if failed {
		return 1
	}
	return 0
}

// scaleTable prints per backend and rate the median p99 (and the largest max
// and the misses over the rounds), and the highest rate sustained.
func scaleTable(w io.Writer, cs []contender, ns []int, all []result, limit time.Duration) {
	fmt.Fprint(w, "| backend |")
	for _, n := range ns {
		fmt.Fprintf(w, " %d/s: p99 (max), misses |", n)
	}
	fmt.Fprintf(w, " highest rate with p99 < %s and no miss | highest rate with no miss |\n|---|", ms(limit))
	for range ns {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w, "---:|---:|")
	for _, c := range cs {
		fmt.Fprintf(w, "| %s |", c.name)
		sustained, broken := 0, false
		// keeps: the highest rate (and every lower one) with no miss, at any delay.
		keeps, keepsP99, kept := 0, time.Duration(0), false
		for _, n := range ns {
			var p99 []time.Duration
			var mx time.Duration
			miss, dup, bad := 0, 0, false
			for _, r := range all {
				if r.contender != c.name || r.jobs != n {
					continue
				}
				if r.err != nil || r.ticks == 0 {
					bad = true
					continue
				}
				p99 = append(p99, r.p99)
				mx = max(mx, r.max)
				miss += r.misses
				dup += r.dupRuns
			}
			if len(p99) == 0 && !bad {
				fmt.Fprint(w, " not run (missed ticks at a lower rate) |")
				broken = true
				continue
			}
			if len(p99) == 0 {
				fmt.Fprint(w, " failed |")
				broken = true
				continue
			}
			cell := fmt.Sprintf(" %s (%s), %d", ms(medianDur(p99)), ms(mx), miss)
			if dup > 0 {
				cell += fmt.Sprintf(", %d duplicate runs", dup)
			}
			if bad {
				cell += ", a run failed"
			}
			fmt.Fprintf(w, "%s |", cell)
			clean := !bad && miss == 0 && dup == 0
			if clean && medianDur(p99) < limit && !broken {
				sustained = n
			} else {
				broken = true
			}
			if clean && !kept {
				keeps, keepsP99 = n, medianDur(p99)
			} else {
				kept = true
			}
		}
		keepsCell := rate(keeps, ns)
		if keeps > 0 {
			keepsCell += " (p99 " + ms(keepsP99) + ")"
		}
		fmt.Fprintf(w, " %s | %s |\n", rate(sustained, ns), keepsCell)
	}
}

// rate formats the highest rate that passed, of the rates ns tried.
func rate(n int, ns []int) string {
	switch n {
	case 0:
		return fmt.Sprintf("below %d/s", ns[0])
	case ns[len(ns)-1]:
		return fmt.Sprintf("≥ %d/s (the highest tried)", n)
	}
	return fmt.Sprintf("%d/s", n)
}
