package locking

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// Defaults of a Locker. Each can be changed with an Option.
const (
	// DefaultDrift is the assumed worst-case clock-rate difference between this
	// process and the backend server (1%). A lease's local validity is shortened by
	// this fraction of its TTL.
	DefaultDrift = 0.01
	// DefaultMaxMargin caps the automatic safety margin (TTL/5) for long TTLs.
	DefaultMaxMargin = 2 * time.Second
	// DefaultPollInterval is how often Acquire and TakeOver retry a held key on a
	// backend that can neither queue nor notify waiters (neither Acquirer nor
	// Waiter), and retry a backend that did not answer.
	DefaultPollInterval = 250 * time.Millisecond
	// MinTTL is the smallest TTL a Locker accepts.
	MinTTL = 100 * time.Millisecond
	// MaxTTL is the largest TTL a Locker accepts.
	MaxTTL = 24 * time.Hour
)

// Locker hands out leases on one Backend. It is safe for concurrent use; one Locker
// per process and backend is the intended shape.
type Locker struct {
	b    Backend
	opts options
	fin  *finisher // non-nil when b is a BatchFinisher
	// timers runs the watchdog timers of every lease on one clock timer.
	timers *timerSet
}

type options struct {
	clock  Clock
	logger *zap.Logger
	margin time.Duration // 0 = automatic: min(ttl/5, DefaultMaxMargin)
	drift  float64
	poll   time.Duration
	notify func(LeaseEvent)
}

// LeaseEventKind says what happened to a lease.
type LeaseEventKind string

// Lease event kinds.
const (
	LeaseRenewed     LeaseEventKind = "renewed"      // a renewal succeeded
	LeaseRenewFailed LeaseEventKind = "renew_failed" // a renewal failed; the lease is held until its deadline
	LeaseLost        LeaseEventKind = "lost"         // the lease was lost
)

// LeaseEvent is reported to the function given with WithLeaseEvents.
type LeaseEvent struct {
	Kind LeaseEventKind
	Key  Key
	Err  error
}

// WithLeaseEvents sets a function called (from the watchdog goroutines) for
// every renewal, failed renewal and loss of a lease: for metrics. It must not
// block.
func WithLeaseEvents(f func(LeaseEvent)) Option { return func(o *options) { o.notify = f } }

// Option configures a Locker.
type Option func(*options)

// WithClock sets the clock the watchdog and deadlines use (default SystemClock).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithLogger sets the logger (default: no logging).
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.logger = l } }

// WithMargin sets the safety margin subtracted from every lease's validity: it must
// cover a round trip plus the longest pause the process may suffer (GC, scheduling)
// between checking its lease and acting on it. The default is TTL/5, at most 2s.
// New rejects a margin of TTL/2 or more at claim time.
func WithMargin(d time.Duration) Option { return func(o *options) { o.margin = d } }

// WithDrift sets the assumed clock-rate drift ρ (default DefaultDrift), in [0, 0.1].
func WithDrift(rho float64) Option { return func(o *options) { o.drift = rho } }

// WithPollInterval sets how often Acquire and TakeOver retry a held key on
// backends that can neither queue nor notify waiters, and retry a backend that
// did not answer (default DefaultPollInterval).
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.poll = d } }

// New returns a Locker on b.
func New(b Backend, opts ...Option) (*Locker, error) {
	o := options{clock: SystemClock{}, logger: zap.NewNop(), drift: DefaultDrift, poll: DefaultPollInterval}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case b == nil:
		return nil, fmt.Errorf("%w: nil backend", ErrInvalid)
	case o.clock == nil:
		return nil, fmt.Errorf("%w: nil clock", ErrInvalid)
	case o.logger == nil:
		return nil, fmt.Errorf("%w: nil logger", ErrInvalid)
	case o.margin < 0:
		return nil, fmt.Errorf("%w: negative margin %v", ErrInvalid, o.margin)
	case o.drift < 0 || o.drift > 0.1:
		return nil, fmt.Errorf("%w: drift %v outside [0, 0.1]", ErrInvalid, o.drift)
	case o.poll <= 0:
		return nil, fmt.Errorf("%w: poll interval %v must be positive", ErrInvalid, o.poll)
	}
	l := &Locker{b: b, opts: o, timers: &timerSet{clock: o.clock}}
	if bf, ok := b.(BatchFinisher); ok {
		l.fin = &finisher{b: bf}
	}
	return l, nil
}

