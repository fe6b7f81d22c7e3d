package etcdlock_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
)

// batchReqs returns n claim requests of ttl, one per scope job<first+i>.
func batchReqs(n, first int) []locking.ClaimRequest {
	reqs := make([]locking.ClaimRequest, n)
	for i := range reqs {
		reqs[i] = locking.ClaimRequest{
			Key:   locking.Key{Scope: fmt.Sprint("job", first+i), Name: "tick"},
			Owner: locking.NewOwner(), TTL: ttl,
		}
	}
	return reqs
}

// lockKVs returns the lock keys under ns by key.
func lockKVs(t *testing.T, cli *clientv3.Client, ns string, reqs []locking.ClaimRequest) map[locking.Key]*mvccpb.KeyValue {
	t.Helper()
	out := map[locking.Key]*mvccpb.KeyValue{}
	for _, r := range reqs {
		resp, err := cli.Get(testCtx(t), "/"+ns+"/"+r.Key.Scope+"/lock/"+r.Key.Name)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if len(resp.Kvs) == 1 {
			out[r.Key] = resp.Kvs[0]
		}
	}
	return out
}

// TestClaimBatchFewRequests: 300 claims of distinct scopes cost one transaction
// per 64, each won with the token its lock key carries, and a repeat by the
// same owners returns the same grants.
func TestClaimBatchFewRequests(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b, txns, other := countingBackend(t, ns)
	const n = 300
	reqs := batchReqs(n, 0)
	res := b.ClaimBatch(ctx, reqs)
	if got, want := txns.Load()+other.Load(), int64((n+63)/64); got != want {
		t.Errorf("%d requests for a batch of %d claims, want %d", got, n, want)
	}
	kvs := lockKVs(t, rawClient(t), ns, reqs)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("claim %d: %v", i, r.Err)
		}
		g, kv := r.Grant, kvs[reqs[i].Key]
		switch {
		case g.Key != reqs[i].Key || g.Owner != reqs[i].Owner || g.TTL != ttl || g.Lost == nil || g.Since.IsZero():
			t.Errorf("grant %d: %+v for %+v", i, g, reqs[i])
		case kv == nil || string(kv.Value) != g.Owner || uint64(kv.CreateRevision) != g.Token: //nolint:gosec // revisions are positive
			t.Errorf("grant %d: token %d, owner %s; lock key on the server: %v", i, g.Token, g.Owner, kv)
		}
	}
	// The grants are registered as Claim's are: renewable without a request.
	before := txns.Load() + other.Load()
	for _, r := range res {
		if _, err := b.Renew(ctx, r.Grant, ttl); err != nil {
			t.Fatalf("renew of a batch grant: %v", err)
		}
	}
	again := b.ClaimBatch(ctx, reqs)
	if got := txns.Load() + other.Load() - before; got != int64((n+63)/64) {
		t.Errorf("%d requests to repeat the batch", got)
	}
	for i, r := range again {
		if r.Err != nil || r.Grant.Token != res[i].Grant.Token {
			t.Errorf("repeated claim %d: %v, token %d; want the grant with token %d", i, r.Err, r.Grant.Token, res[i].Grant.Token)
		}
	}
	// Another replica finds them held.
	for i, r := range newBackend(t, ns).ClaimBatch(ctx, batchReqs(n, 0)) {
		if !errors.Is(r.Err, locking.ErrHeld) {
			t.Fatalf("claim %d by another backend: %v, want ErrHeld", i, r.Err)
		}
	}
	for _, r := range res {
		if err := b.Release(ctx, r.Grant); err != nil {
			t.Fatalf("release: %v", err)
		}
	}
}

