package zklock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
)

// doneMarker is the data of a completed key's node.
type doneMarker struct {
	Owner       string `json:"owner"`
	Token       uint64 `json:"token"`
	RetentionMS int64  `json:"retention_ms"`
}

// errWaiterGone reports that an Acquire's waiter node vanished (its session ended).
var errWaiterGone = errors.New("zklock: waiter node gone")

// maxSinceLag is how much of a renewed grant's ttl may be lost to an old last
// contact before a renewal probes the server first.
func maxSinceLag(ttl time.Duration) time.Duration { return ttl / 6 }

// checkArgs validates a claim's arguments against the current session.
func (b *Backend) checkArgs(key locking.Key, owner string, ttl time.Duration) error {
	if err := key.Validate(); err != nil {
		return err
	}
	if err := validOwner(owner); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: ttl %v must be positive", locking.ErrInvalid, ttl)
	}
	if t := b.SessionTimeout(); t > 0 && ttl > t {
		return fmt.Errorf("%w: ttl %v exceeds the ZooKeeper session timeout %v (raise it with WithSessionTimeout and the server's maxSessionTimeout)",
			locking.ErrInvalid, ttl, t)
	}
	return nil
}

// multi runs one multi-op transaction. It returns the session it ran on (0 if
// unknown) and the send time; after is called in the request's goroutine with
// the outcome, even if ctx ended first.
func (b *Backend) multi(ctx context.Context, ops []any, after func(res []zk.MultiResponse, sid int64, sent time.Time, err error)) ([]zk.MultiResponse, int64, time.Time, error) {
	var res []zk.MultiResponse
	var sid int64
	var sent time.Time
	err := b.do(ctx, func() error {
		var err error
		sid, sent, err = b.exec(func() error {
			var e error
			res, e = b.conn.Multi(ops...)
			return e
		})
		if after != nil {
			after(res, sid, sent, err)
		}
		return err
	})
	if err != nil && (errors.Is(err, locking.ErrUnavailable) || errors.Is(err, locking.ErrClosed)) {
		return nil, 0, time.Time{}, err
	}
	return res, sid, sent, err
}

// failed returns the index and error of the operation that failed a multi.
func failed(res []zk.MultiResponse, err error) (int, error) {
	for i, r := range res {
		if r.Error != nil {
			return i, r.Error
		}
	}
	return -1, err
}

// get reads a node.
func (b *Backend) get(ctx context.Context, path string) ([]byte, *zk.Stat, int64, time.Time, error) {
	var data []byte
	var stat *zk.Stat
	var sid int64
	var sent time.Time
	err := b.idem(ctx, func() error {
		var err error
		sid, sent, err = b.exec(func() error {
			var e error
			data, stat, e = b.conn.Get(path)
			return e
		})
		return err
	})
	if abandoned(err) {
		return nil, nil, 0, time.Time{}, err // the request may still be writing its results
	}
	return data, stat, sid, sent, err
}

// abandoned reports whether do (or idem) gave up waiting for its request, which
// may then still be running and writing the variables it captured.
func abandoned(err error) bool {
	return err != nil && (errors.Is(err, locking.ErrUnavailable) || errors.Is(err, locking.ErrClosed))
}

// Claim implements locking.Backend: one multi-op round trip when the key is
// free or held by another owner, two when it is done (the second reads the done
// marker's retention; see the package documentation).
func (b *Backend) Claim(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	if err := b.checkArgs(key, owner, ttl); err != nil {
		return locking.Grant{}, b.wrap("claim", key.String(), err)
	}
	g, _, err := b.claim(ctx, key, owner, ttl, "")
	if err != nil {
		return locking.Grant{}, b.wrap("claim", key.String(), err)
	}
	return g, nil
}

