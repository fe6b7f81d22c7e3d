package memlock_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/locktest"
	"github.com/oncecron/oncecron/locking/memlock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	shared := memlock.New() // every "replica" of the in-memory backend shares one process
	locktest.Run(t, locktest.Harness{
		New: func(t *testing.T) locking.Backend { return nopClose{shared} },
		NewFaulty: func(t *testing.T) (locking.Backend, locktest.Fault) {
			f := locktest.NewFaultyBackend(shared)
			return f, f
		},
		Unreachable: func(t *testing.T) (locking.Backend, error) {
			f := locktest.NewFaultyBackend(memlock.New())
			f.Cut()
			return f, nil
		},
	})
}

// nopClose keeps one client's Close from closing the backend the others share.
type nopClose struct{ locking.Backend }

func (nopClose) Close() error { return nil }
