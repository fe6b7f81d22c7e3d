package locking

import (
	"context"
	"sync"
	"time"
)

// maxParallelClaims bounds the claims a batch sends at once on backends that
// cannot pipeline them.
const maxParallelClaims = 64

// Batches reports whether the backend sends a batch of claims in one round trip
// (it implements BatchClaimer). Without it, ClaimBatch only runs claims
// concurrently, and callers may as well claim one by one.
func (l *Locker) Batches() bool {
	_, ok := l.b.(BatchClaimer)
	return ok
}

// ClaimBatch claims many keys at once, as Claim does for each: on backends that
// implement BatchClaimer in one round trip, on others concurrently. The i-th
// lease or error belongs to keys[i]; exactly one of them is non-nil.
func (l *Locker) ClaimBatch(ctx context.Context, keys []Key, ttl time.Duration) ([]*Lease, []error) {
	leases := make([]*Lease, len(keys))
	errs := make([]error, len(keys))
	bc, ok := l.b.(BatchClaimer)
	if !ok || len(keys) == 1 {
		var wg sync.WaitGroup
		sem := make(chan struct{}, maxParallelClaims)
		for i, k := range keys {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				leases[i], errs[i] = l.Claim(ctx, k, ttl)
			}()
		}
		wg.Wait()
		return leases, errs
	}
	var reqs []ClaimRequest
	var idx []int
	for i, k := range keys {
		if err := l.pre(ctx, k, ttl); err != nil {
			errs[i] = err
			continue
		}
		reqs = append(reqs, ClaimRequest{Key: k, Owner: NewOwner(), TTL: ttl})
		idx = append(idx, i)
	}
	if len(reqs) == 0 {
		return leases, errs
	}
	sent := l.opts.clock.Now()
	res := bc.ClaimBatch(ctx, reqs)
	// Claims whose outcome is unknown are cleaned up concurrently, all within
	// one bound (min(ttl, 2s)); what is left expires with its ttl.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(ttl, 2*time.Second))
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelClaims)
	for n, r := range res {
		i := idx[n]
		if r.Err != nil {
			errs[i] = r.Err
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				l.cleanup(cctx, reqs[n].Key, reqs[n].Owner, ttl, r.Err)
			}()
			continue
		}
		leases[i] = l.newLease(r.Grant, sent, ttl)
	}
	wg.Wait()
	return leases, errs
}
