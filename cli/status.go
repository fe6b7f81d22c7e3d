package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/scheduler"
)

// StatusView is what `scheduler status --output json` prints.
type StatusView struct {
	Replicas []ReplicaStatus `json:"replicas"`
	Jobs     []JobStatusView `json:"jobs"`
}

// ReplicaStatus is one replica as its heartbeats describe it.
type ReplicaStatus struct {
	scheduler.Replica
	// Alive is false when the last heartbeat is older than three intervals.
	Alive bool `json:"alive"`
	// TableAgrees is false when the replica runs a table other than FILE's.
	TableAgrees bool `json:"table_agrees"`
}

// JobStatusView is one job: its next fire (from FILE) and its last stored run.
type JobStatusView struct {
	Name     string          `json:"name"`
	Schedule string          `json:"schedule"`
	Next     time.Time       `json:"next"`
	LastRun  *locking.Record `json:"last_run,omitempty"`
	Running  []string        `json:"running_on,omitempty"`
	Disabled bool            `json:"disabled,omitempty"`
}

func cmdStatus(ctx context.Context, args []string, o Options) error {
	fs := newFlagSet("status", o, `
scheduler status --config FILE [--output table|json]

Reads the cluster's state from the backend (no admin listener needed): the
replicas that published a heartbeat, whether they are alive and run the same
table as FILE, what they run now; and for each job its next fire and last run.

Examples:
  scheduler status --config config/examples/redis.yaml
  scheduler status --output json --config /etc/oncecron/jobs.yaml`)
	path := fs.String("config", defaultConfig, "the cron table")
	output := fs.String("output", "table", "table or json")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *output != "table" && *output != "json" {
		return usagef("--output %q: want table or json", *output)
	}
	cfg, err := load(*path, o)
	if err != nil {
		return err
	}
	locker, closeFn, err := openLocker(ctx, cfg, zap.NewNop())
	if err != nil {
		return err
	}
	defer closeFn()
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	reps, err := scheduler.Replicas(rctx, locker, 500)
	if err != nil {
		return err
	}
	now := time.Now()
	hash := cfg.Hash()
	var view StatusView
	runningOn := map[string][]string{}
	for _, r := range reps {
		alive := now.Sub(r.LastSeen) < 3*scheduler.DefaultHeartbeatInterval
		view.Replicas = append(view.Replicas, ReplicaStatus{Replica: r, Alive: alive, TableAgrees: r.ConfigHash == hash})
		if alive {
			for _, run := range r.Running {
				job, _, _ := strings.Cut(run, "@")
				runningOn[job] = append(runningOn[job], r.Name+" ("+run[len(job)+1:]+")")
			}
		}
	}
	for _, j := range cfg.Jobs {
		jv := JobStatusView{Name: j.Name, Schedule: j.Spec, Next: j.Schedule.Next(now), Running: runningOn[j.Name], Disabled: j.Disabled}
		recs, err := locker.Records(rctx, j.Name, 1)
		if err != nil {
			return fmt.Errorf("records of %s: %w", j.Name, err)
		}
		if len(recs) > 0 {
			jv.LastRun = &recs[0]
		}
		view.Jobs = append(view.Jobs, jv)
	}
	if *output == "json" {
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(view)
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tALIVE\tLAST SEEN\tVERSION\tTABLE\tRUNNING")
	if len(view.Replicas) == 0 {
		fmt.Fprintln(tw, "(no heartbeat found)\t\t\t\t\t")
	}
	for _, r := range view.Replicas {
		table := "same as " + cfg.File
		if !r.TableAgrees {
			table = "DIFFERS (" + short(r.ConfigHash) + ")"
		}
		fmt.Fprintf(tw, "%s\t%v\t%s ago\t%s\t%s\t%s\n", r.Name, r.Alive, now.Sub(r.LastSeen).Round(time.Second),
			r.Version, table, strings.Join(r.Running, " "))
	}
	fmt.Fprintln(tw, "\t\t\t\t\t")
	fmt.Fprintln(tw, "JOB\tSCHEDULE\tNEXT (UTC)\tLAST RUN\tOUTCOME\tRUNNING ON")
	for _, j := range view.Jobs {
		last, outcome := "-", "-"
		if j.LastRun != nil {
			last = j.LastRun.Key.Name + " on " + j.LastRun.Replica
			outcome = string(j.LastRun.Outcome)
		}
		next := scheduler.TickName(j.Next)
		if j.Disabled {
			next = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.Name, j.Schedule, next, last, outcome, strings.Join(j.Running, ", "))
	}
	return tw.Flush()
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
