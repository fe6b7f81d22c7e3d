package etcdlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/oncecron/oncecron/locking"
)

// lateCommit is how long after an unknown outcome a claim may still be applied
// by the server: a proposal stuck in raft, or a request that the network held
// up and delivers once a partition heals. The latter lasts as long as the
// connection: gRPC closes it (dropping what it still holds) after a keep-alive
// ping goes unanswered, keepAliveTime + keepAliveTimeout into a partition. The
// cleanup runs again, at growing intervals, until then.
func (b *Backend) lateCommit() time.Duration {
	return keepAliveTime + keepAliveTimeout + 2*b.o.requestTimeout
}

// The client's keep-alive pings (see New).
const (
	keepAliveTime    = 10 * time.Second
	keepAliveTimeout = 5 * time.Second
)

func firstKV(r *clientv3.TxnResponse, i int) *mvccpb.KeyValue {
	if i >= len(r.Responses) {
		return nil
	}
	rr := r.Responses[i].GetResponseRange()
	if rr == nil || len(rr.Kvs) == 0 {
		return nil
	}
	return rr.Kvs[0]
}

// grant builds the grant of a won claim on s and registers it as held.
func (b *Backend) grant(key locking.Key, owner string, token int64, s *session, ttl time.Duration) locking.Grant {
	b.mu.Lock()
	now := b.clock.Now()
	since, validity := s.since, s.validity()
	if !b.closed && !s.dead {
		b.entries[entryKey{key, owner}] = &entry{sess: s, token: token, expires: now.Add(ttl), held: true}
	}
	s.lastUsed = now
	b.mu.Unlock()
	return locking.Grant{
		Key: key, Owner: owner, Token: uint64(token), //nolint:gosec // revisions are positive
		TTL: min(ttl, validity), Since: since, Lost: s.lost, Rev: s.rev(),
	}
}

// sessionOf returns our live session whose lease is id, or nil.
func (b *Backend) sessionOf(id clientv3.LeaseID) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.sessions {
		if s.id == id && !s.dead {
			return s
		}
	}
	return nil
}

// Claim implements locking.Backend with one transaction; see the package
// documentation.
func (b *Backend) Claim(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	const op = "claim"
	if err := b.validate(key, owner, ttl); err != nil {
		return locking.Grant{}, fmt.Errorf("etcdlock: %s %q: %w", op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return locking.Grant{}, b.fail(ctx, op, key.String(), err)
	}
	for attempt := 0; ; attempt++ {
		s, err := b.session(ctx, ttl)
		if err != nil {
			return locking.Grant{}, b.fail(ctx, op, key.String(), err)
		}
		if err := b.freshen(ctx, s); err != nil {
			return locking.Grant{}, b.fail(ctx, op, key.String(), err)
		}
		g, err := b.claimOn(ctx, s, key, owner, ttl)
		if err != nil && isLeaseGone(err) && attempt < 2 {
			// The session died under us; nothing was written. Try a new one.
			b.loseSession(s, "a claim found the session lease gone")
			continue
		}
		if err == nil && b.sessionDead(s) {
			// This process gave the session up (its keep-alives failed for its
			// whole ttl) while the server, restarted, still knew the lease: the
			// grant would be lost the moment it is made. Give the key back and
			// claim on a new session.
			_ = b.Release(context.WithoutCancel(ctx), g)
			if attempt < 2 {
				continue
			}
			return locking.Grant{}, b.fail(ctx, op, key.String(), fmt.Errorf("%w: the session ended during the claim", locking.ErrUnavailable))
		}
		if err != nil && isLeaseGone(err) {
			// Three sessions in a row were gone: as ClaimBatch does, say so as
			// ErrUnavailable, not as the client's bare error.
			return locking.Grant{}, b.fail(ctx, op, key.String(), err)
		}
		return g, err
	}
}

// sessionDead reports whether this process has given s up.
func (b *Backend) sessionDead(s *session) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return s.dead
}

func (b *Backend) claimOn(ctx context.Context, s *session, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	cmps, then, els := b.claimOps(key, owner, s.id)
	rctx, cancel := b.rpc(ctx)
	resp, err := b.cli.Txn(rctx).If(cmps...).Then(then...).Else(els...).Commit()
	cancel()
	if err != nil {
		if isLeaseGone(err) {
			return locking.Grant{}, err
		}
		return b.resolveClaim(ctx, s, key, owner, ttl, err)
	}
	return b.claimAnswer(s, key, owner, ttl, resp, resp.Header.Revision)
}

