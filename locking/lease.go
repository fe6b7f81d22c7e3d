package locking

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Lease is a held claim on a key. Its watchdog renews it every TTL/3 until
// Complete or Release, and declares it lost (closing Done, cancelling Context, Err
// = ErrLost) as soon as the backend says the key is no longer ours, the backend's
// session ends, or renewals have failed until the local deadline.
//
// The local deadline is send time of the last successful claim or renewal + TTL
// − TTL·drift − margin, measured on the monotonic clock, so the holder learns of the
// loss before the server can hand the key to someone else, provided the server's
// clock does not run faster than ours by more than the drift and the process is not
// paused for longer than the margin between checking its lease and acting.
type Lease struct {
	l     *Locker
	key   Key
	owner string
	token uint64
	ttl   time.Duration
	lost  <-chan struct{}

	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}

	opMu sync.Mutex // serializes backend operations on the grant

	mu       sync.Mutex
	grant    Grant
	deadline time.Time
	err      error // nil while held

	// The watchdog runs on the Locker's timers (one clock timer for all its
	// leases: see timerSet): a renewal every ttl/3 and, whenever the deadline
	// could pass before a renewal ends it, a guard at the local deadline, each
	// a callback, so that a held lease costs no goroutine between renewals (a
	// replica may hold thousands at once). Leases of short runs end before
	// their first renewal: they cost a heap entry, and no watch context.
	wmu       sync.Mutex
	stopped   bool
	wctx      context.Context    // made by the first renewal (watchContext)
	stopWatch context.CancelFunc // aborts an in-flight renewal
	aborted   bool               // abortWatch was called
	renewT    Timer
	guardT    Timer
	pending   sync.WaitGroup // scheduled or running callbacks, and the loss watcher
}

func (l *Locker) newLease(g Grant, sent time.Time, ttl time.Duration) *Lease {
	ctx, cancel := context.WithCancelCause(context.Background())
	ls := &Lease{
		l: l, key: g.Key, owner: g.Owner, token: g.Token, ttl: ttl, lost: g.Lost,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		grant: g,
	}
	ls.deadline = l.deadline(g, sent, ttl)
	if ce := l.opts.logger.Check(zap.DebugLevel, "lease acquired"); ce != nil {
		ce.Write(ls.fields(zap.Time("deadline", ls.deadline))...)
	}
	ls.startWatch()
	return ls
}

// fields returns the lease's key and token followed by fs, for a log line.
// (A logger With these fields per lease would cost allocations on every
// claim, for lines that are rarely written.)
func (ls *Lease) fields(fs ...zap.Field) []zap.Field {
	return append([]zap.Field{zap.Stringer("key", ls.key), zap.Uint64("token", ls.token)}, fs...)
}

// debug logs msg at debug level, when that level is enabled.
func (ls *Lease) debug(msg string) {
	if ce := ls.l.opts.logger.Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(ls.fields()...)
	}
}

func (l *Locker) deadline(g Grant, sent time.Time, ttl time.Duration) time.Time {
	since := sent
	if !g.Since.IsZero() {
		since = g.Since
	}
	if g.TTL > 0 {
		ttl = g.TTL
	}
	return since.Add(ttl - time.Duration(float64(ttl)*l.opts.drift) - l.Margin(ttl))
}

// Key returns the leased key.
func (ls *Lease) Key() Key { return ls.key }

// Token returns the fencing token: strictly greater than every token issued before
// for the key's scope. Pass it to every system the holder writes to, and have them
// refuse writes with a token lower than the highest they have seen.
func (ls *Lease) Token() uint64 { return ls.token }

// Owner returns the random owner id of this claim.
func (ls *Lease) Owner() string { return ls.owner }

// TTL returns the lease's time to live on the server.
func (ls *Lease) TTL() time.Duration { return ls.ttl }

// Done returns a channel closed when the lease ends: lost, completed or released.
func (ls *Lease) Done() <-chan struct{} { return ls.done }

// Context returns a context cancelled when the lease ends; its cause (see
// context.Cause) is Err. Run the holder's work under it.
func (ls *Lease) Context() context.Context { return ls.ctx }

// Err returns nil while the lease is held, an error wrapping ErrLost after it was
// lost, and ErrReleased after Complete or Release.
func (ls *Lease) Err() error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.err
}

// Deadline returns the local instant until which the lease is known to be valid.
func (ls *Lease) Deadline() time.Time {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.deadline
}