// claim creates the lock and own nodes of key for owner. With waiter set it also
// deletes that waiter node in the same transaction (Acquire). repeat reports that
// the key was already ours (a repeated claim), in which case waiter is left.
func (b *Backend) claim(ctx context.Context, key locking.Key, owner string, ttl time.Duration, waiter string) (g locking.Grant, repeat bool, err error) {
	lock := b.lockPath(key)
	replace := "" // owner of an expired done marker to delete in the same multi
	for attempt := 0; attempt < 6; attempt++ {
		if err := b.ensureScope(ctx, key.Scope); err != nil {
			return g, false, err
		}
		var ops []any
		if replace != "" {
			ops = append(ops, &zk.DeleteRequest{Path: lock + "/" + replace, Version: -1}, &zk.DeleteRequest{Path: lock, Version: -1})
		}
		// The order decides which create fails first, and so what a single failed
		// multi tells: own (a repeat of ours), held (another holder), lock (a done
		// marker, or a holder that did not create a held node).
		base := len(ops)
		fence := base + 3
		ops = append(ops,
			&zk.CreateRequest{Path: b.ownPath(key, owner), Acl: b.acl, Flags: zk.FlagEphemeral},
			&zk.CreateRequest{Path: b.heldPath(key), Data: []byte(owner), Acl: b.acl, Flags: zk.FlagEphemeral},
			&zk.CreateRequest{Path: lock, Data: []byte(owner), Acl: b.acl, Flags: zk.FlagEphemeral},
			&zk.SetDataRequest{Path: b.fencePath(key.Scope), Version: -1},
		)
		if waiter != "" {
			ops = append(ops, &zk.DeleteRequest{Path: waiter, Version: -1})
		}
		res, sid, sent, err := b.multi(ctx, ops, func(res []zk.MultiResponse, sid int64, sent time.Time, err error) {
			if err == nil {
				// Tracked even if the caller gave up: the reaper then frees it after ttl.
				if sid == 0 {
					sid = b.conn.SessionID()
				}
				b.track(key, owner, sid, uint64(res[fence].Stat.Mzxid), ttl, sent)
			}
		})
		if err == nil {
			if sid == 0 {
				return g, false, fmt.Errorf("%w: the session changed during the claim; its outcome is unknown", locking.ErrUnavailable)
			}
			return b.grant(key, owner, uint64(res[fence].Stat.Mzxid), sid, sent, ttl), false, nil
		}
		if res == nil {
			if ambiguous(err) { // a repeat finds our nodes, if the request was applied
				if ok, aerr := b.again(ctx, err); ok {
					attempt--
					continue
				} else {
					return g, false, aerr
				}
			}
			return g, false, err
		}
		idx, zerr := failed(res, err)
		switch {
		case idx == base+1 && errors.Is(zerr, zk.ErrNodeExists):
			// Held by another owner: our own node did not exist, so not by us.
			return g, false, locking.ErrHeld
		case (idx == base || idx == base+2) && errors.Is(zerr, zk.ErrNodeExists):
			// Our own node exists (a repeat, or our ended session), or the lock node
			// does without a held node (a done marker, or a holder claiming without
			// one): the lock node tells which.
			data, stat, gsid, gsent, err := b.get(ctx, lock)
			if errors.Is(err, zk.ErrNoNode) {
				continue // freed meanwhile
			}
			if err != nil {
				return g, false, err
			}
			if stat.EphemeralOwner != 0 {
				if string(data) != owner {
					return g, false, locking.ErrHeld
				}
				if gsid == 0 || stat.EphemeralOwner != gsid {
					// Ours, but on a session that has ended: never adopted.
					return g, false, fmt.Errorf("%w: held by an ended session of the same owner", locking.ErrHeld)
				}
				tok := uint64(stat.Czxid)
				b.track(key, owner, gsid, tok, ttl, gsent)
				return b.grant(key, owner, tok, gsid, gsent, ttl), true, nil
			}
			m, perr := parseDone(data)
			if perr != nil {
				b.log.Warn("unreadable done marker; treating the key as done", zap.String("path", lock), zap.Error(perr))
				return g, false, locking.ErrDone
			}
			if !b.expired(stat.Ctime, m.RetentionMS) {
				return g, false, locking.ErrDone
			}
			replace = m.Owner
		case idx >= 0 && idx < base && errors.Is(zerr, zk.ErrNoNode):
			replace = "" // someone else removed the expired marker
		case waiter != "" && idx == fence+1 && errors.Is(zerr, zk.ErrNoNode):
			return g, false, errWaiterGone
		case idx >= base && idx <= fence && errors.Is(zerr, zk.ErrNoNode):
			b.forgetScope(key.Scope)
		default:
			return g, false, zerr
		}
	}
	return g, false, fmt.Errorf("%w: the key kept changing hands", locking.ErrHeld)
}

