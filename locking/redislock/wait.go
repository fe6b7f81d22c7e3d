package redislock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
)

// Waiting for a held key (locking.Waiter).
//
// The complete and release scripts PUBLISH, when they free a lock, one message
// on the namespace's channel (<ns>:ended): "d" or "r" (done, released)
// followed by the lock's Redis key. The first claim of a Backend that finds a
// key held (a Wait is likely to follow), or its first Wait, subscribes to that
// channel on one connection of its own, which every Wait shares; go-redis
// reconnects and subscribes again when that connection breaks. A Redis user
// needs the ACL permission for the channel (&<ns>:ended): without it the
// scripts still work (they publish with pcall), and waiters wake only when the
// holder's lease may have expired.
//
// A message is a hint, except "done", which is final (the done marker lasts its
// retention). Nothing depends on a message arriving: Wait never sleeps past the
// moment the holder's lease could have expired without a renewal (the claim that
// found the key held read the lease's remaining time, PTTL), so a runner that
// dies, whose lease expires without any message, is taken over at its expiry. A
// message lost while the subscription was down only delays a wake-up: every
// (re)confirmation of the subscription wakes every waiter, and a Wait that
// follows a claim sent before the last confirmation returns at once, so that
// the key is claimed again.

const (
	noteDone     = 'd' // the key was completed
	noteReleased = 'r' // the key was released
	noteResync   = 's' // the subscription was (re)confirmed: messages may have been lost
	noteClosed   = 'c' // the backend was closed

	// maxWait bounds one Wait even when the holder's lease is long, so that a
	// notification lost on a connection that died silently delays a takeover
	// by at most this long.
	maxWait = 30 * time.Second
	// noTTLWait bounds a Wait that could not read the holder's remaining time.
	noTTLWait = time.Second
	// recentNotes is how long a notification is remembered for a key that
	// nobody waits for yet: the claim that found the key held may have been
	// answered just before the message came, and its Wait come just after.
	recentNotes = 5 * time.Second
)

// watcher is a Backend's shared subscription and its waiters.
type watcher struct {
	mu      sync.Mutex
	started bool
	closed  bool
	ps      *redis.PubSub
	ended   chan struct{} // closed when the receive loop returned
	up      time.Time     // when the subscription was last confirmed; zero: never
	keys    map[string]*keyWatch
	sweepAt int // len(keys) at which the next sweep runs
}

// keyWatch is what a Backend knows of one lock key it may wait for.
type keyWatch struct {
	// heldSent is when the last claim that found the key held was sent, and
	// heldUntil when that holder's lease could have run out (zero: no hint).
	heldSent, heldUntil time.Time
	// note is the last notification for the key and noteAt when it came.
	note    byte
	noteAt  time.Time
	waiters []chan byte
}

// noteHeld records, for a later Wait, that a claim sent at sent found key held
// with pttl milliseconds left, as read when its reply came. The first claim
// found held starts the subscription: a Wait is likely to follow.
func (b *Backend) noteHeld(key locking.Key, sent time.Time, pttl int64) {
	w := &b.w
	until := time.Now().Add(time.Duration(pttl) * time.Millisecond)
	if pttl < 0 { // no expiry (never set by these scripts) or gone
		until = time.Now()
	}
	lk := b.lockKey(key)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	b.start()
	kw := w.entry(lk)
	kw.heldSent, kw.heldUntil = sent, until
}

// entry returns the keyWatch of lk, made if needed. w.mu is held.
func (w *watcher) entry(lk string) *keyWatch {
	kw := w.keys[lk]
	if kw == nil {
		if len(w.keys) >= w.sweepAt {
			w.sweep()
		}
		kw = &keyWatch{}
		w.keys[lk] = kw
	}
	return kw
}

// sweep drops what no Wait can use any more: entries without waiters whose
// hint ran out and whose note is old. It runs when the map has doubled since
// the last sweep, so that it costs O(1) per entry made.
func (w *watcher) sweep() {
	now := time.Now()
	for lk, kw := range w.keys {
		if len(kw.waiters) == 0 && now.After(kw.heldUntil) && now.Sub(kw.noteAt) > recentNotes {
			delete(w.keys, lk)
		}
	}
	w.sweepAt = max(1024, 2*len(w.keys))
}

// start subscribes, once. w.mu is held.
func (b *Backend) start() {
	w := &b.w
	if w.started {
		return
	}
	w.keys = map[string]*keyWatch{}
	w.sweepAt = 1024
	w.ended = make(chan struct{})
	// Subscribe without channels does not touch the network: the receive
	// loop connects (and go-redis reconnects) and subscribes.
	w.ps = b.c.Subscribe(context.Background())
	w.started = true
	go b.receive(w.ps)
}

func (b *Backend) receive(ps *redis.PubSub) {
	w := &b.w
	defer close(w.ended)
	ctx := context.Background()
	// Subscribe only sends the command: the confirmation, or the refusal,
	// comes to the loop below. go-redis reconnects a broken connection in
	// Receive and subscribes again on the new one.
	_ = ps.Subscribe(ctx, b.ended)
	prefix := b.ns + ":{"
	confirmed, warned, errs := false, false, 0
	for {
		msg, err := ps.ReceiveTimeout(ctx, receiveIdle)
		if err != nil {
			if errors.Is(err, redis.ErrClosed) || w.isClosed() {
				return
			}
			var nerr net.Error
			switch {
			case redis.HasErrorPrefix(err, "NOPERM"):
				confirmed = false
				if !warned {
					warned = true
					b.log.Warn("cannot subscribe to the channel of completions: replicas that lost a race wait for the holder's lease to run out "+
						"instead of waking when it ends (takeovers and buffered runs start later); grant the Redis user the channel (ACL &"+b.ended+")",
						zap.String("channel", b.ended), zap.Error(err))
				}
			case errors.As(err, &nerr) && nerr.Timeout():
				// Idle: a ping tells a dead connection (Receive then
				// reconnects), and a refused subscription is asked again,
				// in case the permission was granted since.
				if !confirmed {
					_ = ps.Subscribe(ctx, b.ended)
				}
				_ = ps.Ping(ctx)
				continue
			}
			if errs > 0 {
				time.Sleep(100 * time.Millisecond)
			}
			errs++
			continue
		}
		errs = 0
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				confirmed = true
				w.resync()
			}
		case *redis.Message:
			p := m.Payload
			if len(p) < 1+len(prefix) || (p[0] != noteDone && p[0] != noteReleased) || p[1:1+len(prefix)] != prefix {
				continue
			}
			w.notify(p[1:], p[0])
		}
	}
}

