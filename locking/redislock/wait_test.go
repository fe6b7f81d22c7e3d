package redislock_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/redislock"
)

// The tests of Wait: a replica that lost a tick's race waits with
// Locker.TakeOver, as the scheduler does, on a backend of its own.

// waitLocker returns a Locker on b and closes b when the test ends (a backend
// that waited keeps a subscription until it is closed).
func waitLocker(t *testing.T, b locking.Backend) *locking.Locker {
	t.Helper()
	t.Cleanup(func() { _ = b.Close() })
	// The poll interval of `scheduler run` with a 3 s TTL: Wait must not need it.
	l, err := locking.New(b, locking.WithLogger(zaptest.NewLogger(t)), locking.WithPollInterval(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// requests counts the requests a client sends, as roundTrips does, but not
// those that set a new connection up (HELLO, CLIENT SETINFO): the pool dials
// when it needs to, which is not the cost of a wait.
type requests struct{ n atomic.Int64 }

func setup(cmd redis.Cmder) bool { return cmd.Name() == "hello" || cmd.Name() == "client" }

func (h *requests) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *requests) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !setup(cmd) {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *requests) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !slices.ContainsFunc(cmds, setup) {
			h.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// counted dials a backend whose requests are counted (the subscription's own
// connection is not: it sends nothing while it waits).
func counted(t *testing.T, addr, ns string) (*redislock.Backend, *requests) {
	t.Helper()
	b := dial(t, addr, ns)
	h := &requests{}
	b.Client().AddHook(h)
	return b, h
}

type takeOver struct {
	lease *locking.Lease
	err   error
	at    time.Time
}

// lose claims key on l, which must find it held, and then waits in the
// background with TakeOver, whose outcome comes on the returned channel.
func lose(t *testing.T, ctx context.Context, l *locking.Locker, key locking.Key, ttl time.Duration) <-chan takeOver {
	t.Helper()
	if _, err := l.Claim(ctx, key, ttl); !errors.Is(err, locking.ErrHeld) {
		t.Fatalf("the loser's claim: got %v, want ErrHeld", err)
	}
	out := make(chan takeOver, 1)
	go func() {
		lease, err := l.TakeOver(ctx, key, ttl)
		out <- takeOver{lease, err, time.Now()}
	}()
	return out
}

func within(t *testing.T, c <-chan takeOver, d time.Duration) takeOver {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(d):
		t.Fatalf("TakeOver did not return within %v", d)
		return takeOver{}
	}
}

// warmUp makes l's backend subscribe: its first wait finds no subscription
// confirmed yet and claims once more when it is.
func warmUp(t *testing.T, ctx context.Context, winner, loser *locking.Locker) {
	t.Helper()
	key := locking.Key{Scope: "warm-up", Name: locking.NewOwner()}
	w, err := winner.Claim(ctx, key, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := lose(t, ctx, loser, key, 10*time.Second)
	time.Sleep(100 * time.Millisecond)
	_ = w.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Minute)
	if r := within(t, c, 5*time.Second); !errors.Is(r.err, locking.ErrDone) {
		t.Fatalf("warm-up: %v, want ErrDone", r.err)
	}
}

// TestWaitDoneCostsOneRequest: a loser whose winner completes the tick costs one
// request, its lost claim, and learns that the tick is done as soon as it is.
// One claim goes alone, one in a batch, as the scheduler sends its first claims.
func TestWaitDoneCostsOneRequest(t *testing.T) {
	ctx := context.Background()
	addr, ns := testenv.RedisAddr(t), namespace()
	winner := waitLocker(t, dial(t, addr, ns))
	lb, reqs := counted(t, addr, ns)
	loser := waitLocker(t, lb)
	warmUp(t, ctx, winner, loser)
	const ttl = 10 * time.Second
	for _, batch := range []bool{false, true} {
		key := locking.Key{Scope: "job", Name: locking.NewOwner()}
		w, err := winner.Claim(ctx, key, ttl)
		if err != nil {
			t.Fatal(err)
		}
		reqs.n.Store(0)
		var c <-chan takeOver
		if batch {
			res := lb.ClaimBatch(ctx, []locking.ClaimRequest{{Key: key, Owner: locking.NewOwner(), TTL: ttl}})
			if !errors.Is(res[0].Err, locking.ErrHeld) {
				t.Fatalf("batch claim: %v, want ErrHeld", res[0].Err)
			}
			out := make(chan takeOver, 1)
			go func() {
				lease, err := loser.TakeOver(ctx, key, ttl)
				out <- takeOver{lease, err, time.Now()}
			}()
			c = out
		} else {
			c = lose(t, ctx, loser, key, ttl)
		}
		time.Sleep(300 * time.Millisecond) // the winner's run
		completed := time.Now()
		if err := w.Complete(ctx, locking.Record{Outcome: locking.OutcomeSucceeded}, time.Minute); err != nil {
			t.Fatal(err)
		}
		r := within(t, c, 5*time.Second)
		if !errors.Is(r.err, locking.ErrDone) {
			t.Fatalf("batch %v: TakeOver of a completed tick: %v, want ErrDone", batch, r.err)
		}
		if d := r.at.Sub(completed); d > time.Second {
			t.Errorf("batch %v: the loser learned of the completion after %v", batch, d)
		}
		if n := reqs.n.Load(); n != 1 {
			t.Errorf("batch %v: the loser sent %d requests, want 1 (its lost claim)", batch, n)
		}
	}
}

// TestWaitKilledRunner: a runner cut off from Redis (as a kill -9 leaves it)
// renews no more and sends no notification; the loser takes over when its
// lease expires, within TTL + a small margin of the cut, and never before the
// runner's own lease ended.
func TestWaitKilledRunner(t *testing.T) {
	ctx := context.Background()
	addr, ns := testenv.RedisAddr(t), namespace()
	p := testenv.NewProxy(t, addr)
	runner := waitLocker(t, dial(t, p.Addr(), ns))
	lb, reqs := counted(t, addr, ns)
	loser := waitLocker(t, lb)
	warmUp(t, ctx, runner, loser)
	const ttl = 2 * time.Second
	key := locking.Key{Scope: "job", Name: locking.NewOwner()}
	lease, err := runner.Claim(ctx, key, ttl)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(context.Background()) //nolint:errcheck // it is lost
	reqs.n.Store(0)
	c := lose(t, ctx, loser, key, ttl)
	time.Sleep(ttl) // a few renewals go through
	killed := time.Now()
	p.Blackhole()
	defer p.Unblackhole()
	r := within(t, c, 2*ttl)
	if r.err != nil {
		t.Fatalf("takeover: %v", r.err)
	}
	defer r.lease.Release(context.Background()) //nolint:errcheck // cleanup
	took := r.at.Sub(killed)
	t.Logf("taken over %v after the cut, with %d requests", took, reqs.n.Load())
	if took > ttl+300*time.Millisecond {
		t.Errorf("taken over %v after the cut, want at most TTL (%v) + 300ms", took, ttl)
	}
	select {
	case <-lease.Done():
	default:
		t.Error("taken over while the runner's lease was still valid")
	}
	if r.lease.Token() <= lease.Token() {
		t.Errorf("takeover token %d, want > %d", r.lease.Token(), lease.Token())
	}
	// The loser claims about once per TTL while the runner renews, and once
	// more at the expiry: far fewer than a poll every second would.
	if n := reqs.n.Load(); n > 5 {
		t.Errorf("the loser sent %d requests in about 2 TTLs", n)
	}
}

// TestWaitReleased: a tick released by its runner (a replica shutting down)
// is taken over at once, not after its lease would have expired.
func TestWaitReleased(t *testing.T) {
	ctx := context.Background()
	addr, ns := testenv.RedisAddr(t), namespace()
	runner := waitLocker(t, dial(t, addr, ns))
	lb, reqs := counted(t, addr, ns)
	loser := waitLocker(t, lb)
	warmUp(t, ctx, runner, loser)
	const ttl = 10 * time.Second
	key := locking.Key{Scope: "job", Name: locking.NewOwner()}
	lease, err := runner.Claim(ctx, key, ttl)
	if err != nil {
		t.Fatal(err)
	}
	reqs.n.Store(0)
	c := lose(t, ctx, loser, key, ttl)
	time.Sleep(200 * time.Millisecond)
	released := time.Now()
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	r := within(t, c, ttl)
	if r.err != nil {
		t.Fatalf("takeover: %v", r.err)
	}
	defer r.lease.Release(context.Background()) //nolint:errcheck // cleanup
	if d := r.at.Sub(released); d > time.Second {
		t.Errorf("taken over %v after the release, want promptly", d)
	}
	if n := reqs.n.Load(); n != 2 {
		t.Errorf("the loser sent %d requests, want 2 (the lost claim and the takeover)", n)
	}
}

// TestWaitSubscriptionDropped: the waiters' subscription is killed, and the
// tick released while it is down; the release's message is lost, yet the
// loser takes over promptly once go-redis has subscribed again. Its own server,
// since CLIENT KILL TYPE pubsub kills every subscriber.
func TestWaitSubscriptionDropped(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	ns := namespace()
	runner := waitLocker(t, dial(t, srv.Addr(), ns))
	loser := waitLocker(t, dial(t, srv.Addr(), ns))
	warmUp(t, ctx, runner, loser)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	const ttl = 10 * time.Second
	for _, how := range []string{"killed, then released", "killed and released at once"} {
		key := locking.Key{Scope: "job", Name: locking.NewOwner()}
		lease, err := runner.Claim(ctx, key, ttl)
		if err != nil {
			t.Fatal(err)
		}
		c := lose(t, ctx, loser, key, ttl)
		time.Sleep(100 * time.Millisecond)
		released := time.Now()
		if how == "killed, then released" {
			if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
				t.Fatal(err)
			}
			if err := lease.Release(ctx); err != nil {
				t.Fatal(err)
			}
		} else {
			// One transaction: the release's message is certainly lost.
			lk := ns + ":{" + key.Scope + "}:l:" + key.Name
			_, err := admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.ClientKillByFilter(ctx, "TYPE", "pubsub")
				p.Del(ctx, lk)
				p.Publish(ctx, ns+":ended", "r"+lk)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		r := within(t, c, ttl)
		if r.err != nil {
			t.Fatalf("%s: takeover: %v", how, r.err)
		}
		t.Logf("%s: taken over %v after the release", how, r.at.Sub(released))
		if d := r.at.Sub(released); d > 2*time.Second {
			t.Errorf("%s: taken over %v after the release, want promptly (the TTL is %v)", how, d, ttl)
		}
		_ = lease.Release(ctx) // stops its watchdog (the key is no longer its own)
		_ = r.lease.Release(ctx)
	}
}

// TestWaitClose: Close wakes the waiters with ErrClosed.
func TestWaitClose(t *testing.T) {
	ctx := context.Background()
	addr, ns := testenv.RedisAddr(t), namespace()
	runner := waitLocker(t, dial(t, addr, ns))
	lb := dial(t, addr, ns)
	loser := waitLocker(t, lb)
	key := locking.Key{Scope: "job", Name: locking.NewOwner()}
	lease, err := runner.Claim(ctx, key, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(ctx) //nolint:errcheck // cleanup
	c := lose(t, ctx, loser, key, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	_ = lb.Close()
	if r := within(t, c, 3*time.Second); !errors.Is(r.err, locking.ErrClosed) {
		t.Errorf("TakeOver on a closed backend: %v, want ErrClosed", r.err)
	}
	if err := lb.Wait(ctx, key); !errors.Is(err, locking.ErrClosed) {
		t.Errorf("Wait after Close: %v, want ErrClosed", err)
	}
}

// TestWaitSubscriptionRefused: a Redis user without the permission of the
// completions' channel still takes a key over (when the holder's lease runs
// out), and the backend says once, as a warning, what is missing.
func TestWaitSubscriptionRefused(t *testing.T) {
	ctx := context.Background()
	addr, ns := testenv.RedisAddr(t), namespace()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	user, pass := "u-"+ns, locking.NewOwner()
	// Keys and commands of the namespace, no channel.
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">"+pass, "~"+ns+":*", "resetchannels", "+@all").Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	defer admin.Do(ctx, "ACL", "DELUSER", user) //nolint:errcheck // cleanup
	core, logs := observer.New(zap.WarnLevel)
	lb, err := redislock.Dial(redislock.Config{Addrs: []string{addr}, Username: user, Password: pass, DialTimeout: time.Second,
		Options: redislock.Options{Namespace: ns, Logger: zap.New(core)}})
	if err != nil {
		t.Fatal(err)
	}
	runner := dial(t, addr, ns)
	defer runner.Close()
	loser := waitLocker(t, lb)
	const ttl = 2 * time.Second
	key := locking.Key{Scope: "job", Name: locking.NewOwner()}
	// A runner that dies at once: a claim without a watchdog.
	if _, err := runner.Claim(ctx, key, locking.NewOwner(), ttl); err != nil {
		t.Fatal(err)
	}
	c := lose(t, ctx, loser, key, ttl)
	r := within(t, c, 3*ttl)
	if r.err != nil {
		t.Fatalf("takeover without the channel: %v", r.err)
	}
	_ = r.lease.Release(ctx)
	warned := logs.FilterMessageSnippet("cannot subscribe to the channel of completions").All()
	if len(warned) != 1 || !strings.Contains(warned[0].Message, "&"+ns+":ended") {
		t.Errorf("warnings %+v, want one that names the ACL the user lacks", logs.All())
	}
}