// grant builds the Grant of a claim made on session sid with a request sent at sent.
func (b *Backend) grant(key locking.Key, owner string, token uint64, sid int64, sent time.Time, ttl time.Duration) locking.Grant {
	return locking.Grant{
		Key: key, Owner: owner, Token: token, TTL: ttl, Since: sent,
		Lost: b.lostChan(sid), Rev: strconv.FormatInt(sid, 16),
	}
}

// track records a live claim for renewals and the reaper.
func (b *Backend) track(key locking.Key, owner string, sid int64, token uint64, ttl time.Duration, sent time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if sid != b.conn.SessionID() || b.closed {
		return
	}
	h := b.grants[owner]
	if h == nil || h.key != key || h.sid != sid {
		h = &held{key: key, sid: sid, token: token}
		b.grants[owner] = h
	}
	h.ttl = ttl
	if exp := sent.Add(ttl); exp.After(h.expires) {
		h.expires = exp
	}
}

// untrack forgets a claim that ended.
func (b *Backend) untrack(key locking.Key, owner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h := b.grants[owner]; h != nil && h.key == key {
		delete(b.grants, owner)
	}
}

func parseDone(data []byte) (doneMarker, error) {
	var m doneMarker
	if err := json.Unmarshal(data, &m); err != nil {
		return m, err
	}
	if validOwner(m.Owner) != nil || m.RetentionMS <= 0 {
		return m, fmt.Errorf("bad done marker %q", data)
	}
	return m, nil
}

// expired reports whether a done marker created at ctimeMS (server time, ms) with
// the given retention has run out, by this process's wall clock. The extra
// millisecond covers the truncation of ctime.
func (b *Backend) expired(ctimeMS, retentionMS int64) bool {
	return !b.clock.Now().Before(time.UnixMilli(ctimeMS + retentionMS + 1))
}

// RenewsFromSession implements locking.SessionRenewer: Renew answers from the
// ZooKeeper session (at most one probe), so a lease may renew through it after its local
// deadline, and keeps the key if the session was kept alive meanwhile.
func (b *Backend) RenewsFromSession() bool { return true }

// Renew implements locking.Backend without a round trip: the grant lives as long
// as the session and the backend's own ttl, so it is answered from the session's
// last confirmed server contact (see the package documentation). One shared probe
// refreshes that contact when it has become too old; while the client is
// disconnected Renew fails with locking.ErrUnavailable. A grant of an ended
// session, or one that was released, completed or reaped, yields locking.ErrNotHeld.
func (b *Backend) Renew(ctx context.Context, g locking.Grant, ttl time.Duration) (locking.Grant, error) {
	what := g.Key.String()
	if err := ctx.Err(); err != nil {
		return locking.Grant{}, b.wrap("renew", what, errors.Join(locking.ErrUnavailable, err))
	}
	if ttl <= 0 {
		return locking.Grant{}, b.wrap("renew", what, fmt.Errorf("%w: ttl %v must be positive", locking.ErrInvalid, ttl))
	}
	sid, err := strconv.ParseInt(g.Rev, 16, 64)
	if err != nil || sid == 0 {
		return locking.Grant{}, b.wrap("renew", what, fmt.Errorf("%w: not a grant of this backend", locking.ErrNotHeld))
	}
	b.checkSessions()
	now := b.clock.Now()
	if err := b.renewable(g, sid, now); err != nil {
		return locking.Grant{}, b.wrap("renew", what, err)
	}
	if b.conn.State() != zk.StateHasSession {
		return locking.Grant{}, b.wrap("renew", what, fmt.Errorf("%w: disconnected from ZooKeeper", locking.ErrUnavailable))
	}
	t, ok := b.sessionTimeout(sid)
	if !ok {
		return locking.Grant{}, b.wrap("renew", what, fmt.Errorf("%w: no session", locking.ErrUnavailable))
	}
	if ttl > t {
		return locking.Grant{}, b.wrap("renew", what, fmt.Errorf("%w: ttl %v exceeds the session timeout %v", locking.ErrInvalid, ttl, t))
	}
	since, ok := b.since(sid, now, ttl, t)
	if !ok {
		if err := b.refresh(ctx); err != nil {
			return locking.Grant{}, b.wrap("renew", what, err)
		}
		if since, ok = b.since(sid, now, ttl, t); !ok {
			return locking.Grant{}, b.wrap("renew", what, fmt.Errorf("%w: no recent answer from ZooKeeper", locking.ErrUnavailable))
		}
	}
	b.mu.Lock()
	h := b.grants[g.Owner]
	if h == nil || h.key != g.Key || h.sid != sid || h.reaping || !now.Before(h.expires) {
		b.mu.Unlock()
		return locking.Grant{}, b.wrap("renew", what, locking.ErrNotHeld)
	}
	h.ttl = ttl
	if exp := now.Add(ttl); exp.After(h.expires) {
		h.expires = exp
	}
	b.mu.Unlock()
	g.TTL, g.Since = ttl, since
	return g, nil
}

