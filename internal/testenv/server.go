package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	startTimeout = 60 * time.Second // until a server answers
	stopTimeout  = 15 * time.Second // from SIGTERM to SIGKILL, and after SIGKILL
	probeEvery   = 100 * time.Millisecond
)

// A Server is a server process private to one test, on its own 127.0.0.1
// port and data directory under t.TempDir(). Stop, Kill and Start restart
// it on the same port over the same data. It is stopped when the test ends,
// whether or not the test failed, and killed by the kernel if the test
// binary dies first.
//
// Its methods are meant to be called from the test's goroutine: on failure
// they call t.Fatal.
type Server struct {
	t       testing.TB
	name    string
	dir     string
	addr    string
	logPath string
	argv    []string
	// ready reports whether the run r answers.
	ready func(s *Server, r *run) bool

	mu  sync.Mutex
	cur *run
}

// run is one process of a Server.
type run struct {
	cmd   *exec.Cmd
	done  chan struct{} // closed when the process has exited and been reaped
	err   error         // of cmd.Wait, set before done is closed
	line  chan struct{} // closed when the process wrote the line "ready" (etcd)
	saw   sync.Once
	start time.Time
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Addr returns the server's host:port for clients.
func (s *Server) Addr() string { return s.addr }

// Dir returns the server's directory: its data and its log, server.log.
func (s *Server) Dir() string { return s.dir }

// PID returns the process ID of the running server, or 0.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || s.cur.exited() {
		return 0
	}
	return s.cur.cmd.Process.Pid
}

// Start starts the server again, on the same port and over the same data,
// and waits until it answers. The server must not be running.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// Stop stops the server with SIGTERM (SIGKILL if it has not exited after
// 15s) and waits until it has exited. It does nothing if it is not running.
func (s *Server) Stop() {
	s.t.Helper()
	if err := s.stop(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
}

// Kill kills the server with SIGKILL, as a crash would, and waits until it
// has exited. It does nothing if it is not running.
func (s *Server) Kill() {
	s.t.Helper()
	if err := s.stop(syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
}

// Pause freezes the server with SIGSTOP: its connections stay open but it
// answers nothing, as a server stuck in a long GC pause or swapped out.
func (s *Server) Pause() {
	s.t.Helper()
	s.signal(syscall.SIGSTOP)
}

// Resume lets a paused server go on with SIGCONT.
func (s *Server) Resume() {
	s.t.Helper()
	s.signal(syscall.SIGCONT)
}

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	r := s.cur
	s.mu.Unlock()
	if r == nil || r.exited() {
		s.t.Fatalf("testenv: %s is not running", s.name)
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("testenv: %s: %v", s.name, err)
	}
}

// newServer makes a Server and starts it. argv builds the command line
// from nports free ports, the first of which is the client port; when the
// first start fails because a port was taken meanwhile, it tries others.
func newServer(t testing.TB, name string, nports int, argv func(dir string, ports []int) []string, ready func(*Server, *run) bool) *Server {
	t.Helper()
	s := &Server{t: t, name: name, dir: t.TempDir(), ready: ready}
	s.logPath = filepath.Join(s.dir, "server.log")
	t.Cleanup(func() {
		if err := s.stop(syscall.SIGTERM); err != nil {
			t.Error(err)
		}
	})
	var err error
	for range 3 {
		ps := make([]int, nports)
		for i := range ps {
			ps[i] = FreePort(t)
		}
		s.addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(ps[0]))
		s.argv = argv(s.dir, ps)
		if err = s.start(); err == nil {
			t.Logf("testenv: %s on %s (pid %d), log %s", name, s.addr, s.PID(), s.logPath)
			return s
		}
		if !strings.Contains(strings.ToLower(err.Error()), "address already in use") {
			break
		}
	}
	t.Fatal(err)
	return nil
}

func (s *Server) start() error {
	s.mu.Lock()
	if s.cur != nil && !s.cur.exited() {
		s.mu.Unlock()
		return fmt.Errorf("testenv: Start: %s is already running", s.name)
	}
	s.mu.Unlock()

	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testenv: %v", err)
	}
	fmt.Fprintf(logf, "==== testenv %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(s.argv, " "))
	r := &run{done: make(chan struct{}), line: make(chan struct{}), start: time.Now()}
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Dir = s.dir
	cmd.Stdout = &lineWatcher{w: logf, r: r}
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	r.cmd = cmd
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("testenv: starting %s: %v", s.name, err)
	}
	go func() {
		r.err = cmd.Wait()
		logf.Close()
		close(r.done)
	}()
	s.mu.Lock()
	s.cur = r
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for !s.ready(s, r) {
		select {
		case <-r.done:
			return fmt.Errorf("testenv: %s exited while starting (%v); last lines of %s:\n%s",
				s.name, r.err, s.logPath, tail(s.logPath))
		case <-time.After(probeEvery):
		}
		if time.Now().After(deadline) {
			_ = s.stop(syscall.SIGKILL)
			return fmt.Errorf("testenv: %s not ready after %v; last lines of %s:\n%s",
				s.name, startTimeout, s.logPath, tail(s.logPath))
		}
	}
	return nil
}

func (s *Server) stop(sig syscall.Signal) error {
	s.mu.Lock()
	r := s.cur
	s.mu.Unlock()
	if r == nil || r.exited() {
		return nil
	}
	_ = r.cmd.Process.Signal(sig)
	_ = r.cmd.Process.Signal(syscall.SIGCONT) // a paused server must run to exit
	select {
	case <-r.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = r.cmd.Process.Kill()
	select {
	case <-r.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("testenv: %s (pid %d) did not exit after SIGKILL", s.name, r.cmd.Process.Pid)
	}
}

// lineWatcher passes a server's stdout to its log and notes the line "ready".
type lineWatcher struct {
	w       io.Writer
	r       *run
	partial []byte
}

func (l *lineWatcher) Write(p []byte) (int, error) {
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		if strings.TrimSpace(string(l.partial[:i])) == "ready" {
			l.r.saw.Do(func() { close(l.r.line) })
		}
		l.partial = l.partial[i+1:]
	}
	if len(l.partial) > 4096 {
		l.partial = l.partial[len(l.partial)-4096:]
	}
	return l.w.Write(p)
}

// tail returns the last lines of a log.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