// Backend returns the backend the Locker uses.
func (l *Locker) Backend() Backend { return l.b }

// Margin returns the safety margin used for a lease of the given TTL.
func (l *Locker) Margin(ttl time.Duration) time.Duration {
	if l.opts.margin > 0 {
		return l.opts.margin
	}
	return min(ttl/5, DefaultMaxMargin)
}

func (l *Locker) checkTTL(ttl time.Duration) error {
	if ttl < MinTTL || ttl > MaxTTL {
		return fmt.Errorf("%w: ttl %v outside [%v, %v]", ErrInvalid, ttl, MinTTL, MaxTTL)
	}
	if m := l.Margin(ttl); m >= ttl/2 {
		return fmt.Errorf("%w: safety margin %v must be less than half the ttl %v", ErrInvalid, m, ttl)
	}
	return nil
}

// Claim tries once, without waiting, to take key for ttl. It returns a held Lease
// whose watchdog renews it every ttl/3, or an error wrapping ErrHeld (another owner
// holds it), ErrDone (it was completed and its retention has not run out),
// ErrUnavailable, ErrInvalid or the context's error.
func (l *Locker) Claim(ctx context.Context, key Key, ttl time.Duration) (*Lease, error) {
	if err := l.pre(ctx, key, ttl); err != nil {
		return nil, err
	}
	owner := NewOwner()
	sent := l.opts.clock.Now()
	g, err := l.b.Claim(ctx, key, owner, ttl)
	if err != nil {
		l.cleanup(ctx, key, owner, ttl, err)
		return nil, err
	}
	return l.newLease(g, sent, ttl), nil
}

// Acquire waits until it holds key, the key is completed (ErrDone) or ctx ends.
// It claims at once; if the key is held, on etcd and ZooKeeper it queues and is
// woken in turn, and on other backends it waits for a change notification or the
// holder's expiry (Waiter) or polls, and claims again.
func (l *Locker) Acquire(ctx context.Context, key Key, ttl time.Duration) (*Lease, error) {
	return l.acquire(ctx, key, ttl, nil)
}

// TakeOver is Acquire for a caller whose Claim of key just returned ErrHeld: it
// waits for the holder to end before it claims again, instead of claiming again
// at once. It returns a lease once the holder released key or its lease expired
// (a takeover), an error wrapping ErrDone if the holder completed key, or ctx's
// error joined with ErrHeld. On a backend that notifies waiters (Waiter: Redis,
// etcd, ZooKeeper, memory) it claims again only when the holder released the
// key or its lease may have expired: a holder that completes the key costs the
// waiter no request beyond its lost claim (on ZooKeeper, one: the watch), and
// one that runs on and renews costs it a claim about once per TTL on Redis,
// a watch and a claim every 30 s on ZooKeeper, nothing on etcd. Waiters are not
// queued: all wake and claim, one wins. A backend that queues waiters but
// cannot notify them (Acquirer alone) is asked to Acquire at once, as by
// Acquire; other backends are polled, starting after one poll interval.
func (l *Locker) TakeOver(ctx context.Context, key Key, ttl time.Duration) (*Lease, error) {
	return l.acquire(ctx, key, ttl, fmt.Errorf("%w: %s, by the caller's last claim", ErrHeld, key))
}