// claimOps is one claim of key for owner on lease: its compares and the
// operations run if they hold or not. Claim sends it as a transaction of its
// own, ClaimBatch as one sub-transaction of a batch (see claimAnswer). A
// completed key keeps its lock key (with a done value), so the compare on the
// lock key covers both "held" and "done"; legacyOps adds what honours the done
// markers that builds before that layout wrote under a key of their own, so
// that upgrading never runs a tick they completed again.
func (b *Backend) claimOps(key locking.Key, owner string, lease clientv3.LeaseID) ([]clientv3.Cmp, []clientv3.Op, []clientv3.Op) {
	lk := b.lockKey(key)
	lc, lt, le := b.legacyOps(key)
	return append([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(lk), "=", 0)}, lc...),
		append([]clientv3.Op{clientv3.OpPut(lk, owner, clientv3.WithLease(lease))}, lt...),
		append([]clientv3.Op{clientv3.OpGet(lk)}, le...)
}

// legacyDone reports whether resp, the answer of a transaction whose i-th
// else operation is a count of key's legacy done marker, found one.
func legacyDone(resp *clientv3.TxnResponse, i int) bool {
	if i >= len(resp.Responses) {
		return false
	}
	rr := resp.Responses[i].GetResponseRange()
	return rr != nil && rr.Count > 0
}

// claimAnswer interprets resp, the answer to the claimOps of key made on s, in
// a transaction written at revision rev: the claim's fencing token if it won.
func (b *Backend) claimAnswer(s *session, key locking.Key, owner string, ttl time.Duration, resp *clientv3.TxnResponse, rev int64) (locking.Grant, error) {
	const op = "claim"
	b.learnLegacy(key, resp, 1, 1)
	if resp.Succeeded {
		return b.grant(key, owner, rev, s, ttl), nil
	}
	kv := firstKV(resp, 0)
	if (kv != nil && isDone(kv.Value)) || legacyDone(resp, 1) {
		return locking.Grant{}, fmt.Errorf("etcdlock: %s %q: %w", op, key, locking.ErrDone)
	}
	if kv != nil && string(kv.Value) == owner {
		return b.repeated(key, owner, kv, ttl)
	}
	b.held.note(key, rev) // for a Wait that may follow
	return locking.Grant{}, fmt.Errorf("etcdlock: %s %q: %w", op, key, locking.ErrHeld)
}

// repeated returns the grant of a claim found already won by owner (a repeated
// call, or a read-back after an unknown outcome).
func (b *Backend) repeated(key locking.Key, owner string, kv *mvccpb.KeyValue, ttl time.Duration) (locking.Grant, error) {
	s := b.sessionOf(clientv3.LeaseID(kv.Lease))
	if s == nil {
		// Ours, on a lease this backend does not keep alive: it cannot be held.
		b.orphan(key, owner, b.anySession(), false)
		return locking.Grant{}, fmt.Errorf("etcdlock: claim %q: %w: held by this owner on a lease this backend does not keep alive", key, locking.ErrUnavailable)
	}
	return b.grant(key, owner, kv.CreateRevision, s, ttl), nil
}

func (b *Backend) anySession() *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.sessions {
		if !s.dead {
			return s
		}
	}
	return nil
}

// resolveClaim settles a claim whose request may or may not have been applied
// by reading the owner back. If that is impossible or says "not ours", the claim
// fails with ErrUnavailable and a cleanup of whatever a late commit may leave is
// scheduled.
func (b *Backend) resolveClaim(ctx context.Context, s *session, key locking.Key, owner string, ttl time.Duration, cause error) (locking.Grant, error) {
	r := b.resolveClaims(ctx, s, []locking.ClaimRequest{{Key: key, Owner: owner, TTL: ttl}}, cause)[0]
	return r.Grant, r.Err
}

