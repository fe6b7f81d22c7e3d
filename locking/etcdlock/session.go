package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
)

// session is one etcd lease that the backend keeps alive, shared by every claim
// (and queued waiter) of one TTL.
type session struct {
	id   clientv3.LeaseID
	ttl  time.Duration // the claims' TTL; the lease's is rounded up to whole seconds
	lost chan struct{} // closed when the lease is gone (or Close)

	// Guarded by Backend.mu.
	since    time.Time     // send time of the last answered keep-alive (or of the grant)
	granted  time.Duration // the TTL the server reported in that answer
	lastErr  error         // the last keep-alive's error, nil after a success
	dead     bool
	waiters  int       // Acquire calls queued on this session
	lastUsed time.Time // last claim, renewal or Acquire
}

// validity is how long after since the lease (and every key on it) is known to
// live on the server; callers hold Backend.mu.
func (s *session) validity() time.Duration { return min(s.ttl, s.granted) }

func (s *session) rev() string { return strconv.FormatInt(int64(s.id), 16) }

func parseRev(rev string) (clientv3.LeaseID, bool) {
	id, err := strconv.ParseInt(rev, 16, 64)
	return clientv3.LeaseID(id), err == nil && id != 0
}

// leaseSeconds is the whole-second etcd TTL for a claim TTL.
func leaseSeconds(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 1)
}

// session returns the live session for claims of ttl, creating it if needed.
func (b *Backend) session(ctx context.Context, ttl time.Duration) (*session, error) {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, locking.ErrClosed
		}
		if s := b.sessions[ttl]; s != nil && !s.dead {
			s.lastUsed = b.clock.Now()
			b.mu.Unlock()
			return s, nil
		}
		if ch := b.creating[ttl]; ch != nil {
			b.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		b.creating[ttl] = ch
		b.mu.Unlock()

		s, err := b.grantSession(ctx, ttl)

		b.mu.Lock()
		delete(b.creating, ttl)
		close(ch)
		if err == nil && b.closed {
			b.mu.Unlock()
			b.revokeQuietly(s.id)
			return nil, locking.ErrClosed
		}
		if err != nil {
			b.mu.Unlock()
			return nil, err
		}
		b.sessions[ttl] = s
		b.wg.Add(1)
		go b.keepAlive(s)
		b.mu.Unlock()
		b.log.Debug("session started", zap.String("lease", s.rev()), zap.Duration("ttl", ttl), zap.Duration("granted", s.granted))
		return s, nil
	}
}

func (b *Backend) grantSession(ctx context.Context, ttl time.Duration) (*session, error) {
	rctx, cancel := b.rpc(ctx)
	defer cancel()
	sent := b.clock.Now()
	resp, err := b.cli.Grant(rctx, leaseSeconds(ttl))
	if err != nil {
		return nil, err
	}
	return &session{
		id: resp.ID, ttl: ttl, lost: make(chan struct{}),
		since: sent, granted: time.Duration(resp.TTL) * time.Second, lastUsed: sent,
	}, nil
}

func (b *Backend) revokeQuietly(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), min(b.o.requestTimeout, 2*time.Second))
	defer cancel()
	_, _ = b.cli.Revoke(ctx, id)
}

// revokeLost revokes the lease of a session given up while the server could not
// be reached, retrying until the server answers (at most a second apart, for at
// most max(10 × ttl, 1 min)) or the backend is closed.
func (b *Backend) revokeLost(id clientv3.LeaseID, ttl time.Duration) {
	limit := b.clock.Now().Add(max(10*ttl, time.Minute))
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(b.ctx, min(b.o.requestTimeout, 2*time.Second))
		_, err := b.cli.Revoke(ctx, id)
		cancel()
		if err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) || b.ctx.Err() != nil || !b.clock.Now().Before(limit) {
			if err != nil && b.ctx.Err() == nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				b.log.Warn("could not revoke a lost session's lease; the server expires it", zap.String("lease", strconv.FormatInt(int64(id), 16)), zap.Error(err))
			}
			return
		}
		t := b.clock.NewTimer(backoff)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		backoff = min(2*backoff, time.Second)
	}
}

