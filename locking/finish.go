package locking

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// BatchFinisher is implemented by backends that can send many completions and
// releases in one round trip (Redis pipelines them). FinishBatch does for each
// request what Complete (Record non-nil) or Release (Record nil) would do,
// with the same errors; results are in the order of reqs. The requests of a
// batch are independent: one refused request does not affect the others.
type BatchFinisher interface {
	FinishBatch(ctx context.Context, reqs []FinishRequest) []error
}

// FinishRequest is one completion or release of a batch.
type FinishRequest struct {
	Grant Grant
	// Record, when non-nil, completes the grant with it (normalized, with Key,
	// Token and Owner filled in) for Retention; nil releases the grant.
	Record    *Record
	Retention time.Duration
}

// maxFinishBatch bounds the requests of one batch, and maxFinishFlights the
// batches in flight at once.
const (
	maxFinishBatch   = 256
	maxFinishFlights = 2
)

// finisher coalesces the completions and releases of a Locker's leases on a
// BatchFinisher: a request is sent at once when fewer than maxFinishFlights
// batches are in flight and none waits, and otherwise waits for the next
// batch, which takes every request queued meanwhile. So a lone completion costs one round trip as
// before, and a thousand jobs that end in the same millisecond cost a few
// pipelines instead of a thousand round trips (and their system calls).
type finisher struct {
	b BatchFinisher

	mu      sync.Mutex
	queue   []*finishCall
	flights int
}

type finishCall struct {
	ctx  context.Context
	req  FinishRequest
	done chan error // buffered: the flight never blocks on a caller that left
}

// do sends req and waits for its result or for ctx to end: at once, from the
// caller's goroutine, when a flight is free and nothing waits (so a lone
// completion costs what Complete on the backend costs), and otherwise in the
// next batch. A request whose caller left before its batch was sent is not
// sent; one that was sent may still take effect (as a single request cut by
// its deadline may).
func (f *finisher) do(ctx context.Context, req FinishRequest) error {
	f.mu.Lock()
	if f.flights < maxFinishFlights && len(f.queue) == 0 {
		f.flights++
		f.mu.Unlock()
		err := f.b.FinishBatch(ctx, []FinishRequest{req})[0]
		f.mu.Lock()
		f.flights--
		if len(f.queue) > 0 { // came while this one flew
			f.flights++
			go f.fly()
		}
		f.mu.Unlock()
		return err
	}
	c := &finishCall{ctx: ctx, req: req, done: make(chan error, 1)}
	f.queue = append(f.queue, c)
	if f.flights < maxFinishFlights {
		f.flights++
		go f.fly()
	}
	f.mu.Unlock()
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))
	}
}

// fly sends batches until the queue is empty.
func (f *finisher) fly() {
	for {
		f.mu.Lock()
		n := min(len(f.queue), maxFinishBatch)
		if n == 0 {
			f.flights--
			f.mu.Unlock()
			return
		}
		batch := make([]*finishCall, n)
		copy(batch, f.queue)
		f.queue = f.queue[n:]
		if len(f.queue) == 0 {
			f.queue = nil // let the array go
		}
		f.mu.Unlock()
		f.send(batch)
	}
}

// send sends one batch under the latest deadline of its callers, each of
// which stops waiting at its own.
func (f *finisher) send(batch []*finishCall) {
	live := batch[:0:0]
	reqs := make([]FinishRequest, 0, len(batch))
	var deadline time.Time
	bounded := true
	for _, c := range batch {
		if c.ctx.Err() != nil {
			c.done <- fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(c.ctx))
			continue
		}
		d, ok := c.ctx.Deadline()
		bounded = bounded && ok
		if d.After(deadline) {
			deadline = d
		}
		live = append(live, c)
		reqs = append(reqs, c.req)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if bounded {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	errs := f.b.FinishBatch(ctx, reqs)
	cancel()
	for i, c := range live {
		c.done <- errs[i]
	}
}

// finish completes (rec non-nil) or releases g: through the Locker's finisher
// when the backend batches, and otherwise with one request.
func (l *Locker) finish(ctx context.Context, g Grant, rec *Record, retention time.Duration) error {
	if l.fin != nil {
		return l.fin.do(ctx, FinishRequest{Grant: g, Record: rec, Retention: retention})
	}
	if rec != nil {
		return l.b.Complete(ctx, g, *rec, retention)
	}
	return l.b.Release(ctx, g)
}
