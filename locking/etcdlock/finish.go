package etcdlock

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/oncecron/oncecron/locking"
)

// FinishBatch implements locking.BatchFinisher: completions and releases go in
// transactions of up to maxBatch sub-transactions, each the conditional
// transaction that Complete or Release sends, so a batch costs one request
// (one raft entry, one disk sync) per maxBatch instead of one each. The server
// refuses a transaction that writes a key twice, so the k-th request of a key
// goes into the k-th round of transactions. Every request keeps the semantics
// of Complete or Release, including what an unknown outcome leaves to the
// janitor.
func (b *Backend) FinishBatch(ctx context.Context, reqs []locking.FinishRequest) []error {
	errs := make([]error, len(reqs))
	vals := make([][]byte, len(reqs))
	valid := make([]int, 0, len(reqs))
	for i, r := range reqs {
		if r.Record != nil {
			vals[i], errs[i] = b.preComplete(ctx, r.Grant, *r.Record, r.Retention)
		} else {
			errs[i] = b.preRelease(ctx, r.Grant)
		}
		if errs[i] == nil {
			valid = append(valid, i)
		}
	}
	runGroups(finishGroups(reqs, valid, b.batchSize()), func(g []int) { b.finishGroup(ctx, reqs, vals, g, errs) })
	return errs
}

var _ locking.BatchFinisher = (*Backend)(nil)

// finishGroups splits the requests idx of reqs into transactions of at most
// size requests in which no key appears twice.
func finishGroups(reqs []locking.FinishRequest, idx []int, size int) [][]int {
	count := map[locking.Key]int{}
	var rounds [][]int
	for _, i := range idx {
		k := reqs[i].Grant.Key
		n := count[k]
		count[k]++
		if n == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[n] = append(rounds[n], i)
	}
	return cutRounds(rounds, size)
}

// finishGroup ends the requests idx of reqs (distinct keys; vals holds the
// encoded records of completions) in one transaction and writes their results
// to errs, as Complete or Release would for each.
func (b *Backend) finishGroup(ctx context.Context, reqs []locking.FinishRequest, vals [][]byte, idx []int, errs []error) {
	if len(idx) == 0 {
		return
	}
	if len(idx) == 1 { // as Complete or Release would send it, already checked
		r := reqs[idx[0]]
		if r.Record != nil {
			errs[idx[0]] = b.complete(ctx, r.Grant, vals[idx[0]], r.Retention)
		} else {
			errs[idx[0]] = b.release(ctx, r.Grant)
		}
		return
	}
	// unknown settles every request after the transaction failed with err.
	unknown := func(err error) {
		for _, i := range idx {
			r := reqs[i]
			if r.Record != nil {
				errs[i] = b.fail(ctx, "complete", r.Grant.Key.String(), err)
			} else {
				errs[i] = b.releaseUnknown(ctx, r.Grant, err)
			}
		}
	}
	for attempt := 0; ; attempt++ {
		subs := make([]clientv3.Op, len(idx))
		var leases []clientv3.LeaseID
		for n, i := range idx {
			r := reqs[i]
			if r.Record == nil {
				subs[n] = clientv3.OpTxn(b.releaseOps(r.Grant.Key, r.Grant.Owner))
				continue
			}
			done, hist, err := b.completeLeases(ctx, r.Retention)
			if err != nil {
				for _, i := range idx { // nothing was sent
					errs[i] = b.fail(ctx, "complete", reqs[i].Grant.Key.String(), err)
				}
				return
			}
			leases = append(leases, done, hist)
			subs[n] = clientv3.OpTxn(b.completeOps(r.Grant, vals[i], done, hist))
		}
		rctx, cancel := b.rpc(ctx)
		resp, err := b.cli.Txn(rctx).Then(subs...).Commit()
		cancel()
		switch {
		case err != nil && isLeaseGone(err) && attempt < 2:
			// A retention lease expired under us; nothing was written.
			b.forgetRetentionLeases(leases...)
			continue
		case err != nil && tooLarge(err):
			b.shrinkBatch(len(idx))
			half := len(idx) / 2
			b.finishGroup(ctx, reqs, vals, idx[:half], errs)
			b.finishGroup(ctx, reqs, vals, idx[half:], errs)
			return
		case err != nil:
			unknown(err)
			return
		}
		for n, i := range idx {
			r := reqs[i]
			var sub *clientv3.TxnResponse
			if n < len(resp.Responses) {
				sub = (*clientv3.TxnResponse)(resp.Responses[n].GetResponseTxn())
			}
			switch {
			case sub == nil && r.Record != nil:
				errs[i] = b.fail(ctx, "complete", r.Grant.Key.String(), fmt.Errorf("%w: a batch answer lacks a result", locking.ErrUnavailable))
			case sub == nil:
				errs[i] = b.releaseUnknown(ctx, r.Grant, fmt.Errorf("%w: a batch answer lacks a result", locking.ErrUnavailable))
			case r.Record != nil:
				errs[i] = b.completeAnswer(r.Grant, sub)
			default:
				errs[i] = b.releaseAnswer(r.Grant, sub.Succeeded)
			}
		}
		return
	}
}
