package etcdlock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
)

// finishReqs claims reqs on b and returns, for each, its completion (even i)
// or release (odd i).
func finishReqs(t *testing.T, b *etcdlock.Backend, reqs []locking.ClaimRequest) []locking.FinishRequest {
	t.Helper()
	out := make([]locking.FinishRequest, len(reqs))
	for i, r := range b.ClaimBatch(testCtx(t), reqs) {
		if r.Err != nil {
			t.Fatalf("claim %d: %v", i, r.Err)
		}
		out[i].Grant = r.Grant
		if i%2 == 0 {
			rec := locking.Record{Key: r.Grant.Key, Owner: r.Grant.Owner, Token: r.Grant.Token, Outcome: locking.OutcomeSucceeded}
			out[i].Record, out[i].Retention = &rec, time.Hour
		}
	}
	return out
}

// checkFinished checks that the even requests' keys are done and the odd
// ones' free.
func checkFinished(t *testing.T, ns string, reqs []locking.FinishRequest) {
	t.Helper()
	other := newBackend(t, ns)
	for i, r := range reqs {
		g, err := other.Claim(testCtx(t), r.Grant.Key, locking.NewOwner(), ttl)
		switch {
		case i%2 == 0 && !errors.Is(err, locking.ErrDone):
			t.Errorf("claim of completed %s: %v, want ErrDone", r.Grant.Key, err)
		case i%2 == 1 && err != nil:
			t.Errorf("claim of released %s: %v, want a win", r.Grant.Key, err)
		case err == nil:
			_ = other.Release(testCtx(t), g)
		}
	}
}

// TestFinishBatchFewRequests: 300 completions and releases cost one
// transaction per 64, and a request repeated in the batch goes into a later
// transaction (etcd refuses one that writes a key twice) and succeeds too.
func TestFinishBatchFewRequests(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b, txns, other := countingBackend(t, ns)
	const n = 300
	reqs := finishReqs(t, b, batchReqs(n, 0))
	before := txns.Load() + other.Load()
	errs := b.FinishBatch(ctx, append(reqs, reqs[0]))
	if got, want := txns.Load()+other.Load()-before, int64((n+63)/64+1); got != want {
		t.Errorf("%d requests for a batch of %d completions and releases and a repeat, want %d", got, n+1, want)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	checkFinished(t, ns, reqs)
	// Ended grants are no longer renewable.
	for _, r := range reqs[:2] {
		if _, err := b.Renew(ctx, r.Grant, ttl); !errors.Is(err, locking.ErrNotHeld) {
			t.Errorf("renew after the batch ended the grant: %v, want ErrNotHeld", err)
		}
	}
}

// TestFinishBatchUnknownOutcome: when a batch's request is lost, every
// request reports ErrUnavailable and nothing changed (the completions can be
// sent again); when its answer is lost, they report ErrUnavailable too, and a
// repeat succeeds, as a repeated Complete does.
func TestFinishBatchUnknownOutcome(t *testing.T) {
	ctx := testCtx(t)
	b, lose := lossyBackend(t, newNamespace())
	for _, loss := range []int32{1, 2} {
		reqs := finishReqs(t, b, batchReqs(20, 100*int(loss)))
		var completions []locking.FinishRequest
		for i, r := range reqs {
			if i%2 == 0 {
				completions = append(completions, r)
			}
		}
		lose.Store(loss)
		for i, err := range b.FinishBatch(ctx, completions) {
			if !errors.Is(err, locking.ErrUnavailable) {
				t.Errorf("loss %d: completion %d: %v, want ErrUnavailable", loss, i, err)
			}
		}
		for i, err := range b.FinishBatch(ctx, completions) {
			if err != nil {
				t.Errorf("loss %d: completion %d sent again: %v", loss, i, err)
			}
		}
		recs, err := b.Records(ctx, completions[0].Grant.Key.Scope, 10)
		if err != nil || len(recs) != 1 {
			t.Errorf("loss %d: records %+v, %v; want one", loss, recs, err)
		}
	}
}
