package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/scheduler"
)

// Limits of GET /api/jobs/{name}/runs?limit=N.
const (
	DefaultRunsLimit = 20
	MaxRunsLimit     = 1000
)

// JobView is one job in GET /api/jobs.
type JobView struct {
	Name string `json:"name"`
	Spec string `json:"spec"`
	// Zone is the IANA zone in which the spec's fields are read.
	Zone string `json:"zone"`
	// NextFire is the next fire instant (null: none within the horizon).
	NextFire *time.Time `json:"next_fire"`
	// LastRun is the newest stored record of the job, from any replica
	// (null: none, or it could not be read: see LastRunError).
	LastRun      *RunView `json:"last_run"`
	LastRunError string   `json:"last_run_error,omitempty"`
	// Holder is this replica's name while it holds a tick of the job, else
	// empty; Running lists those ticks.
	Holder  string        `json:"holder,omitempty"`
	Running []RunningView `json:"running"`
}

// RunView is a stored run record.
type RunView struct {
	// Tick is the tick's name: its scheduled instant, RFC 3339 UTC.
	Tick    string          `json:"tick"`
	Outcome locking.Outcome `json:"outcome"`
	Replica string          `json:"replica,omitempty"`
	Token   uint64          `json:"token"`
	Attempt int             `json:"attempt,omitempty"`
	Started time.Time       `json:"started"`
	Ended   time.Time       `json:"ended"`
	// DurationSeconds is Ended - Started.
	DurationSeconds float64 `json:"duration_seconds"`
	Error           string  `json:"error,omitempty"`
}

// RunningView is a tick this replica holds.
type RunningView struct {
	// Tick names the tick (its instant, RFC 3339 UTC); empty for a manual
	// run.
	Tick     string    `json:"tick"`
	Token    uint64    `json:"token"`
	Takeover bool      `json:"takeover"`
	Manual   bool      `json:"manual"`
	Since    time.Time `json:"since"`
}

func runningView(rt scheduler.RunningTick) RunningView {
	v := RunningView{Token: rt.Token, Takeover: rt.Takeover, Manual: rt.Manual, Since: rt.Since.UTC()}
	if !rt.Manual {
		v.Tick = scheduler.TickName(rt.Tick)
	}
	return v
}

// ReplicaView is GET /api/replica.
type ReplicaView struct {
	Name       string    `json:"name"`
	Version    string    `json:"version"`
	ConfigHash string    `json:"config_hash"`
	StartedAt  time.Time `json:"started_at"`
	Backend    string    `json:"backend"`
}

func runView(r locking.Record) RunView {
	return RunView{
		Tick: r.Key.Name, Outcome: r.Outcome, Replica: r.Replica, Token: r.Token, Attempt: r.Attempt,
		Started: r.Started.UTC(), Ended: r.Ended.UTC(), DurationSeconds: r.Ended.Sub(r.Started).Seconds(), Error: r.Error,
	}
}

// zoneName is the zone of j's spec: a CRON_TZ= or TZ= prefix, else the zone
// configured, else UTC.
func (s *Server) zoneName(j scheduler.JobStatus) string {
	for _, p := range []string{"CRON_TZ=", "TZ="} {
		if rest, ok := strings.CutPrefix(j.Spec, p); ok {
			if zone, _, ok := strings.Cut(rest, " "); ok && zone != "" {
				return zone
			}
		}
	}
	if z := s.o.Zones[j.Name]; z != "" {
		return z
	}
	return "UTC"
}

