package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/oncecron/oncecron/internal/localserver"
)

// StartZooKeeper starts a private standalone ZooKeeper with
// $ONCECRON_TEST_JAVA and $ONCECRON_TEST_ZK_CLASSPATH. It keeps its data
// across Stop, Kill and Start.
func StartZooKeeper(t testing.TB) *Server {
	t.Helper()
	java := mustEnv(t, EnvJava)
	classpath := mustEnv(t, EnvZKClasspath)
	argv := func(dir string, ports []int) []string {
		cfg := filepath.Join(dir, "zoo.cfg")
		data := filepath.Join(dir, "data")
		if err := os.MkdirAll(data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, fmt.Appendf(nil, localserver.ZooKeeperConfig, data, ports[0]), 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{java,
			"-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
			"-Djava.net.preferIPv4Stack=true",
			"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
			"-Dorg.slf4j.simpleLogger.showDateTime=true",
			"-Dzookeeper.admin.enableServer=false",
			"-Dzookeeper.4lw.commands.whitelist=*",
			"-cp", classpath,
			"org.apache.zookeeper.server.ZooKeeperServerMain", cfg,
		}
	}
	return newServer(t, "zookeeper", 1, argv, func(s *Server, _ *run) bool {
		return localserver.Answers(s.addr, "srvr", "Mode: standalone")
	})
}
