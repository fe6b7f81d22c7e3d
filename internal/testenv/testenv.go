// Package testenv gives oncecron's tests the real Redis, etcd and ZooKeeper
// servers they run against.
//
// scripts/test.sh (or, in a developer's shell,
// eval "$(scripts/servers.sh start)") starts one shared server of each kind
// and exports their addresses; RedisAddr, EtcdAddr and ZKAddr read them and
// fail the test when they are missing: these tests never skip.
//
// A test that restarts, pauses or kills a server starts a private one with
// StartRedis, StartEtcd or StartZooKeeper, which runs the programs named by
// the same scripts. A Proxy between a client and a server injects network
// faults.
//
// For the security tests, NewCerts makes a throwaway certificate authority
// with server and client certificates; StartRedis (RedisOptions.TLS) and
// StartEtcdWith (EtcdOptions.TLS) serve TLS with them, optionally requiring
// client certificates, and EnableEtcdAuth turns on etcd's authentication.
package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
)

// The environment variables that scripts/test.sh and scripts/servers.sh set.
const (
	EnvRedis = "ONCECRON_TEST_REDIS" // host:port of the shared Redis
	EnvEtcd  = "ONCECRON_TEST_ETCD"  // host:port of the shared etcd
	EnvZK    = "ONCECRON_TEST_ZK"    // host:port of the shared ZooKeeper

	EnvRedisServer = "ONCECRON_TEST_REDIS_SERVER" // path of redis-server
	EnvEtcdServer  = "ONCECRON_TEST_ETCD_SERVER"  // path of the built tools/etcd-test-server
	EnvZKClasspath = "ONCECRON_TEST_ZK_CLASSPATH" // Java classpath of the ZooKeeper server
	EnvJava        = "ONCECRON_TEST_JAVA"         // path of java
)

const howToStart = `run the tests with scripts/test.sh, or start the servers with eval "$(scripts/servers.sh start)" and run go test again`

func lookup(name string) (string, error) {
	if v := os.Getenv(name); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("testenv: %s is not set; these tests need real servers: %s", name, howToStart)
}

func mustEnv(t testing.TB, name string) string {
	t.Helper()
	v, err := lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// RedisAddr returns the host:port of the shared Redis server.
func RedisAddr(t testing.TB) string {
	t.Helper()
	return mustEnv(t, EnvRedis)
}

// EtcdAddr returns the host:port of the shared etcd server.
func EtcdAddr(t testing.TB) string {
	t.Helper()
	return mustEnv(t, EnvEtcd)
}

// ZKAddr returns the host:port of the shared ZooKeeper server.
func ZKAddr(t testing.TB) string {
	t.Helper()
	return mustEnv(t, EnvZK)
}

var ports struct {
	sync.Mutex
	given map[int]bool
}

// FreePort returns a port on 127.0.0.1 that nothing listens on and that
// this process has not handed out before. It is picked below the kernel's
// ephemeral range, so that client connections do not take it while a
// server restarts on it.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

func freePort() (int, error) {
	lo, hi := 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var first, last int
		if n, _ := fmt.Sscan(string(b), &first, &last); n == 2 {
			hi = first
		}
	}
	ports.Lock()
	defer ports.Unlock()
	if ports.given == nil {
		ports.given = make(map[int]bool)
	}
	try := func(p int) bool {
		if ports.given[p] {
			return false
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
		ports.given[p] = true
		return true
	}
	if hi-lo >= 1000 {
		for range 1000 {
			if p := lo + rand.IntN(hi-lo); try(p) {
				return p, nil
			}
		}
	}
	for range 100 { // an unusual port range: let the kernel choose
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if try(p) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("found no free port on 127.0.0.1")
}
