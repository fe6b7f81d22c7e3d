package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oncecron/oncecron/admin"
	"github.com/oncecron/oncecron/config"
	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/scheduler"
)

const defaultConfig = "config/jobs.yaml"

// load reads and validates the table; an invalid one is a usage error.
func load(path string, o Options) (*config.Config, error) {
	cfg, err := config.Load(path, config.WithFuncChecker(o.Registry))
	if err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			return nil, usageError{err.Error()}
		}
		return nil, usagef("%v", err)
	}
	return cfg, nil
}

func cmdValidate(args []string, o Options) error {
	fs := newFlagSet("validate", o, `
scheduler validate --config FILE

Checks the cron table without contacting the backend: syntax, unknown keys,
schedules, time zones, plugin functions and their arguments. Prints every error
with its file, line and field, and exits 2 if there is any.

Example:
  scheduler validate --config config/jobs.yaml`)
	path := fs.String("config", defaultConfig, "the cron table")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	cfg, err := load(*path, o)
	if err != nil {
		fmt.Fprintln(o.Stderr, strings.TrimSuffix(err.Error(), "\n"))
		return usageError{fmt.Sprintf("%s is invalid", *path)}
	}
	fmt.Fprintf(o.Stdout, "%s: OK: %d jobs, backend %s\n", *path, len(cfg.Jobs), cfg.Backend.Type)
	return nil
}

func cmdNext(args []string, o Options) error {
	fs := newFlagSet("next", o, `
scheduler next --config FILE [--count N] [JOB...]

Prints the next fire times of each job (or of the jobs named), in the job's time
zone and in UTC. Does not contact the backend.

Examples:
  scheduler next --config config/jobs.yaml
  scheduler next reconcile-payments --count 5`)
	path := fs.String("config", defaultConfig, "the cron table")
	count := fs.Int("count", 5, "how many fire times per job")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *count < 1 || *count > 10000 {
		return usagef("--count %d: want 1 to 10000", *count)
	}
	cfg, err := load(*path, o)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, name := range pos {
		want[name] = true
	}
	for name := range want {
		found := false
		for _, j := range cfg.Jobs {
			found = found || j.Name == name
		}
		if !found {
			return usagef("no job named %q in %s", name, *path)
		}
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSCHEDULE\tNEXT (JOB'S ZONE)\tNEXT (UTC)")
	now := time.Now()
	for _, j := range cfg.Jobs {
		if len(want) > 0 && !want[j.Name] {
			continue
		}
		at := now
		for range *count {
			at = j.Schedule.Next(at)
			if at.IsZero() {
				break
			}
			local := at.In(j.Location).Format("2006-01-02 15:04:05 MST")
			spec := j.Spec
			if j.Disabled {
				spec += " (disabled)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", j.Name, spec, local, scheduler.TickName(at))
		}
	}
	return tw.Flush()
}

func cmdRun(ctx context.Context, args []string, o Options) error {
	fs := newFlagSet("run", o, `
scheduler run --config FILE [--replica NAME] [--log-format json|console] [--log-level LEVEL]

Runs one replica. Every replica reads the same table; each tick runs on exactly
one of them. SIGINT/SIGTERM stop claiming ticks, let running jobs finish (up to
shutdown_timeout), release the rest and exit 0; a second signal exits at once.

Examples:
  scheduler run --config config/jobs.yaml --log-format console
  scheduler run --config /etc/oncecron/jobs.yaml --replica node-a`)
	path := fs.String("config", defaultConfig, "the cron table")
	replica := fs.String("replica", "", "this replica's name (default: replica in the file, else hostname-pid)")
	format := fs.String("log-format", "json", "log format: json or console")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	log, err := newLogger(*format, *level, o)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // nothing to do about it at exit
	defer routeRedisLog(log)()
	cfg, err := load(*path, o)
	if err != nil {
		return err
	}
	name := *replica
	if name == "" {
		name = cfg.Replica
	}
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal now takes its default action: exit at once
	}()

	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	backend, err := OpenBackend(octx, cfg, log)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: backend %s: %w", *path, cfg.Backend.Type, err)
	}
	defer backend.Close()
	if err := checkCritical(ctx, cfg, backend); err != nil {
		return err
	}
	if cfg.Backend.Type == config.BackendMemory {
		log.Warn("the memory backend serves this one replica only; run several replicas on redis, etcd or zookeeper")
	}
	var adm *admin.Server // the admin endpoint, if any; set before Run emits events
	locker, err := locking.New(backend, locking.WithLogger(log), locking.WithMargin(cfg.Lock.Margin),
		locking.WithPollInterval(min(time.Second, cfg.Lock.TTL/3)),
		locking.WithLeaseEvents(func(e locking.LeaseEvent) {
			if adm != nil {
				adm.ObserveLease(e)
			}
		}))
	if err != nil {
		return err
	}
	sjobs, err := schedulerJobs(cfg, o.Registry)
	if err != nil {
		return usagef("%v", err)
	}
	s, err := scheduler.New(scheduler.Options{
		Jobs: sjobs, Locker: locker, Replica: name, TTL: cfg.Lock.TTL, Retention: cfg.Lock.Retention,
		ShutdownTimeout: cfg.ShutdownTimeout, Logger: log, Version: Version, ConfigHash: cfg.Hash(),
		MaxClockOffset: clockBudget(cfg.Lock.MaxClockOffset),
		// An in-memory backend starts empty: every recent tick would look missed.
		SkipCatchUp: cfg.Backend.Type == config.BackendMemory,
		Observe: func(e scheduler.Event) {
			if adm != nil {
				adm.Observe(e)
			}
		},
	})
	if err != nil {
		return usagef("%s: %v", *path, err)
	}
	log.Info("replica starting", zap.String("replica", name), zap.String("config", *path), zap.String("backend", string(cfg.Backend.Type)),
		zap.String("namespace", cfg.Lock.Namespace), zap.String("table_hash", cfg.Hash()), zap.String("version", Version))
	if cfg.Admin.Listen != "" {
		var stopAdmin func()
		if adm, stopAdmin, err = startAdmin(cfg, s, locker, name, log); err != nil {
			return err
		}
		defer stopAdmin() // after Run: the endpoint serves through the graceful shutdown
	}
	go watchTable(ctx, *path, cfg, s, backend, o, log)
	return s.Run(ctx)
}

