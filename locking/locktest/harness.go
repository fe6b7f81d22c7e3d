// Package locktest is the conformance suite every lock backend runs against a real
// server, in the spirit of testing/fstest.TestFS: a backend's test file wires a
// Harness and calls Run. The suite checks mutual exclusion, fencing, expiry and
// takeover, the watchdog, completion, history, bad input and linearizability of the
// recorded histories (with porcupine).
package locktest

import (
	"testing"
	"time"

	"github.com/oncecron/oncecron/locking"
)

// Harness tells the suite how to reach a backend.
type Harness struct {
	// New returns a new client of the backend: one simulated replica. The suite
	// calls it several times per test and closes what it gets.
	New func(t *testing.T) locking.Backend

	// NewFaulty returns a client whose connection to the server the test can cut
	// and heal (a black-holing TCP proxy on loopback; for the in-memory backend, a
	// wrapper whose calls fail while cut). A cut client's session or lease must
	// expire on the server as a crashed replica's would.
	NewFaulty func(t *testing.T) (locking.Backend, Fault)

	// Unreachable returns a client configured for an address where no server
	// answers (a closed port or a black-holed proxy). A constructor that already
	// fails may return the error instead; it must wrap locking.ErrUnavailable.
	Unreachable func(t *testing.T) (locking.Backend, error)

	// Restart restarts the server, keeping its data. Only RunRestart needs it.
	Restart func(t *testing.T)

	// TTL is the lease TTL the suite uses (default 1s). Backends whose leases have
	// a coarser granularity (etcd's are whole seconds) set a larger one.
	TTL time.Duration

	// Namespaced reports that every client returned by New shares a namespace
	// unique to this run, so keys do not collide with earlier runs. When false the
	// suite adds a random suffix to every scope it uses.
	Namespaced bool
}

func (h Harness) ttl() time.Duration {
	if h.TTL > 0 {
		return h.TTL
	}
	return time.Second
}

// Fault controls a client's connection to its server.
type Fault interface {
	// Cut makes every exchange between the client and the server hang, as a
	// network partition does (not a reset).
	Cut()
	// Heal restores the connection.
	Heal()
}
