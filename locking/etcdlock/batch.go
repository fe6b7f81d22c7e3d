package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/oncecron/oncecron/locking"
)

// maxBatch is how many claims one batch transaction carries at most. The server
// refuses a transaction whose top level has more than --max-txn-ops (default
// 128) operations, and checks each sub-transaction against what is left
// (etcdserver/api/v3rpc checkTxnRequest), so with the default a transaction
// may carry 128-3 = 125 claims (a claim's largest branch has 3 operations:
// see claimOps). 64 stays well inside that (a server configured with half the
// default still takes it), matches the
// scheduler's batches of 64 ticks (one request each), and keeps each request
// far below --max-request-bytes (1.5 MiB by default) even with the longest
// keys (about 2 KiB a claim). A server that refuses a batch as too large
// halves the size this backend uses from then on.
const maxBatch = 64

// batchParallel bounds the batch transactions a ClaimBatch has in flight.
const batchParallel = 4

// ClaimBatch implements locking.BatchClaimer: claims go in transactions of up to
// maxBatch sub-transactions, each the conditional transaction a Claim sends,
// so a batch costs one request per maxBatch claims. A claim's fencing token is
// the revision of its transaction, the same for every claim of one
// transaction; so two claims of the same scope never share one: a later claim
// of a scope goes into a later transaction. Every claim keeps the semantics of
// Claim: ErrDone, ErrHeld, a repeat returning the same grant, ErrInvalid for a
// bad request alone, and an unknown outcome of a transaction settled by reading
// its keys back (with cleanup of what a late commit may leave).
func (b *Backend) ClaimBatch(ctx context.Context, reqs []locking.ClaimRequest) []locking.ClaimResult {
	const op = "claim"
	out := make([]locking.ClaimResult, len(reqs))
	valid := make([]int, 0, len(reqs))
	for i, r := range reqs {
		if err := b.validate(r.Key, r.Owner, r.TTL); err != nil {
			out[i].Err = fmt.Errorf("etcdlock: %s %q: %w", op, r.Key, err)
			continue
		}
		if err := ctx.Err(); err != nil {
			out[i].Err = b.fail(ctx, op, r.Key.String(), err)
			continue
		}
		valid = append(valid, i)
	}
	runGroups(batchGroups(reqs, valid, b.batchSize()), func(g []int) { b.claimGroup(ctx, reqs, g, out) })
	return out
}

var _ locking.BatchClaimer = (*Backend)(nil)

// batchGroups splits the requests idx of reqs into transactions of at most size
// claims, of one TTL (one session) each, in which no two claims have the same
// scope: the k-th claim of a scope goes into the k-th round of its TTL, and each
// round is cut into transactions of size.
func batchGroups(reqs []locking.ClaimRequest, idx []int, size int) [][]int {
	type round struct {
		ttl time.Duration
		n   int
	}
	seen := map[round]int{} // (ttl, k) -> index in rounds
	var rounds [][]int
	count := map[struct {
		ttl   time.Duration
		scope string
	}]int{}
	for _, i := range idx {
		r := reqs[i]
		ck := struct {
			ttl   time.Duration
			scope string
		}{r.TTL, r.Key.Scope}
		rk := round{r.TTL, count[ck]}
		count[ck]++
		n, ok := seen[rk]
		if !ok {
			n = len(rounds)
			seen[rk] = n
			rounds = append(rounds, nil)
		}
		rounds[n] = append(rounds[n], i)
	}
	return cutRounds(rounds, size)
}

// runGroups runs send for every group, up to batchParallel at once.
func runGroups(groups [][]int, send func([]int)) {
	if len(groups) == 1 {
		send(groups[0])
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, batchParallel)
	for _, g := range groups {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			send(g)
		}()
	}
	wg.Wait()
}

// cutRounds cuts each round into transactions of at most size requests.
func cutRounds(rounds [][]int, size int) [][]int {
	var groups [][]int
	for _, rd := range rounds {
		for lo := 0; lo < len(rd); lo += size {
			groups = append(groups, rd[lo:min(lo+size, len(rd))])
		}
	}
	return groups
}

// batchSize is how many claims a batch transaction carries now: maxBatch, or
// less after the server refused one as too large.
func (b *Backend) batchSize() int {
	if n := int(b.batchMax.Load()); n > 0 {
		return n
	}
	return maxBatch
}

