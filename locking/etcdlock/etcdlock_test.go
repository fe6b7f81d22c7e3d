package etcdlock_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
)

const ttl = 2 * time.Second

func newLocker(t testing.TB, b locking.Backend) *locking.Locker {
	t.Helper()
	l, err := locking.New(b, locking.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("locking.New: %v", err)
	}
	return l
}

func leaseOf(t testing.TB, g locking.Grant) clientv3.LeaseID {
	t.Helper()
	id, err := strconv.ParseInt(g.Rev, 16, 64)
	if err != nil {
		t.Fatalf("grant Rev %q is not a lease id: %v", g.Rev, err)
	}
	return clientv3.LeaseID(id)
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestNewUnreachable(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	for _, tc := range []struct {
		name string
		ctx  time.Duration
		opts []etcdlock.Option
	}{
		{"context deadline", 700 * time.Millisecond, nil},
		{"dial timeout", time.Minute, []etcdlock.Option{etcdlock.WithDialTimeout(700 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			start := time.Now()
			b, err := etcdlock.New(ctx, []string{addr}, tc.opts...)
			if err == nil {
				_ = b.Close()
				t.Fatal("New of an unreachable endpoint succeeded")
			}
			if !errors.Is(err, locking.ErrUnavailable) {
				t.Errorf("New: %v, want ErrUnavailable", err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("New took %v with a 700ms bound", took)
			}
		})
	}
}

func TestNewEndpointForms(t *testing.T) {
	addr := testenv.EtcdAddr(t)
	for _, ep := range []string{addr, "http://" + addr, " " + addr + " "} {
		b, err := etcdlock.New(testCtx(t), []string{ep}, etcdlock.WithNamespace(newNamespace()))
		if err != nil {
			t.Errorf("New(%q): %v", ep, err)
			continue
		}
		if _, err := b.Claim(testCtx(t), locking.Key{Scope: "s", Name: "n"}, locking.NewOwner(), ttl); err != nil {
			t.Errorf("claim via %q: %v", ep, err)
		}
		_ = b.Close()
	}
}

func TestOptionsInvalid(t *testing.T) {
	ctx := testCtx(t)
	cases := map[string][]etcdlock.Option{
		"namespace":       {etcdlock.WithNamespace("a/b")},
		"empty namespace": {etcdlock.WithNamespace("")},
		"auth half":       {etcdlock.WithAuth("u", "")},
		"request timeout": {etcdlock.WithRequestTimeout(0)},
		"history":         {etcdlock.WithHistoryRetention(time.Millisecond)},
		"tls files":       {etcdlock.WithTLS(etcdlock.TLSFiles{CAFile: "/nonexistent/ca.pem"})},
		"nil logger":      {etcdlock.WithLogger(nil)},
	}
	for name, opts := range cases {
		if b, err := etcdlock.New(ctx, []string{"127.0.0.1:1"}, opts...); !errors.Is(err, locking.ErrInvalid) {
			t.Errorf("%s: New: %v, want ErrInvalid", name, err)
			if b != nil {
				_ = b.Close()
			}
		}
	}
	if _, err := etcdlock.New(ctx, nil); !errors.Is(err, locking.ErrInvalid) {
		t.Errorf("New without endpoints: %v, want ErrInvalid", err)
	}
	cli := rawClient(t)
	if _, err := etcdlock.NewFromClient(cli, etcdlock.WithAuth("u", "p")); !errors.Is(err, locking.ErrInvalid) {
		t.Errorf("NewFromClient with WithAuth: %v, want ErrInvalid", err)
	}
	if _, err := etcdlock.NewFromClient(nil); !errors.Is(err, locking.ErrInvalid) {
		t.Errorf("NewFromClient(nil): %v, want ErrInvalid", err)
	}
}

// TestSessionLoss: revoking the session lease from another client closes every
// grant's Lost channel, makes the Locker's leases lost (ErrLost), refuses their
// renewal and completion, and later claims work on a new session.
func TestSessionLoss(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b := newBackend(t, ns)
	l := newLocker(t, b)
	scope := "loss"
	var leases []*locking.Lease
	for i := range 3 {
		ls, err := l.Claim(ctx, locking.Key{Scope: scope, Name: fmt.Sprint("l", i)}, ttl)
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		leases = append(leases, ls)
	}
	direct := locking.Key{Scope: scope, Name: "direct"}
	g, err := b.Claim(ctx, direct, locking.NewOwner(), ttl)
	if err != nil {
		t.Fatalf("direct claim: %v", err)
	}
	if g.Lost == nil || g.Since.IsZero() || g.TTL != ttl {
		t.Fatalf("grant %+v: want Lost, Since and TTL %v set", g, ttl)
	}
	// One session for everything.
	for _, ls := range leases {
		if ls.Token() >= g.Token {
			t.Errorf("token %d not below the later claim's %d", ls.Token(), g.Token)
		}
	}
	cli := rawClient(t)
	if _, err := cli.Revoke(ctx, leaseOf(t, g)); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	revoked := time.Now()
	select {
	case <-g.Lost:
	case <-time.After(ttl):
		t.Fatal("grant's Lost not closed within the ttl after its session lease was revoked")
	}
	t.Logf("loss signalled %v after the revocation", time.Since(revoked))
	for _, ls := range leases {
		select {
		case <-ls.Context().Done():
		case <-time.After(time.Second):
			t.Fatal("lease context not cancelled after the session was lost")
		}
		if cause := context.Cause(ls.Context()); !errors.Is(cause, locking.ErrLost) {
			t.Errorf("cause %v, want ErrLost", cause)
		}
		if err := ls.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); !errors.Is(err, locking.ErrLost) {
			t.Errorf("complete through the Locker after loss: %v, want ErrLost", err)
		}
	}
	if _, err := b.Renew(ctx, g, ttl); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("renew after loss: %v, want ErrNotHeld", err)
	}
	if err := b.Complete(ctx, g, locking.Record{Key: direct}, time.Hour); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("complete after loss: %v, want ErrNotHeld", err)
	}
	// Later claims work, on a new session; the old grant stays lost.
	g2, err := b.Claim(ctx, direct, locking.NewOwner(), ttl)
	if err != nil {
		t.Fatalf("claim after loss: %v", err)
	}
	if g2.Rev == g.Rev || closed(g2.Lost) || g2.Token <= g.Token {
		t.Errorf("claim after loss: %+v; want a new live session and a higher token than %d", g2, g.Token)
	}
	if _, err := b.Renew(ctx, g, ttl); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("renew of the old grant after a new session: %v, want ErrNotHeld", err)
	}
	if err := b.Complete(ctx, g2, locking.Record{Key: direct}, time.Hour); err != nil {
		t.Errorf("complete on the new session: %v", err)
	}
}

