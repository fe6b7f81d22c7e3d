package redislock_test

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

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