// acquire claims key until it holds it; a non-nil held (wrapping ErrHeld) says
// the caller's own claim just found key held, and acquire waits before claiming.
func (l *Locker) acquire(ctx context.Context, key Key, ttl time.Duration, held error) (*Lease, error) {
	if err := l.pre(ctx, key, ttl); err != nil {
		return nil, err
	}
	_, waits := l.b.(Waiter)
	if a, ok := l.b.(Acquirer); ok && (held == nil || !waits) {
		owner := NewOwner()
		sent := l.opts.clock.Now()
		g, err := a.Acquire(ctx, key, owner, ttl)
		if err != nil {
			l.cleanup(ctx, key, owner, ttl, err)
			return nil, err
		}
		return l.newLease(g, sent, ttl), nil
	}
	last := held
	for {
		if last == nil {
			lease, err := l.Claim(ctx, key, ttl)
			if err == nil {
				return lease, nil
			}
			if !errors.Is(err, ErrHeld) && !errors.Is(err, ErrUnavailable) {
				return nil, err
			}
			last = err
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, errors.Join(last, cerr)
		}
		if w, ok := l.b.(Waiter); ok && errors.Is(last, ErrHeld) {
			werr := w.Wait(ctx, key)
			switch {
			case ctx.Err() != nil:
				return nil, errors.Join(last, ctx.Err())
			case errors.Is(werr, ErrDone), errors.Is(werr, ErrClosed):
				return nil, werr
			}
		} else if serr := sleep(ctx, l.opts.clock, jitter(l.opts.poll)); serr != nil {
			return nil, errors.Join(last, serr)
		}
		last = nil
	}
}

// Records returns up to limit completion records of scope, newest first.
func (l *Locker) Records(ctx context.Context, scope string, limit int) ([]Record, error) {
	if err := ValidateScope(scope); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit %d must be positive", ErrInvalid, limit)
	}
	recs, err := l.b.Records(ctx, scope, limit)
	if err != nil {
		return nil, err
	}
	return dedupe(recs), nil
}

// dedupe drops repeated copies of a record. A record whose write was retried
// after an ambiguous failure (the reply lost, the request applied later) can be
// stored twice by backends that append (Redis lists, ZooKeeper sequential
// nodes); the copies are identical, down to the owner id and the instants.
func dedupe(recs []Record) []Record {
	type id struct {
		key            Key
		owner          string
		token          uint64
		outcome        Outcome
		started, ended int64
	}
	seen := make(map[id]bool, len(recs))
	out := recs[:0]
	for _, r := range recs {
		k := id{r.Key, r.Owner, r.Token, r.Outcome, r.Started.UnixNano(), r.Ended.UnixNano()}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, r)
	}
	return out
}

// AddRecord stores rec in the history of rec.Key.Scope without claiming anything.
func (l *Locker) AddRecord(ctx context.Context, rec Record) error {
	if err := rec.Key.Validate(); err != nil {
		return err
	}
	return l.b.AddRecord(ctx, rec.Normalize())
}

func (l *Locker) pre(ctx context.Context, key Key, ttl time.Duration) error {
	if err := key.Validate(); err != nil {
		return err
	}
	if err := l.checkTTL(ttl); err != nil {
		return err
	}
	return ctx.Err()
}

// cleanup resolves a claim whose outcome may be unknown: if the request may have
// reached the server, the entry it may have created is removed (by owner id, so
// nobody else's entry is touched). A claim never reports failure while leaving its
// entry in place.
func (l *Locker) cleanup(ctx context.Context, key Key, owner string, ttl time.Duration, err error) {
	if errors.Is(err, ErrHeld) || errors.Is(err, ErrDone) || errors.Is(err, ErrInvalid) {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(ttl, 2*time.Second))
	defer cancel()
	rerr := l.b.Release(cctx, Grant{Key: key, Owner: owner})
	if rerr != nil && !errors.Is(rerr, ErrNotHeld) {
		l.opts.logger.Warn("claim outcome unknown and cleanup failed; the entry, if any, expires with its ttl",
			zap.Stringer("key", key), zap.Duration("ttl", ttl), zap.Error(rerr))
	}
}

// NewOwner returns a fresh random owner id: 128 bits from crypto/rand, as 32 hex
// digits. Every claim gets its own.
func NewOwner() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

func jitter(d time.Duration) time.Duration {
	// ±10%, so that replicas started together do not renew or poll in lock step.
	return d - d/10 + time.Duration(mrand.Int64N(int64(d/5)+1))
}

func sleep(ctx context.Context, c Clock, d time.Duration) error {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