// TestSameBackendExcludes: exclusion rests on the owner, not on the lease id.
func TestSameBackendExcludes(t *testing.T) {
	ctx := testCtx(t)
	b := newBackend(t, newNamespace())
	key := locking.Key{Scope: "s", Name: "k"}
	g, err := b.Claim(ctx, key, locking.NewOwner(), ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if _, err := b.Claim(ctx, key, locking.NewOwner(), ttl); !errors.Is(err, locking.ErrHeld) {
		t.Errorf("second claim through the same backend: %v, want ErrHeld", err)
	}
	actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = b.Acquire(actx, key, locking.NewOwner(), ttl)
	cancel()
	if !errors.Is(err, locking.ErrHeld) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire through the same backend: %v, want ErrHeld and DeadlineExceeded", err)
	}
	again, err := b.Claim(ctx, key, g.Owner, ttl)
	if err != nil || again.Token != g.Token {
		t.Errorf("repeated claim: %+v, %v; want the same grant", again, err)
	}
	if err := b.Release(ctx, g); err != nil {
		t.Errorf("release: %v", err)
	}
}

// TestNoLeakedKeys: after 200 rounds of 8 racers (on 2 backends) the namespace
// holds no key but the completions'.
func TestNoLeakedKeys(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b1, txns1, _ := countingBackend(t, ns)
	b2, txns2, _ := countingBackend(t, ns)
	ls := []*locking.Locker{newLocker(t, b1), newLocker(t, b2)}
	const rounds, racers = 200, 8
	for r := range rounds {
		key := locking.Key{Scope: "race", Name: fmt.Sprint("r", r)}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []*locking.Lease
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lease, err := ls[i%2].Claim(ctx, key, ttl)
				switch {
				case err == nil:
					mu.Lock()
					won = append(won, lease)
					mu.Unlock()
				case !errors.Is(err, locking.ErrHeld):
					t.Errorf("claim: %v", err)
				}
			}()
		}
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("round %d: %d winners", r, len(won))
		}
		if r%2 == 0 {
			err := won[0].Release(ctx)
			if err != nil {
				t.Fatalf("release: %v", err)
			}
		} else if err := won[0].Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
			t.Fatalf("complete: %v", err)
		}
	}
	cli := rawClient(t)
	prefix := "/" + ns + "/"
	// A completed key keeps its lock key, with a done value; a released one
	// leaves nothing.
	locks, err := cli.Get(ctx, prefix+"race/lock/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range locks.Kvs {
		if !strings.HasPrefix(string(kv.Value), "\x00done\x00") { // the documented done value
			t.Errorf("lock key %s left held (%q)", kv.Key, kv.Value)
		}
	}
	if n := len(locks.Kvs); n != rounds/2 {
		t.Errorf("%d done keys, want %d", n, rounds/2)
	}
	if n := countKeys(t, cli, prefix+"race/wait/"); n != 0 {
		t.Errorf("%d waiter keys left", n)
	}
	if n := countKeys(t, cli, prefix); n != rounds { // done + records of the completions
		t.Errorf("%d keys under the namespace, want %d", n, rounds)
	}
	// One transaction per racer and one per release or completion.
	if n, want := txns1.Load()+txns2.Load(), int64(rounds*(racers+1)); n != want {
		t.Errorf("%d transactions, want %d", n, want)
	}
}