// renewable checks that g is a live claim of the current session.
func (b *Backend) renewable(g locking.Grant, sid int64, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return locking.ErrClosed
	}
	if sid != b.conn.SessionID() {
		return fmt.Errorf("%w: the grant's ZooKeeper session ended", locking.ErrNotHeld)
	}
	h := b.grants[g.Owner]
	if h == nil || h.key != g.Key || h.sid != sid || h.reaping || !now.Before(h.expires) {
		return fmt.Errorf("%w: not held (released, completed, or not renewed within its ttl)", locking.ErrNotHeld)
	}
	return nil
}

// since returns the Since of a renewal at now, or false if the last contact is
// too old to give (nearly) a full ttl.
func (b *Backend) since(sid int64, now time.Time, ttl, timeout time.Duration) (time.Time, bool) {
	b.mu.Lock()
	c := b.contact
	b.mu.Unlock()
	if c.sid != sid {
		return time.Time{}, false
	}
	s := c.at.Add((timeout - ttl) * 9 / 10)
	if s.After(now) {
		s = now
	}
	return s, now.Sub(s) <= maxSinceLag(ttl)
}

// refresh waits for one request to be answered on the session, sharing the
// request with concurrent callers.
func (b *Backend) refresh(ctx context.Context) error {
	b.mu.Lock()
	ch := b.probe
	start := ch == nil
	if start {
		ch = make(chan struct{})
		b.probe = ch
	}
	b.mu.Unlock()
	if start {
		end := func() {
			b.mu.Lock()
			b.probe = nil
			b.mu.Unlock()
			close(ch)
		}
		if !b.spawn(func() {
			defer end()
			_, _, _ = b.exec(func() error {
				_, _, err := b.conn.Exists(b.root)
				return err
			})
		}) {
			end()
			return locking.ErrClosed
		}
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return errors.Join(locking.ErrUnavailable, ctx.Err())
	case <-b.closing:
		return locking.ErrClosed
	}
}

// Complete implements locking.Backend with one multi: delete our own node
// (failing unless we hold the key), set the held node's data to the marker (the
// event its waiters get: see Wait), delete the held and lock nodes, create the
// done marker at the lock node's path and its owner child, and append the record. A repeat after success
// finds the marker with our owner and succeeds.
func (b *Backend) Complete(ctx context.Context, g locking.Grant, rec locking.Record, retention time.Duration) error {
	what := g.Key.String()
	if err := g.Key.Validate(); err != nil {
		return b.wrap("complete", what, err)
	}
	if err := validOwner(g.Owner); err != nil {
		return b.wrap("complete", what, err)
	}
	if retention <= 0 {
		return b.wrap("complete", what, fmt.Errorf("%w: retention %v must be positive", locking.ErrInvalid, retention))
	}
	ms := max(retention.Milliseconds(), 1)
	marker, _ := json.Marshal(doneMarker{Owner: g.Owner, Token: g.Token, RetentionMS: ms})
	data, err := json.Marshal(rec.Normalize())
	if err != nil {
		return b.wrap("complete", what, fmt.Errorf("%w: %w", locking.ErrInvalid, err))
	}
	lock := b.lockPath(g.Key)
	for attempt := 0; attempt < 3; attempt++ {
		ops := []any{
			&zk.DeleteRequest{Path: b.ownPath(g.Key, g.Owner), Version: -1},
			// Waiters watch the held node: this change, before its deletion, is
			// the event they get, and it tells them the key was completed.
			&zk.SetDataRequest{Path: b.heldPath(g.Key), Data: marker, Version: -1},
			&zk.DeleteRequest{Path: b.heldPath(g.Key), Version: -1},
			&zk.DeleteRequest{Path: lock, Version: -1},
			&zk.CreateRequest{Path: lock, Data: marker, Acl: b.acl, Flags: zk.FlagPersistent},
			&zk.CreateRequest{Path: lock + "/" + g.Owner, Acl: b.acl, Flags: zk.FlagPersistent},
			&zk.CreateRequest{Path: b.recDir(g.Key.Scope) + "/r-", Data: data, Acl: b.acl, Flags: zk.FlagSequence},
		}
		recIdx := len(ops) - 1
		res, _, _, err := b.multi(ctx, ops, nil)
		if err == nil {
			b.untrack(g.Key, g.Owner)
			return nil
		}
		if res == nil {
			if ambiguous(err) { // a repeat finds the done marker, if the request was applied
				if ok, aerr := b.again(ctx, err); ok {
					attempt--
					continue
				} else {
					return b.wrap("complete", what, aerr)
				}
			}
			return b.wrap("complete", what, err)
		}
		idx, zerr := failed(res, err)
		switch {
		case idx == 0 && errors.Is(zerr, zk.ErrNoNode):
			data, stat, _, _, err := b.get(ctx, lock)
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				return b.wrap("complete", what, err)
			}
			if err == nil && stat.EphemeralOwner == 0 {
				if m, perr := parseDone(data); perr == nil && m.Owner == g.Owner {
					b.untrack(g.Key, g.Owner)
					return nil // a repeated Complete
				}
			}
			b.untrack(g.Key, g.Owner)
			return b.wrap("complete", what, locking.ErrNotHeld)
		case idx == recIdx && errors.Is(zerr, zk.ErrNoNode):
			b.forgetScope(g.Key.Scope)
			if err := b.ensureScope(ctx, g.Key.Scope); err != nil {
				return b.wrap("complete", what, err)
			}
		default:
			return b.wrap("complete", what, zerr)
		}
	}
	return b.wrap("complete", what, fmt.Errorf("%w: scope nodes keep disappearing", locking.ErrUnavailable))
}

