package redislock_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/locktest"
	"github.com/oncecron/oncecron/locking/redislock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// namespace returns a namespace unique to this run, so keys left by earlier runs
// on the shared server never collide.
func namespace() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:])
}

func dial(t *testing.T, addr, ns string) *redislock.Backend {
	t.Helper()
	b, err := redislock.Dial(redislock.Config{Addrs: []string{addr}, DialTimeout: time.Second, Options: redislock.Options{Namespace: ns}})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return b
}

func harness(t *testing.T, addr string) locktest.Harness {
	ns := namespace()
	return locktest.Harness{
		New: func(t *testing.T) locking.Backend { return dial(t, addr, ns) },
		NewFaulty: func(t *testing.T) (locking.Backend, locktest.Fault) {
			p := testenv.NewProxy(t, addr)
			return dial(t, p.Addr(), ns), proxyFault{p}
		},
		Unreachable: func(t *testing.T) (locking.Backend, error) {
			return dial(t, "127.0.0.1:"+itoa(testenv.FreePort(t)), ns), nil
		},
		Namespaced: true,
	}
}

func TestConformance(t *testing.T) {
	locktest.Run(t, harness(t, testenv.RedisAddr(t)))
}

func TestConformanceRestart(t *testing.T) {
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	h := harness(t, srv.Addr())
	h.Restart = func(t *testing.T) { srv.Kill(); srv.Start() } // kill -9: AOF with appendfsync always keeps every token
	locktest.RunRestart(t, h)
}

type proxyFault struct{ p *testenv.Proxy }

func (f proxyFault) Cut()  { f.p.Blackhole() }
func (f proxyFault) Heal() { f.p.Unblackhole() }

func itoa(n int) string {
	const digits = "0123456789"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{digits[n%10]}, b...)
	}
	return string(b)
}

