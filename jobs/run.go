package jobs

import (
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Run is what every job receives for one execution of one tick. The scheduler
// fills it in after it has won the tick's lease; plugins and programs only read
// it.
type Run struct {
	// Job is the name of the job in the jobs table (not the plugin's func name).
	Job string
	// Scheduled is the tick's scheduled instant, in UTC. It is computed from the
	// schedule, never read from a clock, so it is the same on every replica and
	// together with Job it is the natural idempotency key of a run.
	Scheduled time.Time
	// Token is the fencing token of the lease the run holds. Tokens are strictly
	// increasing per job: a write carrying a lower token than one already
	// accepted comes from a runner that has lost its lease.
	Token uint64
	// Attempt is 1-based. It increases on retries inside one tick and when
	// another replica takes a tick over.
	Attempt int
	// Replica is the name of the replica that runs this attempt.
	Replica string
	// Args is the value the plugin's Decode returned for the job's args.
	Args any
	// Logger carries the fields job, scheduled, token, attempt and replica.
	// Build it with WithLogger. A nil Logger is treated as a no-op logger by
	// this package.
	Logger *zap.Logger
}

// Fields returns the zap fields that identify the run: job, scheduled, token,
// attempt and replica.
func (r Run) Fields() []zap.Field {
	return []zap.Field{
		zap.String("job", r.Job),
		zap.Time("scheduled", r.Scheduled.UTC()),
		zap.Uint64("token", r.Token),
		zap.Int("attempt", r.Attempt),
		zap.String("replica", r.Replica),
	}
}

// WithLogger returns a copy of r whose Scheduled is in UTC and whose Logger is
// base with the run's Fields attached. A nil base gives a no-op logger.
func (r Run) WithLogger(base *zap.Logger) Run {
	if base == nil {
		base = zap.NewNop()
	}
	r.Scheduled = r.Scheduled.UTC()
	if base.Core() == zapcore.NewNopCore() {
		// Fields on a logger that writes nothing would be dropped: skip
		// building them (a run starts with this, a thousand at one instant).
		r.Logger = base
		return r
	}
	r.Logger = base.With(r.Fields()...)
	return r
}

// Log returns r.Logger, or a no-op logger when it is nil, so that jobs can log
// unconditionally.
func (r Run) Log() *zap.Logger {
	if r.Logger == nil {
		return zap.NewNop()
	}
	return r.Logger
}
