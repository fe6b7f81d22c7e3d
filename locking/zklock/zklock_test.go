package zklock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func testScope(t *testing.T) string {
	return strings.NewReplacer("/", "-", "#", "-").Replace(t.Name()) + "." + locking.NewOwner()[:8]
}

// rawConn is a plain client of the shared server, without credentials.
func rawConn(t *testing.T, auth ...string) *zk.Conn {
	t.Helper()
	c, events, err := zk.Connect([]string{testenv.ZKAddr(t)}, testSessionTimeout, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{})
	go func() {
		for range events {
		}
		close(drained)
	}()
	t.Cleanup(func() { c.Close(); <-drained })
	if len(auth) == 2 {
		if err := c.AddAuth("digest", []byte(auth[0]+":"+auth[1])); err != nil {
			t.Fatal(err)
		}
	} else if _, _, err := c.Exists("/"); err != nil {
		t.Fatal(err)
	}
	return c
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

func TestSessionExpiryLosesEverything(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	p := newProxy(t, testenv.ZKAddr(t))
	b := newBackend(t, p.Addr())
	other := newBackend(t, "")
	scope := testScope(t)
	l := newLocker(t, b)
	lease, err := l.Claim(ctx, locking.Key{Scope: scope, Name: "lease"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	key := locking.Key{Scope: scope, Name: "raw"}
	g, err := b.Claim(ctx, key, locking.NewOwner(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A second holder keeps renewing g by hand, as a watchdog would.
	stop := make(chan struct{})
	var renewers sync.WaitGroup
	renewers.Add(1)
	go func() {
		defer renewers.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				_, _ = b.Renew(rctx, g, time.Second)
				cancel()
			}
		}
	}()
	defer func() { close(stop); renewers.Wait() }()

	cut := time.Now()
	p.Cut()
	select {
	case <-lease.Context().Done():
		t.Logf("lease lost %v after the cut: %v", time.Since(cut), context.Cause(lease.Context()))
	case <-time.After(testSessionTimeout):
		t.Fatal("the lease outlived the session timeout while cut off")
	}
	if !errors.Is(lease.Err(), locking.ErrLost) {
		t.Errorf("lease.Err() = %v, want ErrLost", lease.Err())
	}
	// The server expires the session; another replica can then claim the key.
	var won *locking.Lease
	ol := newLocker(t, other)
	waitFor(t, 5*testSessionTimeout, "another replica to win the raw key", func() bool {
		won, err = ol.Claim(ctx, key, time.Second)
		return err == nil
	})
	defer won.Release(context.Background()) //nolint:errcheck // cleanup
	if won.Token() <= g.Token {
		t.Errorf("token after expiry %d, want > %d", won.Token(), g.Token)
	}
	p.Heal()
	select {
	case <-g.Lost:
	case <-time.After(5 * testSessionTimeout):
		t.Fatal("Lost not closed after the client learned its session expired")
	}
	if _, err := b.Renew(ctx, g, time.Second); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("renew of a grant of an expired session: %v, want ErrNotHeld", err)
	}
	if err := b.Release(ctx, g); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("release of a grant of an expired session: %v, want ErrNotHeld", err)
	}
	if err := b.Complete(ctx, g, locking.Record{Key: key}, time.Hour); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("complete of a grant of an expired session: %v, want ErrNotHeld", err)
	}
	// A repeated claim by the old owner is not revived on the new session.
	if _, err := b.Claim(ctx, key, g.Owner, time.Second); !errors.Is(err, locking.ErrHeld) {
		t.Errorf("claim by the expired owner while another holds: %v, want ErrHeld", err)
	}
	// The backend goes on working on its new session.
	g2, err := b.Claim(ctx, locking.Key{Scope: scope, Name: "after"}, locking.NewOwner(), time.Second)
	if err != nil {
		t.Fatalf("claim on the new session: %v", err)
	}
	if g2.Rev == g.Rev {
		t.Errorf("new grant on the same session %s as the expired one", g.Rev)
	}
	if _, err := b.Renew(ctx, g2, time.Second); err != nil {
		t.Errorf("renew on the new session: %v", err)
	}
}

