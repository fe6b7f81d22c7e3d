package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdOptions configures a private etcd server.
type EtcdOptions struct {
	// TLS, if set, makes the server accept clients over TLS only, with
	// Certs' server certificate.
	TLS *Certs
	// ClientCertAuth, with TLS, refuses clients without a certificate
	// signed by TLS's authority.
	ClientCertAuth bool
	// MaxTxnOps, if positive, sets the server's --max-txn-ops (default 128).
	MaxTxnOps int
}

// StartEtcd starts a private single-member etcd, the tools/etcd-test-server
// at $ONCECRON_TEST_ETCD_SERVER. It keeps its data across Stop, Kill and
// Start.
func StartEtcd(t testing.TB) *Server {
	t.Helper()
	return StartEtcdWith(t, EtcdOptions{})
}

// StartEtcdWith starts a private etcd as StartEtcd does, configured by opts.
func StartEtcdWith(t testing.TB, opts EtcdOptions) *Server {
	t.Helper()
	bin := mustEnv(t, EnvEtcdServer)
	argv := func(dir string, ports []int) []string {
		a := []string{bin,
			"--name", "oncecron-test",
			"--data-dir", filepath.Join(dir, "data"),
			"--client-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]),
			"--peer-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		}
		if opts.MaxTxnOps > 0 {
			a = append(a, "--max-txn-ops", fmt.Sprint(opts.MaxTxnOps))
		}
		if c := opts.TLS; c != nil {
			a = append(a, "--cert-file", c.ServerCertFile, "--key-file", c.ServerKeyFile)
			if opts.ClientCertAuth {
				// etcd asks for client certificates whenever it has a
				// trusted CA file, so pass it only here.
				a = append(a, "--trusted-ca-file", c.CAFile, "--client-cert-auth")
			}
		}
		return a
	}
	return newServer(t, "etcd", 2, argv, func(_ *Server, r *run) bool {
		select {
		case <-r.line:
			return true
		default:
			return false
		}
	})
}

// EtcdUser is a user that EnableEtcdAuth creates, with read and write
// permission on the keys under Prefix only (through a role of the same name).
type EtcdUser struct {
	Name, Password, Prefix string
}

// EnableEtcdAuth turns authentication on in the etcd at addr: it creates the
// user root (role root) with rootPassword and the given users, then enables
// auth. From then on every request needs a user's credentials (or, on a
// server with client certificate authentication, a certificate whose common
// name is a user). tc is the TLS configuration to reach the server, or nil.
func EnableEtcdAuth(t testing.TB, addr string, tc *tls.Config, rootPassword string, users ...EtcdUser) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second, TLS: tc})
	if err != nil {
		t.Fatalf("testenv: etcd client: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("testenv: etcd auth setup: %s: %v", what, err)
		}
	}
	_, err = cli.UserAdd(ctx, "root", rootPassword)
	step("add root", err)
	_, err = cli.RoleAdd(ctx, "root")
	step("add role root", err)
	_, err = cli.UserGrantRole(ctx, "root", "root")
	step("grant root", err)
	for _, u := range users {
		_, err = cli.UserAdd(ctx, u.Name, u.Password)
		step("add user "+u.Name, err)
		_, err = cli.RoleAdd(ctx, u.Name)
		step("add role "+u.Name, err)
		_, err = cli.RoleGrantPermission(ctx, u.Name, u.Prefix, clientv3.GetPrefixRangeEnd(u.Prefix), clientv3.PermissionType(clientv3.PermReadWrite))
		step("grant "+u.Prefix+" to "+u.Name, err)
		_, err = cli.UserGrantRole(ctx, u.Name, u.Name)
		step("grant role to "+u.Name, err)
	}
	_, err = cli.AuthEnable(ctx)
	step("auth enable", err)
}
