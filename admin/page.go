package admin

import (
	"bytes"
	"context"
	"html/template"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oncecron/oncecron/scheduler"
)

// pageRuns is how many recent runs of each job the status page shows.
const pageRuns = 5

// pageView is what the status page template renders; every time is
// preformatted.
type pageView struct {
	Replica, Version, ConfigHash, Backend, StartedAt, Now string
	Ready                                                 bool
	ReadyReason                                           string
	Running                                               []pageRunning
	Jobs                                                  []pageJob
	Replicas                                              []pageReplica
	ReplicasError                                         string
}

// pageReplica is a replica as its last heartbeat describes it.
type pageReplica struct {
	Name, Version, LastSeen, Running string
	Alive, SameTable                 bool
}

type pageJob struct {
	Name, Spec, Zone   string
	NextUTC, NextLocal string
	Holder             string // this replica, while it holds a tick of the job
	Runs               []pageRun
	RunsError          string
	LastSeen           string // last tick end this replica saw, if any
	StartingDeadline   string
	Timeout, Jitter    string
	TimeoutSet         bool
	JitterSet          bool
}

type pageRun struct {
	Tick, Outcome, Replica, Started, Duration, Error string
	Attempt                                          int
	Token                                            uint64
}

type pageRunning struct {
	Job, Tick, Since string
	Token            uint64
	Takeover         bool
}

const timeLayout = "2006-01-02 15:04:05 MST"

func fmtTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "—"
	}
	if loc == nil {
		loc = time.UTC
	}
	return t.In(loc).Format(timeLayout)
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.String()
	case d < time.Second:
		return d.Round(time.Microsecond * 100).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// location is the zone of j's spec, loaded; UTC if it cannot be.
func (s *Server) location(j scheduler.JobStatus) *time.Location {
	name := s.zoneName(j)
	if loc, ok := s.zones[name]; ok {
		return loc
	}
	// A zone that appeared with a reload: not among those loaded by New.
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	return loc
}