// TestClaimBatchSameScope: claims of the same scope never share a transaction,
// since every claim of one transaction gets its revision as token: they get
// distinct tokens, in one more transaction per extra claim of a scope.
func TestClaimBatchSameScope(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b, txns, other := countingBackend(t, ns)
	reqs := batchReqs(10, 0)
	for _, k := range []locking.Key{{Scope: "a", Name: "1"}, {Scope: "b", Name: "1"}, {Scope: "a", Name: "2"}, {Scope: "b", Name: "2"}, {Scope: "a", Name: "3"}} {
		reqs = append(reqs, locking.ClaimRequest{Key: k, Owner: locking.NewOwner(), TTL: ttl})
	}
	// The same key twice: one claim wins (either: the transactions go out
	// concurrently), the other finds it held.
	reqs = append(reqs, locking.ClaimRequest{Key: reqs[0].Key, Owner: locking.NewOwner(), TTL: ttl})
	res := b.ClaimBatch(ctx, reqs)
	tokens := map[string]map[uint64]bool{}
	won := map[locking.Key]int{}
	for i, r := range res {
		if r.Err != nil {
			if (i == 0 || i == len(reqs)-1) && errors.Is(r.Err, locking.ErrHeld) {
				continue
			}
			t.Fatalf("claim %d (%s): %v", i, reqs[i].Key, r.Err)
		}
		won[r.Grant.Key]++
		s := r.Grant.Key.Scope
		if tokens[s] == nil {
			tokens[s] = map[uint64]bool{}
		}
		if tokens[s][r.Grant.Token] {
			t.Errorf("token %d given twice in scope %s", r.Grant.Token, s)
		}
		tokens[s][r.Grant.Token] = true
	}
	if won[reqs[0].Key] != 1 || len(tokens["a"]) != 3 || len(tokens["b"]) != 2 {
		t.Errorf("winners of the twice-claimed key: %d; tokens of a: %v, of b: %v", won[reqs[0].Key], tokens["a"], tokens["b"])
	}
	// Rounds: {job0..job9, a/1, b/1}, {a/2, b/2, job0 again}, {a/3}.
	if got := txns.Load() + other.Load(); got != 3 {
		t.Errorf("%d requests, want 3", got)
	}
}