// resolveClaims settles, as resolveClaim does for one, claims made on s whose
// request (one transaction) may or may not have been applied, reading all
// their owners back with one request. There are at most maxBatch of them.
func (b *Backend) resolveClaims(ctx context.Context, s *session, reqs []locking.ClaimRequest, cause error) []locking.ClaimResult {
	const op = "claim"
	kvs := make([]*mvccpb.KeyValue, len(reqs))
	if ctx.Err() == nil {
		var err error
		rctx, cancel := b.rpc(ctx)
		if len(reqs) == 1 {
			var resp *clientv3.GetResponse
			if resp, err = b.cli.Get(rctx, b.lockKey(reqs[0].Key)); err == nil && len(resp.Kvs) == 1 {
				kvs[0] = resp.Kvs[0]
			}
		} else {
			gets := make([]clientv3.Op, len(reqs))
			for i, r := range reqs {
				gets[i] = clientv3.OpGet(b.lockKey(r.Key))
			}
			var resp *clientv3.TxnResponse
			if resp, err = b.cli.Txn(rctx).Then(gets...).Commit(); err == nil {
				for i := range reqs {
					kvs[i] = firstKV(resp, i)
				}
			}
		}
		cancel()
		if err != nil {
			cause = errors.Join(cause, err)
		}
	}
	out := make([]locking.ClaimResult, len(reqs))
	for i, r := range reqs {
		if kv := kvs[i]; kv != nil && string(kv.Value) == r.Owner {
			out[i].Grant, out[i].Err = b.repeated(r.Key, r.Owner, kv, r.TTL)
			continue
		}
		b.orphan(r.Key, r.Owner, s, true)
		out[i].Err = b.fail(ctx, op, r.Key.String(), cause)
	}
	return out
}

// RenewsFromSession implements locking.SessionRenewer: Renew answers from the
// etcd lease the backend keeps alive with keep-alives, so a lease may renew through it after its local
// deadline, and keeps the key if the session was kept alive meanwhile.
func (b *Backend) RenewsFromSession() bool { return true }

// Renew implements locking.Backend without a round trip: it checks that g is
// still held through the session it was made on and returns the session's
// validity (see the package documentation). It returns ErrUnavailable while the
// session's keep-alives fail, so that the Locker retries soon.
func (b *Backend) Renew(ctx context.Context, g locking.Grant, ttl time.Duration) (locking.Grant, error) {
	const op = "renew"
	if err := ctx.Err(); err != nil {
		return locking.Grant{}, b.fail(ctx, op, g.Key.String(), err)
	}
	id, ok := parseRev(g.Rev)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return locking.Grant{}, errClosed(op, g.Key.String())
	}
	e := b.entries[entryKey{g.Key, g.Owner}]
	now := b.clock.Now()
	switch {
	case !ok || e == nil || !e.held || e.sess.dead || e.sess.id != id || uint64(e.token) != g.Token: //nolint:gosec // revisions are positive
		return locking.Grant{}, fmt.Errorf("etcdlock: %s %q: %w", op, g.Key, locking.ErrNotHeld)
	case !now.Before(e.expires):
		return locking.Grant{}, fmt.Errorf("etcdlock: %s %q: %w: not renewed within its ttl", op, g.Key, locking.ErrNotHeld)
	case e.sess.lastErr != nil:
		return locking.Grant{}, fmt.Errorf("etcdlock: %s %q: %w: session keep-alive failing: %w", op, g.Key, locking.ErrUnavailable, e.sess.lastErr)
	}
	g.TTL = e.sess.validity()
	if ttl > 0 {
		e.expires = now.Add(ttl)
		g.TTL = min(ttl, g.TTL)
	}
	e.sess.lastUsed = now
	g.Since, g.Lost = e.sess.since, e.sess.lost
	return g, nil
}

// Complete implements locking.Backend with one transaction guarded by the owner
// and the token; see the package documentation.
func (b *Backend) Complete(ctx context.Context, g locking.Grant, rec locking.Record, retention time.Duration) error {
	val, err := b.preComplete(ctx, g, rec, retention)
	if err != nil {
		return err
	}
	return b.complete(ctx, g, val, retention)
}

