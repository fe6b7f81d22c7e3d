package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// zooCfg is a standalone ZooKeeper's configuration; keep it in line with
// oc_write_zk_conf in scripts/lib.sh. Sessions may be as short as 1s.
const zooCfg = `tickTime=500
initLimit=10
syncLimit=5
dataDir=%[1]s
clientPortAddress=127.0.0.1
clientPort=%[2]d
maxClientCnxns=0
minSessionTimeout=1000
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=*
`

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
		if err := os.WriteFile(cfg, fmt.Appendf(nil, zooCfg, data, ports[0]), 0o644); err != nil {
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
		return ask(s.addr, "srvr", "Mode: standalone")
	})
}