// receiveIdle is how long the subscription may stay silent before the
// receive loop pings the server (as go-redis's own channel does, every 30 s).
const receiveIdle = 30 * time.Second

// isClosed reports whether closeWaits was called.
func (w *watcher) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// resync wakes every waiter: the subscription was (re)confirmed, and messages
// sent before may have been lost.
func (w *watcher) resync() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.up = time.Now()
	for _, kw := range w.keys {
		for _, c := range kw.waiters {
			wake(c, noteResync)
		}
	}
}

// notify records a notification for lock key lk and wakes its waiters.
func (w *watcher) notify(lk string, note byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	kw := w.entry(lk)
	kw.note, kw.noteAt = note, time.Now()
	for _, c := range kw.waiters {
		wake(c, note)
	}
}

// wake hands note to a waiter, unless it was woken already.
func wake(c chan byte, note byte) {
	select {
	case c <- note:
	default:
	}
}

// Wait implements locking.Waiter. It returns nil when the key was released,
// when the lease of its holder (as the last claim that found it held read it)
// could have expired, after maxWait, or when notifications may have been
// missed; an error wrapping locking.ErrDone when the key was completed; and
// the context's error when ctx ends. Waiting costs no request to Redis when it
// follows a claim of the key by this Backend that found the key held;
// otherwise it reads the holder's remaining time once (PTTL).
func (b *Backend) Wait(ctx context.Context, key locking.Key) error {
	lk := b.lockKey(key)
	c := make(chan byte, 1)
	w := &b.w
	now := time.Now()
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return fmt.Errorf("redislock: wait %s: %w", key, locking.ErrClosed)
	}
	b.start()
	kw := w.entry(lk)
	sent, until := kw.heldSent, kw.heldUntil
	kw.heldSent, kw.heldUntil = time.Time{}, time.Time{} // a hint serves one Wait
	note, noteAt, up := kw.note, kw.noteAt, w.up
	hinted := !sent.IsZero()
	switch {
	case hinted && note != 0 && !noteAt.Before(sent):
		// The key was freed after the claim that found it held was sent.
		w.mu.Unlock()
		return b.woken(key, note)
	case hinted && !up.IsZero() && sent.Before(up):
		// The subscription was (re)confirmed after that claim was sent:
		// a message in between may have been lost.
		w.mu.Unlock()
		return nil
	case hinted && !until.After(now):
		w.mu.Unlock()
		return nil // the holder's lease may have run out
	}
	kw.waiters = append(kw.waiters, c)
	w.mu.Unlock()
	defer b.unwait(lk, c)

	if !hinted {
		// Registered first, so that a message sent after the read is seen.
		pttl, err := b.c.PTTL(ctx, lk).Result()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			until = time.Now().Add(noTTLWait)
		case pttl == -2: // the key is gone (go-redis passes -2 and -1 on unscaled)
			return nil
		case pttl < 0: // no expiry: not a lock these scripts set
			until = time.Now().Add(noTTLWait)
		default:
			until = time.Now().Add(pttl)
		}
	}
	// Wake shortly after the holder's lease could have expired: not before,
	// or the claim finds it still held and waits again (clock rates of this
	// process and the server may differ by up to 1%).
	d := time.Until(until)
	d = min(d+d/100+5*time.Millisecond, maxWait)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	case note := <-c:
		return b.woken(key, note)
	}
}

// woken is what Wait returns for a note.
func (b *Backend) woken(key locking.Key, note byte) error {
	switch note {
	case noteDone:
		return fmt.Errorf("redislock: wait %s: %w", key, locking.ErrDone)
	case noteClosed:
		return fmt.Errorf("redislock: wait %s: %w", key, locking.ErrClosed)
	}
	return nil
}

// unwait removes waiter c of lock key lk.
func (b *Backend) unwait(lk string, c chan byte) {
	w := &b.w
	w.mu.Lock()
	defer w.mu.Unlock()
	kw := w.keys[lk]
	if kw == nil {
		return
	}
	for i, x := range kw.waiters {
		if x == c {
			kw.waiters[i] = kw.waiters[len(kw.waiters)-1]
			kw.waiters[len(kw.waiters)-1] = nil
			kw.waiters = kw.waiters[:len(kw.waiters)-1]
			break
		}
	}
}

// closeWaits ends the subscription and wakes every waiter with ErrClosed.
func (b *Backend) closeWaits() {
	w := &b.w
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	ps, ended := w.ps, w.ended
	for _, kw := range w.keys {
		for _, c := range kw.waiters {
			wake(c, noteClosed)
		}
	}
	w.mu.Unlock()
	if ps == nil {
		return
	}
	_ = ps.Close()
	select { // the receive loop ends once Receive reports the close
	case <-ended:
	case <-time.After(2 * time.Second):
	}
}
