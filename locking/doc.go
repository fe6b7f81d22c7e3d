// Package locking is oncecron's lease lock: the part its guarantee lives in.
//
// A Locker hands out Leases on a Backend (memlock in-process, redislock,
// etcdlock, zklock). A key names one lockable thing, Name within a fence Scope;
// the scheduler uses one scope per job and one name per tick.
//
//   - Claim tries once, without waiting: it wins a Lease, or reports that
//     another owner holds the key (ErrHeld), or that the key was completed and
//     its retention has not run out (ErrDone). Acquire waits, bounded by its
//     context; TakeOver waits too, after a Claim that found the key held,
//     without claiming again before the holder may have ended.
//   - Every won lease carries a fencing token, strictly greater than every token
//     issued before in the same scope, by any client. Pass it to whatever the
//     holder writes to, and have that refuse writes with a lower token.
//   - A lease's watchdog renews it every TTL/3. Its local deadline is the send
//     time of the last successful claim or renewal + TTL − TTL·drift − margin, on
//     the monotonic clock; a late reply never extends it. When the backend says
//     the key is no longer ours, when a session-based backend loses its session,
//     or when the deadline passes without a renewal, the lease is lost: Done is
//     closed, Context is cancelled with cause ErrLost, and Complete is refused.
//   - Complete atomically, and only if the lease is still held, marks the key
//     done for a retention period and stores a Record in the scope's history.
//     Release frees it without completing it.
//   - Many at once: ClaimBatch claims many keys in one round trip on a
//     BatchClaimer backend; completions and releases of a Locker's leases that
//     come while others are in flight are sent together on a BatchFinisher
//     backend (a lone one is sent at once), so a thousand jobs that fire and
//     end in the same millisecond cost a few round trips.
//   - Every claim gets a fresh 128-bit random owner id. Renew, Complete and
//     Release compare it and never fall back to re-acquiring.
//
// # Clock assumption
//
// The lease's holder stops believing in it before the server frees the key
// provided that (1) the server's clock does not run faster than the holder's by
// more than the drift ρ (default 1%), and (2) the holder is not paused for longer
// than the margin (default TTL/5, at most 2s) between checking its lease (Check)
// and acting on it. Wall-clock steps do not matter: only monotonic time is used.
// Pauses longer than the margin are what fencing tokens are for.
//
// The conformance suite in package locktest checks all of this against every
// backend with real servers.
package locking