// Check returns nil if the lease is held and its local deadline has not passed,
// and otherwise the reason (wrapping ErrLost, or ErrReleased). Call it right before
// an action that must only happen under the lease; the action itself should still
// be fenced with Token.
func (ls *Lease) Check() error {
	ls.mu.Lock()
	err, deadline := ls.err, ls.deadline
	ls.mu.Unlock()
	if err != nil {
		return err
	}
	if now := ls.l.opts.clock.Now(); !now.Before(deadline) {
		// A renewal in flight holds opMu; it will either move the deadline
		// or find the lease lost itself, but Check answers now.
		if ls.fromSession() && ls.opMu.TryLock() {
			err := ls.renewLocked(ls.watchContext())
			ls.opMu.Unlock()
			return err
		}
		ls.lose(fmt.Errorf("%w: %s: local deadline passed without renewal", ErrLost, ls.key))
		return ls.Err()
	}
	return nil
}

// checkLocked is Check for callers that hold opMu: past the local deadline it
// renews from the session itself where the backend can.
func (ls *Lease) checkLocked(ctx context.Context) error {
	ls.mu.Lock()
	err, deadline := ls.err, ls.deadline
	ls.mu.Unlock()
	if err != nil {
		return err
	}
	if !ls.l.opts.clock.Now().Before(deadline) {
		return ls.renewLocked(ctx)
	}
	return nil
}

// fromSession reports whether the backend renews from a session it keeps alive.
func (ls *Lease) fromSession() bool {
	sr, ok := ls.l.b.(SessionRenewer)
	return ok && sr.RenewsFromSession()
}

// lateRenewBudget bounds how long a renewal past the local deadline may take
// (on a backend that renews from its session, that is at most a probe).
func (ls *Lease) lateRenewBudget() time.Duration {
	return min(ls.l.Margin(ls.ttl)/2, 250*time.Millisecond)
}

// Renew renews the lease now. The watchdog does this on its own; Renew is for
// holders that want to extend before a long step. A refused renewal makes the lease
// lost; a transient failure leaves it held until its deadline.
func (ls *Lease) Renew(ctx context.Context) error {
	return ls.renew(ctx)
}

// Complete atomically, and only if the lease is still held, marks the key done for
// retention (later claims get ErrDone until it runs out), stores rec in the scope's
// history and ends the lease. Key, Token and Owner of rec are filled in. Transient
// backend failures are retried until the lease's deadline or ctx ends. After the
// lease was lost, Complete is refused with an error wrapping ErrLost.
func (ls *Lease) Complete(ctx context.Context, rec Record, retention time.Duration) error {
	if retention <= 0 {
		return fmt.Errorf("%w: retention %v must be positive", ErrInvalid, retention)
	}
	rec.Key, rec.Token, rec.Owner = ls.key, ls.token, ls.owner
	rec = rec.Normalize()
	return ls.finish(ctx, "complete", func(cctx context.Context, g Grant) error {
		return ls.l.finish(cctx, g, &rec, retention)
	})
}

// Release frees the key without completing it, so another claim may win it. It
// stops the watchdog before returning: no renewal is sent after Release returns.
// Releasing a lease that was already released, completed or lost returns an error
// wrapping ErrNotHeld. After a loss it still removes the entry from the backend if
// it is ours, so that another replica need not wait for it to expire; when the
// backend cannot be reached for that, the error wraps ErrUnavailable too, and the
// caller may call Release again later.
func (ls *Lease) Release(ctx context.Context) error {
	ls.mu.Lock()
	prev := ls.err
	ls.mu.Unlock()
	if errors.Is(prev, ErrReleased) {
		return fmt.Errorf("%w: %s: already released", ErrNotHeld, ls.key)
	}
	if prev != nil {
		ls.opMu.Lock()
		ls.mu.Lock()
		g := ls.grant
		ls.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, ls.ttl)
		berr := ls.l.b.Release(rctx, g) // free the entry early if it is still ours
		cancel()
		ls.opMu.Unlock()
		if errors.Is(berr, ErrUnavailable) {
			// The entry may still be ours: the caller may try again later.
			return fmt.Errorf("%w: %s: %w; removing the entry failed: %w", ErrNotHeld, ls.key, prev, berr)
		}
		return fmt.Errorf("%w: %s: %w", ErrNotHeld, ls.key, prev)
	}
	ls.abortWatch() // abort an in-flight renewal instead of waiting for it
	ls.opMu.Lock()
	ls.mu.Lock()
	g := ls.grant
	ls.mu.Unlock()
	err := ls.l.finish(ctx, g, nil, 0)
	ls.end(ErrReleased, "released")
	ls.opMu.Unlock()
	ls.stop()
	if err != nil {
		return fmt.Errorf("locking: release %s: %w", ls.key, err)
	}
	return nil
}