func TestCheckFencing(t *testing.T) {
	ctx := context.Background()
	safe := testenv.StartRedis(t, testenv.RedisOptions{})
	if err := dial(t, safe.Addr(), namespace()).CheckFencing(ctx); err != nil {
		t.Errorf("AOF always, no replicas: %v, want nil", err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no AOF", []string{"--appendonly", "no"}, "appendonly is off"},
		{"everysec", []string{"--appendfsync", "everysec"}, `appendfsync is "everysec"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.StartRedis(t, testenv.RedisOptions{Args: tc.args})
			err := dial(t, srv.Addr(), namespace()).CheckFencing(ctx)
			if !errors.Is(err, locking.ErrUnsafe) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrUnsafe saying %q", err, tc.want)
			}
		})
	}
	t.Run("replica attached", func(t *testing.T) {
		replica := testenv.StartRedis(t, testenv.RedisOptions{Args: []string{"--replicaof", "127.0.0.1", portOf(safe.Addr())}})
		primary := dial(t, safe.Addr(), namespace())
		deadline := time.Now().Add(20 * time.Second)
		var err error
		for time.Now().Before(deadline) {
			if err = primary.CheckFencing(ctx); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !errors.Is(err, locking.ErrUnsafe) || !strings.Contains(err.Error(), "replicas") {
			t.Errorf("primary with a replica: got %v, want ErrUnsafe naming the replicas", err)
		}
		if err := dial(t, replica.Addr(), namespace()).CheckFencing(ctx); !errors.Is(err, locking.ErrUnsafe) {
			t.Errorf("the replica itself: got %v, want ErrUnsafe", err)
		}
	})
	t.Run("sentinel client", func(t *testing.T) {
		b, err := redislock.Dial(redislock.Config{Addrs: []string{"127.0.0.1:1"}, MasterName: "m"})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if err := b.CheckFencing(ctx); !errors.Is(err, locking.ErrUnsafe) {
			t.Errorf("got %v, want ErrUnsafe", err)
		}
	})
}

func portOf(addr string) string {
	_, port, _ := strings.Cut(addr, ":")
	return port
}

// TestAuthentication: an ACL user works; a wrong password is a clear error
// naming the cause, not a hang or a silent failure.
func TestAuthentication(t *testing.T) {
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	if err := admin.Do(ctx, "ACL", "SETUSER", "oncecron", "on", ">right", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigSet(ctx, "requirepass", "default-secret").Err(); err != nil {
		t.Fatal(err)
	}
	_ = admin.Close()
	key := locking.Key{Scope: "auth", Name: "k"}
	for _, tc := range []struct {
		name, user, pass string
		wantErr          string
	}{
		{"acl user", "oncecron", "right", ""},
		{"requirepass", "", "default-secret", ""},
		{"wrong password", "oncecron", "wrong", "WRONGPASS"},
		{"no password", "", "", "NOAUTH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := redislock.Dial(redislock.Config{Addrs: []string{srv.Addr()}, Username: tc.user, Password: tc.pass,
				DialTimeout: time.Second, Options: redislock.Options{Namespace: namespace()}})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			g, err := b.Claim(cctx, key, locking.NewOwner(), time.Second)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("claim: %v", err)
				}
				_ = b.Release(cctx, g)
				return
			}
			if !errors.Is(err, locking.ErrUnavailable) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("claim: got %v, want ErrUnavailable saying %s", err, tc.wantErr)
			}
		})
	}
}

// TestTLS runs against a Redis that serves TLS only: a client that trusts its
// authority works, also with a client certificate where the server requires
// one, and a rediss:// address turns TLS on by itself; a client that trusts
// another authority, has no certificate where one is required, or speaks plain
// text fails within its dial timeout with ErrUnavailable and the cause.
func TestTLS(t *testing.T) {
	certs := testenv.NewCerts(t)
	other := testenv.NewCerts(t)
	open := testenv.StartRedis(t, testenv.RedisOptions{TLS: certs})
	mutual := testenv.StartRedis(t, testenv.RedisOptions{TLS: certs, ClientCertAuth: true})
	key := locking.Key{Scope: "tls", Name: "k"}
	for _, tc := range []struct {
		name    string
		addr    string
		tls     *tls.Config
		wantErr string // "" for success
	}{
		{"trusted server", open.Addr(), testenv.ClientTLS(t, certs.CAFile, nil), ""},
		{"client certificate", mutual.Addr(), testenv.ClientTLS(t, certs.CAFile, certs), ""},
		{"rediss:// with the system roots", "rediss://" + open.Addr(), nil, "certificate signed by unknown authority"},
		{"server of another authority", open.Addr(), testenv.ClientTLS(t, other.CAFile, nil), "certificate signed by unknown authority"},
		{"no client certificate", mutual.Addr(), testenv.ClientTLS(t, certs.CAFile, nil), "certificate required"},
		{"client certificate of another authority", mutual.Addr(), testenv.ClientTLS(t, certs.CAFile, other), "unknown certificate authority"},
		{"plain text", open.Addr(), nil, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := redislock.Dial(redislock.Config{Addrs: []string{tc.addr}, TLS: tc.tls, DialTimeout: time.Second,
				Options: redislock.Options{Namespace: namespace()}})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			g, err := b.Claim(ctx, key, locking.NewOwner(), time.Second)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("claim: %v", err)
				}
				_ = b.Release(ctx, g)
				return
			}
			t.Logf("claim: %v", err)
			if !errors.Is(err, locking.ErrUnavailable) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("claim: got %v, want ErrUnavailable saying %s", err, tc.wantErr)
			}
		})
	}
}

// TestBatchesAfterScriptFlush: batches of claims and of completions and
// releases still work when the server lost its scripts (a restart, SCRIPT
// FLUSH): the pipelined EVALSHAs answer NOSCRIPT, and the backend loads the
// scripts and sends them again. Its own server, since a flush hits every
// client.
func TestBatchesAfterScriptFlush(t *testing.T) {
	ctx := t.Context()
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	b := dial(t, srv.Addr(), namespace())
	defer b.Close()
	var reqs []locking.ClaimRequest
	for i := range 4 {
		reqs = append(reqs, locking.ClaimRequest{Key: locking.Key{Scope: "job", Name: fmt.Sprint(i)}, Owner: locking.NewOwner(), TTL: 10 * time.Second})
	}
	flush := func() {
		if err := b.Client().ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	flush()
	var fin []locking.FinishRequest
	for i, r := range b.ClaimBatch(ctx, reqs) {
		if r.Err != nil {
			t.Fatalf("claim %d after SCRIPT FLUSH: %v", i, r.Err)
		}
		f := locking.FinishRequest{Grant: r.Grant}
		if i%2 == 0 {
			f.Record, f.Retention = &locking.Record{Key: r.Grant.Key, Owner: r.Grant.Owner, Token: r.Grant.Token}, time.Hour
		}
		fin = append(fin, f)
	}
	flush()
	for i, err := range b.FinishBatch(ctx, fin) {
		if err != nil {
			t.Errorf("finish %d after SCRIPT FLUSH: %v", i, err)
		}
	}
	for i, r := range reqs {
		_, err := b.Claim(ctx, r.Key, locking.NewOwner(), time.Second)
		if done := errors.Is(err, locking.ErrDone); done != (i%2 == 0) || !done && err != nil {
			t.Errorf("claim of %s after its batch ended it: %v", r.Key, err)
		}
	}
}

// TestHistoryBound: a scope's history keeps its newest MaxRecords records,
// whether they come from Complete, FinishBatch or AddRecord.
func TestHistoryBound(t *testing.T) {
	ctx := t.Context()
	addr := testenv.RedisAddr(t)
	const maxRecords = 3
	ns := namespace()
	b, err := redislock.Dial(redislock.Config{Addrs: []string{addr}, DialTimeout: time.Second,
		Options: redislock.Options{Namespace: ns, MaxRecords: maxRecords}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	hist := ns + ":{job}:h"
	var want []uint64 // tokens, oldest first
	for i := range 10 {
		key := locking.Key{Scope: "job", Name: fmt.Sprint(i)}
		g, err := b.Claim(ctx, key, locking.NewOwner(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		rec := locking.Record{Key: key, Owner: g.Owner, Token: g.Token, Outcome: locking.OutcomeSucceeded}
		switch i % 3 {
		case 0:
			err = b.Complete(ctx, g, rec, time.Hour)
		case 1:
			err = b.FinishBatch(ctx, []locking.FinishRequest{{Grant: g, Record: &rec, Retention: time.Hour}})[0]
		case 2:
			if err = b.Release(ctx, g); err == nil {
				rec.Outcome = locking.OutcomeFailed
				err = b.AddRecord(ctx, rec)
			}
		}
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		want = append(want, g.Token)
		if n := b.Client().LLen(ctx, hist).Val(); n > maxRecords {
			t.Fatalf("after %d records the history holds %d, want at most %d", i+1, n, maxRecords)
		}
	}
	recs, err := b.Records(ctx, "job", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != maxRecords {
		t.Fatalf("Records: %d records, want %d", len(recs), maxRecords)
	}
	for i, r := range recs {
		if w := want[len(want)-1-i]; r.Token != w {
			t.Errorf("record %d: token %d, want %d (newest first)", i, r.Token, w)
		}
	}
}
