// Package etcdlock is the etcd lock backend of oncecron: a locking.Backend (and
// locking.Acquirer) that lets replicas in different processes race for the same
// ticks through an etcd cluster.
//
// # Keys
//
// Everything lives under one namespace (default "oncecron"); for a key
// {Scope, Name} the backend uses
//
//	/<ns>/<scope>/lock/<name>          held: value = owner id, on a session lease;
//	                                   completed: value = "\x00done\x00" + owner id, on a
//	                                   retention lease (the done marker)
//	/<ns>/<scope>/rec/<token>-<name>-<owner>
//	                                   a history record (JSON), on a history lease
//	/<ns>/<scope>/wait/<name>/<owner>  a queued Acquire: value = its session lease id (hex)
//
// Scope, name and namespace cannot contain '/', so the layout is unambiguous;
// an owner id cannot start with a NUL byte, so a done value never equals an
// owner id. A completed key keeps its lock key, so one compare tells a claim
// that a key is free: neither held nor done. Builds before this layout kept
// the done marker under /<ns>/<scope>/done/<name>; claims still honour such a
// marker (a second compare, on a key that is normally absent), so an upgrade
// never runs a tick an older build completed. Older builds do not see the done
// value, so replicas of both must not run side by side: stop the old ones
// before starting the new ones. A Backend drops that second compare for a scope
// once a claim of its own has counted no such marker there: the first claim of
// each scope (and, while markers remain, one a minute) also counts the scope's
// done/ keys, in the same transaction; since only older builds write them, a
// scope found without any stays without.
//
// # What exclusion rests on
//
// A claim is one transaction:
//
//	If(lock.CreateRevision == 0)
//	Then(Put lock = owner, on the session lease)
//	Else(Get lock)
//
// plus, until the scope is known to hold no legacy marker, the compare
// legacy done.CreateRevision == 0, its count in the Else branch and, at most
// once a minute, the count of the scope's legacy markers in both branches.
//
// Exclusion rests on etcd's serializable transactions over that key and on the
// owner id, a fresh 128-bit random value per claim: never on the lease id, so two
// claims through the same Backend exclude each other. Complete and Release are
// transactions guarded by the owner (Complete also by the token), so a late call
// of a former holder never touches a successor's key: Release deletes the lock
// key, Complete turns it into the done marker. An unknown outcome (a
// timeout after the request was sent) is resolved by reading the owner back; the
// Locker's cleanup calls Release with just the key and owner, which works.
//
// The fencing token is the lock key's CreateRevision, the revision of the claim
// transaction. Etcd revisions are cluster-wide, strictly increasing and
// persisted, so tokens rise strictly within every scope, across clients and
// server restarts.
//
// ClaimBatch (locking.BatchClaimer) sends up to 64 claims as sub-transactions of
// one transaction with no compares of its own, each exactly the transaction
// above, and reads each claim's outcome from its sub-response. All claims of one
// transaction get its revision as token, so two claims of the same scope never
// go in the same transaction: the later one goes in a later one. 64 claims stay
// well within the server's --max-txn-ops (default 128); a transaction the
// server refuses as too large is split, and later ones are smaller.
// FinishBatch (locking.BatchFinisher) does the same for completions and
// releases: each is the transaction Complete or Release sends, as a
// sub-transaction, and a key ended twice in one batch goes in a later
// transaction (the server refuses one that writes a key twice). A thousand
// runs that end together cost 16 raft entries instead of a thousand.
//
// # Sessions: one lease per replica, not per claim
//
// Lock keys are attached to a session lease that the Backend keeps alive itself,
// with one Lease.KeepAliveOnce every TTL/4: renewing N claims costs no round
// trip per claim. Claims with the same TTL share one session (a process that
// uses one TTL, as the scheduler does, has exactly one); the etcd lease is
// granted for the TTL rounded up to whole seconds (at least the server's
// minimum, 2s with default settings), and grants report the requested TTL.
//
// Renew is therefore local: it checks that the grant is still held through the
// session it was made on and returns the session's validity: Grant.Since is the
// local monotonic send time of the last keep-alive request that was answered and
// Grant.TTL the TTL. The server cannot expire the lease before Since+TTL on its
// own clock, so the Locker's local deadline (Since+TTL-drift-margin) passes
// before the server frees the key. Grant.Lost is closed as soon as the backend
// knows the session is gone: a keep-alive answer says the lease is not found,
// or keep-alives have failed past Since+TTL, or a write was refused for the
// lease. A lost session is never revived: later claims get a new lease, and old
// grants stay lost.
//
// Because the session keeps keys alive for as long as the process lives, the
// backend emulates per-claim expiry locally: a grant that is not renewed (nor
// completed or released) for its TTL is deleted by the backend (guarded by its
// owner), exactly as a per-key TTL would expire it, and claims or releases whose
// outcome stayed unknown are cleaned up the same way. So a holder that stops
// renewing frees its key after TTL even while its process runs on.
//
// # Acquire
//
// Acquire first tries a claim that yields to queued waiters. If that fails it
// queues a waiter key on the session lease and waits for the deletion of its
// predecessor (the waiter key with the largest CreateRevision below its own): no
// polling and no thundering herd. The waiter first in line runs one
// transaction per wake-up that claims the key if it is free, nobody queued
// earlier is left and its own waiter key still exists (a waiter whose session
// died re-queues); otherwise the same transaction reports what to wait for (a
// predecessor, the holder's lock key) or that the key is done (ErrDone). Every
// watch is bounded by a re-check after the TTL in case a notification is lost.
// The transaction that wins the key also deletes the winner's waiter key, so
// releases and completions (of claims and acquisitions alike) touch the lock
// key alone; the next waiter wakes when the winner wins (and then watches the
// lock key) and when it lets go. A cancelled Acquire deletes its waiter key.
//
// # Wait
//
// Wait (locking.Waiter, used by Locker.TakeOver after a lost claim) makes no
// request: a claim that finds a key held notes its answer's revision, and Wait
// learns the key's next event after that revision from one watch of the whole
// namespace that all Waits of the backend share (started by the first Wait,
// stopped after a minute without one), so two thousand losers a
// second open no watch each. Events that came before a Wait registered are
// kept for ten seconds; a Wait whose claim is older than what the shared watch
// can vouch for, or that comes in the second after the shared watch failed,
// watches its own lock key. A put of a done value ends it with ErrDone, a
// deletion (release, or the holder's lease expired) with nil,
// and the caller claims again; nothing between the claim and the watch is
// missed. Waiters are not queued: a takeover is a race among the losers.
//
// # Completion and history
//
// Complete is one transaction guarded by owner and token that puts the done
// value in the lock key, moving it from the session lease to a retention
// lease, and puts the history record on a history lease. Retention leases are shared: one per expiry bucket
// (1/16 of the retention, between 1s and 1min), so a done marker lives for its
// retention plus at most one bucket, and completing many ticks does not grant a
// lease each. Records live for max(retention, history retention), where the
// history retention (WithHistoryRetention, default 48h) also applies to
// AddRecord. History is bounded by that time, not by a count. Records come back
// newest first by the revision that wrote them.
//
// # Authentication and TLS
//
// WithAuth logs in with a user name and password; the user needs read and write
// permission on the keys under "/<ns>/" only (a role with that prefix's range)
// and nothing else: leases need no permission. WithTLS or WithTLSConfig turn TLS
// on, with a client certificate for clusters that require one. New checks both
// with its first request and fails at once with an error wrapping
// locking.ErrInvalid for a wrong password, an unknown user, missing credentials
// or a namespace the user may not use, naming the endpoints and the user. When
// the cluster does not answer (locking.ErrUnavailable), New connects to each
// endpoint itself to say why: the connection was refused, the TLS handshake
// failed (unknown authority), the server refused the client certificate, or the
// server expects TLS where the client spoke plain text (or the reverse).
//
// # Close
//
// Close stops the keep-alives and closes every grant's Lost channel. Sessions
// that hold no grants are revoked; sessions that still hold grants are left to
// expire after their TTL, as locking.Backend requires ("leases it granted are
// not released"): revoking them would free keys while their holders may still
// be acting within their safety margin.
package etcdlock