// keepAlive renews s every ttl/4 with one KeepAliveOnce, records the send time of
// every answered request, and declares s lost when the server no longer knows
// the lease or keep-alives have failed for the lease's whole validity.
func (b *Backend) keepAlive(s *session) {
	defer b.wg.Done()
	interval := max(s.ttl/4, 50*time.Millisecond)
	retry := max(interval/4, 25*time.Millisecond)
	idleAfter := max(10*s.ttl, time.Minute)
	next := interval
	for {
		t := b.clock.NewTimer(next)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-s.lost:
			t.Stop()
			return
		case <-t.C():
		}
		if b.retireIfIdle(s, idleAfter) {
			b.revokeQuietly(s.id)
			return
		}
		sent := b.clock.Now()
		b.mu.Lock()
		useful := s.since.Add(s.validity()).Sub(sent) // a later answer is worthless
		b.mu.Unlock()
		// One request at a time: a slow answer still counts from its send time,
		// so it is awaited as long as it can be of use.
		ctx, cancel := context.WithTimeout(b.ctx, max(useful, interval))
		resp, err := b.cli.KeepAliveOnce(ctx, s.id)
		cancel()
		if b.ctx.Err() != nil {
			return
		}
		if err == nil && resp.TTL > 0 {
			b.mu.Lock()
			if sent.After(s.since) {
				s.since = sent
			}
			s.granted = time.Duration(resp.TTL) * time.Second
			s.lastErr = nil
			b.mu.Unlock()
			next = interval
			continue
		}
		if err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) {
			b.loseSession(s, "the server no longer knows the session lease")
			return
		}
		b.mu.Lock()
		s.lastErr = err
		expired := !b.clock.Now().Before(s.since.Add(s.validity()))
		b.mu.Unlock()
		if expired {
			b.loseSession(s, "keep-alives failed for the session's whole ttl: "+err.Error())
			// The server may still hold the lease (its clock, a leader change, a
			// restart gives leases their whole TTL again): end it as soon as the
			// server answers, so that the claims given up here are free for
			// other replicas without waiting for it to expire.
			b.revokeLost(s.id, s.ttl)
			return
		}
		b.log.Warn("session keep-alive failed; retrying", zap.String("lease", s.rev()), zap.Error(err))
		next = retry
	}
}

// retireIfIdle ends a session that has had no claim, renewal, grant or waiter
// for idleAfter.
func (b *Backend) retireIfIdle(s *session, idleAfter time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.dead || s.waiters > 0 || b.clock.Now().Sub(s.lastUsed) < idleAfter {
		return false
	}
	for _, e := range b.entries {
		if e.sess == s {
			return false
		}
	}
	b.killLocked(s, "idle")
	return true
}

// loseSession marks s lost: its grants' Lost channels close, it serves no more
// claims and its grants are forgotten (the server frees their keys with the
// lease).
func (b *Backend) loseSession(s *session, why string) {
	b.mu.Lock()
	killed := b.killLocked(s, why)
	b.mu.Unlock()
	if killed {
		b.log.Warn("session lost; its grants are lost", zap.String("lease", s.rev()), zap.String("reason", why))
	}
}

func (b *Backend) killLocked(s *session, why string) bool {
	if s.dead {
		return false
	}
	s.dead = true
	close(s.lost)
	if b.sessions[s.ttl] == s {
		delete(b.sessions, s.ttl)
	}
	if len(b.lostIDs) > 4096 {
		clear(b.lostIDs)
	}
	b.lostIDs[s.id] = struct{}{}
	for k, e := range b.entries {
		if e.sess == s {
			delete(b.entries, k)
		}
	}
	if why != "" {
		b.log.Debug("session ended", zap.String("lease", s.rev()), zap.String("reason", why))
	}
	return true
}

// isLeaseGone reports whether err says that the lease a write used is gone.
func isLeaseGone(err error) bool { return errors.Is(err, rpctypes.ErrLeaseNotFound) }

// Entries: what this backend knows it holds, to emulate per-claim expiry.

type entryKey struct {
	key   locking.Key
	owner string
}

// entry is a claim made through this backend. While held it expires when not
// renewed for its TTL; then (or when a release or claim had an unknown outcome)
// the janitor deletes its keys, guarded by the owner.
type entry struct {
	sess    *session
	token   int64
	expires time.Time
	held    bool          // false: only awaiting cleanup
	late    time.Time     // if set, clean up again until then (a late commit)
	step    time.Duration // the interval of the next of those cleanups
}

func (b *Backend) addEntry(k locking.Key, owner string, e *entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || e.sess.dead {
		return
	}
	b.entries[entryKey{k, owner}] = e
}