// finish runs a terminal operation (complete) with retries until the deadline.
func (ls *Lease) finish(ctx context.Context, op string, do func(context.Context, Grant) error) error {
	backoff := 20 * time.Millisecond
	for {
		ls.opMu.Lock()
		if err := ls.checkLocked(ctx); err != nil {
			ls.opMu.Unlock()
			if errors.Is(err, ErrReleased) {
				return fmt.Errorf("%w: %s %s: lease already ended", ErrNotHeld, op, ls.key)
			}
			return fmt.Errorf("%s refused: %w", op, err)
		}
		ls.mu.Lock()
		g, deadline := ls.grant, ls.deadline
		ls.mu.Unlock()
		cctx, cancel := context.WithDeadline(ctx, deadline)
		err := do(cctx, g)
		cancel()
		if err == nil {
			ls.end(ErrReleased, op+"d")
			ls.opMu.Unlock()
			ls.stop()
			return nil
		}
		ls.opMu.Unlock()
		if errors.Is(err, ErrNotHeld) || errors.Is(err, ErrLost) {
			ls.lose(fmt.Errorf("%w: %s: backend refused %s: %w", ErrLost, ls.key, op, err))
			return fmt.Errorf("%s refused: %w", op, ls.Err())
		}
		if errors.Is(err, ErrInvalid) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("locking: %s %s: %w", op, ls.key, errors.Join(err, ctx.Err()))
		}
		ls.l.opts.logger.Warn("transient failure, retrying until the lease deadline", ls.fields(zap.String("op", op), zap.Error(err))...)
		if serr := sleep(ctx, ls.l.opts.clock, min(backoff, time.Until(deadline)+time.Millisecond)); serr != nil {
			return fmt.Errorf("locking: %s %s: %w", op, ls.key, errors.Join(err, serr))
		}
		backoff = min(2*backoff, ls.ttl/6)
	}
}

// renew performs one renewal, serialized with other operations on the grant.
func (ls *Lease) renew(ctx context.Context) error {
	ls.opMu.Lock()
	defer ls.opMu.Unlock()
	return ls.renewLocked(ctx)
}

// renewLocked renews the grant; the caller holds opMu. Past the local deadline
// only a backend that renews from its session may still renew (once, within
// lateRenewBudget), and only a renewal whose new deadline is still ahead keeps
// the lease.
func (ls *Lease) renewLocked(ctx context.Context) error {
	ls.mu.Lock()
	g, deadline, lerr := ls.grant, ls.deadline, ls.err
	ls.mu.Unlock()
	if lerr != nil {
		return lerr
	}
	sent := ls.l.opts.clock.Now()
	late := !sent.Before(deadline)
	if late && !ls.fromSession() {
		ls.lose(fmt.Errorf("%w: %s: local deadline passed without renewal", ErrLost, ls.key))
		return ls.Err()
	}
	rctx, cancel := context.WithDeadline(ctx, deadline)
	if late {
		rctx, cancel = context.WithTimeout(ctx, ls.lateRenewBudget())
	}
	defer cancel()
	ng, err := ls.l.b.Renew(rctx, g, ls.ttl)
	if err != nil {
		if late || errors.Is(err, ErrNotHeld) || errors.Is(err, ErrLost) {
			why := "renewal refused"
			if late {
				why = "local deadline passed; renewal failed"
			}
			ls.lose(fmt.Errorf("%w: %s: %s: %w", ErrLost, ls.key, why, err))
			return ls.Err()
		}
		return err
	}
	nd := ls.l.deadline(ng, sent, ls.ttl)
	if late && !ls.l.opts.clock.Now().Before(nd) {
		ls.lose(fmt.Errorf("%w: %s: local deadline passed without renewal (the session was not kept alive either)", ErrLost, ls.key))
		return ls.Err()
	}
	ls.mu.Lock()
	if ls.err == nil {
		ng.Lost = g.Lost
		ls.grant = ng
		if nd.After(ls.deadline) {
			ls.deadline = nd
		}
	}
	ls.mu.Unlock()
	if late {
		ls.l.opts.logger.Info("lease renewed from its session after its local deadline passed (was the process paused?)",
			ls.fields(zap.Time("deadline", nd))...)
	}
	return nil
}

// startWatch starts the watchdog: the first renewal after ttl/3 (with
// jitter), the guard if the deadline comes first, and, for backends that
// signal a lost session, a watcher of that signal.
func (ls *Lease) startWatch() {
	ls.scheduleRenew(jitter(ls.ttl / 3))
	if ls.lost != nil {
		wctx := ls.watchContext()
		ls.pending.Add(1)
		go func() {
			defer ls.pending.Done()
			select {
			case <-ls.lost:
				ls.lose(fmt.Errorf("%w: %s: backend session ended", ErrLost, ls.key))
			case <-ls.done:
			case <-wctx.Done():
			}
		}()
	}
}

