package testenv

import (
	"testing"

	"github.com/oncecron/oncecron/internal/faultnet"
)

// A Proxy forwards TCP connections from its own 127.0.0.1 port to a target and
// injects network faults between them (see package faultnet): give clients
// Addr() instead of the server's address.
type Proxy = faultnet.Proxy

// NewProxy starts a proxy to target (host:port), closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := faultnet.Listen(target)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}