// complete sends a completion of g with val, the record preComplete encoded.
func (b *Backend) complete(ctx context.Context, g locking.Grant, val []byte, retention time.Duration) error {
	const op = "complete"
	for attempt := 0; ; attempt++ {
		doneLease, histLease, err := b.completeLeases(ctx, retention)
		if err != nil {
			return b.fail(ctx, op, g.Key.String(), err)
		}
		conds, then, els := b.completeOps(g, val, doneLease, histLease)
		rctx, cancel := b.rpc(ctx)
		resp, err := b.cli.Txn(rctx).If(conds...).Then(then...).Else(els...).Commit()
		cancel()
		if err != nil {
			if isLeaseGone(err) && attempt < 2 {
				b.forgetRetentionLeases(doneLease, histLease)
				continue
			}
			return b.fail(ctx, op, g.Key.String(), err)
		}
		return b.completeAnswer(g, resp)
	}
}

// preComplete checks a completion before it is sent and returns its record,
// encoded.
func (b *Backend) preComplete(ctx context.Context, g locking.Grant, rec locking.Record, retention time.Duration) ([]byte, error) {
	const op = "complete"
	if err := g.Key.Validate(); err != nil {
		return nil, fmt.Errorf("etcdlock: %s %q: %w", op, g.Key, err)
	}
	if err := validOwner(g.Owner); err != nil {
		return nil, fmt.Errorf("etcdlock: %s %q: %w", op, g.Key, err)
	}
	if retention <= 0 {
		return nil, fmt.Errorf("etcdlock: %s %q: %w: retention %v", op, g.Key, locking.ErrInvalid, retention)
	}
	if err := ctx.Err(); err != nil {
		return nil, b.fail(ctx, op, g.Key.String(), err)
	}
	if err := b.checkOpen(); err != nil {
		return nil, errClosed(op, g.Key.String())
	}
	if b.knownLost(g) {
		return nil, fmt.Errorf("etcdlock: %s %q: %w: its session was lost", op, g.Key, locking.ErrNotHeld)
	}
	val, err := json.Marshal(rec.Normalize())
	if err != nil {
		return nil, fmt.Errorf("etcdlock: %s %q: %w: record: %w", op, g.Key, locking.ErrInvalid, err)
	}
	return val, nil
}

// completeLeases returns the leases of a completion's done marker and record.
func (b *Backend) completeLeases(ctx context.Context, retention time.Duration) (done, hist clientv3.LeaseID, err error) {
	if done, err = b.retentionLease(ctx, retention); err != nil {
		return 0, 0, err
	}
	if hist, err = b.retentionLease(ctx, max(retention, b.o.historyRetention)); err != nil {
		return 0, 0, err
	}
	return done, hist, nil
}

// completeOps returns the transaction of a completion of g with the encoded
// record val: if g still holds its lock, turn the lock key into the done
// marker (g's done value, moved from the session lease to the retention lease
// doneLease) and write the record; otherwise read the lock key (a repeated
// completion finds its own done value).
func (b *Backend) completeOps(g locking.Grant, val []byte, doneLease, histLease clientv3.LeaseID) (conds []clientv3.Cmp, then, els []clientv3.Op) {
	lk := b.lockKey(g.Key)
	conds = []clientv3.Cmp{clientv3.Compare(clientv3.Value(lk), "=", g.Owner)}
	if g.Token != 0 {
		conds = append(conds, clientv3.Compare(clientv3.CreateRevision(lk), "=", int64(g.Token))) //nolint:gosec // tokens are revisions
	}
	then = []clientv3.Op{
		clientv3.OpPut(lk, doneValue(g.Owner), clientv3.WithLease(doneLease)),
		clientv3.OpPut(b.recKey(g.Key, g.Token, g.Owner), string(val), clientv3.WithLease(histLease)),
	}
	return conds, then, []clientv3.Op{clientv3.OpGet(lk)}
}

// completeAnswer interprets the answer to completeOps.
func (b *Backend) completeAnswer(g locking.Grant, resp *clientv3.TxnResponse) error {
	if resp.Succeeded {
		b.dropEntry(g.Key, g.Owner)
		return nil
	}
	if kv := firstKV(resp, 0); kv != nil && string(kv.Value) == doneValue(g.Owner) {
		b.dropEntry(g.Key, g.Owner)
		return nil // a repeated Complete
	}
	b.dropHeld(g.Key, g.Owner)
	return fmt.Errorf("etcdlock: complete %q: %w", g.Key, locking.ErrNotHeld)
}