// shrinkBatch lowers the batch size below n, the size of a transaction the
// server refused as too large.
func (b *Backend) shrinkBatch(n int) {
	for {
		cur := b.batchMax.Load()
		next := int32(max(n/2, 1)) //nolint:gosec // n <= maxBatch
		if cur > 0 && cur <= next {
			return
		}
		if b.batchMax.CompareAndSwap(cur, next) {
			b.log.Sugar().Warnf("the server refused a batch of %d claims as too large; sending at most %d a transaction", n, next)
			return
		}
	}
}

// tooLarge reports whether err is the server's refusal of a transaction for
// its number of operations or its size: nothing of it was applied.
func tooLarge(err error) bool {
	return errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrRequestTooLarge)
}

// claimGroup claims the requests idx of reqs (one TTL, distinct scopes) in one
// transaction and writes their results to out, as Claim would for each.
func (b *Backend) claimGroup(ctx context.Context, reqs []locking.ClaimRequest, idx []int, out []locking.ClaimResult) {
	const op = "claim"
	if len(idx) == 0 {
		return
	}
	if len(idx) == 1 {
		r := reqs[idx[0]]
		out[idx[0]].Grant, out[idx[0]].Err = b.Claim(ctx, r.Key, r.Owner, r.TTL)
		return
	}
	failAll := func(idx []int, err error) {
		for _, i := range idx {
			out[i] = locking.ClaimResult{Err: b.fail(ctx, op, reqs[i].Key.String(), err)}
		}
	}
	ttl := reqs[idx[0]].TTL
	for attempt := 0; len(idx) > 0; attempt++ {
		s, err := b.session(ctx, ttl)
		if err != nil {
			failAll(idx, err)
			return
		}
		if err := b.freshen(ctx, s); err != nil {
			failAll(idx, err)
			return
		}
		subs := make([]clientv3.Op, len(idx))
		for n, i := range idx {
			subs[n] = clientv3.OpTxn(b.claimOps(reqs[i].Key, reqs[i].Owner, s.id))
		}
		rctx, cancel := b.rpc(ctx)
		resp, err := b.cli.Txn(rctx).Then(subs...).Commit()
		cancel()
		switch {
		case err != nil && isLeaseGone(err) && attempt < 2:
			// The session died under us; nothing was written. Try a new one.
			b.loseSession(s, "a claim found the session lease gone")
			continue
		case err != nil && tooLarge(err):
			b.shrinkBatch(len(idx))
			half := len(idx) / 2
			b.claimGroup(ctx, reqs, idx[:half], out)
			b.claimGroup(ctx, reqs, idx[half:], out)
			return
		case err != nil && isLeaseGone(err):
			failAll(idx, err)
			return
		case err != nil:
			b.resolveGroup(ctx, s, reqs, idx, out, err)
		default:
			var unknown []int
			for n, i := range idx {
				sub := resp.Responses[n].GetResponseTxn()
				if sub == nil {
					unknown = append(unknown, i)
					continue
				}
				r := reqs[i]
				out[i].Grant, out[i].Err = b.claimAnswer(s, r.Key, r.Owner, r.TTL, (*clientv3.TxnResponse)(sub), resp.Header.Revision)
			}
			if len(unknown) > 0 {
				b.resolveGroup(ctx, s, reqs, unknown, out, fmt.Errorf("%w: a batch answer lacks a claim's result", locking.ErrUnavailable))
			}
		}
		if !b.sessionDead(s) {
			return
		}
		// This process gave the session up during the claim (see Claim): give
		// the won keys back and claim them again on a new session.
		var again []int
		for _, i := range idx {
			if out[i].Err != nil {
				continue
			}
			_ = b.Release(context.WithoutCancel(ctx), out[i].Grant)
			if attempt < 2 {
				again = append(again, i)
				continue
			}
			out[i] = locking.ClaimResult{Err: b.fail(ctx, op, reqs[i].Key.String(), fmt.Errorf("%w: the session ended during the claim", locking.ErrUnavailable))}
		}
		idx = again
	}
}

// resolveGroup settles the claims idx of reqs, made on s, whose transaction's
// outcome is unknown (see resolveClaims).
func (b *Backend) resolveGroup(ctx context.Context, s *session, reqs []locking.ClaimRequest, idx []int, out []locking.ClaimResult, cause error) {
	sub := make([]locking.ClaimRequest, len(idx))
	for n, i := range idx {
		sub[n] = reqs[i]
	}
	for n, r := range b.resolveClaims(ctx, s, sub, cause) {
		out[idx[n]] = r
	}
}
