package etcdlock

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The watch hub: one watch of the whole namespace, shared by every Wait of a
// Backend.
//
// With three replicas and a thousand jobs a second, two thousand losers a
// second used to open a watch each and close it when the tick ended: a watch
// request and a cancel on the shared stream each, plus the client's
// per-watcher bookkeeping (a fifth of a replica's CPU). The hub watches the
// namespace once, from the revision of the first Wait's claim, and hands each
// lock key's deletion or completion to the Waits registered for that key.
//
// What it must not do is lose an event a Wait needs: a Wait for a key that a
// claim found held at revision rev needs the first deletion or completion of
// that key after rev. Every such event the hub has seen is kept for hubKeep
// in recent, and low is a revision below which recent may be incomplete
// (the hub started after it, or dropped older events): a Wait with rev ≥ low
// finds an event that came before it registered in recent, and one that comes
// after in its channel, under the same mutex. A Wait with rev < low, one that
// comes while the hub is restarting after a failure, or one whose hub watch
// fails, falls back to a watch of its own key (watchOne), or returns nil and
// the caller claims again: never a lost wake-up.

const (
	// hubKeep is how long the hub keeps a key's event for a Wait that has not
	// registered yet (it registers within a millisecond of its claim's answer,
	// unless the process stalls).
	hubKeep = 10 * time.Second
	// hubMaxRecent bounds the events kept; beyond it the oldest go first.
	hubMaxRecent = 200_000
	// hubIdle stops the hub's watch after this long without a Wait (a replica
	// that wins every race needs none).
	hubIdle = time.Minute
	// hubRetry is how long Waits watch their own key after the hub's watch
	// failed, before the hub starts again.
	hubRetry = time.Second
)

type hub struct {
	b *Backend

	mu       sync.Mutex
	running  bool
	cancel   context.CancelFunc
	gen      int // incremented each time the hub starts
	low      int64
	recent   map[string]hubEvent
	order    []hubEntry // recent's events, oldest first, for pruning
	head     int        // order[head:] is live
	waiters  map[string][]*hubWaiter
	lastWait time.Time
	retryAt  time.Time
}

// hubEvent is a lock key's deletion or completion at revision rev.
type hubEvent struct {
	rev  int64
	done bool
}

type hubEntry struct {
	key string
	rev int64
	at  time.Time
}

type hubWaiter struct {
	after int64
	c     chan hubResult // buffered
}

// hubResult is what a registered Wait learns: ok with the key's event, or !ok
// when the hub's watch ended (the caller claims again).
type hubResult struct {
	ev hubEvent
	ok bool
}

// register returns the event of key after rev if the hub has it, or a
// channel that will carry it; use is false when the hub cannot serve this
// Wait (its revision is older than what the hub can vouch for, or the hub
// is restarting after a failure), and the caller watches on its own.
func (h *hub) register(key string, rev int64) (ev hubEvent, found bool, w *hubWaiter, use bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.b.clock.Now()
	h.lastWait = now
	if !h.running && (now.Before(h.retryAt) || !h.start(rev)) {
		return hubEvent{}, false, nil, false
	}
	if rev < h.low {
		return hubEvent{}, false, nil, false
	}
	if e, ok := h.recent[key]; ok && e.rev > rev {
		return e, true, nil, true
	}
	w = &hubWaiter{after: rev, c: make(chan hubResult, 1)}
	h.waiters[key] = append(h.waiters[key], w)
	return hubEvent{}, false, w, true
}

// unregister drops w (its Wait ended without an event).
func (h *hub) unregister(key string, w *hubWaiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.waiters[key]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(h.waiters, key)
	} else {
		h.waiters[key] = ws
	}
}

// start starts the hub's watch from rev+1, unless the Backend is closed; h.mu
// is held.
func (h *hub) start(rev int64) bool {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	if h.b.closed {
		return false
	}
	h.b.wg.Add(1) // before Close's Wait: it sets closed under b.mu first
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(h.b.ctx))
	h.running, h.cancel, h.low = true, cancel, rev
	h.gen++
	h.recent, h.order, h.head = map[string]hubEvent{}, nil, 0
	h.waiters = map[string][]*hubWaiter{}
	w := h.b.cli.Watch(ctx, h.b.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	go h.run(ctx, w, h.gen)
	return true
}