// knownLost reports whether g was made on a session this backend knows is lost,
// or is a grant this backend holds that expired for want of renewal.
func (b *Backend) knownLost(g locking.Grant) bool {
	id, ok := parseRev(g.Rev)
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		if _, lost := b.lostIDs[id]; lost {
			return true
		}
	}
	if e := b.entries[entryKey{g.Key, g.Owner}]; e != nil {
		return !e.held || !b.clock.Now().Before(e.expires)
	}
	return false
}

// dropHeld forgets a held entry (the server says it is not ours).
func (b *Backend) dropHeld(k locking.Key, owner string) {
	b.mu.Lock()
	if e := b.entries[entryKey{k, owner}]; e != nil && e.held {
		delete(b.entries, entryKey{k, owner})
	}
	b.mu.Unlock()
}

// releaseOps returns the transaction of a release: delete key's lock if owner
// holds it. A grant's waiter key (Acquire) went in the transaction that won
// it, so a release has none to delete.
func (b *Backend) releaseOps(key locking.Key, owner string) (conds []clientv3.Cmp, then, els []clientv3.Op) {
	lk := b.lockKey(key)
	return []clientv3.Cmp{clientv3.Compare(clientv3.Value(lk), "=", owner)},
		[]clientv3.Op{clientv3.OpDelete(lk)}, nil
}

// cleanupTxn deletes key's lock if owner holds it, and owner's waiter key in
// any case: what an Acquire that gave up, or a claim, wait or release whose
// outcome is unknown, may have left. It reports whether the lock was owner's.
func (b *Backend) cleanupTxn(ctx context.Context, key locking.Key, owner string) (bool, error) {
	lk, wk := b.lockKey(key), b.waitKey(key, owner)
	resp, err := b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(lk), "=", owner)).
		Then(clientv3.OpDelete(lk), clientv3.OpDelete(wk)).
		Else(clientv3.OpDelete(wk)).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// Release implements locking.Backend. It needs only g.Key and g.Owner, so the
// Locker can clean up after a claim whose outcome is unknown.
func (b *Backend) Release(ctx context.Context, g locking.Grant) error {
	if err := b.preRelease(ctx, g); err != nil {
		return err
	}
	return b.release(ctx, g)
}

// release sends a release of g that preRelease checked.
func (b *Backend) release(ctx context.Context, g locking.Grant) error {
	conds, then, els := b.releaseOps(g.Key, g.Owner)
	rctx, cancel := b.rpc(ctx)
	resp, err := b.cli.Txn(rctx).If(conds...).Then(then...).Else(els...).Commit()
	cancel()
	if err != nil {
		return b.releaseUnknown(ctx, g, err)
	}
	return b.releaseAnswer(g, resp.Succeeded)
}

// preRelease checks a release before it is sent.
func (b *Backend) preRelease(ctx context.Context, g locking.Grant) error {
	const op = "release"
	if err := g.Key.Validate(); err != nil {
		return fmt.Errorf("etcdlock: %s %q: %w", op, g.Key, err)
	}
	if err := validOwner(g.Owner); err != nil {
		return fmt.Errorf("etcdlock: %s %q: %w", op, g.Key, err)
	}
	if err := ctx.Err(); err != nil {
		return b.fail(ctx, op, g.Key.String(), err)
	}
	if err := b.checkOpen(); err != nil {
		return errClosed(op, g.Key.String())
	}
	return nil
}

// releaseUnknown handles a release whose outcome is unknown (err): the holder
// has let go, so the janitor finishes it.
func (b *Backend) releaseUnknown(ctx context.Context, g locking.Grant, err error) error {
	b.mu.Lock()
	var s *session
	if e := b.entries[entryKey{g.Key, g.Owner}]; e != nil {
		s = e.sess
	}
	b.mu.Unlock()
	b.orphan(g.Key, g.Owner, s, false)
	return b.fail(ctx, "release", g.Key.String(), err)
}

// releaseAnswer interprets the answer to releaseOps: ok if the lock was g's.
func (b *Backend) releaseAnswer(g locking.Grant, ok bool) error {
	b.dropHeld(g.Key, g.Owner)
	if !ok {
		return fmt.Errorf("etcdlock: release %q: %w", g.Key, locking.ErrNotHeld)
	}
	return nil
}

