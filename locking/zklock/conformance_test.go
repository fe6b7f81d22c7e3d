package zklock

import (
	"context"
	"testing"
	"time"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/locktest"
)

func harness(addr func(t *testing.T) string) locktest.Harness {
	return locktest.Harness{
		New: func(t *testing.T) locking.Backend { return newBackend(t, addr(t)) },
		NewFaulty: func(t *testing.T) (locking.Backend, locktest.Fault) {
			p := newProxy(t, addr(t))
			return newBackend(t, p.Addr()), p
		},
		Unreachable: func(t *testing.T) (locking.Backend, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			b, err := New(ctx, []string{closedAddr(t)}, WithSessionTimeout(testSessionTimeout))
			if err != nil {
				return nil, err
			}
			return b, nil
		},
		TTL:        testTTL,
		Namespaced: true,
	}
}

func TestConformance(t *testing.T) {
	locktest.Run(t, harness(func(t *testing.T) string { return testenv.ZKAddr(t) }))
}

func TestConformanceRestart(t *testing.T) {
	srv := testenv.StartZooKeeper(t)
	h := harness(func(*testing.T) string { return srv.Addr() })
	h.Restart = func(t *testing.T) {
		srv.Stop()
		srv.Start()
	}
	locktest.RunRestart(t, h)
}