// run dispatches the watch's events until it fails, the Backend closes or no
// Wait came for hubIdle.
func (h *hub) run(ctx context.Context, w clientv3.WatchChan, gen int) {
	defer h.b.wg.Done()
	idle := h.b.clock.NewTimer(hubIdle / 4)
	defer func() { idle.Stop() }()
	failed := true
	defer func() { h.stop(gen, failed) }()
	for {
		select {
		case <-ctx.Done():
			failed = false
			return
		case <-idle.C():
			h.mu.Lock()
			quiet := len(h.waiters) == 0 && h.b.clock.Now().Sub(h.lastWait) > hubIdle
			h.mu.Unlock()
			if quiet {
				failed = false
				return
			}
			idle = h.b.clock.NewTimer(hubIdle / 4)
		case r, ok := <-w:
			if !ok || r.Err() != nil || r.Canceled {
				return
			}
			h.dispatch(r.Events)
		}
	}
}

// dispatch records the lock keys' deletions and completions among evs and
// wakes their Waits.
func (h *hub) dispatch(evs []*clientv3.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.b.clock.Now()
	for _, ev := range evs {
		var done bool
		switch {
		case ev.Type == mvccpb.DELETE:
		case ev.Type == mvccpb.PUT && isDone(ev.Kv.Value):
			done = true
		default:
			continue // a claim, a record, a waiter key
		}
		key := string(ev.Kv.Key)
		if !h.isLockKey(key) {
			continue
		}
		e := hubEvent{rev: ev.Kv.ModRevision, done: done}
		h.recent[key] = e
		h.order = append(h.order, hubEntry{key: key, rev: e.rev, at: now})
		if ws := h.waiters[key]; len(ws) > 0 {
			left := ws[:0]
			for _, w := range ws {
				if e.rev > w.after {
					w.c <- hubResult{ev: e, ok: true}
				} else {
					left = append(left, w)
				}
			}
			if len(left) == 0 {
				delete(h.waiters, key)
			} else {
				h.waiters[key] = left
			}
		}
	}
	h.prune(now)
}

// isLockKey reports whether key is <prefix><scope>/lock/<name>.
func (h *hub) isLockKey(key string) bool {
	rest, ok := strings.CutPrefix(key, h.b.prefix)
	if !ok {
		return false
	}
	i := strings.IndexByte(rest, '/')
	return i > 0 && strings.HasPrefix(rest[i+1:], "lock/") && !strings.Contains(rest[i+len("/lock/"):], "/")
}

// prune drops events older than hubKeep (or beyond hubMaxRecent), raising low
// past them; h.mu is held.
func (h *hub) prune(now time.Time) {
	for h.head < len(h.order) {
		o := h.order[h.head]
		if now.Sub(o.at) < hubKeep && len(h.order)-h.head <= hubMaxRecent {
			break
		}
		if e, ok := h.recent[o.key]; ok && e.rev == o.rev {
			delete(h.recent, o.key)
		}
		h.low = max(h.low, o.rev)
		h.order[h.head] = hubEntry{}
		h.head++
	}
	if h.head > 1024 && h.head > len(h.order)/2 {
		h.order = append(h.order[:0:0], h.order[h.head:]...)
		h.head = 0
	}
}

// stop ends the hub started as generation gen: every registered Wait returns
// so that its caller claims again; after a failure, Waits watch their own key
// for hubRetry.
func (h *hub) stop(gen int, failed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gen != gen || !h.running {
		return
	}
	h.cancel()
	h.running = false
	for _, ws := range h.waiters {
		for _, w := range ws {
			w.c <- hubResult{}
		}
	}
	h.waiters, h.recent, h.order, h.head = nil, nil, nil, 0
	if failed {
		h.retryAt = h.b.clock.Now().Add(hubRetry)
	}
}
