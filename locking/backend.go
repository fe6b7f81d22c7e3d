package locking

import (
	"context"
	"time"
)

// Backend is the seam each lock backend implements (memory, Redis, etcd, ZooKeeper).
// It performs single operations and keeps no lease state of its own beyond what the
// server needs; the portable Lease type (built by a Locker) adds the watchdog, the
// local deadline and the loss signal on top, so every backend gets the same
// semantics. Users call a Locker, not a Backend.
//
// Every method that talks to the server takes a context first; an unreachable
// server yields an error wrapping ErrUnavailable within the context's deadline.
// Every method must be safe for concurrent use and safe to repeat after an
// ambiguous failure (a reply lost after the request was sent).
type Backend interface {
	// Claim tries once, without waiting, to take key for owner with the given TTL.
	// It returns ErrHeld if another owner holds the key and ErrDone if the key was
	// completed and its retention has not run out. A won grant carries a fencing
	// token strictly greater than every token issued before for key.Scope.
	// Repeating a Claim with the same owner returns the same grant.
	Claim(ctx context.Context, key Key, owner string, ttl time.Duration) (Grant, error)

	// Renew extends g by ttl if owner still holds it, and returns the grant with its
	// new validity. If the key is absent or held by another owner it returns an error
	// wrapping ErrNotHeld and changes nothing: renewal never re-creates a key.
	Renew(ctx context.Context, g Grant, ttl time.Duration) (Grant, error)

	// Complete atomically, and only if g is still held, marks the key done for
	// retention, appends rec to the scope's history and frees the lock. It returns
	// ErrNotHeld if g is no longer held. Repeating a Complete that succeeded succeeds.
	Complete(ctx context.Context, g Grant, rec Record, retention time.Duration) error

	// Release frees g without completing it, if owner still holds it; otherwise it
	// returns ErrNotHeld and touches nothing.
	Release(ctx context.Context, g Grant) error

	// AddRecord appends rec to the history of rec.Key.Scope without taking or
	// marking any key: for runs that ended without a completion (lost, missed).
	AddRecord(ctx context.Context, rec Record) error

	// Records returns up to limit records of scope, newest first.
	Records(ctx context.Context, scope string, limit int) ([]Record, error)

	// Close releases the backend's connections. Leases it granted are not released.
	Close() error
}

// Acquirer is implemented by backends that can wait for a key efficiently (etcd and
// ZooKeeper queue waiters and wake one at a time). Acquire blocks until owner holds
// key, the key is completed (ErrDone) or ctx ends. A cancelled Acquire leaves no
// queue entry behind.
type Acquirer interface {
	Acquire(ctx context.Context, key Key, owner string, ttl time.Duration) (Grant, error)
}

// Waiter is implemented by backends that can tell when a held key may have become
// free (Redis, etcd, ZooKeeper, memory). Wait is called after a Claim of key returned ErrHeld. It returns when key
// may have changed (released, completed, or its holder's lease may have expired)
// or after a backend-chosen bounded interval, whichever comes first; the Locker
// then claims again. Wait must never sleep past the moment the holder's lease
// could have run out without being renewed, so that a dead holder's key is taken
// over when it expires. A wake-up without a change only costs a claim.
//
// Wait returns an error wrapping ErrDone if it learned that key was completed (a
// done marker lasts its retention, so this is final): the Locker then returns
// ErrDone without claiming again. It returns the context's error when ctx ends,
// and ErrClosed after Close; any other error (the backend could not be asked) is
// treated as a wake-up. Backends with neither Acquirer nor Waiter are polled. A
// backend that implements both is queued by Locker.Acquire and waits with Wait
// in Locker.TakeOver.
type Waiter interface {
	Wait(ctx context.Context, key Key) error
}

