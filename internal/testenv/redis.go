package testenv

import (
	"fmt"
	"testing"
)

// RedisOptions configures a private Redis server.
type RedisOptions struct {
	// Args are extra redis-server arguments, such as
	// []string{"--maxmemory", "10mb"}. They come last, so they win over
	// the defaults.
	Args []string
}

// StartRedis starts a private Redis server, from $ONCECRON_TEST_REDIS_SERVER,
// that persists every write to its append-only file before answering
// (appendfsync always): it keeps its data across Stop, Kill and Start.
func StartRedis(t testing.TB, opts RedisOptions) *Server {
	t.Helper()
	bin := mustEnv(t, EnvRedisServer)
	argv := func(dir string, ports []int) []string {
		return append([]string{bin,
			"--bind", "127.0.0.1", "--port", fmt.Sprint(ports[0]), "--dir", dir,
			"--appendonly", "yes", "--appendfsync", "always", "--save", "",
			"--daemonize", "no",
		}, opts.Args...)
	}
	return newServer(t, "redis", 1, argv, func(s *Server, _ *run) bool {
		return ask(s.addr, "PING\r\n", "+PONG")
	})
}
