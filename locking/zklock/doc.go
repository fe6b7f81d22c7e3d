// Package zklock is the ZooKeeper lock backend of oncecron: a locking.Backend,
// locking.Acquirer and locking.Waiter included, on one ZooKeeper session per
// Backend (per replica).
//
// # Layout
//
// Under the root node (/oncecron, or /oncecron-<namespace>) each fence scope has
// its own subtree:
//
//	<root>/<scope>/fence                persistent; written by every claim (see Tokens)
//	<root>/<scope>/lock/<name>          EPHEMERAL while held: data = owner id
//	                                    PERSISTENT once completed (the done marker):
//	                                    data = JSON {owner, token, retention}, one child
//	                                    node named after the completing owner
//	<root>/<scope>/own/<name>~<owner>   EPHEMERAL claim identity, created and deleted
//	                                    together with the lock node
//	<root>/<scope>/own/<name>           EPHEMERAL held node: data = owner id, created
//	                                    and deleted together with the lock node;
//	                                    Complete sets its data to the done marker's
//	                                    just before deleting it (see Waiting)
//	<root>/<scope>/rec/r-<seq>          PERSISTENT_SEQUENTIAL history records (JSON)
//	<root>/<scope>/wait/<name>/w-<owner>-<seq>
//	                                    EPHEMERAL_SEQUENTIAL Acquire queue
//
// The per-scope nodes are created lazily, once per scope and process.
//
// # Claims, done markers and their atomicity
//
// A claim is one multi-op transaction, one round trip when uncontended:
//
//	create own/<name>~<owner> EPHEMERAL, create own/<name> EPHEMERAL,
//	create lock/<name> EPHEMERAL, setData fence
//
// The done marker lives at the lock node's own path, so "create the lock node only
// if the key is neither held nor done" is the server's create-if-absent: a held key
// and a completed key both make the create fail with NodeExists. A failed multi
// applies nothing and reports the error of its first failing operation only, so
// the order of the creates makes that one failure say why the claim lost:
//
//   - own/<name>~<owner> exists: the key is ours already (a repeated claim, or an
//     ended session of the same owner whose nodes are not gone yet);
//   - own/<name> exists: another owner holds the key (locking.ErrHeld) — the
//     common lost race, which so costs its single request;
//   - lock/<name> exists without a held node: a done marker, or a holder that
//     claimed without creating one (a replica of an older oncecron, during a
//     rolling upgrade).
//
// The first and last cases pay a second round trip, to read the lock node: an
// ephemeral node is a holder (the same owner on the current session is an
// idempotent repeat; anything else is locking.ErrHeld), a persistent one is a done
// marker (locking.ErrDone until its retention, counted from the marker's
// server-side creation time, has run out; an expired marker is replaced by the
// claim within the same multi, guarded as below). No operation of a multi can
// compare a time, so telling an expired marker from a live one needs that read.
// The layout of held keys and done markers is the one older versions use, plus the
// held node, so replicas of both versions exclude each other and honour each
// other's done markers.
//
// A multi can only check versions, and a lock node at a given path always has
// version 0, whoever created it; so operations that must act only on our own
// entry name the owner in a path. The own node exists exactly while our lock node
// does: both are created in one transaction, deleted in one transaction (Release,
// Complete) and, being ephemeral nodes of the same session, removed together when
// the session ends (the held node likewise). Release is "delete own, delete held,
// delete lock" and Complete is "delete own, set the held node's data, delete held,
// delete lock, create the done marker and its owner child, append the record"
// (the setData is for waiters: see Waiting): the first delete fails with
// NoNode unless we still hold the key, which undoes the whole multi. Likewise a done marker is deleted (by a claim after its retention,
// or by the janitor) as "delete lock/<name>/<owner>, delete lock/<name>", which
// can never remove a later marker or a holder's node that took the same path.
//
// # Tokens
//
// The fencing token is the zxid of the claim's transaction, which is the lock
// node's czxid. ZooKeeper's Multi response carries no stat for creates, so each
// claim also writes the scope's fence node: the setData result's mzxid is that
// same transaction's zxid. Zxids grow strictly with every transaction of the
// ensemble, across sessions, clients, leader elections (the epoch is the high 32
// bits) and restarts that keep the data; so tokens rise strictly within a scope,
// and across scopes. Rebuilding an ensemble from nothing restarts them.
//
// # Validity, renewal and loss
//
// What the guarantee rests on: ZooKeeper keeps a session, and so its ephemeral
// nodes, alive at least a session timeout T (the negotiated one, which the client
// learns at connect time) after it last heard from the client. The backend notes
// the local monotonic send time of every request answered on the current session
// (last contact); the server heard from us after that instant, so nobody else can
// take our nodes before last contact + T on the server's clock.
//
// A grant's TTL is the caller's ttl, which must not exceed T. The backend enforces
// it itself: a grant that is not renewed within ttl is released by a local reaper,
// as a Redis or etcd key would expire (this also frees the entries of claims whose
// caller gave up on an unknown outcome, and of holders that stopped renewing). A
// renewal costs no round trip: it is answered from the session, with
//
//	Since = min(call time, last contact + 0.9·(T − ttl))
//
// so that the Locker's deadline, Since + ttl·(1−ρ) − margin, ends before both the
// reaper's release (call time + ttl) and the earliest server-side expiry of the
// session (last contact + T·(1−ρ), for any drift ρ ≤ 10%). Renewing N leases costs
// nothing per lease; one shared probe (an exists call on the root) refreshes the
// last contact when it gets too old to give a full ttl. While the client is
// disconnected renewals fail with locking.ErrUnavailable, so deadlines stop moving.
//
// go-zookeeper reconnects on its own and, after the server reports the session
// expired, silently opens a new one. Every grant remembers its session id: when the
// current session id differs, the grant's Lost channel is closed (so every lease on
// that session ends at once) and Renew, Release and Complete answer
// locking.ErrNotHeld; nodes of an old session are never adopted, and a node found
// on a repeated claim is ours only if its ephemeralOwner is the current session.
//
// # Waiting
//
// Wait (locking.Waiter, used by Locker.TakeOver after a lost claim) reads the
// held node own/<name> with a one-shot data watch: one request, and none more
// until the holder ends. The watch fires once, on the first change of the
// transaction that ends the holder: Complete sets the held node's data before it
// deletes it, so a completion arrives as NodeDataChanged (locking.ErrDone, with
// no further request), while Release, the reaper and the end of the holder's
// session delete it (NodeDeleted: the caller claims again). The lock path could
// not tell the two apart: Complete deletes the ephemeral lock node and creates
// the done marker at the same path in one multi, and a watch there fires
// NodeDeleted either way. A held node already gone costs one read of the lock
// node (free, done, or a holder of an older version without a held node, whose
// lock node is then watched). getData sets no watch on a missing node, so a Wait
// leaves none behind on a free or done key. An event of our own session (its
// expiry, the client closing) ends the Wait too, and one Wait lasts at most 30 s
// in case a notification is lost. Replicas of older versions do not set the held
// node's data on Complete: their completions wake waiters as releases do, and
// the waiters' next claim finds the done marker.
//
// Acquire is ZooKeeper's lock recipe: a sequential ephemeral waiter node per
// caller, each watching only its predecessor; the head of the queue claims as
// above, deleting its waiter node in the same multi, or, if a direct claimer holds
// the key, watches just the lock node. A release wakes one waiter. A cancelled
// Acquire deletes its waiter node (retried in the background if the server is
// unreachable; the session's end removes it anyway).
//
// # Cleanup
//
// ZooKeeper has no TTL for ordinary nodes, so Sweep (run by New's janitor when
// WithJanitor is given, or by the caller) deletes done markers past their
// retention, trims each scope's history to WithMaxRecords and WithRecordRetention,
// and removes empty per-name wait nodes, with bounded work per pass; every delete
// is guarded, so any number of replicas may sweep at once.
//
// # Access control
//
// With WithDigestAuth every node oncecron creates gets the ACL "digest user: all,
// world: read", so other identities can read but not change or delete them.
// Without it nodes are open to everyone (world: all).
//
// ZooKeeper accepts any digest credentials when a session presents them; wrong
// ones show only when a node refuses a request (NoAuth). So New reads the ACL of
// the namespace's root node and fails with an *ACLError (wrapping
// locking.ErrInvalid) when it would refuse this session: a wrong password, no
// credentials for nodes made with some, or another identity's nodes. A NoAuth
// refusal later, on a node below the root, is reported the same way, wrapping
// zk.ErrNoAuth too. Neither shows a password or its hash.
package zklock
