// Package payments is an example plugin, "payments.reconcile", that shows
// how a job makes its writes safe under oncecron's model. Read it before
// writing a job that changes anything.
//
// # Why a lease is not enough
//
// oncecron runs each tick on one replica at a time, under a lease. But a
// replica can lose its lease without knowing it: a long GC pause, a frozen
// VM or a network partition stops it, the lease expires, another replica
// takes the tick (or the next one) over with a newer lease, and then the old
// replica wakes up and carries on with the write it was about to make. No
// check done before the write ("do I still hold the lease?") closes that
// window, because the pause can fall between the check and the write.
//
// # Idempotency key and fence
//
// Two values of jobs.Run make the write safe, if the store you write to
// checks them in the same transaction as the write:
//
//   - The idempotency key (Run.Job, Run.Scheduled): the tick. Scheduled is
//     computed from the schedule, identical on every replica, so a retry or a
//     takeover of the same tick writes under the same key and the store keeps
//     one settlement per tick however many times it is posted.
//   - The fence Run.Token: strictly increasing per job. The store remembers
//     the highest token it has accepted for the job and refuses a write that
//     carries a lower one (ErrStaleToken): it comes from a runner that has
//     been superseded. An equal token is the same run (a retry inside the
//     tick, or a re-post after a lost reply) and is accepted, which the
//     idempotency key then turns into a no-op.
//
// Tokens are only comparable within one job (each job has its own lock), so
// the fence is kept per job, not per account or per store.
//
// # In a SQL database
//
// Do both in the transaction that makes the write; the row lock on the fence
// row serialises runners of the same job:
//
//	BEGIN;
//	-- The fence: 0 rows affected means a newer runner got here first.
//	INSERT INTO job_fences (job, last_token) VALUES ($job, $token)
//	ON CONFLICT (job) DO UPDATE SET last_token = EXCLUDED.last_token
//	    WHERE job_fences.last_token <= EXCLUDED.last_token;
//	-- (on 0 rows: ROLLBACK and report a stale token)
//	-- The write, keyed by the tick: a second post of the same tick is a no-op.
//	INSERT INTO settlements (job, scheduled, token, currency, total)
//	VALUES ($job, $scheduled, $token, $currency, $total)
//	ON CONFLICT (job, scheduled) DO NOTHING;
//	COMMIT;
//
// With a single table the fence can sit on the row itself:
// UPDATE accounts SET ..., last_token = $token WHERE id = $id AND
// last_token <= $token. Ledger does the same thing in memory, under a mutex.
//
// # The plugin
//
// Register adds "payments.reconcile" to a jobs.Registry, bound to a Ledger.
// Its args are
//
//	args:
//	  currency: EUR          # required, an ISO 4217 code
//	  accounts: [acme, zeta] # optional; empty means every account
//
// Each run sums the entries in that currency booked before the tick's
// scheduled instant that no settlement covers yet (the read, which can be
// slow and can be interrupted), then commits a Settlement keyed by the tick
// and fenced by the token (the write, one transaction). If another runner
// settled some of those entries in between, the commit fails with
// ErrConflict and the job is retried, so no entry is settled twice.
package payments
