// Command chaos runs oncecron's chaos suite (internal/chaos) against real
// backends and prints a summary table; it exits 1 on any violation of the
// failure semantics, 2 on bad usage, 3 when a run could not be carried out.
//
//	go run ./cmd/chaos [--duration 10m] [--seed N] [--backends redis,etcd,zookeeper] [--keep]
//
// With --failover N it measures takeover instead (chaos.Failover): per
// backend, N times, kill -9 of the replica running a tick and the time until
// another replica starts that tick, printed as a Markdown table against the
// goal TTL + 1s (scripts/bench.sh -failover). It exits 1 when a kill was not
// followed by a takeover.
//
// It needs ONCECRON_TEST_REDIS_SERVER, ONCECRON_TEST_ETCD_SERVER,
// ONCECRON_TEST_ZK_CLASSPATH and ONCECRON_TEST_JAVA (scripts/chaos.sh sets
// them), and must run inside the oncecron module: it builds cmd/scheduler.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/oncecron/oncecron/internal/chaos"
)

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long faults are injected per backend")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()%1_000_000_000), "seed of the fault schedule (default: from the clock)")
	backends := flag.String("backends", "redis,etcd,zookeeper", "backends to run, in order")
	keep := flag.Bool("keep", false, "keep every run's directory (kept anyway on a violation)")
	quiet := flag.Bool("quiet", false, "print only the summary and the violations")
	failover := flag.Int("failover", 0, "measure takeover after kill -9 of a tick's runner, this many times per backend, instead of the chaos suite")
	failoverTTL := flag.Duration("failover-ttl", chaos.TTL, "lock.ttl of the --failover table")
	zkSession := flag.Duration("failover-zk-session", chaos.ZKSessionTimeout, "zookeeper session_timeout of the --failover table")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "chaos: unexpected arguments:", flag.Args())
		os.Exit(2)
	}
	list := strings.Split(*backends, ",")
	progs, err := chaos.ProgramsFromEnv(list...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *failover < 0 {
		fmt.Fprintln(os.Stderr, "chaos: --failover must not be negative")
		os.Exit(2)
	}
	if *failover == 0 {
		fmt.Printf("chaos: seed %d, %v of faults per backend, backends %s\n", *seed, *duration, *backends)
	}
	tmp, err := os.MkdirTemp("", "oncecron-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	defer os.RemoveAll(tmp)
	bin, err := chaos.Build(ctx, tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	if *failover > 0 {
		code := runFailover(ctx, list, chaos.FailoverOptions{Kills: *failover, Scheduler: bin, Programs: progs,
			TTL: *failoverTTL, ZKSessionTimeout: *zkSession, Keep: *keep}, *quiet)
		stop()
		os.RemoveAll(tmp)
		os.Exit(code)
	}
	var reps []chaos.Report
	code := 0
	for _, b := range list {
		o := chaos.Options{Backend: b, Duration: *duration, Seed: *seed, Scheduler: bin, Programs: progs, Keep: *keep}
		if !*quiet {
			o.Log = os.Stdout
		}
		rep, err := chaos.Run(ctx, o)
		if err != nil {
			fmt.Fprintf(os.Stderr, "chaos: %s: %v\n", b, err)
			code = 3
			if ctx.Err() != nil {
				break
			}
			continue
		}
		reps = append(reps, rep)
		for _, v := range rep.Violations {
			fmt.Printf("VIOLATION %s (seed %d): %s\n", b, *seed, v)
		}
		if !rep.OK() {
			fmt.Printf("%s: files kept in %s\n", b, rep.Dir)
			if code == 0 {
				code = 1
			}
		}
	}
	fmt.Printf("\nchaos summary (seed %d):\n%s", *seed, chaos.Table(reps))
	stop()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// runFailover runs chaos.Failover on each backend and prints the table.
func runFailover(ctx context.Context, backends []string, o chaos.FailoverOptions, quiet bool) int {
	var reps []chaos.FailoverReport
	code := 0
	for _, b := range backends {
		o.Backend = b
		if !quiet {
			o.Log = os.Stderr
		}
		rep, err := chaos.Failover(ctx, o)
		if err != nil {
			fmt.Fprintf(os.Stderr, "chaos: failover on %s: %v\n", b, err)
			code = 3
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if rep.NoTakeover > 0 && code == 0 {
			code = 1
		}
		reps = append(reps, rep)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("<!-- chaos --failover %d: %s, %s, load avg %s at end -->\n\n", o.Kills, time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		runtime.Version(), strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Print(chaos.FailoverTable(reps))
	return code
}
