package admin

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/scheduler"
)

// Tick outcomes, the values of the "outcome" label of oncecron_ticks_total.
const (
	tickWon         = "won"
	tickLostRace    = "lost_race"
	tickAlreadyDone = "already_done"
	tickSkipped     = "skipped"
	tickMissed      = "missed"
)

var tickOutcomes = []string{tickWon, tickLostRace, tickAlreadyDone, tickSkipped, tickMissed}

// Claim results, the values of the "result" label of
// oncecron_claim_duration_seconds.
const (
	claimAnswered    = "answered"
	claimUnavailable = "unavailable"
)

// metrics holds the Prometheus collectors fed by scheduler events, on a
// private registry.
type metrics struct {
	reg     *prometheus.Registry
	backend string

	fired         *prometheus.CounterVec
	ticks         *prometheus.CounterVec
	runs          *prometheus.CounterVec
	runDuration   *prometheus.HistogramVec
	claimDuration *prometheus.HistogramVec
	takeovers     *prometheus.CounterVec
	leasesLost    *prometheus.CounterVec
	catchUps      *prometheus.CounterVec
	unavailable   *prometheus.CounterVec
	manualRuns    *prometheus.CounterVec
	reloads       *prometheus.CounterVec
	renewals      *prometheus.CounterVec
	clockOffset   prometheus.Gauge
	clockSkewed   *prometheus.CounterVec

	mu   sync.Mutex
	jobs map[string]bool // the jobs whose series exist
}

// newMetrics registers every collector on a new registry. sched feeds the
// gauges read at scrape time (next fire, running ticks, readiness).
func newMetrics(sched *scheduler.Scheduler, o Options) *metrics {
	m := &metrics{
		reg:     prometheus.NewRegistry(),
		backend: o.Backend,
		jobs:    map[string]bool{},
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oncecron_ticks_fired_total",
			Help: "Ticks whose instant came on this replica (each then races for the tick).",
		}, []string{"job"}),
		ticks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oncecron_ticks_total",
			Help: "Ticks this replica took part in, by outcome: won (it ran or recorded the tick), lost_race (another replica held it), " +
				"already_done (completed before it claimed), skipped (overlap policy), missed (misfire policy or backend down until the starting deadline).",
		}, []string{"job", "outcome"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oncecron_runs_total",
			Help: "Runs that ended on this replica, by status (succeeded, failed, abandoned; lost when the completion was refused).",
		}, []string{"job", "status"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oncecron_run_duration_seconds",
			Help:    "Duration of the runs that ended on this replica, all attempts included.",
			Buckets: []float64{0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 12 * 3600},
		}, []string{"job"}),
		claimDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "oncecron_claim_duration_seconds",
			Help: "How long after a tick's start (its instant, plus jitter) the backend's answer to this replica's first claim of it came, " +
				"0 when it came ahead (result answered: won, lost the race or already done; unavailable: the claim failed). " +
				"Catch-up ticks are not measured.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"backend", "result"}),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oncecron_takeovers_total",
			Help: "Ticks this replica took over from a runner whose lease expired before it completed them.",
		}, []string{"job"}),
		leasesLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oncecron_leases_lost_total",
			Help: "Runs on this replica that lost their lease (renewals failed until the deadline, or the backend refused the completion).",
		}, []string{"job"}),
		catchUps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oncecron_catch_ups_total",
			Help: "Catch-ups started on this replica: ticks found that fell while no replica could run them.",
		}, []string{"job"}),
		unavailable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oncecron_backend_unavailable_total",
			Help: "Claims of this replica that found the backend unreachable.",
		}, []string{"job"}),
		manualRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oncecron_manual_runs_total",
			Help: "Manual runs (triggers) this replica won; their ends count in oncecron_runs_total.",
		}, []string{"job"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oncecron_table_reloads_total",
			Help: "Reloads of the cron table, by result: applied, or refused (the old table runs on).",
		}, []string{"result"}),
	}
	m.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oncecron_lease_renewals_total",
		Help: "Lease renewals by the watchdog, by result: renewed, renew_failed (retried until the deadline), lost.",
	}, []string{"result"})
	for _, r := range []string{"renewed", "renew_failed", "lost"} {
		m.renewals.WithLabelValues(r)
	}
	m.clockOffset = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "oncecron_clock_offset_seconds",
		Help: "How far this replica's clock is ahead of the backend server's (negative: behind), last estimate.",
	})
	m.clockSkewed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oncecron_clock_skewed_ticks_total",
		Help: "Critical ticks this replica left to others because its clock offset exceeded lock.max_clock_offset.",
	}, []string{"job"})
	m.reg.MustRegister(m.fired, m.ticks, m.runs, m.runDuration, m.claimDuration,
		m.takeovers, m.leasesLost, m.catchUps, m.unavailable, m.manualRuns, m.reloads, m.renewals, m.clockOffset, m.clockSkewed,
		&stateCollector{sched: sched},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "oncecron_ready",
			Help: "1 if the backend answered this replica's most recent claim (see /readyz), else 0.",
		}, func() float64 {
			if sched.Ready() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "oncecron_replica_info",
			Help:        "Always 1; the labels name this replica, its version and the hash of its cron table.",
			ConstLabels: prometheus.Labels{"replica": o.Replica, "version": o.Version, "config_hash": o.ConfigHash},
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "oncecron_replica_start_time_seconds",
			Help: "When this replica started, in Unix seconds.",
		}, func() float64 { return float64(o.StartedAt.UnixNano()) / 1e9 }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.reloads.WithLabelValues("applied")
	m.reloads.WithLabelValues("refused")
	m.claimDuration.WithLabelValues(m.backend, claimAnswered)
	m.initJobs(sched)
	return m
}