// Release implements locking.Backend: one multi deleting our own node, the held
// node and the lock node, which fails (ErrNotHeld) unless owner still holds the key on a live
// session. It needs only g.Key and g.Owner.
func (b *Backend) Release(ctx context.Context, g locking.Grant) error {
	what := g.Key.String()
	if err := g.Key.Validate(); err != nil {
		return b.wrap("release", what, err)
	}
	if err := validOwner(g.Owner); err != nil {
		return b.wrap("release", what, err)
	}
	if sid, err := strconv.ParseInt(g.Rev, 16, 64); err == nil && sid != 0 && sid != b.conn.SessionID() {
		// The grant's session ended, and its ephemeral nodes with it.
		b.untrack(g.Key, g.Owner)
		return b.wrap("release", what, fmt.Errorf("%w: the grant's ZooKeeper session ended", locking.ErrNotHeld))
	}
	return b.wrap("release", what, b.release(ctx, g.Key, g.Owner))
}

func (b *Backend) release(ctx context.Context, key locking.Key, owner string) error {
	ops := []any{
		&zk.DeleteRequest{Path: b.ownPath(key, owner), Version: -1},
		&zk.DeleteRequest{Path: b.heldPath(key), Version: -1},
		&zk.DeleteRequest{Path: b.lockPath(key), Version: -1},
	}
	res, _, _, err := b.multi(ctx, ops, nil)
	if err == nil {
		b.untrack(key, owner)
		return nil
	}
	if res == nil {
		return err
	}
	if idx, zerr := failed(res, err); idx == 0 && errors.Is(zerr, zk.ErrNoNode) {
		b.untrack(key, owner)
		return locking.ErrNotHeld
	} else {
		return zerr
	}
}

// AddRecord implements locking.Backend: one sequential node under the scope's rec.
func (b *Backend) AddRecord(ctx context.Context, rec locking.Record) error {
	what := rec.Key.String()
	if err := rec.Key.Validate(); err != nil {
		return b.wrap("add record", what, err)
	}
	data, err := json.Marshal(rec.Normalize())
	if err != nil {
		return b.wrap("add record", what, fmt.Errorf("%w: %w", locking.ErrInvalid, err))
	}
	for range 2 {
		if err := b.ensureScope(ctx, rec.Key.Scope); err != nil {
			return b.wrap("add record", what, err)
		}
		err := b.do(ctx, func() error {
			_, _, err := b.exec(func() error {
				_, err := b.conn.Create(b.recDir(rec.Key.Scope)+"/r-", data, zk.FlagSequence, b.acl)
				return err
			})
			return err
		})
		if !errors.Is(err, zk.ErrNoNode) {
			return b.wrap("add record", what, err)
		}
		b.forgetScope(rec.Key.Scope)
	}
	return b.wrap("add record", what, fmt.Errorf("%w: scope nodes keep disappearing", locking.ErrUnavailable))
}