// clockBudget maps lock.max_clock_offset (0: off) to the scheduler's option
// (negative: off).
func clockBudget(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// checkCritical refuses to run critical jobs on a backend whose configuration
// cannot keep fencing tokens rising through restarts and failover.
func checkCritical(ctx context.Context, cfg *config.Config, b locking.Backend) error {
	var critical []string
	for _, j := range cfg.Jobs {
		if j.Critical && !j.Disabled {
			critical = append(critical, j.Name)
		}
	}
	fc, ok := b.(locking.FencingChecker)
	if len(critical) == 0 || !ok {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := fc.CheckFencing(cctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, locking.ErrUnsafe):
		return usagef("%s: critical jobs %s refuse to run: %v", cfg.File, strings.Join(critical, ", "), err)
	default:
		return fmt.Errorf("%s: checking the backend for critical jobs: %w", cfg.File, err)
	}
}

// schedulerJobs turns the table's jobs into the scheduler's, decoding plugin
// arguments.
func schedulerJobs(cfg *config.Config, reg Registry) ([]scheduler.Job, error) {
	var out []scheduler.Job
	for _, j := range cfg.Jobs {
		if j.Disabled {
			continue
		}
		sj := scheduler.Job{
			Name: j.Name, Schedule: j.Schedule, Timeout: j.Timeout, Retries: j.Retries, RetryBackoff: j.RetryBackoff,
			StartingDeadline: j.StartingDeadline, Critical: j.Critical,
		}
		switch j.Misfire {
		case config.MisfireRunAll:
			sj.Misfire = scheduler.MisfireRunAll
		case config.MisfireSkip:
			sj.Misfire = scheduler.MisfireSkip
		}
		switch j.Overlap {
		case config.OverlapAllow:
			sj.Overlap = scheduler.OverlapAllow
		case config.OverlapBufferOne:
			sj.Overlap = scheduler.OverlapBufferOne
		case config.OverlapCancelOther:
			sj.Overlap = scheduler.OverlapCancelOther
		}
		sj.Jitter = j.Jitter
		if j.OnHolderLoss == config.HolderLossAbandon {
			sj.OnHolderLoss = scheduler.HolderLossAbandon
		}
		if j.Func != "" {
			plugin, args, err := reg.Decode(j.Func, j.Args)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: jobs[%s].func: %w", cfg.File, j.Line, j.Name, err)
			}
			sj.Args = args
			sj.Func = func(ctx context.Context, run jobs.Run) error { return jobs.SafeCall(ctx, plugin, run) }
		} else {
			sj.Func = jobs.Command{Argv: j.Command, Env: j.Env, Dir: j.Dir}.Run
		}
		out = append(out, sj)
	}
	return out, nil
}

func newLogger(format, level string, o Options) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	var enc zapcore.Encoder
	switch format {
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, usagef("--log-format %q: want json or console", format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(o.Stderr)), lvl)), nil
}
