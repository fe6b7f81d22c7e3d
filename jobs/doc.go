// Package jobs is what oncecron runs: the Run every job receives, the plugin
// registry of Go functions, programs (Command) and the Retry helper.
//
// # The model
//
// Every replica of oncecron reads the same jobs table and, for each tick — a
// (job, scheduled instant) pair — races the others on a lock backend. The
// winner holds a lease on the tick and runs the job; the lease carries a
// fencing token, a number strictly greater than every token issued before
// for that job. The job receives all of this in a Run:
//
//   - Run.Job and Run.Scheduled name the tick. Scheduled comes from the
//     schedule, not from a clock, so it is identical on every replica: use
//     (Job, Scheduled) as the idempotency key of whatever the job writes.
//   - Run.Token is the fence. A replica can lose its lease without knowing it
//     yet (a GC pause, a partition) while another replica takes the tick over
//     with a higher token. Any store the job writes to should remember the
//     highest token it has accepted and refuse writes that carry a lower one,
//     in the same transaction as the write. Package
//     github.com/oncecron/oncecron/examples/payments shows how.
//   - Run.Attempt counts retries inside the tick and takeovers by other
//     replicas; Run.Replica says who runs this attempt.
//   - Run.Logger already carries the fields job, scheduled, token, attempt
//     and replica (see Run.WithLogger).
//
// The scheduler cancels the context a job gets when the lease is lost, the
// job's timeout expires or the replica shuts down; context.Cause tells which.
// Jobs must return promptly when it is cancelled.
//
// # Plugins
//
// A job's "func" names a Go function in a Registry. A user's own main imports
// oncecron, registers functions and calls the same entry point as
// cmd/scheduler:
//
//	type reconcileArgs struct {
//		Currency string   `yaml:"currency"`
//		Accounts []string `yaml:"accounts"`
//	}
//
//	func main() {
//		jobs.Register("payments.reconcile", func(ctx context.Context, run jobs.Run, args reconcileArgs) error {
//			...
//		})
//		...
//	}
//
// The function's third parameter gives the type its YAML args decode into.
// Decoding is strict: an unknown field or a wrong type is an error carrying
// the YAML line of the offending arg, and so is a value rejected by the
// type's Validate method (see Validator). Because Registry.CheckFunc
// implements config's FuncChecker, a config is checked against the functions
// the binary really has before any tick fires. Func names match
// [A-Za-z0-9._-]+.
//
// Register fills the process-wide Default registry — the only global state
// in oncecron — and panics on a bad or duplicate name, because registration
// belongs in init and main like http.Handle. Tests and embedders build their
// own Registry and use RegisterTo, which returns errors instead.
//
// A panic in a job function is recovered and returned as a *PanicError, so a
// plugin bug fails one run and never crashes a replica.
//
// Importing github.com/oncecron/oncecron/jobs/builtin for its side effect
// registers the example plugin "example.hello".
//
// # Programs
//
// A Command runs a program without a shell, in its own process group, with
// the replica's environment plus Command.Env plus ONCECRON_JOB,
// ONCECRON_FIRE_TIME, ONCECRON_TOKEN, ONCECRON_REPLICA and ONCECRON_ATTEMPT,
// so that a script can fence and deduplicate its own writes. Its output is
// logged line by line through Run.Logger, within size limits. When the
// context ends the whole group gets SIGTERM, then SIGKILL after a grace
// period; when the program exits, anything it left running in its group is
// killed, because nothing of a run may outlive its lease.
//
// # Retries
//
// Retry runs a function again within one tick with exponential backoff and
// jitter; the scheduler uses it for a job's "retries:".
package jobs