// watchContext returns the context of the watchdog's renewals, made on first
// use; it is cancelled by abortWatch.
func (ls *Lease) watchContext() context.Context {
	ls.wmu.Lock()
	defer ls.wmu.Unlock()
	if ls.wctx == nil {
		ls.wctx, ls.stopWatch = context.WithCancel(context.Background())
		if ls.aborted {
			ls.stopWatch()
		}
	}
	return ls.wctx
}

// abortWatch cancels the watchdog's context: an in-flight renewal is
// abandoned, and no later one is sent.
func (ls *Lease) abortWatch() {
	ls.wmu.Lock()
	defer ls.wmu.Unlock()
	ls.aborted = true
	if ls.stopWatch != nil {
		ls.stopWatch()
	}
}

// schedule arms *t to run f after d, unless the watchdog was stopped.
func (ls *Lease) schedule(t *Timer, d time.Duration, f func()) {
	ls.wmu.Lock()
	defer ls.wmu.Unlock()
	if ls.stopped {
		return
	}
	ls.pending.Add(1)
	*t = ls.l.timers.AfterFunc(d, func() {
		defer ls.pending.Done()
		f()
	})
}

// scheduleRenew arms the next renewal after d. If the local deadline comes
// no later than that renewal, the guard is armed at the deadline too: the
// lease must end at its deadline, not at the next renewal. Otherwise the
// renewal comes first, and it arms the guard while it is in flight.
func (ls *Lease) scheduleRenew(d time.Duration) {
	ls.schedule(&ls.renewT, d, ls.renewTick)
	if ls.Deadline().Sub(ls.l.opts.clock.Now()) <= d {
		ls.scheduleGuard()
	}
}

// scheduleGuard arms the guard at the current local deadline.
func (ls *Lease) scheduleGuard() {
	ls.schedule(&ls.guardT, ls.Deadline().Sub(ls.l.opts.clock.Now()), ls.guardTick)
}

// stopGuard disarms the guard, if it is armed.
func (ls *Lease) stopGuard() {
	ls.wmu.Lock()
	defer ls.wmu.Unlock()
	if ls.guardT != nil && ls.guardT.Stop() {
		ls.pending.Done() // the callback will not run
	}
	ls.guardT = nil
}

// guardTick ends the lease when its local deadline passed without a renewal,
// even if a renewal is stuck in flight; after a renewal moved the deadline it
// waits for the new one.
func (ls *Lease) guardTick() {
	if ls.Check() == nil {
		ls.scheduleGuard()
	}
}

// renewTick renews the lease and arms the next renewal: ttl/3 later after a
// success, sooner after a transient failure (until the deadline). While the
// renewal is in flight the guard watches the deadline.
func (ls *Lease) renewTick() {
	if ls.Check() != nil {
		return
	}
	interval := ls.ttl / 3
	ls.stopGuard()
	ls.scheduleGuard()
	wctx := ls.watchContext()
	err := ls.renew(wctx)
	ls.stopGuard()
	switch {
	case err == nil:
		ls.notify(LeaseRenewed, nil)
		ls.scheduleRenew(jitter(interval))
	case ls.Err() != nil || wctx.Err() != nil:
	default:
		ls.notify(LeaseRenewFailed, err)
		ls.l.opts.logger.Warn("lease renewal failed; retrying until the deadline", ls.fields(zap.Error(err),
			zap.Time("deadline", ls.Deadline()))...)
		ls.scheduleRenew(min(interval/4, 250*time.Millisecond, ls.Deadline().Sub(ls.l.opts.clock.Now())))
	}
}

// lose ends the lease as lost (once).
func (ls *Lease) lose(err error) {
	if ls.end(err, "") {
		ls.l.opts.logger.Error("lease lost", ls.fields(zap.Error(err))...)
		ls.notify(LeaseLost, err)
	}
}

func (ls *Lease) notify(kind LeaseEventKind, err error) {
	if f := ls.l.opts.notify; f != nil {
		f(LeaseEvent{Kind: kind, Key: ls.key, Err: err})
	}
}

// end records the lease's end reason once, closes Done and cancels Context.
func (ls *Lease) end(err error, how string) bool {
	ls.mu.Lock()
	if ls.err != nil {
		ls.mu.Unlock()
		return false
	}
	ls.err = err
	ls.mu.Unlock()
	close(ls.done)
	ls.cancel(err)
	switch how {
	case "released":
		ls.debug("lease released")
	case "completed":
		ls.debug("lease completed")
	}
	return true
}

// stop stops the watchdog and waits for it to exit.
func (ls *Lease) stop() {
	ls.wmu.Lock()
	ls.stopped = true
	for _, t := range []Timer{ls.renewT, ls.guardT} {
		if t != nil && t.Stop() {
			ls.pending.Done() // the callback will not run
		}
	}
	if ls.stopWatch != nil {
		ls.stopWatch()
	}
	ls.wmu.Unlock()
	ls.pending.Wait()
}