// TestRenewIsLocal: renewing many grants costs no request, and reports the
// session's validity.
func TestRenewIsLocal(t *testing.T) {
	ctx := testCtx(t)
	b, txns, other := countingBackend(t, newNamespace())
	var gs []locking.Grant
	for i := range 50 {
		g, err := b.Claim(ctx, locking.Key{Scope: "s", Name: fmt.Sprint("k", i)}, locking.NewOwner(), ttl)
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		gs = append(gs, g)
	}
	before := txns.Load() + other.Load()
	for range 3 {
		time.Sleep(ttl / 3)
		for i, g := range gs {
			now := time.Now()
			ng, err := b.Renew(ctx, g, ttl)
			if err != nil {
				t.Fatalf("renew: %v", err)
			}
			if ng.Since.After(now) || now.Sub(ng.Since) > ttl/2 || ng.TTL != ttl || ng.Lost != g.Lost {
				t.Errorf("renewed grant: since %v ago, ttl %v", now.Sub(ng.Since), ng.TTL)
			}
			gs[i] = ng
		}
	}
	if n := txns.Load() + other.Load() - before; n != 0 {
		t.Errorf("%d KV requests for 150 renewals, want 0", n)
	}
	other2 := newBackend(t, b.Namespace())
	if _, err := other2.Claim(ctx, gs[0].Key, locking.NewOwner(), ttl); !errors.Is(err, locking.ErrHeld) {
		t.Errorf("claim of a renewed key: %v, want ErrHeld", err)
	}
}

// TestUnrenewedGrantExpires: a grant that nobody renews frees its key after its
// ttl although the session lives on, as a per-key ttl would.
func TestUnrenewedGrantExpires(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b1, b2 := newBackend(t, ns), newBackend(t, ns)
	key := locking.Key{Scope: "s", Name: "k"}
	g, err := b1.Claim(ctx, key, locking.NewOwner(), ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	claimed := time.Now()
	for {
		_, err := b2.Claim(ctx, key, locking.NewOwner(), ttl)
		if err == nil {
			break
		}
		if !errors.Is(err, locking.ErrHeld) || time.Since(claimed) > 3*ttl {
			t.Fatalf("claim by b2: %v after %v", err, time.Since(claimed))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if took := time.Since(claimed); took < ttl {
		t.Errorf("key freed %v after the claim, before its ttl", took)
	}
	if _, err := b1.Renew(ctx, g, ttl); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("renew of the expired grant: %v, want ErrNotHeld", err)
	}
}

// TestReleaseByOwner: the Locker's cleanup after an unknown outcome releases
// with just Key and Owner.
func TestReleaseByOwner(t *testing.T) {
	ctx := testCtx(t)
	b := newBackend(t, newNamespace())
	key := locking.Key{Scope: "s", Name: "k"}
	owner := locking.NewOwner()
	if _, err := b.Claim(ctx, key, owner, ttl); err != nil {
		t.Fatalf("claim: %v", err)
	}
	if err := b.Release(ctx, locking.Grant{Key: key, Owner: locking.NewOwner()}); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("release by another owner: %v, want ErrNotHeld", err)
	}
	if err := b.Release(ctx, locking.Grant{Key: key, Owner: owner}); err != nil {
		t.Errorf("release by key and owner: %v", err)
	}
	if err := b.Release(ctx, locking.Grant{Key: key, Owner: owner}); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("second release: %v, want ErrNotHeld", err)
	}
	if _, err := b.Claim(ctx, key, locking.NewOwner(), ttl); err != nil {
		t.Errorf("claim after release: %v", err)
	}
}