// page serves GET /: the status page.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	jobs := s.sched.Jobs()
	recs, errs := s.jobRecords(r.Context(), jobs, pageRuns)
	rd := s.sched.Readiness()
	v := pageView{
		Replica: s.o.Replica, Version: s.o.Version, ConfigHash: s.o.ConfigHash, Backend: s.o.Backend,
		StartedAt: fmtTime(s.o.StartedAt, nil), Now: fmtTime(time.Now(), nil),
		Ready: rd.Ready, ReadyReason: rd.Reason,
	}
	if h := s.sched.ConfigHash(); h != "" { // current after a reload
		v.ConfigHash = h
	}
	rctx, cancel := context.WithTimeout(r.Context(), s.o.BackendTimeout)
	reps, err := scheduler.Replicas(rctx, s.locker, 500)
	cancel()
	if err != nil {
		v.ReplicasError = err.Error()
	}
	for _, rp := range reps {
		v.Replicas = append(v.Replicas, pageReplica{
			Name: rp.Name, Version: rp.Version, LastSeen: fmtTime(rp.LastSeen, nil),
			Running: strings.Join(rp.Running, " "), SameTable: rp.ConfigHash == v.ConfigHash,
			Alive: time.Since(rp.LastSeen) < 3*scheduler.DefaultHeartbeatInterval,
		})
	}
	for _, j := range jobs {
		loc := s.location(j)
		pj := pageJob{
			Name: j.Name, Spec: j.Spec, Zone: s.zoneName(j),
			NextUTC: fmtTime(j.Next, nil), NextLocal: fmtTime(j.Next, loc),
			Timeout: j.Timeout.String(), TimeoutSet: j.Timeout > 0,
			Jitter: j.Jitter.String(), JitterSet: j.Jitter > 0,
			StartingDeadline: j.StartingDeadline.String(),
		}
		if len(j.Running) > 0 {
			pj.Holder = s.o.Replica
		}
		if j.Last != nil {
			pj.LastSeen = string(j.Last.Outcome) + " (tick " + scheduler.TickName(j.Last.Tick) + ")"
		}
		for _, rec := range recs[j.Name] {
			pj.Runs = append(pj.Runs, pageRun{
				Tick: rec.Key.Name, Outcome: string(rec.Outcome), Replica: rec.Replica,
				Started: fmtTime(rec.Started, nil), Duration: fmtDuration(rec.Ended.Sub(rec.Started)),
				Error: rec.Error, Attempt: rec.Attempt, Token: rec.Token,
			})
		}
		if err := errs[j.Name]; err != nil {
			pj.RunsError = err.Error()
		}
		for _, rt := range j.Running {
			rv := runningView(rt)
			if rv.Manual {
				rv.Tick = "manual run"
			}
			v.Running = append(v.Running, pageRunning{
				Job: j.Name, Tick: rv.Tick, Since: fmtTime(rt.Since, nil), Token: rt.Token, Takeover: rt.Takeover,
			})
		}
		v.Jobs = append(v.Jobs, pj)
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, v); err != nil {
		s.log.Error("admin: rendering the status page", zap.Error(err))
		http.Error(w, "rendering the status page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = buf.WriteTo(w)
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>oncecron · {{.Replica}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
code { font-size: 13px; }
.succeeded { color: #176f2c; } .failed, .lost, .abandoned { color: #b00020; font-weight: bold; }
.missed, .skipped { color: #8a6100; }
.ready { color: #176f2c; } .notready { color: #b00020; font-weight: bold; }
.error { color: #b00020; }
</style>
</head>
<body>
<h1>oncecron</h1>
<table id="replica">
<tr><th>Replica</th><td>{{.Replica}}</td></tr>
<tr><th>Version</th><td>{{.Version}}</td></tr>
<tr><th>Config hash</th><td><code>{{.ConfigHash}}</code></td></tr>
<tr><th>Backend</th><td>{{.Backend}}</td></tr>
<tr><th>Started</th><td>{{.StartedAt}}</td></tr>
<tr><th>Readiness</th><td>{{if .Ready}}<span class="ready">ready</span>{{else}}<span class="notready">not ready</span>{{end}}: {{.ReadyReason}}</td></tr>
<tr><th>Page generated</th><td>{{.Now}}</td></tr>
</table>

<h2>Replicas</h2>
{{if .Replicas}}<table id="replicas">
<tr><th>Replica</th><th>Alive</th><th>Last heartbeat</th><th>Version</th><th>Table</th><th>Running</th></tr>
{{range .Replicas}}<tr><td>{{.Name}}</td><td>{{if .Alive}}<span class="ready">alive</span>{{else}}<span class="notready">silent</span>{{end}}</td><td>{{.LastSeen}}</td><td>{{.Version}}</td><td>{{if .SameTable}}same as this replica's{{else}}<span class="notready">differs</span>{{end}}</td><td><code>{{.Running}}</code></td></tr>
{{end}}</table>
{{else}}<p id="replicas">No heartbeat read{{if .ReplicasError}}: {{.ReplicasError}}{{end}}.</p>
{{end}}
<h2>Running on this replica</h2>
{{if .Running}}<table id="running">
<tr><th>Job</th><th>Tick</th><th>Token</th><th>Since</th></tr>
{{range .Running}}<tr><td>{{.Job}}</td><td><code>{{.Tick}}</code></td><td>{{.Token}}</td><td>{{.Since}}{{if .Takeover}} (takeover){{end}}</td></tr>
{{end}}</table>
{{else}}<p id="running">No job runs on this replica now.</p>
{{end}}
<h2>Jobs</h2>
<table id="jobs">
<tr><th>Job</th><th>Schedule</th><th>Zone</th><th>Next fire (UTC)</th><th>Next fire (job's zone)</th><th>Settings</th><th>On this replica</th></tr>
{{range .Jobs}}<tr><td><a href="#runs-{{.Name}}">{{.Name}}</a></td><td><code>{{.Spec}}</code></td><td>{{.Zone}}</td><td>{{.NextUTC}}</td><td>{{.NextLocal}}</td>
<td>starting deadline {{.StartingDeadline}}{{if .TimeoutSet}}, timeout {{.Timeout}}{{end}}{{if .JitterSet}}, jitter {{.Jitter}}{{end}}</td>
<td>{{if .Holder}}running on {{.Holder}}{{else}}idle{{end}}{{if .LastSeen}}; last seen: {{.LastSeen}}{{end}}</td></tr>
{{end}}</table>

<h2>Recent runs</h2>
{{range .Jobs}}<h3 id="runs-{{.Name}}">{{.Name}}</h3>
{{if .RunsError}}<p class="error">Run records could not be read: {{.RunsError}}</p>
{{else if .Runs}}<table class="runs">
<tr><th>Tick</th><th>Outcome</th><th>Replica</th><th>Attempt</th><th>Token</th><th>Started</th><th>Duration</th><th>Error</th></tr>
{{range .Runs}}<tr><td><code>{{.Tick}}</code></td><td class="{{.Outcome}}">{{.Outcome}}</td><td>{{.Replica}}</td><td>{{.Attempt}}</td><td>{{.Token}}</td><td>{{.Started}}</td><td>{{.Duration}}</td><td>{{.Error}}</td></tr>
{{end}}</table>
{{else}}<p>No run recorded yet.</p>
{{end}}{{end}}
</body>
</html>
`))