// AddRecord implements locking.Backend. The record lives for the history
// retention (WithHistoryRetention). Its key is derived from its token, name and
// owner, so repeating the call stores it once.
func (b *Backend) AddRecord(ctx context.Context, rec locking.Record) error {
	const op = "add record"
	if err := rec.Key.Validate(); err != nil {
		return fmt.Errorf("etcdlock: %s %q: %w", op, rec.Key, err)
	}
	if err := ctx.Err(); err != nil {
		return b.fail(ctx, op, rec.Key.String(), err)
	}
	if err := b.checkOpen(); err != nil {
		return errClosed(op, rec.Key.String())
	}
	rec = rec.Normalize()
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("etcdlock: %s %q: %w: %w", op, rec.Key, locking.ErrInvalid, err)
	}
	for attempt := 0; ; attempt++ {
		lease, err := b.retentionLease(ctx, b.o.historyRetention)
		if err != nil {
			return b.fail(ctx, op, rec.Key.String(), err)
		}
		rctx, cancel := b.rpc(ctx)
		_, err = b.cli.Put(rctx, b.recKey(rec.Key, rec.Token, rec.Owner), string(val), clientv3.WithLease(lease))
		cancel()
		if err != nil && isLeaseGone(err) && attempt < 2 {
			b.forgetRetentionLeases(lease)
			continue
		}
		if err != nil {
			return b.fail(ctx, op, rec.Key.String(), err)
		}
		return nil
	}
}

// Records implements locking.Backend: the newest limit records of scope, in the
// order the server wrote them.
func (b *Backend) Records(ctx context.Context, scope string, limit int) ([]locking.Record, error) {
	const op = "records"
	if err := locking.ValidateScope(scope); err != nil {
		return nil, fmt.Errorf("etcdlock: %s %q: %w", op, scope, err)
	}
	if limit <= 0 {
		return nil, fmt.Errorf("etcdlock: %s %q: %w: limit %d must be positive", op, scope, locking.ErrInvalid, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, b.fail(ctx, op, scope, err)
	}
	if err := b.checkOpen(); err != nil {
		return nil, errClosed(op, scope)
	}
	rctx, cancel := b.rpc(ctx)
	resp, err := b.cli.Get(rctx, b.recPrefix(scope), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(int64(limit)))
	cancel()
	if err != nil {
		return nil, b.fail(ctx, op, scope, err)
	}
	out := make([]locking.Record, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r locking.Record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			b.log.Sugar().Warnf("skipping an unreadable history record %q: %v", kv.Key, err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func (b *Backend) validate(key locking.Key, owner string, ttl time.Duration) error {
	if err := key.Validate(); err != nil {
		return err
	}
	if err := validOwner(owner); err != nil {
		return err
	}
	if ttl < locking.MinTTL || ttl > locking.MaxTTL {
		return fmt.Errorf("%w: ttl %v outside [%v, %v]", locking.ErrInvalid, ttl, locking.MinTTL, locking.MaxTTL)
	}
	return nil
}

var _ locking.Backend = (*Backend)(nil)

// freshen renews a session whose last confirmed keep-alive is more than half its
// validity old (after a partition, a server restart or a stall, before the
// keep-alive loop catches up), so that a claim made on it does not start with a
// deadline already past: a grant that is lost the moment it is made runs nothing
// and only delays the tick. If the keep-alive fails, so does the claim
// (unavailable), and the caller retries.
func (b *Backend) freshen(ctx context.Context, s *session) error {
	b.mu.Lock()
	stale := b.clock.Now().Sub(s.since) > s.validity()/2
	b.mu.Unlock()
	if !stale {
		return nil
	}
	sent := b.clock.Now()
	resp, err := b.cli.KeepAliveOnce(ctx, s.id)
	if err != nil {
		return fmt.Errorf("%w: the session's keep-alive is stale and renewing it failed: %w", locking.ErrUnavailable, err)
	}
	if resp.TTL <= 0 {
		return fmt.Errorf("%w: the session lease is gone", locking.ErrUnavailable)
	}
	b.mu.Lock()
	if sent.After(s.since) {
		s.since = sent
	}
	s.granted = time.Duration(resp.TTL) * time.Second
	b.mu.Unlock()
	return nil
}
