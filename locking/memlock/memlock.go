// Package memlock is the in-process lock backend: the default for a single replica
// and the reference implementation of locking.Backend's semantics. It serves one
// process only; replicas in different processes need Redis, etcd or ZooKeeper.
package memlock

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/oncecron/oncecron/locking"
)

// DefaultMaxRecords is how many records a scope keeps by default.
const DefaultMaxRecords = 1000

// Backend is the in-memory lock backend. The zero value is not usable; call New.
type Backend struct {
	clock        locking.Clock
	maxRecords   int
	maxRetention time.Duration // 0: none

	mu      sync.Mutex
	locks   map[locking.Key]entry
	done    map[locking.Key]entry
	fences  map[string]uint64
	records map[string]*history
	waiters map[locking.Key]chan struct{} // closed when its key changes; present while someone waits
	ops     int
	sweepAt int // ops count of the next sweep
	closed  bool
}

type entry struct {
	owner   string
	token   uint64
	expires time.Time
}

// Option configures a Backend.
type Option func(*Backend)

// WithClock sets the clock that expires leases and done markers.
func WithClock(c locking.Clock) Option { return func(b *Backend) { b.clock = c } }

// WithMaxRecords sets how many records each scope keeps (default DefaultMaxRecords).
func WithMaxRecords(n int) Option { return func(b *Backend) { b.maxRecords = n } }

// WithMaxRetention keeps done markers for at most d, whatever retention a
// completion asks for (default: as asked). The backend holds its markers in
// the process's memory, and they die with it; a scheduler on this backend is
// its only client and claims a tick again only within the tick's starting
// deadline (a takeover, a catch-up after a stall), so markers older than that
// guard nothing, while a day of them for thousands of jobs takes gigabytes.
// Set d above every job's starting deadline (the CLI adds the TTL and a
// minute).
func WithMaxRetention(d time.Duration) Option { return func(b *Backend) { b.maxRetention = d } }

// SetMaxRetention changes the bound of WithMaxRetention for later completions
// (0: none), for a table reloaded with longer starting deadlines.
func (b *Backend) SetMaxRetention(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.maxRetention = d
}

// New returns an empty in-memory backend.
//
// Without WithMaxRetention it keeps every done marker for the retention its
// completion asks for: a Scheduler asks for its jobs' retention (48 h by
// default), so a process that embeds a Scheduler on this backend grows by
// about 430 bytes a tick for two days. Give it WithMaxRetention (the longest
// starting deadline + TTL + 1 min, as the scheduler command does) and
// WithMaxRecords.
func New(opts ...Option) *Backend {
	b := &Backend{
		clock: locking.SystemClock{}, maxRecords: DefaultMaxRecords,
		locks: map[locking.Key]entry{}, done: map[locking.Key]entry{},
		fences: map[string]uint64{}, records: map[string]*history{},
	}
	for _, o := range opts {
		o(b)
	}
	if b.maxRecords <= 0 {
		b.maxRecords = DefaultMaxRecords
	}
	return b
}

func (b *Backend) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed {
		return locking.ErrClosed
	}
	b.ops++
	if b.ops >= b.sweepAt {
		b.sweep()
		// As many operations until the next sweep as there are entries
		// now (at least 1024): a sweep costs O(1) per operation however
		// many done markers the retention keeps.
		b.sweepAt = b.ops + max(1024, len(b.done)+len(b.locks))
	}
	return nil
}

// sweep drops expired entries so a long-running process does not grow without bound.
func (b *Backend) sweep() {
	now := b.clock.Now()
	for k, e := range b.done {
		if !now.Before(e.expires) {
			delete(b.done, k)
		}
	}
	for k, e := range b.locks {
		if !now.Before(e.expires) {
			delete(b.locks, k)
		}
	}
	// Waiters of keys nobody holds (their holders expired unseen, or their
	// waiters left): wake them, so that an entry does not outlive its waiters.
	for k := range b.waiters {
		if _, ok := b.locks[k]; !ok {
			b.notify(k)
		}
	}
}

// live returns the unexpired entry of key in m.
func (b *Backend) live(m map[locking.Key]entry, key locking.Key) (entry, bool) {
	e, ok := m[key]
	if !ok {
		return entry{}, false
	}
	if !b.clock.Now().Before(e.expires) {
		delete(m, key)
		b.notify(key)
		return entry{}, false
	}
	return e, true
}

// notify wakes the waiters of key, if any: only those, so that with
// thousands of losers waiting (several schedulers sharing the backend) a
// completion wakes the two or three that wait for its key, not all of them.
func (b *Backend) notify(key locking.Key) {
	if ch, ok := b.waiters[key]; ok {
		close(ch)
		delete(b.waiters, key)
	}
}

// Claim implements locking.Backend.
func (b *Backend) Claim(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.claimLocked(ctx, key, owner, ttl)
}

func (b *Backend) claimLocked(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	if err := b.begin(ctx); err != nil {
		return locking.Grant{}, err
	}
	if _, ok := b.live(b.done, key); ok {
		return locking.Grant{}, fmt.Errorf("memlock: claim %s: %w", key, locking.ErrDone)
	}
	if e, ok := b.live(b.locks, key); ok {
		if e.owner == owner {
			return locking.Grant{Key: key, Owner: owner, Token: e.token, TTL: ttl}, nil
		}
		return locking.Grant{}, fmt.Errorf("memlock: claim %s: %w", key, locking.ErrHeld)
	}
	b.fences[key.Scope]++
	tok := b.fences[key.Scope]
	b.locks[key] = entry{owner: owner, token: tok, expires: b.clock.Now().Add(ttl)}
	return locking.Grant{Key: key, Owner: owner, Token: tok, TTL: ttl}, nil
}

