package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/oncecron/oncecron/config"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/scheduler"
)

func cmdHistory(ctx context.Context, args []string, o Options) error {
	fs := newFlagSet("history", o, `
scheduler history --config FILE [JOB] [--limit N] [--output table|json]

Prints the stored records of runs (and of missed and skipped ticks) from the
backend, newest first: of one job, or of every job in the table.

Examples:
  scheduler history --config config/examples/redis.yaml
  scheduler history reconcile-payments --limit 50 --output json`)
	path := fs.String("config", defaultConfig, "the cron table")
	limit := fs.Int("limit", 20, "how many records (per job when no job is named)")
	output := fs.String("output", "table", "table or json")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *limit < 1 || *limit > 10000 {
		return usagef("--limit %d: want 1 to 10000", *limit)
	}
	if *output != "table" && *output != "json" {
		return usagef("--output %q: want table or json", *output)
	}
	if len(pos) > 1 {
		return usagef("unexpected argument %q (one job at most)", pos[1])
	}
	cfg, err := load(*path, o)
	if err != nil {
		return err
	}
	names, err := jobNames(cfg, pos)
	if err != nil {
		return err
	}
	locker, closeFn, err := openLocker(ctx, cfg, zap.NewNop())
	if err != nil {
		return err
	}
	defer closeFn()
	var recs []locking.Record
	for _, name := range names {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rs, err := locker.Records(rctx, name, *limit)
		cancel()
		if err != nil {
			return fmt.Errorf("records of %s: %w", name, err)
		}
		recs = append(recs, rs...)
	}
	slices.SortStableFunc(recs, func(a, b locking.Record) int { return b.Ended.Compare(a.Ended) })
	if len(names) > 1 && len(recs) > *limit {
		recs = recs[:*limit]
	}
	if *output == "json" {
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		if recs == nil {
			recs = []locking.Record{}
		}
		return enc.Encode(recs)
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTICK\tOUTCOME\tREPLICA\tTOKEN\tATTEMPT\tSTARTED\tDURATION\tERROR")
	for _, r := range recs {
		errText := strings.ReplaceAll(r.Error, "\n", " ")
		if len(errText) > 80 {
			errText = errText[:77] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", r.Key.Scope, r.Key.Name, r.Outcome, r.Replica, r.Token,
			r.Attempt, r.Started.UTC().Format(time.RFC3339), r.Ended.Sub(r.Started).Round(time.Millisecond), errText)
	}
	return tw.Flush()
}

func cmdTrigger(ctx context.Context, args []string, o Options) error {
	fs := newFlagSet("trigger", o, `
scheduler trigger --config FILE JOB [--id ID]

Runs a job now, in this process, through the same lock as its ticks: the run's
key is (JOB, manual-ID), so the same ID sent several times, or to several
replicas, runs once. The job's overlap policy applies, and the run is recorded
like any other (see history). Exit 0 when the run succeeded, 1 when it failed or
was refused.

Examples:
  scheduler trigger --config config/examples/redis.yaml demo
  scheduler trigger reconcile-payments --id ops-ticket-4711`)
	path := fs.String("config", defaultConfig, "the cron table")
	id := fs.String("id", "", "trigger id (default: random); the same id runs at most once")
	format := fs.String("log-format", "console", "log format: json or console")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one job name, got %d", len(pos))
	}
	if *id == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		*id = time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	}
	log, err := newLogger(*format, "info", o)
	if err != nil {
		return err
	}
	cfg, err := load(*path, o)
	if err != nil {
		return err
	}
	if _, err := jobNames(cfg, pos); err != nil {
		return err
	}
	locker, closeFn, err := openLocker(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := checkCritical(ctx, cfg, locker.Backend()); err != nil {
		return err
	}
	sjobs, err := schedulerJobs(cfg, o.Registry)
	if err != nil {
		return usagef("%v", err)
	}
	s, err := scheduler.New(scheduler.Options{Jobs: sjobs, Locker: locker, Replica: cfg.Replica, TTL: cfg.Lock.TTL,
		Retention: cfg.Lock.Retention, ShutdownTimeout: cfg.ShutdownTimeout, Logger: log})
	if err != nil {
		return usagef("%s: %v", *path, err)
	}
	rec, err := s.Trigger(ctx, pos[0], *id)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Stdout, "%s %s: %s (token %d, replica %s, %s)\n", rec.Key.Scope, rec.Key.Name, rec.Outcome, rec.Token,
		rec.Replica, rec.Ended.Sub(rec.Started).Round(time.Millisecond))
	if rec.Outcome != locking.OutcomeSucceeded {
		return fmt.Errorf("run %s: %s", rec.Outcome, rec.Error)
	}
	return nil
}

// jobNames returns the named jobs (all of the table's when none is named),
// refusing names the table does not have.
func jobNames(cfg *config.Config, named []string) ([]string, error) {
	var all []string
	for _, j := range cfg.Jobs {
		all = append(all, j.Name)
	}
	if len(named) == 0 {
		return all, nil
	}
	for _, n := range named {
		if !slices.Contains(all, n) {
			return nil, usagef("no job named %q in %s (jobs: %s)", n, cfg.File, strings.Join(all, ", "))
		}
	}
	return named, nil
}

// openLocker connects to the table's backend; go-redis logs to log until the
// returned function closes it.
func openLocker(ctx context.Context, cfg *config.Config, log *zap.Logger) (*locking.Locker, func(), error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	restore := routeRedisLog(log)
	b, err := OpenBackend(octx, cfg, log)
	if err != nil {
		restore()
		return nil, nil, fmt.Errorf("%s: backend %s: %w", cfg.File, cfg.Backend.Type, err)
	}
	if cfg.Backend.Type == config.BackendMemory {
		log.Warn("the memory backend lives in this process only: it holds no records of other processes")
	}
	l, err := locking.New(b, locking.WithLogger(log), locking.WithMargin(cfg.Lock.Margin),
		locking.WithPollInterval(min(time.Second, cfg.Lock.TTL/3)))
	if err != nil {
		_ = b.Close()
		restore()
		return nil, nil, err
	}
	return l, func() { _ = b.Close(); restore() }, nil
}