// orphan schedules the cleanup of whatever (key, owner) may have left on the
// server: now, and if late is set once more after a request that may still be
// applied late has surely been decided.
func (b *Backend) orphan(k locking.Key, owner string, s *session, late bool) {
	b.mu.Lock()
	if b.closed || s == nil || s.dead {
		b.mu.Unlock()
		return
	}
	ek := entryKey{k, owner}
	now := b.clock.Now()
	e := b.entries[ek]
	if e == nil {
		e = &entry{sess: s}
		b.entries[ek] = e
	}
	e.held, e.expires = false, now
	if late {
		e.late = now.Add(b.lateCommit())
	}
	b.mu.Unlock()
	select {
	case b.nudge <- struct{}{}:
	default:
	}
}

func (b *Backend) dropEntry(k locking.Key, owner string) {
	b.mu.Lock()
	delete(b.entries, entryKey{k, owner})
	b.mu.Unlock()
}

// janitor deletes the keys of grants that were not renewed for their TTL and of
// claims, waits and releases whose outcome stayed unknown.
func (b *Backend) janitor() {
	defer b.wg.Done()
	type due struct {
		k entryKey
		e *entry
	}
	for {
		now := b.clock.Now()
		next := now.Add(time.Second)
		var todo []due
		b.mu.Lock()
		for k, e := range b.entries {
			if !now.Before(e.expires) {
				if e.held {
					b.log.Warn("grant not renewed for its ttl; deleting it as its ttl would", zap.Stringer("key", k.key))
				}
				e.held = false
				e.expires = now.Add(time.Second) // retry then if this attempt fails
				todo = append(todo, due{k, e})
			} else if e.expires.Before(next) {
				next = e.expires
			}
		}
		b.mu.Unlock()
		for _, d := range todo {
			ctx, cancel := b.rpc(b.ctx)
			_, err := b.cleanupTxn(ctx, d.k.key, d.k.owner)
			cancel()
			if b.ctx.Err() != nil {
				return
			}
			if err != nil {
				b.log.Debug("cleanup failed; retrying", zap.Stringer("key", d.k.key), zap.Error(err))
				continue
			}
			b.mu.Lock()
			if b.entries[d.k] == d.e && !d.e.held {
				if now := b.clock.Now(); d.e.late.After(now) {
					// A late commit may still come: look again soon, then
					// less often, and once more at the end.
					d.e.step = max(2*d.e.step, 500*time.Millisecond)
					if d.e.expires = now.Add(d.e.step); !d.e.expires.Before(d.e.late) {
						d.e.expires, d.e.late = d.e.late, time.Time{}
					}
				} else {
					delete(b.entries, d.k)
				}
			}
			b.mu.Unlock()
		}
		if len(todo) > 0 {
			continue
		}
		t := b.clock.NewTimer(max(next.Sub(b.clock.Now()), time.Millisecond))
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-b.nudge:
			t.Stop()
		case <-t.C():
		}
	}
}

// Retention leases: shared by all done markers and records that should expire
// in the same bucket.

type retKey struct {
	gran time.Duration
	idx  int64
}

type retLease struct {
	id  clientv3.LeaseID
	end time.Time
}

// retentionLease returns a lease that lives at least retention from now, and at
// most about one bucket (retention/16, within [1s, 1min]) plus a second longer.
func (b *Backend) retentionLease(ctx context.Context, retention time.Duration) (clientv3.LeaseID, error) {
	gran := min(max(retention/16, time.Second), time.Minute)
	now := b.clock.Now()
	idx := int64((now.Sub(b.base) + retention + gran - 1) / gran)
	k := retKey{gran, idx}
	end := b.base.Add(time.Duration(idx) * gran)

	b.retMu.Lock()
	defer b.retMu.Unlock()
	if l, ok := b.leases[k]; ok {
		return l.id, nil
	}
	for k2, l := range b.leases {
		if !now.Before(l.end) {
			delete(b.leases, k2)
		}
	}
	rctx, cancel := b.rpc(ctx)
	defer cancel()
	resp, err := b.cli.Grant(rctx, leaseSeconds(end.Sub(now)))
	if err != nil {
		return 0, err
	}
	b.leases[k] = retLease{id: resp.ID, end: end}
	return resp.ID, nil
}

// forgetRetentionLeases drops cached retention leases after a write found one
// gone (revoked by an operator, or expired early).
func (b *Backend) forgetRetentionLeases(ids ...clientv3.LeaseID) {
	b.retMu.Lock()
	defer b.retMu.Unlock()
	for k, l := range b.leases {
		for _, id := range ids {
			if l.id == id {
				delete(b.leases, k)
			}
		}
	}
}

func (b *Backend) checkOpen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return locking.ErrClosed
	}
	return nil
}

func errClosed(op string, what string) error {
	return fmt.Errorf("etcdlock: %s %q: %w", op, what, locking.ErrClosed)
}
