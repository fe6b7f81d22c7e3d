// Package admin serves a replica's operating endpoints on one HTTP listener:
// Prometheus metrics (/metrics), Kubernetes probes (/healthz, /readyz), a JSON
// API (/api/...) and a server-side HTML status page (/).
//
// The listener is off unless the table's admin.listen is set; bind it to
// loopback or a private interface (127.0.0.1:9090 is the recommended value):
// the read-only endpoints are unauthenticated. Every state-changing endpoint
// requires "Authorization: Bearer <token>" with the token of the
// ONCECRON_ADMIN_TOKEN environment variable, and is refused when it is unset.
//
// Metrics come from scheduler events: pass (*Server).Observe as the
// scheduler's Options.Observe. They are kept on a private registry, never the
// global one.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/scheduler"
)

// TokenEnv is the environment variable holding the bearer token of the
// state-changing endpoints.
const TokenEnv = "ONCECRON_ADMIN_TOKEN"

// Defaults of Options and of the listener.
const (
	// DefaultBackendTimeout bounds the backend reads of one request.
	DefaultBackendTimeout = 3 * time.Second
	// ShutdownTimeout bounds the graceful stop of the listener.
	ShutdownTimeout = 5 * time.Second
	// probeTimeout bounds the backend probe of /readyz.
	probeTimeout = 2 * time.Second
)

// Options configures a Server.
type Options struct {
	// Scheduler is the replica's scheduler (required).
	Scheduler *scheduler.Scheduler
	// Locker reads the jobs' run records (required); it should be the
	// scheduler's.
	Locker *locking.Locker
	// Logger logs (default: none).
	Logger *zap.Logger
	// Replica names this replica (default: the scheduler's replica name).
	Replica string
	// Version is the replica's version.
	Version string
	// ConfigHash is the hash of the cron table (config.Config.Hash).
	ConfigHash string
	// Token guards the state-changing endpoints (usually from TokenEnv);
	// empty refuses them all.
	Token string
	// Backend names the lock backend (memory, redis, etcd, zookeeper): the
	// "backend" label of the claim latency (default "unknown").
	Backend string
	// Zones maps job names to the IANA zone of their schedule, as the table
	// sets it (default UTC). A CRON_TZ= or TZ= prefix in a job's spec wins.
	Zones map[string]string
	// StartedAt is when the replica started (default: when New is called).
	StartedAt time.Time
	// BackendTimeout bounds the backend reads of one request (default
	// DefaultBackendTimeout).
	BackendTimeout time.Duration
}

// Server serves the admin endpoints of one replica. Its methods are safe for
// concurrent use.
type Server struct {
	o       Options
	log     *zap.Logger
	sched   *scheduler.Scheduler
	locker  *locking.Locker
	metrics *metrics
	handler http.Handler
	tokenH  [sha256.Size]byte         // hash of Options.Token
	zones   map[string]*time.Location // by IANA name, loaded by New
}