// initJobs creates every job's series at zero, so that rate() and absence
// alerts work before the first event. After a reload it creates those of new
// jobs and deletes those of removed jobs.
func (m *metrics) initJobs(sched *scheduler.Scheduler) {
	table := sched.Jobs()
	m.mu.Lock()
	defer m.mu.Unlock()
	current := map[string]bool{}
	for _, j := range table {
		current[j.Name] = true
	}
	for name := range m.jobs {
		if !current[name] {
			for _, v := range []interface {
				DeletePartialMatch(prometheus.Labels) int
			}{m.fired, m.ticks, m.runs, m.runDuration, m.takeovers, m.leasesLost, m.catchUps, m.unavailable, m.manualRuns} {
				v.DeletePartialMatch(prometheus.Labels{"job": name})
			}
		}
	}
	m.jobs = current
	for _, j := range table {
		m.fired.WithLabelValues(j.Name)
		for _, o := range tickOutcomes {
			m.ticks.WithLabelValues(j.Name, o)
		}
		for _, o := range []locking.Outcome{locking.OutcomeSucceeded, locking.OutcomeFailed} {
			m.runs.WithLabelValues(j.Name, string(o))
		}
		m.runDuration.WithLabelValues(j.Name)
		m.takeovers.WithLabelValues(j.Name)
		m.leasesLost.WithLabelValues(j.Name)
		m.catchUps.WithLabelValues(j.Name)
		m.unavailable.WithLabelValues(j.Name)
		m.manualRuns.WithLabelValues(j.Name)
	}
}

// observe counts e. It is safe for concurrent use.
func (m *metrics) observe(sched *scheduler.Scheduler, e scheduler.Event) {
	switch e.Kind {
	case scheduler.EventWon:
		if e.Tick.IsZero() { // a manual run (Trigger): no tick
			m.manualRuns.WithLabelValues(e.Job).Inc()
			return
		}
		m.ticks.WithLabelValues(e.Job, tickWon).Inc()
		m.claimed(e, claimAnswered)
	case scheduler.EventClockOffset:
		m.clockOffset.Set(e.Duration.Seconds())
	case scheduler.EventClockSkewed:
		m.clockSkewed.WithLabelValues(e.Job).Inc()
	case scheduler.EventReloaded:
		m.reloads.WithLabelValues("applied").Inc()
		m.initJobs(sched)
	case scheduler.EventReloadFailed:
		m.reloads.WithLabelValues("refused").Inc()
	case scheduler.EventFired:
		m.fired.WithLabelValues(e.Job).Inc()
	case scheduler.EventLostRace:
		m.ticks.WithLabelValues(e.Job, tickLostRace).Inc()
		m.claimed(e, claimAnswered)
	case scheduler.EventAlreadyDone:
		m.ticks.WithLabelValues(e.Job, tickAlreadyDone).Inc()
		m.claimed(e, claimAnswered)
	case scheduler.EventSkipped:
		m.ticks.WithLabelValues(e.Job, tickSkipped).Inc()
	case scheduler.EventMissed:
		m.ticks.WithLabelValues(e.Job, tickMissed).Inc()
	case scheduler.EventUnavailable:
		m.unavailable.WithLabelValues(e.Job).Inc()
		m.claimed(e, claimUnavailable)
	case scheduler.EventTakeover:
		m.takeovers.WithLabelValues(e.Job).Inc()
	case scheduler.EventCatchUp:
		m.catchUps.WithLabelValues(e.Job).Inc()
	case scheduler.EventLeaseLost:
		m.leasesLost.WithLabelValues(e.Job).Inc()
	case scheduler.EventFinished:
		m.runs.WithLabelValues(e.Job, string(e.Outcome)).Inc()
		m.runDuration.WithLabelValues(e.Job).Observe(e.Duration.Seconds())
	}
}

// claimed times the answer to a tick's first claim; later answers (the wait
// after a lost race, retries) and catch-ups' claims are not measured.
func (m *metrics) claimed(e scheduler.Event, result string) {
	if e.FirstClaim {
		m.claimDuration.WithLabelValues(m.backend, result).Observe(e.Duration.Seconds())
	}
}

// stateCollector reports the scheduler's state at scrape time.
type stateCollector struct {
	sched *scheduler.Scheduler
}

var (
	nextFireDesc = prometheus.NewDesc("oncecron_next_fire_timestamp_seconds",
		"The job's next fire instant, in Unix seconds (absent when it has none within the schedule's horizon).", []string{"job"}, nil)
	runningDesc = prometheus.NewDesc("oncecron_running_ticks",
		"Ticks of the job that this replica holds now.", []string{"job"}, nil)
)

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- nextFireDesc
	ch <- runningDesc
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, j := range c.sched.Jobs() {
		if !j.Next.IsZero() {
			ch <- prometheus.MustNewConstMetric(nextFireDesc, prometheus.GaugeValue, float64(j.Next.Unix()), j.Name)
		}
		ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, float64(len(j.Running)), j.Name)
	}
}
