//go:build unix

package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oncecron/oncecron/jobs"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

var testRun = jobs.Run{
	Job:       "backup",
	Scheduled: time.Date(2026, 11, 25, 2, 30, 0, 0, time.UTC),
	Token:     17,
	Attempt:   2,
	Replica:   "replica-a",
}

// lines returns the messages logged for one stream.
func lines(logs *observer.ObservedLogs, stream string) []string {
	var out []string
	for _, e := range logs.FilterField(zap.String("stream", stream)).All() {
		out = append(out, e.Message)
	}
	return out
}

func TestCommandEnv(t *testing.T) {
	t.Setenv("ONCECRON_TEST_INHERITED", "inherited")
	nyc := time.FixedZone("EST", -5*3600)
	tests := []struct {
		name      string
		scheduled time.Time
		wantFire  string
	}{
		{"whole second", time.Date(2026, 11, 25, 2, 30, 0, 0, time.UTC), "2026-11-25T02:30:00Z"},
		{"other zone", time.Date(2026, 11, 24, 21, 30, 0, 0, nyc), "2026-11-25T02:30:00Z"},
		{"sub-second", time.Date(2026, 11, 25, 2, 30, 0, 250e6, time.UTC), "2026-11-25T02:30:00.25Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLogger(t)
			run := testRun
			run.Scheduled = tt.scheduled
			c := jobs.Command{
				Argv: []string{"sh", "-c", `echo "$ONCECRON_JOB|$ONCECRON_FIRE_TIME|$ONCECRON_TOKEN|$ONCECRON_REPLICA|$ONCECRON_ATTEMPT|$FOO|$ONCECRON_TEST_INHERITED"`},
				Env:  map[string]string{"FOO": "bar", "ONCECRON_TOKEN": "999", "ONCECRON_TEST_INHERITED": "overridden"},
			}
			if err := c.Run(context.Background(), run.WithLogger(log)); err != nil {
				t.Fatal(err)
			}
			want := "backup|" + tt.wantFire + "|17|replica-a|2|bar|overridden"
			if got := lines(logs, "stdout"); len(got) != 1 || got[0] != want {
				t.Fatalf("stdout = %q, want %q", got, want)
			}
		})
	}
	if got := jobs.FireTime(time.Date(2026, 3, 8, 7, 0, 0, 1, time.UTC)); got != "2026-03-08T07:00:00.000000001Z" {
		t.Errorf("FireTime = %s", got)
	}
}

func TestCommandInheritsEnv(t *testing.T) {
	t.Setenv("ONCECRON_TEST_INHERITED", "yes")
	log, logs := newLogger(t)
	c := jobs.Command{Argv: []string{"sh", "-c", `echo "$ONCECRON_TEST_INHERITED"`}}
	if err := c.Run(context.Background(), testRun.WithLogger(log)); err != nil {
		t.Fatal(err)
	}
	if got := lines(logs, "stdout"); len(got) != 1 || got[0] != "yes" {
		t.Fatalf("stdout = %q", got)
	}
}

func TestCommandOutput(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		maxLine    int
		maxOutput  int64
		wantStdout []string
		wantStderr []string
		wantCut    int  // lines logged with truncated=true
		wantTrunc  bool // an "output truncated" line
	}{
		{name: "streams", script: `echo out1; echo err1 >&2; echo out2`,
			wantStdout: []string{"out1", "out2"}, wantStderr: []string{"err1"}},
		{name: "crlf and no final newline", script: `printf 'a\r\n\nb'`,
			wantStdout: []string{"a", "", "b"}},
		{name: "long line cut", script: `printf '%s\n' 0123456789abcdef short`, maxLine: 10,
			wantStdout: []string{"0123456789", "short"}, wantCut: 1},
		{name: "long line cut without newline", script: `printf '%s' 0123456789abcdef`, maxLine: 4,
			wantStdout: []string{"0123"}, wantCut: 1},
		{name: "very long line", script: `head -c 200000 /dev/zero | tr '\0' x; echo; echo after`, maxLine: 5,
			wantStdout: []string{"xxxxx", "after"}, wantCut: 1},
		{name: "output capped", script: `for i in 1 2 3 4 5 6; do echo 12345; done`, maxOutput: 12,
			wantStdout: []string{"12345", "12345"}, wantTrunc: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLogger(t)
			c := jobs.Command{Argv: []string{"sh", "-c", tt.script}, MaxLogLine: tt.maxLine, MaxOutput: tt.maxOutput}
			if err := c.Run(context.Background(), testRun.WithLogger(log)); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr []string
			for _, l := range lines(logs, "stdout") {
				if l != "output truncated" {
					stdout = append(stdout, l)
				}
			}
			for _, l := range lines(logs, "stderr") {
				if l != "output truncated" {
					stderr = append(stderr, l)
				}
			}
			if strings.Join(stdout, "\n") != strings.Join(tt.wantStdout, "\n") || len(stdout) != len(tt.wantStdout) {
				t.Errorf("stdout = %q, want %q", stdout, tt.wantStdout)
			}
			if strings.Join(stderr, "\n") != strings.Join(tt.wantStderr, "\n") || len(stderr) != len(tt.wantStderr) {
				t.Errorf("stderr = %q, want %q", stderr, tt.wantStderr)
			}
			if n := logs.FilterField(zap.Bool("truncated", true)).Len(); n != tt.wantCut {
				t.Errorf("%d cut lines, want %d", n, tt.wantCut)
			}
			trunc := logs.FilterMessage("output truncated").Len()
			if tt.wantTrunc && trunc != 1 || !tt.wantTrunc && trunc != 0 {
				t.Errorf("%d \"output truncated\" lines, want truncated=%v", trunc, tt.wantTrunc)
			}
			for _, e := range logs.All() {
				ctx := e.ContextMap()
				if ctx["job"] != "backup" || ctx["token"] != uint64(17) {
					t.Errorf("entry %q lacks the run's fields: %v", e.Message, ctx)
				}
				wantLevel := zapcore.InfoLevel
				if ctx["stream"] == "stderr" || e.Message == "output truncated" {
					wantLevel = zapcore.WarnLevel
				}
				if e.Level != wantLevel {
					t.Errorf("entry %q at %v, want %v", e.Message, e.Level, wantLevel)
				}
			}
		})
	}
}