// jobRecords reads up to limit records of every job, concurrently, within
// the backend timeout. errs holds the failures by job.
func (s *Server) jobRecords(ctx context.Context, jobs []scheduler.JobStatus, limit int) (recs map[string][]locking.Record, errs map[string]error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.BackendTimeout)
	defer cancel()
	out := make([][]locking.Record, len(jobs))
	fail := make([]error, len(jobs))
	var g errgroup.Group
	g.SetLimit(8)
	for i, j := range jobs {
		g.Go(func() error {
			out[i], fail[i] = s.locker.Records(ctx, j.Name, limit)
			return nil
		})
	}
	_ = g.Wait()
	recs, errs = map[string][]locking.Record{}, map[string]error{}
	for i, j := range jobs {
		if fail[i] != nil {
			errs[j.Name] = fail[i]
			s.log.Warn("admin: reading run records failed", zap.String("job", j.Name), zap.Error(fail[i]))
			continue
		}
		recs[j.Name] = out[i]
	}
	return recs, errs
}

// apiJobs serves GET /api/jobs.
func (s *Server) apiJobs(w http.ResponseWriter, r *http.Request) {
	jobs := s.sched.Jobs()
	recs, errs := s.jobRecords(r.Context(), jobs, 1)
	views := make([]JobView, 0, len(jobs))
	for _, j := range jobs {
		v := JobView{Name: j.Name, Spec: j.Spec, Zone: s.zoneName(j), Running: []RunningView{}}
		if !j.Next.IsZero() {
			next := j.Next.UTC()
			v.NextFire = &next
		}
		if rs := recs[j.Name]; len(rs) > 0 {
			rv := runView(rs[0])
			v.LastRun = &rv
		}
		if err := errs[j.Name]; err != nil {
			v.LastRunError = err.Error()
		}
		for _, rt := range j.Running {
			v.Running = append(v.Running, runningView(rt))
		}
		if len(j.Running) > 0 {
			v.Holder = s.o.Replica
		}
		views = append(views, v)
	}
	writeJSON(w, http.StatusOK, struct {
		Replica string    `json:"replica"`
		Jobs    []JobView `json:"jobs"`
	}{s.o.Replica, views})
}

// apiRuns serves GET /api/jobs/{name}/runs?limit=N: the job's stored
// records, newest first.
func (s *Server) apiRuns(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := s.sched.Job(name); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no job named %q", name))
		return
	}
	limit := DefaultRunsLimit
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > MaxRunsLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want an integer from 1 to %d", q, MaxRunsLimit))
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.BackendTimeout)
	defer cancel()
	recs, err := s.locker.Records(ctx, name, limit)
	if err != nil {
		s.log.Warn("admin: reading run records failed", zap.String("job", name), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "reading the run records: "+err.Error())
		return
	}
	runs := make([]RunView, 0, len(recs))
	for _, rec := range recs {
		runs = append(runs, runView(rec))
	}
	writeJSON(w, http.StatusOK, struct {
		Job  string    `json:"job"`
		Runs []RunView `json:"runs"`
	}{name, runs})
}

// apiReplica serves GET /api/replica.
func (s *Server) apiReplica(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, ReplicaView{
		Name: s.o.Replica, Version: s.o.Version, ConfigHash: s.o.ConfigHash,
		StartedAt: s.o.StartedAt.UTC(), Backend: s.o.Backend,
	})
}

// apiTrigger serves POST /api/jobs/{name}/trigger?id=ID, behind the bearer
// token: a manual run through the same lock as the job's ticks. The same id sent
// to several replicas runs once. It answers 202 with the run's key once this
// replica has claimed it (the run goes on in the background, recorded like any
// run), 409 if the id is already running or ran, 404 for an unknown job.
func (s *Server) apiTrigger(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := s.sched.Job(name); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no job named %q", name))
		return
	}
	id := r.URL.Query().Get("id")
	if id == "" {
		id = time.Now().UTC().Format("20060102T150405.000000000Z")
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.BackendTimeout)
	defer cancel()
	key, err := s.sched.TriggerAsync(ctx, name, id)
	switch {
	case err == nil:
		writeJSON(w, http.StatusAccepted, map[string]string{"job": key.Scope, "run": key.Name, "status": "running"})
	case errors.Is(err, scheduler.ErrAlreadyTriggered), errors.Is(err, locking.ErrHeld):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, locking.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeError(w, http.StatusServiceUnavailable, err.Error())
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