func TestRenewCostsNoRoundTrip(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	var writes atomic.Int64
	b := newBackend(t, "", WithDialer(func(network, addr string, timeout time.Duration) (net.Conn, error) {
		c, err := net.DialTimeout(network, addr, timeout)
		if err != nil {
			return nil, err
		}
		return countingConn{c, &writes}, nil
	}))
	scope := testScope(t)
	var grants []locking.Grant
	for i := range 50 {
		g, err := b.Claim(ctx, locking.Key{Scope: scope, Name: fmt.Sprint(i)}, locking.NewOwner(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		grants = append(grants, g)
	}
	before := writes.Load()
	start := time.Now()
	for round := range 10 {
		for i, g := range grants {
			ng, err := b.Renew(ctx, g, time.Second)
			if err != nil {
				t.Fatalf("round %d renew %d: %v", round, i, err)
			}
			if d := ng.Since.Add(ng.TTL).Sub(time.Now()); d < 700*time.Millisecond {
				t.Fatalf("renewal gives only %v of validity", d)
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
	// 500 renewals; allow the client's pings and a few shared probes.
	if n := writes.Load() - before; n > 10 {
		t.Errorf("500 renewals over %v sent %d requests, want ≤ 10", time.Since(start), n)
	}
	for _, g := range grants {
		if err := b.Release(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Renew(ctx, grants[0], time.Second); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("renew after release: %v, want ErrNotHeld", err)
	}
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

func TestReaperFreesUnrenewedClaims(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	a, other := newBackend(t, ""), newBackend(t, "")
	key := locking.Key{Scope: testScope(t), Name: "k"}
	g, err := a.Claim(ctx, key, locking.NewOwner(), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 5*time.Second, "the unrenewed claim to be freed", func() bool {
		_, err := other.Claim(ctx, key, locking.NewOwner(), time.Second)
		return err == nil
	})
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("unrenewed claim freed after %v, want about its 300ms ttl", d)
	}
	if _, err := a.Renew(ctx, g, 300*time.Millisecond); !errors.Is(err, locking.ErrNotHeld) {
		t.Errorf("renew after the ttl ran out: %v, want ErrNotHeld", err)
	}
}

func TestNoLeakedNodesAfterLostRaces(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	const racers, rounds = 5, 50 // 200 lost races
	var bs []*Backend
	for range racers {
		bs = append(bs, newBackend(t, ""))
	}
	scope := testScope(t)
	completed := 0
	for round := range rounds {
		key := locking.Key{Scope: scope, Name: fmt.Sprintf("r%03d", round)}
		var wg sync.WaitGroup
		grants := make([]locking.Grant, racers)
		errs := make([]error, racers)
		for i, b := range bs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				grants[i], errs[i] = b.Claim(ctx, key, locking.NewOwner(), time.Second)
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: two winners", round)
				}
				winner = i
			case !errors.Is(err, locking.ErrHeld):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no winner", round)
		}
		if round%2 == 0 {
			err := bs[winner].Complete(ctx, grants[winner], locking.Record{Key: key, Outcome: locking.OutcomeSucceeded}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			completed++
		} else if err := bs[winner].Release(ctx, grants[winner]); err != nil {
			t.Fatal(err)
		}
	}
	c := rawConn(t)
	b := bs[0]
	own, _, err := c.Children(b.scopePath(scope) + "/own")
	if err != nil || len(own) != 0 {
		t.Errorf("own nodes left: %v, %v", own, err)
	}
	locks, _, err := c.Children(b.lockDir(scope))
	if err != nil || len(locks) != completed {
		t.Errorf("%d lock nodes left (%v), want the %d done markers", len(locks), err, completed)
	}
	for _, name := range locks {
		_, st, err := c.Get(b.lockDir(scope) + "/" + name)
		if err != nil || st.EphemeralOwner != 0 {
			t.Errorf("lock node %s left held (%v)", name, err)
		}
	}
	recs, err := b.Records(ctx, scope, 1000)
	if err != nil || len(recs) != completed {
		t.Errorf("%d records (%v), want %d", len(recs), err, completed)
	}
}

// watches returns, per watched path under prefix, how many sessions watch it
// (the server's "wchp" command).
func watches(t *testing.T, prefix string) map[string]int {
	t.Helper()
	c, err := net.DialTimeout("tcp", testenv.ZKAddr(t), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("wchp")); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	cur := ""
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "/"):
			cur = line
		case strings.TrimSpace(line) != "" && strings.HasPrefix(cur, prefix):
			out[cur]++
		}
	}
	if len(out) == 0 && strings.Contains(cur, "not executed") {
		t.Fatal("wchp is not whitelisted on the test server")
	}
	return out
}

func TestAcquireQueue(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	holder := newBackend(t, "")
	key := locking.Key{Scope: testScope(t), Name: "k"}
	g, err := holder.Claim(ctx, key, locking.NewOwner(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	type result struct {
		i   int
		g   locking.Grant
		err error
	}
	results := make(chan result, n)
	cancels := make([]context.CancelFunc, n)
	bs := make([]*Backend, n)
	for i := range n {
		bs[i] = newBackend(t, "")
		actx, cancel := context.WithCancel(ctx)
		cancels[i] = cancel
		go func() {
			g, err := bs[i].Acquire(actx, key, locking.NewOwner(), 2*time.Second)
			results <- result{i, g, err}
		}()
	}
	dir := holder.waitDir(key)
	c := rawConn(t)
	count := func() int {
		kids, _, err := c.Children(dir)
		if err != nil {
			return -1
		}
		return len(kids)
	}
	waitFor(t, 10*time.Second, "6 waiters", func() bool { return count() == n })
	// Every waiter watches only its predecessor; only the head watches the lock.
	waitFor(t, 5*time.Second, "the watches to be set", func() bool {
		w := watches(t, holder.scopePath(key.Scope))
		total := 0
		for _, v := range w {
			total += v
		}
		return total == n
	})
	w := watches(t, holder.scopePath(key.Scope))
	if w[holder.lockPath(key)] != 1 {
		t.Errorf("the lock node is watched by %d sessions, want 1 (the queue's head): %v", w[holder.lockPath(key)], w)
	}
	for p, v := range w {
		if v != 1 {
			t.Errorf("%s is watched by %d sessions, want 1", p, v)
		}
	}
	// Cancel half of the waiters: their nodes go.
	for i := 0; i < n; i += 2 {
		cancels[i]()
	}
	for range n / 2 {
		r := <-results
		if r.i%2 != 0 || !errors.Is(r.err, context.Canceled) {
			t.Fatalf("waiter %d: %v, want context.Canceled", r.i, r.err)
		}
	}
	waitFor(t, 5*time.Second, "the cancelled waiters' nodes to go", func() bool { return count() == n/2 })
	// Releases hand the key down the queue, one waiter at a time.
	if err := holder.Release(ctx, g); err != nil {
		t.Fatal(err)
	}
	var last uint64 = g.Token
	for range n / 2 {
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatalf("waiter %d: %v", r.i, r.err)
			}
			if r.g.Token <= last {
				t.Errorf("token %d after %d", r.g.Token, last)
			}
			last = r.g.Token
			if err := bs[r.i].Release(ctx, r.g); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the queue stalled")
		}
	}
	for _, cancel := range cancels {
		cancel()
	}
	if k := count(); k != 0 {
		t.Errorf("%d waiter nodes left", k)
	}
}

func TestJanitorSweeps(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	ns := runNamespace + "-janitor"
	b := newBackend(t, "", WithNamespace(ns), WithMaxRecords(3))
	scope := testScope(t)
	claim := func(name string, retention time.Duration) {
		key := locking.Key{Scope: scope, Name: name}
		g, err := b.Claim(ctx, key, locking.NewOwner(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Complete(ctx, g, locking.Record{Key: key, Outcome: locking.OutcomeSucceeded}, retention); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		claim(fmt.Sprintf("short%d", i), 200*time.Millisecond)
	}
	claim("long", time.Hour)
	for i := range 3 {
		if err := b.AddRecord(ctx, locking.Record{Key: locking.Key{Scope: scope, Name: fmt.Sprint("missed", i)}, Outcome: locking.OutcomeMissed}); err != nil {
			t.Fatal(err)
		}
	}
	// An empty wait node, as a finished Acquire leaves.
	ag, err := b.Acquire(ctx, locking.Key{Scope: scope, Name: "acq"}, locking.NewOwner(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, ag); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	c := rawConn(t)
	total := 0
	for pass := 0; ; pass++ {
		n, err := b.Sweep(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		if n > 4 {
			t.Fatalf("a pass with a budget of 4 requests deleted %d nodes", n)
		}
		total += n
		locks, _, _ := c.Children(b.lockDir(scope))
		recs, _, _ := c.Children(b.recDir(scope))
		waits, _, _ := c.Children(b.waitRoot(scope))
		if len(locks) == 1 && len(recs) == 3 && len(waits) == 0 {
			t.Logf("clean after %d passes, %d nodes deleted", pass+1, total)
			break
		}
		if pass > 100 {
			t.Fatalf("not clean after %d passes: locks %v, records %d, waits %v", pass, locks, len(recs), waits)
		}
	}
	if _, err := b.Claim(ctx, locking.Key{Scope: scope, Name: "long"}, locking.NewOwner(), time.Second); !errors.Is(err, locking.ErrDone) {
		t.Errorf("the unexpired done marker: claim got %v, want ErrDone", err)
	}
	g, err := b.Claim(ctx, locking.Key{Scope: scope, Name: "short0"}, locking.NewOwner(), time.Second)
	if err != nil {
		t.Errorf("claim of a swept key: %v", err)
	} else {
		_ = b.Release(ctx, g)
	}
	recs, err := b.Records(ctx, scope, 10)
	if err != nil || len(recs) != 3 || recs[0].Key.Name != "missed2" {
		t.Errorf("records after the sweep: %+v, %v", recs, err)
	}
}

func TestDigestACL(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	b := newBackend(t, "", WithNamespace(runNamespace+"-acl"), WithDigestAuth("oncecron", "s3cret"))
	key := locking.Key{Scope: testScope(t), Name: "k"}
	g, err := b.Claim(ctx, key, locking.NewOwner(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*zk.Conn{rawConn(t), rawConn(t, "mallory", "guess")} {
		if data, _, err := c.Get(b.lockPath(key)); err != nil || string(data) != g.Owner {
			t.Errorf("world read of the lock node: %q, %v", data, err)
		}
		if err := c.Delete(b.lockPath(key), -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("delete by another identity: %v, want zk.ErrNoAuth", err)
		}
		if err := c.Delete(b.ownPath(key, g.Owner), -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("delete of the own node by another identity: %v, want zk.ErrNoAuth", err)
		}
		if _, err := c.Set(b.fencePath(key.Scope), []byte("x"), -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("write by another identity: %v, want zk.ErrNoAuth", err)
		}
		if _, err := c.Create(b.lockDir(key.Scope)+"/intruder", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("create by another identity: %v, want zk.ErrNoAuth", err)
		}
	}
	if err := b.Complete(ctx, g, locking.Record{Key: key}, time.Hour); err != nil {
		t.Errorf("complete by the owner: %v", err)
	}
	// A second replica with the same credentials can sweep and claim.
	b2 := newBackend(t, "", WithNamespace(runNamespace+"-acl"), WithDigestAuth("oncecron", "s3cret"))
	if _, err := b2.Claim(ctx, key, locking.NewOwner(), time.Second); !errors.Is(err, locking.ErrDone) {
		t.Errorf("claim of a completed key by a second replica: %v, want ErrDone", err)
	}
}

func TestNegotiatedSessionTimeout(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	b := newBackend(t, "", WithSessionTimeout(200*time.Millisecond))
	got := b.SessionTimeout()
	if got < time.Second {
		t.Fatalf("SessionTimeout() = %v; the test server's minimum is 1s", got)
	}
	key := locking.Key{Scope: testScope(t), Name: "k"}
	if _, err := b.Claim(ctx, key, locking.NewOwner(), got+time.Millisecond); !errors.Is(err, locking.ErrInvalid) {
		t.Errorf("claim with a ttl above the session timeout: %v, want ErrInvalid", err)
	}
	g, err := b.Claim(ctx, key, locking.NewOwner(), got)
	if err != nil {
		t.Fatal(err)
	}
	if g.TTL != got {
		t.Errorf("grant TTL %v, want %v", g.TTL, got)
	}
}

func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	b, err := New(ctx, []string{closedAddr(t)})
	if err == nil {
		b.Close()
		t.Fatal("New of an unreachable server succeeded")
	}
	if !errors.Is(err, locking.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("New: %v, want ErrUnavailable and context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("New took %v with a 1s deadline", d)
	}
}

func TestBadOptions(t *testing.T) {
	ctx := testCtx(t, 10*time.Second)
	for name, opts := range map[string][]Option{
		"namespace":       {WithNamespace("a/b")},
		"session timeout": {WithSessionTimeout(time.Millisecond)},
		"digest user":     {WithDigestAuth("a:b", "c")},
		"max records":     {WithMaxRecords(-1)},
		"nil logger":      {WithLogger(nil)},
	} {
		if _, err := New(ctx, []string{"127.0.0.1:1"}, opts...); !errors.Is(err, locking.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := New(ctx, nil); !errors.Is(err, locking.ErrInvalid) {
		t.Errorf("no servers: %v, want ErrInvalid", err)
	}
}

func TestClosed(t *testing.T) {
	ctx := testCtx(t, 10*time.Second)
	b := newBackend(t, "")
	key := locking.Key{Scope: testScope(t), Name: "k"}
	g, err := b.Claim(ctx, key, locking.NewOwner(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	other := newBackend(t, "")
	_ = b.Close()
	select {
	case <-g.Lost:
	default:
		t.Error("Lost not closed by Close")
	}
	if _, err := b.Claim(ctx, key, locking.NewOwner(), time.Second); !errors.Is(err, locking.ErrClosed) {
		t.Errorf("claim after Close: %v, want ErrClosed", err)
	}
	// Closing the session freed the key at once.
	if _, err := other.Claim(ctx, key, locking.NewOwner(), time.Second); err != nil {
		t.Errorf("claim of a key of a closed backend: %v", err)
	}
}

// TestCloseWhenServerSilent: Close returns soon even when the server never
// answers the session's close (the client would otherwise wait for its
// connection to time out, or forever if pings still get through).
func TestCloseWhenServerSilent(t *testing.T) {
	p := newProxy(t, testenv.ZKAddr(t))
	b := newBackend(t, p.Addr(), WithSessionTimeout(20*time.Second))
	p.Cut()
	defer p.Heal()
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > closeGrace+2*time.Second {
		t.Errorf("Close took %v, want about %v (the grace before it closes the connection)", d, closeGrace)
	}
}