// ClaimBatch implements locking.BatchClaimer: the whole batch under one lock.
func (b *Backend) ClaimBatch(ctx context.Context, reqs []locking.ClaimRequest) []locking.ClaimResult {
	out := make([]locking.ClaimResult, len(reqs))
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, r := range reqs {
		out[i].Grant, out[i].Err = b.claimLocked(ctx, r.Key, r.Owner, r.TTL)
	}
	return out
}

func (b *Backend) held(g locking.Grant) bool {
	e, ok := b.live(b.locks, g.Key)
	return ok && e.owner == g.Owner
}

// Renew implements locking.Backend.
func (b *Backend) Renew(ctx context.Context, g locking.Grant, ttl time.Duration) (locking.Grant, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin(ctx); err != nil {
		return locking.Grant{}, err
	}
	if !b.held(g) {
		return locking.Grant{}, fmt.Errorf("memlock: renew %s: %w", g.Key, locking.ErrNotHeld)
	}
	e := b.locks[g.Key]
	e.expires = b.clock.Now().Add(ttl)
	b.locks[g.Key] = e
	g.TTL, g.Since = ttl, time.Time{}
	return g, nil
}

// Complete implements locking.Backend.
func (b *Backend) Complete(ctx context.Context, g locking.Grant, rec locking.Record, retention time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin(ctx); err != nil {
		return err
	}
	if d, ok := b.live(b.done, g.Key); ok && d.owner == g.Owner {
		return nil // a repeated Complete
	}
	if !b.held(g) {
		return fmt.Errorf("memlock: complete %s: %w", g.Key, locking.ErrNotHeld)
	}
	delete(b.locks, g.Key)
	if b.maxRetention > 0 {
		retention = min(retention, b.maxRetention)
	}
	b.done[g.Key] = entry{owner: g.Owner, token: g.Token, expires: b.clock.Now().Add(retention)}
	b.add(rec)
	b.notify(g.Key)
	return nil
}

// Release implements locking.Backend.
func (b *Backend) Release(ctx context.Context, g locking.Grant) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin(ctx); err != nil {
		return err
	}
	if !b.held(g) {
		return fmt.Errorf("memlock: release %s: %w", g.Key, locking.ErrNotHeld)
	}
	delete(b.locks, g.Key)
	b.notify(g.Key)
	return nil
}

// AddRecord implements locking.Backend.
func (b *Backend) AddRecord(ctx context.Context, rec locking.Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin(ctx); err != nil {
		return err
	}
	b.add(rec)
	return nil
}

func (b *Backend) add(rec locking.Record) {
	h := b.records[rec.Key.Scope]
	if h == nil {
		h = &history{}
		b.records[rec.Key.Scope] = h
	}
	h.add(rec.Normalize(), b.maxRecords)
}

// history is a scope's records: a ring of at most max records, so that
// adding one to a full history costs O(1), not a shift of all the others.
type history struct {
	recs []locking.Record
	next int // where the next record goes once recs is full
}

func (h *history) add(rec locking.Record, max int) {
	if len(h.recs) < max {
		h.recs = append(h.recs, rec)
		return
	}
	h.recs[h.next] = rec
	h.next = (h.next + 1) % len(h.recs)
}

// newest returns up to limit records, newest first.
func (h *history) newest(limit int) []locking.Record {
	n := len(h.recs)
	out := make([]locking.Record, 0, min(limit, n))
	for k := 1; k <= n && len(out) < limit; k++ {
		out = append(out, h.recs[(h.next-k+n)%n])
	}
	return out
}

// Records implements locking.Backend.
func (b *Backend) Records(ctx context.Context, scope string, limit int) ([]locking.Record, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin(ctx); err != nil {
		return nil, err
	}
	h := b.records[scope]
	if h == nil {
		return []locking.Record{}, nil
	}
	return h.newest(limit), nil
}

// Wait implements locking.Waiter: it returns when key is released or
// completed (then with an error wrapping locking.ErrDone), when its current
// holder would expire, or after one second.
func (b *Backend) Wait(ctx context.Context, key locking.Key) error {
	b.mu.Lock()
	if _, ok := b.live(b.done, key); ok {
		b.mu.Unlock()
		return fmt.Errorf("memlock: %s: %w", key, locking.ErrDone)
	}
	ch, ok := b.waiters[key]
	if !ok {
		if b.waiters == nil {
			b.waiters = map[locking.Key]chan struct{}{}
		}
		ch = make(chan struct{})
		b.waiters[key] = ch
	}
	wait := time.Second
	if e, ok := b.live(b.locks, key); ok {
		wait = min(wait, e.expires.Sub(b.clock.Now()))
	}
	b.mu.Unlock()
	t := b.clock.NewTimer(max(wait, 0))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
	case <-t.C():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.live(b.done, key); ok {
		return fmt.Errorf("memlock: %s: %w", key, locking.ErrDone)
	}
	return nil
}

// Close implements locking.Backend.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

// ServerTime implements locking.ServerClock: the process's own clock.
func (b *Backend) ServerTime(ctx context.Context) (time.Time, error) {
	return b.clock.Now().Round(0), ctx.Err()
}

var (
	_ locking.ServerClock  = (*Backend)(nil)
	_ locking.Backend      = (*Backend)(nil)
	_ locking.Waiter       = (*Backend)(nil)
	_ locking.BatchClaimer = (*Backend)(nil)
)
