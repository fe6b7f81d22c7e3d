package chaos

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oncecron/oncecron/internal/localserver"
)

// The environment variables naming the server programs, as scripts/test.sh
// and scripts/servers.sh export them (the same as internal/testenv's).
const (
	EnvRedisServer = "ONCECRON_TEST_REDIS_SERVER"
	EnvEtcdServer  = "ONCECRON_TEST_ETCD_SERVER"
	EnvZKClasspath = "ONCECRON_TEST_ZK_CLASSPATH"
	EnvJava        = "ONCECRON_TEST_JAVA"
)

// HowToStart says how to get the environment variables set.
const HowToStart = `run scripts/test.sh or scripts/chaos.sh, or eval "$(scripts/servers.sh start)" first`

// Programs names the server programs of the backends.
type Programs struct {
	RedisServer string // path of redis-server
	EtcdServer  string // path of the built tools/etcd-test-server
	ZKClasspath string // Java classpath of the ZooKeeper server
	Java        string // path of java
}

// ProgramsFromEnv reads the programs from the environment. It fails, naming
// every missing variable, when one that backend needs is not set.
func ProgramsFromEnv(backends ...string) (Programs, error) {
	p := Programs{
		RedisServer: os.Getenv(EnvRedisServer),
		EtcdServer:  os.Getenv(EnvEtcdServer),
		ZKClasspath: os.Getenv(EnvZKClasspath),
		Java:        os.Getenv(EnvJava),
	}
	var missing []string
	for _, b := range backends {
		switch b {
		case "redis":
			if p.RedisServer == "" {
				missing = append(missing, EnvRedisServer)
			}
		case "etcd":
			if p.EtcdServer == "" {
				missing = append(missing, EnvEtcdServer)
			}
		case "zookeeper":
			if p.ZKClasspath == "" {
				missing = append(missing, EnvZKClasspath)
			}
			if p.Java == "" {
				missing = append(missing, EnvJava)
			}
		default:
			return p, fmt.Errorf("chaos: unknown backend %q (want redis, etcd or zookeeper)", b)
		}
	}
	if len(missing) > 0 {
		return p, fmt.Errorf("chaos: %s not set; the chaos suite starts private servers with these programs: %s",
			strings.Join(missing, ", "), HowToStart)
	}
	return p, nil
}

// server is a private backend server process on a fixed port and data
// directory; stop and start restart it over the same data.
type server struct {
	kind  string
	dir   string
	addr  string
	argv  []string
	ready func() bool
	log   string

	mu  sync.Mutex
	cmd *exec.Cmd
	// done is closed when cmd has exited.
	done chan struct{}
}

// newServer prepares (but does not start) a server of kind in dir.
func newServer(kind, dir string, p Programs) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &server{kind: kind, dir: dir, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		log: filepath.Join(dir, "server.log")}
	switch kind {
	case "redis":
		s.argv = []string{p.RedisServer, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
			"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"}
		s.ready = func() bool { return localserver.Answers(s.addr, "PING\r\n", "+PONG") }
	case "etcd":
		peer, err := freePort()
		if err != nil {
			return nil, err
		}
		s.argv = []string{p.EtcdServer, "--name", "oncecron-chaos", "--data-dir", filepath.Join(dir, "data"),
			"--client-addr", s.addr, "--peer-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(peer))}
		// The etcd test server prints "ready" when it serves; a fresh
		// connection answering is close enough on a restart.
		s.ready = func() bool { return etcdReady(s.addr) }
	case "zookeeper":
		data := filepath.Join(dir, "data")
		if err := os.MkdirAll(data, 0o755); err != nil {
			return nil, err
		}
		cfg := filepath.Join(dir, "zoo.cfg")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, localserver.ZooKeeperConfig, data, port), 0o644); err != nil {
			return nil, err
		}
		s.argv = []string{p.Java, "-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
			"-Djava.net.preferIPv4Stack=true", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
			"-Dorg.slf4j.simpleLogger.showDateTime=true", "-Dzookeeper.admin.enableServer=false",
			"-Dzookeeper.4lw.commands.whitelist=*", "-cp", p.ZKClasspath,
			"org.apache.zookeeper.server.ZooKeeperServerMain", cfg}
		s.ready = func() bool { return localserver.Answers(s.addr, "srvr", "Mode: standalone") }
	default:
		return nil, fmt.Errorf("chaos: unknown backend %q", kind)
	}
	return s, nil
}

// etcdReady reports whether etcd answers its /health endpoint on the client port.
func etcdReady(addr string) bool {
	return localserver.Answers(addr, "GET /health HTTP/1.0\r\nHost: "+addr+"\r\n\r\n", `"health":"true"`)
}

// start starts the server and waits (up to 60s) until it answers.
func (s *server) start() error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return fmt.Errorf("chaos: %s already running", s.kind)
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	fmt.Fprintf(logf, "==== chaos %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(s.argv, " "))
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.mu.Unlock()
		return fmt.Errorf("chaos: starting %s: %w", s.kind, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for !s.ready() {
		select {
		case <-done:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("chaos: %s exited while starting; see %s", s.kind, s.log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.stop(syscall.SIGKILL)
			return fmt.Errorf("chaos: %s not ready after 60s; see %s", s.kind, s.log)
		}
	}
	return nil
}

// stop signals the server (SIGTERM or SIGKILL), SIGKILLs it after 15s, and
// waits until it has exited. It does nothing when it is not running.
func (s *server) stop(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-done:
		return nil
	case <-time.After(15 * time.Second):
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(15 * time.Second):
		return fmt.Errorf("chaos: %s (pid %d) did not exit after SIGKILL", s.kind, cmd.Process.Pid)
	}
}

var ports struct {
	sync.Mutex
	given map[int]bool
}

// freePort returns a free 127.0.0.1 port below the ephemeral range, not
// handed out before by this process.
func freePort() (int, error) {
	lo, hi := 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var first, last int
		if n, _ := fmt.Sscan(string(b), &first, &last); n == 2 && first-lo >= 1000 {
			hi = first
		}
	}
	ports.Lock()
	defer ports.Unlock()
	if ports.given == nil {
		ports.given = make(map[int]bool)
	}
	for i := range 2000 {
		p := lo + (int(time.Now().UnixNano())+i*7919)%(hi-lo)
		if ports.given[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		ports.given[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("chaos: found no free port")
}