func TestCommandExit(t *testing.T) {
	tests := []struct {
		name       string
		argv       []string
		wantCode   int
		wantSignal string
		wantStderr func(string) bool
	}{
		{name: "status", argv: []string{"sh", "-c", "echo oops >&2; exit 3"}, wantCode: 3,
			wantStderr: func(s string) bool { return s == "oops\n" }},
		{name: "signal", argv: []string{"sh", "-c", "kill -KILL $$"}, wantCode: -1, wantSignal: "SIGKILL",
			wantStderr: func(s string) bool { return s == "" }},
		{name: "stderr tail", argv: []string{"sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line$i >&2; i=$((i+1)); done; exit 1"},
			wantCode: 1, wantStderr: func(s string) bool {
				return len(s) <= 1024 && len(s) > 900 && strings.HasSuffix(s, "line198\nline199\n")
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, _ := newLogger(t)
			err := jobs.Command{Argv: tt.argv}.Run(context.Background(), testRun.WithLogger(log))
			var ee *jobs.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("Run = %v, want *ExitError", err)
			}
			if ee.Code != tt.wantCode || ee.Signal != tt.wantSignal || !tt.wantStderr(ee.Stderr) {
				t.Fatalf("ExitError = %+v", ee)
			}
			if !strings.Contains(err.Error(), `jobs: command "sh": `) {
				t.Fatalf("error does not name the program: %v", err)
			}
		})
	}
}

func TestCommandStartErrors(t *testing.T) {
	tests := []struct {
		name    string
		cmd     jobs.Command
		wantIs  error
		wantMsg string
	}{
		{"missing path", jobs.Command{Argv: []string{"/no/such/oncecron-bin"}}, fs.ErrNotExist, "/no/such/oncecron-bin"},
		{"missing in PATH", jobs.Command{Argv: []string{"oncecron-no-such-binary"}}, exec.ErrNotFound, "oncecron-no-such-binary"},
		{"empty argv", jobs.Command{}, nil, "empty argv"},
		{"bad dir", jobs.Command{Argv: []string{"true"}, Dir: "/no/such/dir"}, fs.ErrNotExist, "/no/such/dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, _ := newLogger(t)
			err := tt.cmd.Run(context.Background(), testRun.WithLogger(log))
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
				t.Fatalf("Run = %v, want %q wrapping %v", err, tt.wantMsg, tt.wantIs)
			}
		})
	}
}

func TestCommandDir(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log, logs := newLogger(t)
	if err := (jobs.Command{Argv: []string{"pwd"}, Dir: dir}).Run(context.Background(), testRun.WithLogger(log)); err != nil {
		t.Fatal(err)
	}
	if got := lines(logs, "stdout"); len(got) != 1 || got[0] != dir {
		t.Fatalf("pwd = %q, want %q", got, dir)
	}
}

var errLeaseLost = errors.New("lease lost")

// startedCtx returns a context that is cancelled with cause once line has been
// logged on stdout (the program is running) and a function that waits for the
// watcher to end.
func startedCtx(t *testing.T, logs *observer.ObservedLogs, line string, cause error) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			for _, l := range lines(logs, "stdout") {
				if l == line {
					cancel(cause)
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel(errors.New("program never printed " + line))
	}()
	return ctx, func() { <-done; cancel(nil) }
}