// TestClaimBatchOutcomes: every claim of a batch has the outcome Claim would
// give it: ErrDone, ErrHeld, ErrInvalid for that claim alone.
func TestClaimBatchOutcomes(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b := newBackend(t, ns)
	other := newBackend(t, ns)
	reqs := batchReqs(6, 0)
	done, err := other.Claim(ctx, reqs[1].Key, locking.NewOwner(), ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if err := other.Complete(ctx, done, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
		t.Fatalf("complete: %v", err)
	}
	held, err := other.Claim(ctx, reqs[2].Key, locking.NewOwner(), ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	defer other.Release(ctx, held) //nolint:errcheck // cleanup
	reqs[3].Key.Scope = "bad/scope"
	reqs[4].TTL = time.Millisecond
	reqs[5].Owner = ""
	res := b.ClaimBatch(ctx, reqs)
	for i, want := range []error{nil, locking.ErrDone, locking.ErrHeld, locking.ErrInvalid, locking.ErrInvalid, locking.ErrInvalid} {
		if want == nil && res[i].Err != nil || want != nil && !errors.Is(res[i].Err, want) {
			t.Errorf("claim %d (%s): %v, want %v", i, reqs[i].Key, res[i].Err, want)
		}
	}
	if err := b.Release(ctx, res[0].Grant); err != nil {
		t.Errorf("release: %v", err)
	}
}

// lossyKV fails the next transaction sent through it when armed: before
// sending it (lose = 1) or after the server applied it (lose = 2, a lost reply).
// lossyBackend returns a backend on ns whose next transaction loses its
// request (lose set to 1) or its answer (2).
func lossyBackend(t *testing.T, ns string) (*etcdlock.Backend, *atomic.Int32) {
	t.Helper()
	cli := rawClient(t)
	lose := new(atomic.Int32)
	cli.KV = lossyKV{cli.KV, lose}
	b, err := etcdlock.NewFromClient(cli, etcdlock.WithNamespace(ns), etcdlock.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("NewFromClient: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, lose
}

type lossyKV struct {
	clientv3.KV
	lose *atomic.Int32
}

func (k lossyKV) Txn(ctx context.Context) clientv3.Txn { return lossyTxn{k.KV.Txn(ctx), k.lose} }

type lossyTxn struct {
	clientv3.Txn
	lose *atomic.Int32
}

func (t lossyTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { return lossyTxn{t.Txn.If(cs...), t.lose} }
func (t lossyTxn) Then(ops ...clientv3.Op) clientv3.Txn { return lossyTxn{t.Txn.Then(ops...), t.lose} }
func (t lossyTxn) Else(ops ...clientv3.Op) clientv3.Txn { return lossyTxn{t.Txn.Else(ops...), t.lose} }
func (t lossyTxn) Commit() (*clientv3.TxnResponse, error) {
	switch t.lose.Swap(0) {
	case 1:
		return nil, context.DeadlineExceeded
	case 2:
		if _, err := t.Txn.Commit(); err != nil {
			return nil, err
		}
		return nil, context.DeadlineExceeded
	}
	return t.Txn.Commit()
}

// TestClaimBatchUnknownOutcome: when a batch's answer is lost, its claims are
// settled by reading their keys back: won if the transaction was applied,
// ErrUnavailable (and cleaned up) if not.
func TestClaimBatchUnknownOutcome(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b, lose := lossyBackend(t, ns)

	applied := batchReqs(20, 0)
	lose.Store(2)
	res := b.ClaimBatch(ctx, applied)
	kvs := lockKVs(t, rawClient(t), ns, applied)
	for i, r := range res {
		if r.Err != nil || uint64(kvs[applied[i].Key].CreateRevision) != r.Grant.Token { //nolint:gosec // revisions are positive
			t.Errorf("claim %d whose answer was lost: %v, token %d", i, r.Err, r.Grant.Token)
		}
		if _, err := b.Renew(ctx, r.Grant, ttl); err != nil {
			t.Errorf("renew: %v", err)
		}
	}

	lost := batchReqs(20, 100)
	lose.Store(1)
	for i, r := range b.ClaimBatch(ctx, lost) {
		if !errors.Is(r.Err, locking.ErrUnavailable) {
			t.Errorf("claim %d whose request was lost: %v, want ErrUnavailable", i, r.Err)
		}
	}
	// The keys are free: another replica claims them.
	for i, r := range newBackend(t, ns).ClaimBatch(ctx, batchReqs(20, 100)) {
		if r.Err != nil {
			t.Errorf("claim %d after the lost batch: %v", i, r.Err)
		}
	}
}

// TestClaimBatchSmallMaxTxnOps: a server with a lower --max-txn-ops than the
// batch size refuses the first transactions; the backend splits them, so
// every claim still wins, and sends smaller ones from then on.
func TestClaimBatchSmallMaxTxnOps(t *testing.T) {
	ctx := testCtx(t)
	srv := testenv.StartEtcdWith(t, testenv.EtcdOptions{MaxTxnOps: 20})
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Addr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("clientv3.New: %v", err)
	}
	defer cli.Close()
	txns, other := new(atomic.Int64), new(atomic.Int64)
	cli.KV = countingKV{cli.KV, txns, other}
	b, err := etcdlock.NewFromClient(cli, etcdlock.WithNamespace(newNamespace()), etcdlock.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("NewFromClient: %v", err)
	}
	defer b.Close()
	for round := range 2 {
		before := txns.Load() + other.Load()
		for i, r := range b.ClaimBatch(ctx, batchReqs(100, 100*round)) {
			if r.Err != nil {
				t.Fatalf("round %d, claim %d: %v", round, i, r.Err)
			}
		}
		// 18 claims would fit (18 sub-transactions of 2 ops), 16 or 18 are used.
		if n := txns.Load() + other.Load() - before; round == 1 && n > 7 {
			t.Errorf("%d requests for 100 claims once the batch size is known, want at most 7", n)
		}
	}
}
