package testenv

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/oncecron/oncecron/internal/localserver"
)

// RedisOptions configures a private Redis server.
type RedisOptions struct {
	// Args are extra redis-server arguments, such as
	// []string{"--maxmemory", "10mb"}. They come last, so they win over
	// the defaults.
	Args []string
	// TLS, if set, makes the server accept clients over TLS only (its
	// plain port is off), with Certs' server certificate.
	TLS *Certs
	// ClientCertAuth, with TLS, refuses clients without a certificate
	// signed by TLS's authority (redis-server's tls-auth-clients).
	ClientCertAuth bool
}

// StartRedis starts a private Redis server, from $ONCECRON_TEST_REDIS_SERVER,
// that persists every write to its append-only file before answering
// (appendfsync always): it keeps its data across Stop, Kill and Start.
func StartRedis(t testing.TB, opts RedisOptions) *Server {
	t.Helper()
	bin := mustEnv(t, EnvRedisServer)
	argv := func(dir string, ports []int) []string {
		port := []string{"--port", fmt.Sprint(ports[0])}
		if c := opts.TLS; c != nil {
			auth := "no"
			if opts.ClientCertAuth {
				auth = "yes"
			}
			port = []string{"--port", "0", "--tls-port", fmt.Sprint(ports[0]),
				"--tls-cert-file", c.ServerCertFile, "--tls-key-file", c.ServerKeyFile,
				"--tls-ca-cert-file", c.CAFile, "--tls-auth-clients", auth}
		}
		a := append([]string{bin, "--bind", "127.0.0.1"}, port...)
		a = append(a, "--dir", dir,
			"--appendonly", "yes", "--appendfsync", "always", "--save", "",
			"--daemonize", "no")
		return append(a, opts.Args...)
	}
	return newServer(t, "redis", 1, argv, func(s *Server, _ *run) bool {
		if opts.TLS != nil {
			return askTLS(s.addr, opts.TLS, "PING\r\n", "+PONG")
		}
		return localserver.Answers(s.addr, "PING\r\n", "+PONG")
	})
}

// askTLS is ask over TLS, presenting the client certificate of c.
func askTLS(addr string, c *Certs, req, want string) bool {
	cert, err := tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile)
	if err != nil {
		return false
	}
	d := &net.Dialer{Timeout: time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // a readiness probe of our own server
		Certificates:       []tls.Certificate{cert},
	})
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		return false
	}
	buf := make([]byte, 512)
	n, _ := io.ReadAtLeast(conn, buf, len(want))
	return strings.Contains(string(buf[:n]), want)
}