func TestCommandCancel(t *testing.T) {
	tests := []struct {
		name       string
		cause      error
		wantSignal string
	}{
		{"lease lost", errLeaseLost, "SIGTERM"},
		{"shutdown", context.Canceled, "SIGTERM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLogger(t)
			ctx, wait := startedCtx(t, logs, "ready", tt.cause)
			defer wait()
			start := time.Now()
			err := jobs.Command{Argv: []string{"sh", "-c", "echo ready; exec sleep 30"}}.Run(ctx, testRun.WithLogger(log))
			if time.Since(start) > 10*time.Second {
				t.Fatalf("Run took %v", time.Since(start))
			}
			var ee *jobs.ExitError
			if !errors.Is(err, tt.cause) || !errors.As(err, &ee) || ee.Signal != tt.wantSignal {
				t.Fatalf("Run = %v, want it to wrap %v and a %s exit", err, tt.cause, tt.wantSignal)
			}
		})
	}
}

func TestCommandTimeout(t *testing.T) {
	log, _ := newLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := jobs.Command{Argv: []string{"sleep", "30"}}.Run(ctx, testRun.WithLogger(log))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want DeadlineExceeded", err)
	}
}

func TestCommandNotStarted(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errLeaseLost)
	err := jobs.Command{Argv: []string{"true"}}.Run(ctx, testRun)
	if !errors.Is(err, errLeaseLost) || !strings.Contains(err.Error(), "not started") {
		t.Fatalf("Run = %v", err)
	}
}

// TestCommandIgnoresTERM runs a program whose whole group ignores SIGTERM and
// has a background grandchild: both must be SIGKILLed after Grace, and
// nothing may be left running or unreaped.
func TestCommandIgnoresTERM(t *testing.T) {
	log, logs := newLogger(t)
	ctx, wait := startedCtx(t, logs, "ready", errLeaseLost)
	defer wait()
	const grace = 300 * time.Millisecond
	c := jobs.Command{
		Argv:  []string{"sh", "-c", `trap "" TERM; sleep 30 & echo "$!"; echo "$$"; echo ready; sleep 30`},
		Grace: grace,
	}
	start := time.Now()
	err := c.Run(ctx, testRun.WithLogger(log))
	elapsed := time.Since(start)
	var ee *jobs.ExitError
	if !errors.Is(err, errLeaseLost) || !errors.As(err, &ee) || ee.Signal != "SIGKILL" {
		t.Fatalf("Run = %v, want lease lost and SIGKILL", err)
	}
	if elapsed < grace || elapsed > grace+5*time.Second {
		t.Fatalf("Run took %v, want about %v after ready", elapsed, grace)
	}
	out := lines(logs, "stdout")
	if len(out) < 2 {
		t.Fatalf("stdout = %q", out)
	}
	assertGone(t, out[0], "grandchild")
	assertGone(t, out[1], "program")
}

// TestCommandKillsLeftovers checks that background children are killed when
// the program exits, and that Run does not wait for them.
func TestCommandKillsLeftovers(t *testing.T) {
	log, logs := newLogger(t)
	start := time.Now()
	err := jobs.Command{Argv: []string{"sh", "-c", `sleep 30 & echo "$!"`}}.Run(context.Background(), testRun.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Run took %v: it waited for the background child", d)
	}
	out := lines(logs, "stdout")
	if len(out) != 1 {
		t.Fatalf("stdout = %q", out)
	}
	assertGone(t, out[0], "background child")
}

// TestCommandEscapedOutput checks that Run returns after Grace when a process
// that left the group keeps the output pipe open.
func TestCommandEscapedOutput(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid")
	}
	log, logs := newLogger(t)
	const grace = 200 * time.Millisecond
	start := time.Now()
	err := jobs.Command{
		Argv:  []string{"sh", "-c", `setsid sh -c 'echo "$$"; exec sleep 30' & sleep 0.2`},
		Grace: grace,
	}.Run(context.Background(), testRun.WithLogger(log))
	elapsed := time.Since(start)
	out := lines(logs, "stdout")
	if len(out) == 1 {
		if pid, perr := strconv.Atoi(out[0]); perr == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL) // it escaped on purpose: clean up
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if elapsed > grace+5*time.Second {
		t.Fatalf("Run took %v", elapsed)
	}
	if logs.FilterMessage("output still open after the program exited; closing it").Len() != 1 {
		t.Fatalf("no warning about the open output; stdout = %q", out)
	}
}

// assertGone fails unless the process pid no longer runs: it does not exist,
// or it is a zombie that is not our child (its new parent reaps it).
func assertGone(t *testing.T, pidText, what string) {
	t.Helper()
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		t.Fatalf("%s pid %q: %v", what, pidText, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		state, ppid, ok := procState(pid)
		if !ok || (state == "Z" && ppid != os.Getpid()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %d still there: state %s, parent %d", what, pid, state, ppid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func procState(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if err := syscall.Kill(pid, 0); err == nil {
			return "?", 0, true // no /proc, but the process exists
		}
		return "", 0, false
	}
	// pid (comm) state ppid ...; comm may contain spaces.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return "", 0, false
	}
	ppid, _ = strconv.Atoi(fields[1])
	return fields[0], ppid, true
}
