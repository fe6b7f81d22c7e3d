package main_test

// End-to-end tests: they build the real scheduler binary and run it as a user
// would, against the shared test servers (scripts/servers.sh).

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oncecron/oncecron/internal/testenv"
)

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// binary builds ./cmd/scheduler once per test process and returns its path.
// GOFLAGS passes through from the environment.
func binary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "oncecron-e2e-")
		if build.err != nil {
			return
		}
		goCmd, err := exec.LookPath("go")
		if err != nil {
			if root := os.Getenv("GOROOT"); root != "" {
				goCmd, err = filepath.Join(root, "bin", "go"), nil
			}
		}
		if err != nil {
			build.err = fmt.Errorf("no go command: %w", err)
			return
		}
		build.bin = filepath.Join(build.dir, "scheduler")
		cmd := exec.Command(goCmd, "build", "-o", build.bin, ".")
		cmd.Env = append(os.Environ(), "GOFLAGS="+os.Getenv("GOFLAGS"))
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// repoRoot is the module root: the tests run in cmd/scheduler.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod in %s: %v", root, err)
	}
	return root
}

// proc is a scheduler process the test started.
type proc struct {
	t              *testing.T
	name           string
	cmd            *exec.Cmd
	stdout, stderr string // file names
	done           chan struct{}
	waitErr        error
}

// start runs the binary with args in dir, its output going to files in
// outDir. t.Cleanup kills it (by its PID) if it is still running.
func start(t *testing.T, name, dir, outDir string, args ...string) *proc {
	t.Helper()
	p := &proc{
		t: t, name: name, done: make(chan struct{}),
		stdout: filepath.Join(outDir, name+".stdout"), stderr: filepath.Join(outDir, name+".stderr"),
	}
	out, err := os.Create(p.stdout)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	errf, err := os.Create(p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	p.cmd = exec.Command(binary(t), args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = out, errf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			t.Logf("%s: still running at the end of the test: killing pid %d", name, p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(time.Minute):
				t.Errorf("%s: pid %d did not die of SIGKILL", name, p.cmd.Process.Pid)
			}
		}
		if t.Failed() {
			p.dump()
		}
	})
	return p
}

func (p *proc) dump() {
	for _, f := range []string{p.stdout, p.stderr} {
		b, _ := os.ReadFile(f)
		const max = 16 << 10
		if len(b) > max {
			b = append([]byte("…"), b[len(b)-max:]...)
		}
		p.t.Logf("%s (%s):\n%s", filepath.Base(f), p.name, b)
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Errorf("%s: %v: %v", p.name, sig, err)
	}
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit and returns its exit code (-1
// for a death by signal); it fails the test if it is still running.
func (p *proc) wait(d time.Duration) (code int, ok bool) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Errorf("%s: still running %v after it was told to stop", p.name, d)
		return 0, false
	}
	return p.cmd.ProcessState.ExitCode(), true
}

// logs returns what the process wrote so far to stdout and stderr.
func (p *proc) logs() string {
	a, _ := os.ReadFile(p.stdout)
	b, _ := os.ReadFile(p.stderr)
	return string(a) + string(b)
}

