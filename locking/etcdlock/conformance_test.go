package etcdlock_test

import (
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
	"github.com/oncecron/oncecron/locking/locktest"
)

// suiteTTL is the lease TTL of the conformance suite: etcd lease TTLs are whole
// seconds and at least 2s with default server settings.
const suiteTTL = 2 * time.Second

type proxyFault struct{ p *testenv.Proxy }

func (f proxyFault) Cut()  { f.p.Blackhole() }
func (f proxyFault) Heal() { f.p.Unblackhole() }

func harness(t *testing.T, addr func(t *testing.T) string) locktest.Harness {
	ns := newNamespace()
	return locktest.Harness{
		New: func(t *testing.T) locking.Backend {
			return newBackendAt(t, addr(t), ns)
		},
		NewFaulty: func(t *testing.T) (locking.Backend, locktest.Fault) {
			p := testenv.NewProxy(t, addr(t))
			return newBackendAt(t, p.Addr(), ns, etcdlock.WithRequestTimeout(time.Second)), proxyFault{p}
		},
		Unreachable: func(t *testing.T) (locking.Backend, error) {
			// A lazily connecting client of a closed port, so that the suite
			// exercises the operations (New itself fails: see TestNewUnreachable).
			cli, err := clientv3.New(clientv3.Config{
				Endpoints:   []string{fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))},
				DialTimeout: 500 * time.Millisecond,
			})
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { _ = cli.Close() })
			return etcdlock.NewFromClient(cli, etcdlock.WithNamespace(ns), etcdlock.WithRequestTimeout(time.Second))
		},
		TTL:        suiteTTL,
		Namespaced: true,
	}
}

func TestConformance(t *testing.T) {
	locktest.Run(t, harness(t, func(t *testing.T) string { return testenv.EtcdAddr(t) }))
}

func TestConformanceRestart(t *testing.T) {
	srv := testenv.StartEtcd(t)
	h := harness(t, func(*testing.T) string { return srv.Addr() })
	h.Restart = func(*testing.T) {
		srv.Stop()
		srv.Start()
	}
	locktest.RunRestart(t, h)
}