// children lists a node's children; a missing node has none.
func (b *Backend) children(ctx context.Context, path string) ([]string, error) {
	var kids []string
	err := b.idem(ctx, func() error {
		_, _, err := b.exec(func() error {
			var e error
			kids, _, e = b.conn.Children(path)
			return e
		})
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if abandoned(err) {
		return nil, err
	}
	return kids, err
}

// seqOf returns the sequence number a sequential node's name ends with.
func seqOf(name string) (int64, bool) {
	if len(name) < 10 {
		return 0, false
	}
	n, err := strconv.ParseInt(name[len(name)-10:], 10, 64)
	return n, err == nil
}

// sortedRecords returns the record node names of a listing, oldest first.
func sortedRecords(kids []string) []string {
	out := kids[:0:0]
	for _, k := range kids {
		if _, ok := seqOf(k); ok && strings.HasPrefix(k, "r-") {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, c string) int {
		x, _ := seqOf(a)
		y, _ := seqOf(c)
		return int(min(max(x-y, -1), 1))
	})
	return out
}

// Records implements locking.Backend: it lists the scope's record nodes and
// reads the newest limit of them (pipelined).
func (b *Backend) Records(ctx context.Context, scope string, limit int) ([]locking.Record, error) {
	if err := locking.ValidateScope(scope); err != nil {
		return nil, b.wrap("records", scope, err)
	}
	if limit <= 0 {
		return nil, b.wrap("records", scope, fmt.Errorf("%w: limit %d must be positive", locking.ErrInvalid, limit))
	}
	kids, err := b.children(ctx, b.recDir(scope))
	if err != nil {
		return nil, b.wrap("records", scope, err)
	}
	names := sortedRecords(kids)
	slices.Reverse(names)
	if len(names) > limit {
		names = names[:limit]
	}
	recs := make([]*locking.Record, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			data, _, _, _, err := b.get(ctx, b.recDir(scope)+"/"+name)
			if errors.Is(err, zk.ErrNoNode) {
				return // swept meanwhile
			}
			if err != nil {
				errs[i] = err
				return
			}
			var r locking.Record
			if err := json.Unmarshal(data, &r); err != nil {
				b.log.Warn("unreadable history record", zap.String("scope", scope), zap.String("node", name), zap.Error(err))
				return
			}
			recs[i] = &r
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, b.wrap("records", scope, err)
	}
	out := make([]locking.Record, 0, len(recs))
	for _, r := range recs {
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, nil
}

// monitor is the backend's housekeeping goroutine: it notices ended sessions,
// releases claims not renewed within their ttl, and retries the deletion of
// abandoned waiter nodes.
func (b *Backend) monitor() {
	t := time.NewTicker(reapEvery)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-b.closing:
			return
		case <-t.C:
		}
		b.checkSessions()
		b.reap()
		if n%10 == 0 && b.orphanBusy.CompareAndSwap(false, true) {
			if !b.spawn(func() {
				defer b.orphanBusy.Store(false)
				b.retryOrphans()
			}) {
				return
			}
		}
	}
}

// reap releases the claims whose ttl passed without a renewal.
func (b *Backend) reap() {
	now := b.clock.Now()
	type due struct {
		key   locking.Key
		owner string
	}
	var list []due
	b.mu.Lock()
	for owner, h := range b.grants {
		if !h.reaping && !now.Before(h.expires) {
			h.reaping = true
			list = append(list, due{h.key, owner})
		}
	}
	b.mu.Unlock()
	for _, d := range list {
		b.spawn(func() {
			ctx, cancel := context.WithTimeout(context.Background(), max(b.SessionTimeout(), time.Second))
			defer cancel()
			err := b.release(ctx, d.key, d.owner)
			switch {
			case err == nil:
				b.log.Info("released a claim that was not renewed within its ttl", zap.Stringer("key", d.key))
			case errors.Is(err, locking.ErrNotHeld):
			default:
				b.mu.Lock()
				if h := b.grants[d.owner]; h != nil {
					h.reaping = false // retried on a later tick, while its session lasts
				}
				b.mu.Unlock()
			}
		})
	}
}