// waitFor polls until cond holds or the deadline passes (then it fails the
// test with what).
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("gave up after %v waiting for %s", d, what)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// yamlString quotes s for YAML (a JSON string is a YAML double-quoted scalar).
func yamlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func randomName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// writeConfig writes a table and returns its path.
func writeConfig(t *testing.T, dir, content string) string {
	t.Helper()
	path := filepath.Join(dir, "jobs.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// execution is one line written by a job: one run of one tick.
type execution struct {
	job     string
	fire    time.Time
	fireRaw string
	token   uint64
	replica string
	attempt int
	file    string
}

func TestThreeReplicas(t *testing.T) {
	backends := []struct {
		name    string
		section func(t *testing.T) string
	}{
		{"redis", func(t *testing.T) string {
			return "  type: redis\n  redis:\n    addr: " + yamlString(testenv.RedisAddr(t)) + "\n"
		}},
		{"etcd", func(t *testing.T) string {
			return "  type: etcd\n  etcd:\n    endpoints: [" + yamlString(testenv.EtcdAddr(t)) + "]\n"
		}},
		{"zookeeper", func(t *testing.T) string {
			return "  type: zookeeper\n  zookeeper:\n    servers: [" + yamlString(testenv.ZKAddr(t)) + "]\n    session_timeout: 6s\n"
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			threeReplicas(t, b.section(t))
		})
	}
}

func threeReplicas(t *testing.T, backend string) {
	dir := t.TempDir()
	jobNames := []string{"alpha", "beta", "gamma"}
	// One output file per replica, so that no two processes append to one file.
	script := `echo "$ONCECRON_JOB $ONCECRON_FIRE_TIME $ONCECRON_TOKEN $ONCECRON_REPLICA $ONCECRON_ATTEMPT" >> "out-$ONCECRON_REPLICA.txt"`
	var jobsYAML strings.Builder
	for _, j := range jobNames {
		// overlap: allow, so that a tick that starts late on a busy machine
		// does not make the next one be skipped (overlap: skip, the default).
		fmt.Fprintf(&jobsYAML, "  - name: %s\n    schedule: \"@every 1s\"\n    overlap: allow\n    dir: %s\n    command: [\"/bin/sh\", \"-c\", %s]\n",
			j, yamlString(dir), yamlString(script))
	}
	path := writeConfig(t, dir, "backend:\n"+backend+`lock:
  ttl: 3s
  namespace: e2e-`+randomName(t)+`
shutdown_timeout: 20s
jobs:
`+jobsYAML.String())

	replicas := []string{"r1", "r2", "r3"}
	var procs []*proc
	for _, r := range replicas {
		procs = append(procs, start(t, r, dir, dir, "run", "--config", path, "--replica", r, "--log-format", "json"))
	}
	for _, p := range procs {
		if !waitFor(t, 60*time.Second, p.name+" to start", func() bool {
			return p.exited() || strings.Contains(p.logs(), `"scheduler started"`)
		}) {
			t.FailNow()
		}
		if p.exited() {
			t.Fatalf("%s exited (code %d) before it started scheduling", p.name, p.cmd.ProcessState.ExitCode())
		}
	}
	begin := time.Now()
	time.Sleep(8 * time.Second)
	end := time.Now()
	for _, p := range procs {
		p.signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		if code, ok := p.wait(40 * time.Second); ok && code != 0 {
			t.Errorf("%s: exit code %d after SIGTERM, want 0", p.name, code)
		}
	}

	var runs []execution
	for _, r := range replicas {
		file := filepath.Join(dir, "out-"+r+".txt")
		f, err := os.Open(file)
		if errors.Is(err, os.ErrNotExist) {
			t.Logf("replica %s ran no tick", r)
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			e, err := parseExecution(sc.Text())
			if err != nil {
				t.Errorf("%s: %v", file, err)
				continue
			}
			e.file = r
			runs = append(runs, e)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if len(runs) == 0 {
		t.Fatal("no job ran")
	}
	perReplica := map[string]int{}
	seen := map[string]execution{}
	byJob := map[string][]execution{}
	for _, e := range runs {
		perReplica[e.replica]++
		if e.replica != e.file {
			t.Errorf("line of %s in out-%s.txt: ONCECRON_REPLICA is %q", e.job, e.file, e.replica)
		}
		if !slices.Contains(replicas, e.replica) {
			t.Errorf("ONCECRON_REPLICA %q is not one of %v", e.replica, replicas)
		}
		if !slices.Contains(jobNames, e.job) {
			t.Errorf("ONCECRON_JOB %q is not one of %v", e.job, jobNames)
		}
		k := e.job + " " + e.fireRaw
		if prev, dup := seen[k]; dup {
			t.Errorf("tick %s ran twice: on %s (token %d, attempt %d) and on %s (token %d, attempt %d)",
				k, prev.replica, prev.token, prev.attempt, e.replica, e.token, e.attempt)
			continue
		}
		seen[k] = e
		byJob[e.job] = append(byJob[e.job], e)
	}
	t.Logf("%d runs; per replica: %v", len(runs), perReplica)
	for _, j := range jobNames {
		es := byJob[j]
		slices.SortFunc(es, func(a, b execution) int { return a.fire.Compare(b.fire) })
		for i := 1; i < len(es); i++ {
			if es[i].token <= es[i-1].token {
				t.Errorf("job %s: tick %s has token %d, not above the %d of the earlier tick %s",
					j, es[i].fireRaw, es[i].token, es[i-1].token, es[i-1].fireRaw)
			}
		}
		// Every tick well inside the run window ran.
		for at := begin.Add(2 * time.Second).Truncate(time.Second).Add(time.Second); !at.After(end.Add(-2 * time.Second)); at = at.Add(time.Second) {
			if _, ok := seen[j+" "+at.UTC().Format(time.RFC3339)]; !ok {
				t.Errorf("job %s: tick %s did not run (run window %s to %s); the replicas logged of it:\n%s", j, at.UTC().Format(time.RFC3339),
					begin.UTC().Format(time.RFC3339Nano), end.UTC().Format(time.RFC3339Nano), tickLogs(procs, j, at))
			}
		}
	}
}

// tickLogs returns the log lines of procs about job's tick at.
func tickLogs(procs []*proc, job string, at time.Time) string {
	var b strings.Builder
	tick := at.UTC().Format(time.RFC3339)
	for _, p := range procs {
		for _, l := range strings.Split(p.logs(), "\n") {
			if strings.Contains(l, `"job":"`+job+`"`) && strings.Contains(l, tick[:len(tick)-1]) {
				fmt.Fprintf(&b, "%s: %s\n", p.name, l)
			}
		}
	}
	return b.String()
}

// parseExecution parses "job fire_time token replica attempt".
func parseExecution(line string) (execution, error) {
	f := strings.Fields(line)
	if len(f) != 5 {
		return execution{}, fmt.Errorf("line %q: want 5 fields", line)
	}
	e := execution{job: f[0], fireRaw: f[1], replica: f[3]}
	var err error
	if e.fire, err = time.Parse(time.RFC3339, f[1]); err != nil {
		return e, fmt.Errorf("line %q: ONCECRON_FIRE_TIME: %v", line, err)
	}
	if e.fire.Location() != time.UTC || !strings.HasSuffix(f[1], "Z") || e.fire.Format(time.RFC3339) != f[1] || e.fire.Nanosecond() != 0 {
		return e, fmt.Errorf("line %q: ONCECRON_FIRE_TIME %q is not a whole second in RFC 3339 UTC", line, f[1])
	}
	if e.token, err = strconv.ParseUint(f[2], 10, 64); err != nil || e.token == 0 {
		return e, fmt.Errorf("line %q: ONCECRON_TOKEN %q is not a positive integer", line, f[2])
	}
	if e.attempt, err = strconv.Atoi(f[4]); err != nil || e.attempt < 1 {
		return e, fmt.Errorf("line %q: ONCECRON_ATTEMPT %q is not a positive integer", line, f[4])
	}
	return e, nil
}

// jobPID reads the PID a job wrote to file, 0 if none yet.
func jobPID(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	s := strings.TrimSpace(string(b))
	if !strings.HasSuffix(string(b), "\n") {
		return 0 // not completely written yet
	}
	pid, _ := strconv.Atoi(s)
	return pid
}

// killJob kills, at the end of the test, the job process whose PID a job of
// the test's scheduler wrote to file.
func killJob(t *testing.T, file string) {
	t.Cleanup(func() {
		if pid := jobPID(file); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	// The job records its PID, then becomes a sleep, then records that it ended.
	path := writeConfig(t, dir, `backend:
  type: memory
lock:
  ttl: 3s
shutdown_timeout: 30s
jobs:
  - name: nap
    schedule: "@every 5s"
    dir: `+yamlString(dir)+`
    command: ["/bin/sh", "-c", "echo $$$$ > started.txt; sleep 2; echo ok > ended.txt"]
`)
	started, ended := filepath.Join(dir, "started.txt"), filepath.Join(dir, "ended.txt")
	killJob(t, started)
	p := start(t, "r1", dir, dir, "run", "--config", path, "--replica", "r1")
	if !waitFor(t, 30*time.Second, "the job to start", func() bool { return p.exited() || jobPID(started) > 0 }) || p.exited() {
		t.Fatal("the job did not start")
	}
	p.signal(syscall.SIGTERM)
	code, ok := p.wait(40 * time.Second)
	if !ok {
		return
	}
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if _, err := os.Stat(ended); err != nil {
		t.Errorf("the replica exited without waiting for its running job: %v", err)
	}
	logs := p.logs()
	for _, s := range []string{`"shutting down; waiting for running jobs"`, `"job succeeded"`, `"scheduler stopped"`} {
		if !strings.Contains(logs, s) {
			t.Errorf("the logs lack %s", s)
		}
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	dir := t.TempDir()
	// A job far longer than the test waits, with a longer shutdown_timeout:
	// only the second signal can end the replica in time.
	path := writeConfig(t, dir, `backend:
  type: memory
shutdown_timeout: 10m
jobs:
  - name: long
    schedule: "@every 5s"
    dir: `+yamlString(dir)+`
    command: ["/bin/sh", "-c", "echo $$$$ > started.txt; exec sleep 600"]
`)
	started := filepath.Join(dir, "started.txt")
	killJob(t, started)
	p := start(t, "r1", dir, dir, "run", "--config", path, "--replica", "r1")
	if !waitFor(t, 30*time.Second, "the job to start", func() bool { return p.exited() || jobPID(started) > 0 }) || p.exited() {
		t.Fatal("the job did not start")
	}
	p.signal(syscall.SIGTERM)
	if !waitFor(t, 30*time.Second, "the replica to begin its shutdown", func() bool {
		return p.exited() || strings.Contains(p.logs(), `"shutting down; waiting for running jobs"`)
	}) {
		return
	}
	if p.exited() {
		t.Fatalf("the replica exited (code %d) on the first SIGTERM with its job running", p.cmd.ProcessState.ExitCode())
	}
	// The first signal's handler may not yet have been reset: signal until the
	// process ends, within a bound far below the job's 600s.
	deadline := time.Now().Add(60 * time.Second)
	for !p.exited() && time.Now().Before(deadline) {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(2 * time.Second):
		}
	}
	code, ok := p.wait(time.Second)
	if !ok {
		return
	}
	if code == 0 {
		t.Errorf("exit code 0 after a second SIGTERM, want non-zero or death by signal")
	}
	if ws, isWS := p.cmd.ProcessState.Sys().(syscall.WaitStatus); isWS && ws.Signaled() {
		t.Logf("the replica died of %v", ws.Signal())
	} else {
		t.Logf("the replica exited with code %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "ended.txt")); err == nil {
		t.Error("the job ended before the replica")
	}
}

func TestValidateBrokenFile(t *testing.T) {
	broken := filepath.Join("testdata", "broken.yaml")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary(t), "validate", "--config", broken)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("validate of a broken file: %v, want exit status 2", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", stdout.String())
	}
	// Every mistake, in file order, each on a line of its own, then a summary.
	want := []string{
		broken + ":6: lock.nmespace: unknown field",
		broken + ":10: jobs[0].schedule: expected 5 or 6 fields, got 4",
		broken + ":12: jobs[1].name: duplicate job name \"report\"",
		broken + ":14: jobs[1].func: ",
		broken + ":17: jobs[2].timezone: unknown time zone \"Atlantis/Capital\"",
		"scheduler validate: " + broken + " is invalid",
	}
	got := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Errorf("stderr has %d lines, want %d:\n%s", len(got), len(want), stderr.String())
	}
	for i := range min(len(got), len(want)) {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("stderr line %d = %q, want it to start with %q", i+1, got[i], want[i])
		}
	}
	if !strings.Contains(stderr.String(), `"no.such.plugin"`) {
		t.Errorf("stderr does not name the unknown func:\n%s", stderr.String())
	}

	// The same table, fixed, validates.
	cmd = exec.Command(binary(t), "validate", "--config", filepath.Join("testdata", "fixed.yaml"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK: 3 jobs, backend memory") {
		t.Errorf("validate of testdata/fixed.yaml: %v\n%s", err, out)
	}
}

func TestDefaultTable(t *testing.T) {
	root := repoRoot(t)
	p := start(t, "default", root, t.TempDir(), "run", "--config", "config/jobs.yaml")
	for _, s := range []string{"tick demo at ", "hello from "} {
		waitFor(t, 20*time.Second, fmt.Sprintf("%q in the output", s), func() bool {
			return p.exited() || strings.Contains(p.logs(), s)
		})
	}
	if p.exited() {
		t.Fatalf("the replica exited (code %d) on its own", p.cmd.ProcessState.ExitCode())
	}
	p.signal(syscall.SIGTERM)
	if code, ok := p.wait(40 * time.Second); ok && code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}