// New returns a Server for o. It does not listen; see ListenAndServe, Serve
// and Handler.
func New(o Options) (*Server, error) {
	switch {
	case o.Scheduler == nil:
		return nil, errors.New("admin: nil scheduler")
	case o.Locker == nil:
		return nil, errors.New("admin: nil locker")
	case o.BackendTimeout < 0:
		return nil, fmt.Errorf("admin: negative backend timeout %v", o.BackendTimeout)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Replica == "" {
		o.Replica = o.Scheduler.Replica()
	}
	if o.Backend == "" {
		o.Backend = "unknown"
	}
	if o.StartedAt.IsZero() {
		o.StartedAt = time.Now()
	}
	if o.BackendTimeout == 0 {
		o.BackendTimeout = DefaultBackendTimeout
	}
	s := &Server{
		o: o, log: o.Logger.Named("admin"), sched: o.Scheduler, locker: o.Locker,
		tokenH: sha256.Sum256([]byte(o.Token)), zones: map[string]*time.Location{},
	}
	for _, j := range o.Scheduler.Jobs() {
		name := s.zoneName(j)
		loc, err := time.LoadLocation(name)
		if err != nil {
			return nil, fmt.Errorf("admin: job %s: zone %q: %w", j.Name, name, err)
		}
		s.zones[name] = loc
	}
	s.metrics = newMetrics(o.Scheduler, o)
	s.handler = s.routes()
	return s, nil
}

// Observe feeds the metrics with a scheduler event: pass it (or a function
// calling it) as scheduler.Options.Observe. It is safe for concurrent use and
// does not block.
func (s *Server) Observe(e scheduler.Event) {
	s.metrics.observe(s.sched, e)
}

// ObserveLease feeds the lease renewal metrics; pass it to locking.New with
// locking.WithLeaseEvents.
func (s *Server) ObserveLease(e locking.LeaseEvent) {
	s.metrics.renewals.WithLabelValues(string(e.Kind)).Inc()
}

// Handler returns the handler of every admin endpoint.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(s.log), Registry: s.metrics.reg,
	}))
	mux.HandleFunc("GET /api/jobs", s.apiJobs)
	mux.HandleFunc("GET /api/jobs/{name}/runs", s.apiRuns)
	mux.HandleFunc("GET /api/replica", s.apiReplica)
	// State-changing endpoints: every one behind the bearer token.
	mux.Handle("POST /api/jobs/{name}/trigger", s.requireToken(http.HandlerFunc(s.apiTrigger)))
	return mux
}

// ListenAndServe listens on addr (host:port) and serves the admin endpoints
// until ctx ends; then it stops gracefully, waiting up to ShutdownTimeout for
// requests in flight, and returns nil. It returns an error if it cannot listen
// or the server fails.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves the admin endpoints on ln until ctx ends, as ListenAndServe
// does. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(s.log),
	}
	s.log.Info("admin endpoint listening", zap.String("addr", ln.Addr().String()))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("admin: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("admin endpoint: requests still running at the shutdown timeout; closing them", zap.Error(err))
		_ = srv.Close()
	}
	<-served // http.ErrServerClosed
	s.log.Info("admin endpoint stopped")
	return nil
}

// requireToken lets a request through only with the bearer token.
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.o.Token == "" {
			writeError(w, http.StatusForbidden, "state-changing endpoints are disabled: set "+TokenEnv+" on the replica")
			return
		}
		got, ok := bearer(r)
		if !ok || !s.tokenOK(got) {
			s.log.Warn("admin: unauthorized request", zap.String("method", r.Method), zap.String("path", r.URL.Path),
				zap.String("remote", r.RemoteAddr), zap.Bool("had_token", ok))
			w.Header().Set("WWW-Authenticate", `Bearer realm="oncecron"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tokenOK compares tok with the configured token in constant time, also in
// its length (both are hashed first).
func (s *Server) tokenOK(tok string) bool {
	h := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(h[:], s.tokenH[:]) == 1
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// healthz answers 200 while the process serves requests.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

// readyz answers 200 when the backend is reachable, 503 with a reason when
// not. The table is loaded by the time the server exists. Reachability comes
// from the scheduler's recent claims; when the last one failed, a bounded
// probe (one record read) checks whether the backend is back, since a replica
// whose jobs fire rarely may not claim again for a long time.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.sched.Readiness()
	if rd.Ready {
		writeText(w, http.StatusOK, "ok: "+rd.Reason+"\n")
		return
	}
	perr := s.probe(r.Context())
	if perr == nil {
		writeText(w, http.StatusOK, "ok: the backend answered a probe (the last claim, at "+
			rd.Since.UTC().Format(time.RFC3339)+", did not)\n")
		return
	}
	writeText(w, http.StatusServiceUnavailable, fmt.Sprintf("not ready: %s; probe: %v\n", rd.Reason, perr))
}

// probe reads one record of the first job.
func (s *Server) probe(ctx context.Context) error {
	js := s.sched.Jobs()
	if len(js) == 0 {
		return errors.New("no job to probe with")
	}
	ctx, cancel := context.WithTimeout(ctx, min(probeTimeout, s.o.BackendTimeout))
	defer cancel()
	_, err := s.locker.Records(ctx, js[0].Name, 1)
	return err
}

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(text))
}
