// Package localserver holds what the test environment (internal/testenv) and
// the chaos suite (internal/chaos) share to run private Redis, etcd and
// ZooKeeper servers on loopback: ZooKeeper's configuration, and a probe that
// tells whether a server answers.
package localserver

import (
	"bytes"
	"io"
	"net"
	"time"
)

// ZooKeeperConfig is a standalone ZooKeeper's zoo.cfg, with fmt verbs for its
// data directory (%[1]s) and client port (%[2]d); keep it in line with
// oc_write_zk_conf in scripts/lib.sh. Sessions may be as short as 1s.
const ZooKeeperConfig = `tickTime=500
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

// Answers reports whether the server at addr answers req with a reply that
// contains want, within a second.
func Answers(addr, req, want string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return false
	}
	var got []byte
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if bytes.Contains(got, []byte(want)) {
			return true
		}
		if err != nil || len(got) > 1<<16 {
			return false
		}
	}
}