// Grant is what a backend returns for a won claim or a renewal.
type Grant struct {
	// Key is the claimed key.
	Key Key
	// Owner is the random owner id of this claim (see NewOwner).
	Owner string
	// Token is the fencing token: strictly greater than every token issued before
	// for Key.Scope.
	Token uint64
	// TTL is how long the server keeps the grant, counted from Since.
	TTL time.Duration
	// Since, when set by a backend, is the local monotonic instant from which TTL
	// counts (session-based backends count from their last keep-alive send). When
	// zero, the Locker counts from the moment it sent the request.
	Since time.Time
	// Lost, when non-nil, is closed by the backend when it knows the grant is gone
	// (its session expired or was revoked).
	Lost <-chan struct{}
	// Rev is backend-private data (a revision, a node path or version) that later
	// operations on the grant need.
	Rev string
}

// Outcome is how a run of a key ended.
type Outcome string

// Outcomes recorded by the scheduler. Backends store any Outcome verbatim.
const (
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeFailed    Outcome = "failed"
	OutcomeLost      Outcome = "lost"
	OutcomeAbandoned Outcome = "abandoned"
	OutcomeMissed    Outcome = "missed"
	OutcomeSkipped   Outcome = "skipped"
)

// Record is the small result record stored with a completion (and in history).
type Record struct {
	Key     Key       `json:"key"`
	Outcome Outcome   `json:"outcome"`
	Replica string    `json:"replica,omitempty"`
	Owner   string    `json:"owner,omitempty"`
	Token   uint64    `json:"token"`
	Attempt int       `json:"attempt,omitempty"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	Error   string    `json:"error,omitempty"`
	// Info holds small free-form facts (the scheduler's replica heartbeats use it).
	Info map[string]string `json:"info,omitempty"`
}

// MaxRecordErrorLen bounds Record.Error as stored; longer texts are cut.
const MaxRecordErrorLen = 1024

// Normalize cuts Error to MaxRecordErrorLen and drops monotonic readings, so a
// record reads back equal to what was written.
func (r Record) Normalize() Record {
	if len(r.Error) > MaxRecordErrorLen {
		r.Error = r.Error[:MaxRecordErrorLen]
	}
	r.Started = r.Started.Round(0).UTC()
	r.Ended = r.Ended.Round(0).UTC()
	return r
}

// FencingChecker is implemented by backends whose fencing tokens rise strictly
// only under some server configurations (Redis: one primary with no replicas,
// appendonly and appendfsync always). CheckFencing returns nil if the server's
// configuration keeps tokens rising through restarts and failover, and otherwise
// an error wrapping ErrUnsafe that says why. Backends that do not implement it
// (etcd, ZooKeeper: tokens from a consensus log; memory: one process) always do.
type FencingChecker interface {
	CheckFencing(ctx context.Context) error
}

// BatchClaimer is implemented by backends that can send many claims in one
// round trip (Redis pipelines them). Results are in the order of reqs.
type BatchClaimer interface {
	ClaimBatch(ctx context.Context, reqs []ClaimRequest) []ClaimResult
}

// ClaimRequest is one claim of a batch.
type ClaimRequest struct {
	Key   Key
	Owner string
	TTL   time.Duration
}

// ClaimResult is the outcome of one claim of a batch: a grant or an error, as
// Backend.Claim would return.
type ClaimResult struct {
	Grant Grant
	Err   error
}

// SessionRenewer is implemented by backends whose Renew answers from a session
// that the backend keeps alive on its own (etcd's lease keep-alives, ZooKeeper's
// session), with at most one short round trip. When a lease's local deadline
// comes before its watchdog renewed it (the process was paused, or its timers
// ran late), the lease renews once more through such a backend before it
// declares itself lost: the session may have been kept alive meanwhile, and the
// grant's Since then says until when the server keeps the key. A lease on any
// other backend is lost at its deadline.
type SessionRenewer interface {
	// RenewsFromSession reports whether Renew answers from a session.
	RenewsFromSession() bool
}

// ServerClock is implemented by backends that can read their server's clock
// (Redis TIME, ZooKeeper's modification time of a node). Locker.ClockOffset
// uses it to estimate how far this process's clock is from the backend's.
type ServerClock interface {
	ServerTime(ctx context.Context) (time.Time, error)
}
