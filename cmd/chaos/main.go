// Command chaos runs oncecron's chaos suite (internal/chaos) against real
// backends and prints a summary table; it exits 1 on any violation of the
// failure semantics, 2 on bad usage, 3 when a run could not be carried out.
//
//	go run ./cmd/chaos [--duration 10m] [--seed N] [--backends redis,etcd,zookeeper] [--keep]
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

	fmt.Printf("chaos: seed %d, %v of faults per backend, backends %s\n", *seed, *duration, *backends)
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
