package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	_ "time/tzdata" // Europe/Paris on machines without a zone database

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/oncecron/oncecron/admin"
	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/locktest"
	"github.com/oncecron/oncecron/locking/memlock"
	"github.com/oncecron/oncecron/schedule"
	"github.com/oncecron/oncecron/scheduler"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ttl = 3 * time.Second

func mustSchedule(t *testing.T, spec string, loc *time.Location) schedule.Schedule {
	t.Helper()
	s, err := schedule.Parse(spec, schedule.Options{Location: loc})
	if err != nil {
		t.Fatalf("parse %q: %v", spec, err)
	}
	return s
}

// env is a scheduler on a backend with an admin server fed by its events.
type env struct {
	sched  *scheduler.Scheduler
	locker *locking.Locker
	srv    *admin.Server
}

// newEnv builds the scheduler and the server; the scheduler does not run.
func newEnv(t *testing.T, b locking.Backend, js []scheduler.Job, token string) *env {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	locker, err := locking.New(b, locking.WithLogger(log), locking.WithPollInterval(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{locker: locker}
	e.sched, err = scheduler.New(scheduler.Options{
		Jobs: js, Locker: locker, Replica: "r1", TTL: ttl, ShutdownTimeout: 5 * time.Second, Logger: log, SkipCatchUp: true,
		Observe: func(ev scheduler.Event) { e.srv.Observe(ev) }, // set below, before Run
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv, err = admin.New(admin.Options{
		Scheduler: e.sched, Locker: locker, Logger: log, Version: "v1.2.3", ConfigHash: "cafe0123",
		Token: token, Backend: "memory", Zones: map[string]string{"paris": "Europe/Paris"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs the scheduler until the returned stop is called.
func (e *env) run(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.sched.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// get serves one request on h without a network.
func get(h http.Handler, method, path string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decoding %s: %v", w.Body, err)
	}
	return v
}

// TestEndpoints runs three jobs for 3.5 seconds of a synctest bubble's clock
// (it starts at 2000-01-01T00:00:00Z, so ticks fire at :01, :02, :03) and
// checks every read-only endpoint.
func TestEndpoints(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var holdOnce sync.Once
		js := []scheduler.Job{
			{Name: "ok", Schedule: mustSchedule(t, "@every 1s", nil), Func: func(ctx context.Context, r jobs.Run) error {
				time.Sleep(100 * time.Millisecond)
				return nil
			}},
			{Name: "bad", Schedule: mustSchedule(t, "@every 1s", nil), Func: func(ctx context.Context, r jobs.Run) error {
				return errors.New("boom <b>")
			}},
			// The first run holds its tick until the test releases it; the
			// next ticks are skipped (overlap skip).
			{Name: "hold", Schedule: mustSchedule(t, "@every 1s", nil), Func: func(ctx context.Context, r jobs.Run) error {
				holdOnce.Do(func() { <-release })
				return nil
			}},
			{Name: "paris", Schedule: mustSchedule(t, "0 0 3 * * *", mustLoc(t, "Europe/Paris")), Func: func(ctx context.Context, r jobs.Run) error {
				return nil
			}},
		}
		e := newEnv(t, memlock.New(), js, "")
		h := e.srv.Handler()
		stop := e.run(t)
		defer stop()
		defer close(release)
		time.Sleep(3500 * time.Millisecond)

		func() { // text
			for _, tc := range []struct {
				path     string
				code     int
				contains []string
			}{
				{"/healthz", http.StatusOK, []string{"ok"}},
				{"/readyz", http.StatusOK, []string{"ok: the backend answered the last claim"}},
				{"/metrics", http.StatusOK, []string{
					`oncecron_ticks_fired_total{job="ok"} 3`,
					`oncecron_ticks_total{job="ok",outcome="won"} 3`,
					`oncecron_ticks_total{job="ok",outcome="lost_race"} 0`,
					`oncecron_ticks_total{job="hold",outcome="won"} 3`,
					`oncecron_ticks_total{job="hold",outcome="skipped"} 2`,
					`oncecron_ticks_total{job="paris",outcome="won"} 0`,
					`oncecron_runs_total{job="ok",status="succeeded"} 3`,
					`oncecron_runs_total{job="bad",status="failed"} 3`,
					`oncecron_run_duration_seconds_count{job="ok"} 3`,
					`oncecron_run_duration_seconds_bucket{job="ok",le="0.1"} 3`,
					`oncecron_claim_duration_seconds_count{backend="memory",result="answered"} 9`,
					`oncecron_takeovers_total{job="ok"} 0`,
					`oncecron_leases_lost_total{job="ok"} 0`,
					`oncecron_catch_ups_total{job="ok"} 0`,
					`oncecron_backend_unavailable_total{job="ok"} 0`,
					`oncecron_next_fire_timestamp_seconds{job="ok"} 9.46684804e+08`, // 2000-01-01T00:00:04Z
					`oncecron_next_fire_timestamp_seconds{job="paris"} 9.46692e+08`, // 2000-01-01T02:00:00Z
					`oncecron_running_ticks{job="hold"} 1`,
					`oncecron_running_ticks{job="ok"} 0`,
					`oncecron_ready 1`,
					`oncecron_replica_info{config_hash="cafe0123",replica="r1",version="v1.2.3"} 1`,
					`oncecron_replica_start_time_seconds 9.466848e+08`,
					"go_goroutines ",
				}},
				{"/", http.StatusOK, []string{
					"<title>oncecron · r1</title>",
					"<tr><th>Replica</th><td>r1</td></tr>",
					"<tr><th>Version</th><td>v1.2.3</td></tr>",
					"<code>cafe0123</code>",
					`<span class="ready">ready</span>`,
					// Running now: hold's first tick.
					"<tr><td>hold</td><td><code>2000-01-01T00:00:01Z</code></td>",
					"<td>running on r1; last seen: skipped (tick 2000-01-01T00:00:03Z)</td>",
					// The jobs table: spec, zone, next fire in UTC and in the job's zone.
					`<td><a href="#runs-ok">ok</a></td><td><code>@every 1s</code></td><td>UTC</td><td>2000-01-01 00:00:04 UTC</td>`,
					`<td><code>0 0 3 * * *</code></td><td>Europe/Paris</td><td>2000-01-01 02:00:00 UTC</td><td>2000-01-01 03:00:00 CET</td>`,
					// Recent runs with outcome and duration, newest first.
					`<td><code>2000-01-01T00:00:03Z</code></td><td class="succeeded">succeeded</td><td>r1</td><td>1</td>`,
					"<td>100ms</td>",
					`<td class="failed">failed</td>`,
					"boom &lt;b&gt;", // escaped
					`<td class="skipped">skipped</td>`,
					"No run recorded yet.", // paris
				}},
			} {
				func() {
					w := get(h, http.MethodGet, tc.path, nil)
					if w.Code != tc.code {
						t.Errorf("GET %s: %d, want %d: %s", tc.path, w.Code, tc.code, w.Body)
						return
					}
					body := w.Body.String()
					for _, s := range tc.contains {
						if !strings.Contains(body, s) {
							t.Errorf("GET %s: no %q in:\n%s", tc.path, s, body)
						}
					}
				}()
			}
		}()

		func() { // api/jobs
			w := get(h, http.MethodGet, "/api/jobs", nil)
			if w.Code != http.StatusOK {
				t.Fatalf("%d: %s", w.Code, w.Body)
			}
			got := decode[struct {
				Replica string          `json:"replica"`
				Jobs    []admin.JobView `json:"jobs"`
			}](t, w)
			if got.Replica != "r1" || len(got.Jobs) != 4 {
				t.Fatalf("replica %q, %d jobs, want r1 and 4", got.Replica, len(got.Jobs))
			}
			byName := map[string]admin.JobView{}
			for _, j := range got.Jobs {
				byName[j.Name] = j
			}
			at := func(s string) time.Time {
				t.Helper()
				v, err := time.Parse(time.RFC3339, s)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			for _, tc := range []struct {
				job, spec, zone, next string
				lastOutcome           locking.Outcome // "": no last run
				lastTick              string
				holder                string
			}{
				{"ok", "@every 1s", "UTC", "2000-01-01T00:00:04Z", locking.OutcomeSucceeded, "2000-01-01T00:00:03Z", ""},
				{"bad", "@every 1s", "UTC", "2000-01-01T00:00:04Z", locking.OutcomeFailed, "2000-01-01T00:00:03Z", ""},
				{"hold", "@every 1s", "UTC", "2000-01-01T00:00:04Z", locking.OutcomeSkipped, "2000-01-01T00:00:03Z", "r1"},
				{"paris", "0 0 3 * * *", "Europe/Paris", "2000-01-01T02:00:00Z", "", "", ""},
			} {
				j, ok := byName[tc.job]
				if !ok {
					t.Errorf("no job %s", tc.job)
					continue
				}
				if j.Spec != tc.spec || j.Zone != tc.zone || j.NextFire == nil || !j.NextFire.Equal(at(tc.next)) || j.Holder != tc.holder {
					t.Errorf("job %s: spec %q zone %q next %v holder %q, want %q %q %s %q", tc.job, j.Spec, j.Zone, j.NextFire, j.Holder, tc.spec, tc.zone, tc.next, tc.holder)
				}
				switch {
				case tc.lastOutcome == "" && j.LastRun != nil:
					t.Errorf("job %s: last run %+v, want none", tc.job, j.LastRun)
				case tc.lastOutcome != "" && (j.LastRun == nil || j.LastRun.Outcome != tc.lastOutcome || j.LastRun.Tick != tc.lastTick || j.LastRun.Replica != "r1"):
					t.Errorf("job %s: last run %+v, want %s at %s on r1", tc.job, j.LastRun, tc.lastOutcome, tc.lastTick)
				}
				if j.LastRunError != "" {
					t.Errorf("job %s: last run error %q", tc.job, j.LastRunError)
				}
			}
			if r := byName["hold"].Running; len(r) != 1 || r[0].Tick != "2000-01-01T00:00:01Z" || r[0].Token == 0 {
				t.Errorf("hold running %+v, want its tick at 00:00:01", r)
			}
			if r := byName["ok"].LastRun; r != nil && r.DurationSeconds != 0.1 {
				t.Errorf("ok's last run took %vs, want 0.1", r.DurationSeconds)
			}
		}()

		func() { // api/runs
			for _, tc := range []struct {
				path  string
				code  int
				ticks []string // newest first
			}{
				{"/api/jobs/ok/runs?limit=2", http.StatusOK, []string{"2000-01-01T00:00:03Z", "2000-01-01T00:00:02Z"}},
				{"/api/jobs/ok/runs", http.StatusOK, []string{"2000-01-01T00:00:03Z", "2000-01-01T00:00:02Z", "2000-01-01T00:00:01Z"}},
				{"/api/jobs/paris/runs", http.StatusOK, []string{}},
				{"/api/jobs/ok/runs?limit=0", http.StatusBadRequest, nil},
				{"/api/jobs/ok/runs?limit=x", http.StatusBadRequest, nil},
				{"/api/jobs/ok/runs?limit=1001", http.StatusBadRequest, nil},
				{"/api/jobs/nope/runs", http.StatusNotFound, nil},
			} {
				w := get(h, http.MethodGet, tc.path, nil)
				if w.Code != tc.code {
					t.Errorf("GET %s: %d, want %d: %s", tc.path, w.Code, tc.code, w.Body)
					continue
				}
				if tc.code != http.StatusOK {
					if e := decode[map[string]string](t, w); e["error"] == "" {
						t.Errorf("GET %s: no error message in %s", tc.path, w.Body)
					}
					continue
				}
				got := decode[struct {
					Job  string          `json:"job"`
					Runs []admin.RunView `json:"runs"`
				}](t, w)
				var ticks []string
				for _, r := range got.Runs {
					ticks = append(ticks, r.Tick)
					if r.Outcome != locking.OutcomeSucceeded || r.Replica != "r1" || r.Token == 0 || r.DurationSeconds != 0.1 {
						t.Errorf("GET %s: run %+v", tc.path, r)
					}
				}
				if strings.Join(ticks, ",") != strings.Join(tc.ticks, ",") || got.Runs == nil {
					t.Errorf("GET %s: ticks %v, want %v", tc.path, ticks, tc.ticks)
				}
			}
		}()

		func() { // api/replica
			w := get(h, http.MethodGet, "/api/replica", nil)
			got := decode[admin.ReplicaView](t, w)
			want := admin.ReplicaView{Name: "r1", Version: "v1.2.3", ConfigHash: "cafe0123", Backend: "memory",
				StartedAt: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}
			if w.Code != http.StatusOK || got != want {
				t.Errorf("%d %+v, want %+v", w.Code, got, want)
			}
		}()
	})
}

// metricValue returns the value of series in a text exposition.
func metricValue(t *testing.T, exposition, series string) float64 {
	t.Helper()
	for line := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestReadyz cuts the backend: once a claim finds it unreachable /readyz says
// 503 with the reason, and oncecron_ready drops to 0; once it heals, /readyz
// says 200 again (the probe or a new claim finds it back).
func TestReadyz(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fb := locktest.NewFaultyBackend(memlock.New())
		js := []scheduler.Job{{Name: "minutely", Schedule: mustSchedule(t, "@every 1m", nil),
			Func: func(ctx context.Context, r jobs.Run) error { return nil }}}
		e := newEnv(t, fb, js, "")
		h := e.srv.Handler()
		stop := e.run(t)
		defer stop()

		check := func(step string, code int, body, metric string) {
			t.Helper()
			w := get(h, http.MethodGet, "/readyz", nil)
			if w.Code != code || !strings.Contains(w.Body.String(), body) {
				t.Errorf("%s: /readyz %d %q, want %d and %q", step, w.Code, w.Body, code, body)
			}
			if m := get(h, http.MethodGet, "/metrics", nil).Body.String(); !strings.Contains(m, metric) {
				t.Errorf("%s: no %q in /metrics", step, metric)
			}
		}
		check("before any claim", http.StatusOK, "ok: no claim yet", "oncecron_ready 1")
		time.Sleep(61 * time.Second)
		check("after a claim", http.StatusOK, "ok: the backend answered the last claim", "oncecron_ready 1")

		fb.Cut()
		// The next claim (at 2m) hangs until the faulty backend fails it, an
		// hour later.
		time.Sleep(time.Hour + 2*time.Minute)
		check("cut", http.StatusServiceUnavailable, "not ready: backend unreachable on the last claim (job minutely", "oncecron_ready 0")
		check("cut", http.StatusServiceUnavailable, "probe: ", "")
		if n := metricValue(t, get(h, http.MethodGet, "/metrics", nil).Body.String(), `oncecron_backend_unavailable_total{job="minutely"}`); n < 1 {
			t.Errorf("oncecron_backend_unavailable_total %v, want at least 1", n)
		}

		fb.Heal()
		check("healed", http.StatusOK, "ok: ", "")
	})
}

// TestToken checks the bearer-token guard of the state-changing endpoints.
func TestToken(t *testing.T) {
	js := []scheduler.Job{{Name: "x", Schedule: mustSchedule(t, "@every 1h", nil),
		Func: func(ctx context.Context, r jobs.Run) error { return nil }}}
	guarded := newEnv(t, memlock.New(), js, "s3cret").srv.Handler()
	open := newEnv(t, memlock.New(), js, "").srv.Handler()
	for _, tc := range []struct {
		name   string
		h      http.Handler
		method string
		path   string
		auth   string // Authorization header; "" for none
		code   int
	}{
		{"no token", guarded, http.MethodPost, "/api/jobs/x/trigger", "", http.StatusUnauthorized},
		{"wrong token", guarded, http.MethodPost, "/api/jobs/x/trigger", "Bearer wrong", http.StatusUnauthorized},
		{"token prefix", guarded, http.MethodPost, "/api/jobs/x/trigger", "Bearer s3cre", http.StatusUnauthorized},
		{"not bearer", guarded, http.MethodPost, "/api/jobs/x/trigger", "Basic czNjcmV0", http.StatusUnauthorized},
		{"bare token", guarded, http.MethodPost, "/api/jobs/x/trigger", "s3cret", http.StatusUnauthorized},
		{"right token", guarded, http.MethodPost, "/api/jobs/x/trigger?id=a", "Bearer s3cret", http.StatusAccepted},
		{"same id again", guarded, http.MethodPost, "/api/jobs/x/trigger?id=a", "Bearer s3cret", http.StatusConflict},
		{"scheme case", guarded, http.MethodPost, "/api/jobs/x/trigger?id=b", "bearer s3cret", http.StatusAccepted},
		{"bad id", guarded, http.MethodPost, "/api/jobs/x/trigger?id=a%2Fb", "Bearer s3cret", http.StatusBadRequest},
		{"right token, unknown job", guarded, http.MethodPost, "/api/jobs/nope/trigger", "Bearer s3cret", http.StatusNotFound},
		{"unknown job, no token", guarded, http.MethodPost, "/api/jobs/nope/trigger", "", http.StatusUnauthorized},
		{"no token configured", open, http.MethodPost, "/api/jobs/x/trigger", "Bearer ", http.StatusForbidden},
		{"no token configured, any token", open, http.MethodPost, "/api/jobs/x/trigger", "Bearer s3cret", http.StatusForbidden},
		{"GET on a POST route", guarded, http.MethodGet, "/api/jobs/x/trigger", "Bearer s3cret", http.StatusMethodNotAllowed},
		{"reads need no token", guarded, http.MethodGet, "/api/replica", "", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			if tc.auth != "" {
				hdr.Set("Authorization", tc.auth)
			}
			w := get(tc.h, tc.method, tc.path, hdr)
			if w.Code != tc.code {
				t.Errorf("%s %s with %q: %d, want %d: %s", tc.method, tc.path, tc.auth, w.Code, tc.code, w.Body)
			}
			if tc.code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	locker, err := locking.New(memlock.New())
	if err != nil {
		t.Fatal(err)
	}
	sched, err := scheduler.New(scheduler.Options{Locker: locker, Replica: "r1", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    admin.Options
	}{
		{"no scheduler", admin.Options{Locker: locker}},
		{"no locker", admin.Options{Scheduler: sched}},
		{"negative timeout", admin.Options{Scheduler: sched, Locker: locker, BackendTimeout: -time.Second}},
		{"unknown zone", admin.Options{Scheduler: sched, Locker: locker}}, // replaced below
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "unknown zone" {
				js := []scheduler.Job{{Name: "x", Schedule: mustSchedule(t, "@every 1h", nil),
					Func: func(ctx context.Context, r jobs.Run) error { return nil }}}
				s, err := scheduler.New(scheduler.Options{Jobs: js, Locker: locker, Replica: "r1", TTL: ttl})
				if err != nil {
					t.Fatal(err)
				}
				tc.o = admin.Options{Scheduler: s, Locker: locker, Zones: map[string]string{"x": "Nowhere/Atlantis"}}
			}
			if _, err := admin.New(tc.o); err == nil {
				t.Error("New succeeded")
			}
		})
	}
}

// TestListenAndServe serves on a loopback port and stops when its context
// ends.
func TestListenAndServe(t *testing.T) {
	e := newEnv(t, memlock.New(), nil, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()

	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("GET /healthz: %d %q", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}

	// A bad address fails at once.
	if err := e.srv.ListenAndServe(context.Background(), "256.0.0.1:bad"); err == nil {
		t.Error("ListenAndServe on a bad address succeeded")
	}
}

// TestManualRunAndReload checks that a manual run (Scheduler.Trigger) shows as
// held by this replica and is counted apart from ticks, and that a reload
// replaces the series of removed jobs with those of new ones.
func TestManualRunAndReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		hold := func(ctx context.Context, r jobs.Run) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}
		e := newEnv(t, memlock.New(), []scheduler.Job{{Name: "x", Schedule: mustSchedule(t, "@every 24h", nil), Func: hold}}, "")
		h := e.srv.Handler()
		stop := e.run(t)
		defer stop()

		triggered := make(chan error, 1)
		go func() {
			_, err := e.sched.Trigger(context.Background(), "x", "t1")
			triggered <- err
		}()
		synctest.Wait()
		got := decode[struct {
			Jobs []admin.JobView `json:"jobs"`
		}](t, get(h, http.MethodGet, "/api/jobs", nil))
		if len(got.Jobs) != 1 || got.Jobs[0].Holder != "r1" || len(got.Jobs[0].Running) != 1 || !got.Jobs[0].Running[0].Manual || got.Jobs[0].Running[0].Tick != "" {
			t.Errorf("jobs during a manual run: %+v", got.Jobs)
		}
		if page := get(h, http.MethodGet, "/", nil).Body.String(); !strings.Contains(page, "<tr><td>x</td><td><code>manual run</code></td>") {
			t.Errorf("the status page does not show the manual run:\n%s", page)
		}
		close(release)
		if err := <-triggered; err != nil {
			t.Fatalf("Trigger: %v", err)
		}
		synctest.Wait()
		metrics := get(h, http.MethodGet, "/metrics", nil).Body.String()
		for series, want := range map[string]float64{
			`oncecron_manual_runs_total{job="x"}`:                                       1,
			`oncecron_ticks_total{job="x",outcome="won"}`:                               0,
			`oncecron_runs_total{job="x",status="succeeded"}`:                           1,
			`oncecron_running_ticks{job="x"}`:                                           0,
			`oncecron_table_reloads_total{result="applied"}`:                            0,
			`oncecron_claim_duration_seconds_count{backend="memory",result="answered"}`: 0,
		} {
			if v := metricValue(t, metrics, series); v != want {
				t.Errorf("%s = %v, want %v", series, v, want)
			}
		}
		if r, _ := e.sched.Job("x"); len(r.Running) != 0 {
			t.Errorf("x still runs after its manual run ended: %+v", r.Running)
		}

		if err := e.sched.Reload([]scheduler.Job{{Name: "y", Schedule: mustSchedule(t, "@every 24h", nil), Func: hold}}); err != nil {
			t.Fatal(err)
		}
		metrics = get(h, http.MethodGet, "/metrics", nil).Body.String()
		if v := metricValue(t, metrics, `oncecron_table_reloads_total{result="applied"}`); v != 1 {
			t.Errorf("reloads applied = %v, want 1", v)
		}
		if v := metricValue(t, metrics, `oncecron_ticks_total{job="y",outcome="won"}`); v != 0 {
			t.Errorf("y won = %v, want 0", v)
		}
		if strings.Contains(metrics, `job="x"`) {
			t.Errorf("series of the removed job x remain:\n%s", metrics)
		}
	})
}
