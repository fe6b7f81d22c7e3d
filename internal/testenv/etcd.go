package testenv

import (
	"fmt"
	"path/filepath"
	"testing"
)

// StartEtcd starts a private single-member etcd, the tools/etcd-test-server
// at $ONCECRON_TEST_ETCD_SERVER. It keeps its data across Stop, Kill and
// Start.
func StartEtcd(t testing.TB) *Server {
	t.Helper()
	bin := mustEnv(t, EnvEtcdServer)
	argv := func(dir string, ports []int) []string {
		return []string{bin,
			"--name", "oncecron-test",
			"--data-dir", filepath.Join(dir, "data"),
			"--client-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]),
			"--peer-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		}
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