// TestAmbiguousClaim: claims sent into a partition time out with ErrUnavailable;
// once it heals, whatever they may have left is cleaned up, and nothing leaks.
func TestAmbiguousClaim(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	p := testenv.NewProxy(t, testenv.EtcdAddr(t))
	b := newBackendAt(t, p.Addr(), ns, etcdlock.WithRequestTimeout(500*time.Millisecond))
	l := newLocker(t, b)
	// Warm the session up, so the claims below are single transactions.
	warm, err := l.Claim(ctx, locking.Key{Scope: "amb", Name: "warm"}, 5*time.Second)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	p.Blackhole()
	for i := range 3 {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := l.Claim(cctx, locking.Key{Scope: "amb", Name: fmt.Sprint("k", i)}, 5*time.Second)
		cancel()
		if !errors.Is(err, locking.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("claim in a partition: %v, want ErrUnavailable and DeadlineExceeded", err)
		}
	}
	p.Unblackhole()
	if err := warm.Release(ctx); err != nil {
		t.Errorf("release after the partition healed: %v", err)
	}
	cli := rawClient(t)
	deadline := time.Now().Add(10 * time.Second)
	for countKeys(t, cli, "/"+ns+"/amb/lock/") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("lock keys of unknown-outcome claims still there after %v", 10*time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTokensRiseAcrossBackends: tokens rise strictly within a scope, whichever
// backend (replica) claims.
func TestTokensRiseAcrossBackends(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	bs := []*etcdlock.Backend{newBackend(t, ns), newBackend(t, ns)}
	var last uint64
	for i := range 20 {
		b := bs[i%2]
		name := fmt.Sprint("k", i%3) // released: claimable again
		if i%2 == 1 {
			name = fmt.Sprint("c", i) // completed: done for its retention
		}
		g, err := b.Claim(ctx, locking.Key{Scope: "fence", Name: name}, locking.NewOwner(), ttl)
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
		if g.Token <= last {
			t.Errorf("claim %d: token %d, want > %d", i, g.Token, last)
		}
		last = g.Token
		if i%2 == 0 {
			err = b.Release(ctx, g)
		} else {
			err = b.Complete(ctx, g, locking.Record{Key: g.Key, Token: g.Token}, 2*time.Second)
		}
		if err != nil {
			t.Fatalf("end %d: %v", i, err)
		}
	}
}

// TestRetentionLeasesShared: completing many keys grants few leases.
func TestRetentionLeasesShared(t *testing.T) {
	ctx := testCtx(t)
	b := newBackend(t, newNamespace())
	cli := rawClient(t)
	before, err := cli.Leases(ctx)
	if err != nil {
		t.Fatalf("leases: %v", err)
	}
	const n = 30
	for i := range n {
		g, err := b.Claim(ctx, locking.Key{Scope: "ret", Name: fmt.Sprint("k", i)}, locking.NewOwner(), ttl)
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		if err := b.Complete(ctx, g, locking.Record{Key: g.Key}, time.Hour); err != nil {
			t.Fatalf("complete: %v", err)
		}
	}
	after, err := cli.Leases(ctx)
	if err != nil {
		t.Fatalf("leases: %v", err)
	}
	// The session, and a done and a history lease per bucket (a bucket boundary
	// may fall within the loop).
	if grown := len(after.Leases) - len(before.Leases); grown > 5 {
		t.Errorf("%d completions granted %d leases", n, grown)
	}
	recs, err := b.Records(ctx, "ret", 100)
	if err != nil || len(recs) != n {
		t.Fatalf("records: %d, %v; want %d", len(recs), err, n)
	}
	for i, r := range recs {
		if want := fmt.Sprint("k", n-1-i); r.Key.Name != want {
			t.Errorf("record %d is %s, want %s (newest first)", i, r.Key.Name, want)
		}
	}
}

// TestAddRecordRepeat: a repeated AddRecord stores one record.
func TestAddRecordRepeat(t *testing.T) {
	ctx := testCtx(t)
	b := newBackend(t, newNamespace())
	rec := locking.Record{Key: locking.Key{Scope: "h", Name: "t1"}, Outcome: locking.OutcomeMissed, Started: time.Now()}
	for range 2 {
		if err := b.AddRecord(ctx, rec); err != nil {
			t.Fatalf("add record: %v", err)
		}
	}
	recs, err := b.Records(ctx, "h", 10)
	if err != nil || len(recs) != 1 || recs[0].Outcome != locking.OutcomeMissed {
		t.Errorf("records: %+v, %v; want the one record", recs, err)
	}
}

// TestClose: Close closes Lost channels, keeps held keys until their ttl, and
// makes later calls fail with ErrClosed.
func TestClose(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b, err := etcdlock.New(ctx, []string{testenv.EtcdAddr(t)}, etcdlock.WithNamespace(ns))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	key := locking.Key{Scope: "s", Name: "k"}
	g, err := b.Claim(ctx, key, locking.NewOwner(), ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if !closed(g.Lost) {
		t.Error("Lost not closed by Close")
	}
	if _, err := b.Claim(ctx, key, locking.NewOwner(), ttl); !errors.Is(err, locking.ErrClosed) {
		t.Errorf("claim after close: %v, want ErrClosed", err)
	}
	if _, err := b.Renew(ctx, g, ttl); !errors.Is(err, locking.ErrClosed) {
		t.Errorf("renew after close: %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	b2 := newBackend(t, ns)
	if _, err := b2.Claim(ctx, key, locking.NewOwner(), ttl); !errors.Is(err, locking.ErrHeld) {
		t.Errorf("claim right after the holder's Close: %v, want ErrHeld (held keys live out their ttl)", err)
	}
}

// TestOwnerIDs: an empty owner id, or one that starts with a NUL byte (as a
// done value does), is refused by every operation, so no request can forge a
// done marker or release one.
func TestOwnerIDs(t *testing.T) {
	ctx := testCtx(t)
	b := newBackend(t, newNamespace())
	key := locking.Key{Scope: "o", Name: "k"}
	owner := locking.NewOwner()
	g, err := b.Claim(ctx, key, owner, ttl)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if err := b.Complete(ctx, g, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
		t.Fatalf("complete: %v", err)
	}
	for _, bad := range []string{"", "\x00", "\x00done\x00" + owner} {
		t.Run(fmt.Sprintf("%q", bad), func(t *testing.T) {
			forged := locking.Grant{Key: key, Owner: bad, Token: g.Token}
			for op, err := range map[string]error{
				"claim":    func() error { _, err := b.Claim(ctx, key, bad, ttl); return err }(),
				"acquire":  func() error { _, err := b.Acquire(ctx, key, bad, ttl); return err }(),
				"release":  b.Release(ctx, forged),
				"complete": b.Complete(ctx, forged, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Hour),
			} {
				if !errors.Is(err, locking.ErrInvalid) {
					t.Errorf("%s: got %v, want ErrInvalid", op, err)
				}
			}
		})
	}
	if _, err := b.Claim(ctx, key, locking.NewOwner(), ttl); !errors.Is(err, locking.ErrDone) {
		t.Errorf("claim after the forged requests: got %v, want ErrDone", err)
	}
}

// TestLegacyDoneMarker: a done marker written by a build before the done
// value (a key of its own under done/) still makes every claim of its key
// answer ErrDone, so an upgrade does not run a completed tick again.
func TestLegacyDoneMarker(t *testing.T) {
	ctx := testCtx(t)
	ns := newNamespace()
	b := newBackend(t, ns)
	key := locking.Key{Scope: "legacy", Name: "k"}
	if _, err := rawClient(t).Put(ctx, "/"+ns+"/legacy/done/k", locking.NewOwner()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, key, locking.NewOwner(), ttl); !errors.Is(err, locking.ErrDone) {
		t.Errorf("claim: %v, want ErrDone", err)
	}
	if r := b.ClaimBatch(ctx, []locking.ClaimRequest{{Key: key, Owner: locking.NewOwner(), TTL: ttl},
		{Key: locking.Key{Scope: "legacy2", Name: "k"}, Owner: locking.NewOwner(), TTL: ttl}}); !errors.Is(r[0].Err, locking.ErrDone) || r[1].Err != nil {
		t.Errorf("claim batch: %v, %v; want ErrDone, nil", r[0].Err, r[1].Err)
	}
	if _, err := b.Acquire(ctx, key, locking.NewOwner(), ttl); !errors.Is(err, locking.ErrDone) {
		t.Errorf("acquire: %v, want ErrDone", err)
	}
	// Acquire's queue: a waiter behind a holder learns of the marker when the
	// holder lets go.
	other := locking.Key{Scope: "legacy", Name: "q"}
	g, err := b.Claim(ctx, other, locking.NewOwner(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := b.Acquire(ctx, other, locking.NewOwner(), ttl); done <- err }()
	waitForKeys(t, "/"+ns+"/legacy/wait/q/", 1)
	if _, err := rawClient(t).Put(ctx, "/"+ns+"/legacy/done/q", locking.NewOwner()); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, g); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, locking.ErrDone) {
			t.Errorf("queued acquire: %v, want ErrDone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("queued acquire did not return")
	}
}
