package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oncecron/oncecron/cli"
	"github.com/oncecron/oncecron/jobs"
)

// unsetVar is an environment variable the broken tables reference; it must
// not be set in the test's environment.
const unsetVar = "ONCECRON_CLI_TEST_SURELY_UNSET"

type echoArgs struct {
	Msg string `yaml:"msg"`
}

// registry returns a registry holding one test plugin, "test.echo".
func registry(t *testing.T) *jobs.Registry {
	t.Helper()
	reg := jobs.NewRegistry()
	err := jobs.RegisterTo(reg, "test.echo", func(_ context.Context, run jobs.Run, a echoArgs) error {
		run.Log().Info("echo " + a.Msg)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// run calls cli.Main with buffers and the test registry.
func run(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Main(ctx, args, cli.Options{Stdout: &out, Stderr: &errb, Registry: registry(t)})
	t.Logf("scheduler %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const validTable = `backend:
  type: memory
lock:
  ttl: 3s
jobs:
  - name: jobA
    schedule: "@every 1s"
    command: ["/bin/true"]
  - name: jobB
    schedule: "0 0 * * *"
    func: test.echo
    args: {msg: hi}
`

// lines splits s into its non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func TestMainCommands(t *testing.T) {
	dir := t.TempDir()
	valid := writeFile(t, dir, "valid.yaml", validTable)

	nextRow := regexp.MustCompile(`^jobA\s+@every 1s\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	checkNext := func(t *testing.T, stdout, _ string) {
		ls := lines(stdout)
		if len(ls) != 3 {
			t.Fatalf("next printed %d lines, want a header and 2 rows of jobA:\n%s", len(ls), stdout)
		}
		if !strings.HasPrefix(ls[0], "JOB") {
			t.Errorf("header = %q, want it to start with JOB", ls[0])
		}
		for _, l := range ls[1:] {
			if !nextRow.MatchString(l) {
				t.Errorf("row %q does not match %v", l, nextRow)
			}
		}
	}
	oneLine := func(t *testing.T, _, stderr string) {
		if n := len(lines(stderr)); n != 1 {
			t.Errorf("stderr has %d lines, want a one-line reason:\n%s", n, stderr)
		}
	}

	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     []string // substrings of stdout
		stderr     []string // substrings of stderr
		noStdout   bool
		check      func(t *testing.T, stdout, stderr string)
		wantStderr bool // stderr may be non-empty
	}{
		{name: "version", args: []string{"version"}, code: cli.ExitOK, stdout: []string{"scheduler " + cli.Version + "\n"}},
		{name: "--version", args: []string{"--version"}, code: cli.ExitOK, stdout: []string{"scheduler " + cli.Version}},
		{name: "help", args: []string{"help"}, code: cli.ExitOK, stdout: []string{"Usage:", "scheduler run", "scheduler validate", "scheduler next", "scheduler version", "Exit codes"}},
		{name: "-h", args: []string{"-h"}, code: cli.ExitOK, stdout: []string{"Usage:"}},
		{name: "no command", args: nil, code: cli.ExitUsage, stderr: []string{"Usage:"}, noStdout: true, wantStderr: true},
		{
			name: "unknown command", args: []string{"bogus"}, code: cli.ExitUsage, noStdout: true, wantStderr: true,
			stderr: []string{`unknown command "bogus"`}, check: oneLine,
		},
		{
			name: "unknown flag", args: []string{"next", "--config", valid, "--bogus"}, code: cli.ExitUsage, noStdout: true, wantStderr: true,
			stderr: []string{"-bogus"},
		},
		{
			name: "unknown flag of validate", args: []string{"validate", "--nope", "--config", valid}, code: cli.ExitUsage, noStdout: true, wantStderr: true,
			stderr: []string{"-nope"},
		},
		{
			name: "subcommand help", args: []string{"next", "--help"}, code: cli.ExitOK, noStdout: true, wantStderr: true,
			stderr: []string{"scheduler next", "-count"},
		},
		{name: "next flags before job", args: []string{"next", "--config", valid, "--count", "2", "jobA"}, code: cli.ExitOK, check: checkNext},
		{name: "next flags after job", args: []string{"next", "jobA", "--count", "2", "--config", valid}, code: cli.ExitOK, check: checkNext},
		{name: "next flags around job", args: []string{"next", "--count=2", "jobA", "--config=" + valid}, code: cli.ExitOK, check: checkNext},
		{
			name: "next all jobs", args: []string{"next", "--config", valid, "--count", "3"}, code: cli.ExitOK,
			check: func(t *testing.T, stdout, _ string) {
				var a, b int
				for _, l := range lines(stdout)[1:] {
					switch {
					case strings.HasPrefix(l, "jobA "):
						a++
					case strings.HasPrefix(l, "jobB "):
						b++
					default:
						t.Errorf("unexpected row %q", l)
					}
				}
				if a != 3 || b != 3 {
					t.Errorf("got %d rows of jobA and %d of jobB, want 3 each", a, b)
				}
			},
		},
		{
			name: "next unknown job", args: []string{"next", "--config", valid, "nosuchjob"}, code: cli.ExitUsage, noStdout: true, wantStderr: true,
			stderr: []string{`no job named "nosuchjob"`}, check: oneLine,
		},
		{
			name: "next bad count", args: []string{"next", "--config", valid, "--count", "0"}, code: cli.ExitUsage, noStdout: true, wantStderr: true,
			stderr: []string{"--count 0"}, check: oneLine,
		},
		{
			name: "next missing file", args: []string{"next", "--config", filepath.Join(dir, "nope.yaml")}, code: cli.ExitUsage, noStdout: true, wantStderr: true,
			stderr: []string{"nope.yaml"},
		},
		{name: "validate valid", args: []string{"validate", "--config", valid}, code: cli.ExitOK, stdout: []string{valid + ": OK: 2 jobs, backend memory\n"}},
		{name: "validate config=", args: []string{"validate", "--config=" + valid}, code: cli.ExitOK, stdout: []string{"OK"}},
		{
			name: "validate extra argument", args: []string{"validate", "--config", valid, "extra"}, code: cli.ExitUsage, noStdout: true, wantStderr: true,
			stderr: []string{`unexpected argument "extra"`},
		},
		{
			name: "validate missing file", args: []string{"validate", "--config", filepath.Join(dir, "nope.yaml")}, code: cli.ExitUsage, noStdout: true, wantStderr: true,
			stderr: []string{"nope.yaml"},
		},
		{
			name: "run extra argument", args: []string{"run", "--config", valid, "extra"}, code: cli.ExitUsage, noStdout: true, wantStderr: true,
			stderr: []string{`unexpected argument "extra"`},
		},
		{
			name: "run bad log format", args: []string{"run", "--config", valid, "--log-format", "xml"}, code: cli.ExitUsage, noStdout: true, wantStderr: true,
			stderr: []string{"--log-format"},
		},
		{
			name: "run bad log level", args: []string{"run", "--config", valid, "--log-level", "loud"}, code: cli.ExitUsage, noStdout: true, wantStderr: true,
			stderr: []string{"--log-level"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			code, stdout, stderr := run(t, ctx, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout does not contain %q", s)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not contain %q", s)
				}
			}
			if tc.noStdout && stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if !tc.wantStderr && stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			if tc.check != nil {
				tc.check(t, stdout, stderr)
			}
		})
	}
}

// fieldErr is an expected "file:line: field: msg" line of validate.
type fieldErr struct {
	line  int
	field string
	msg   string // a substring of the message
}

func TestValidateBroken(t *testing.T) {
	if v, ok := os.LookupEnv(unsetVar); ok {
		t.Fatalf("%s is set (%q); the test needs it unset", unsetVar, v)
	}
	tests := []struct {
		name  string
		table string
		want  []fieldErr
		exact bool // want lists every error of the file
	}{
		{
			name: "unknown key",
			table: `backend:
  type: memory
lock:
  ttl: 3s
  nmespace: x
jobs:
  - name: a
    schedule: "@every 1s"
    command: ["/bin/true"]
`,
			want:  []fieldErr{{5, "lock.nmespace", "unknown field"}},
			exact: true,
		},
		{
			name: "bad schedule",
			table: `backend:
  type: memory
jobs:
  - name: a
    schedule: "* * * *"
    command: ["/bin/true"]
`,
			want:  []fieldErr{{5, "jobs[0].schedule", "expected 5 or 6 fields, got 4"}},
			exact: true,
		},
		{
			name: "unknown func",
			table: `backend:
  type: memory
jobs:
  - name: a
    schedule: "@every 1s"
    func: no.such
`,
			want:  []fieldErr{{6, "jobs[0].func", `"no.such"`}},
			exact: true,
		},
		{
			name: "bad func args",
			table: `backend:
  type: memory
jobs:
  - name: a
    schedule: "@every 1s"
    func: test.echo
    args:
      msg: hi
      volume: 11
`,
			want:  []fieldErr{{8, "jobs[0].args", "volume"}},
			exact: true,
		},
		{
			name: "bad timezone",
			table: `backend:
  type: memory
jobs:
  - name: a
    schedule: "@every 1s"
    timezone: Mars/Olympus_Mons
    command: ["/bin/true"]
`,
			want:  []fieldErr{{6, "jobs[0].timezone", "Mars/Olympus_Mons"}},
			exact: true,
		},
		{
			name: "duplicate names",
			table: `backend:
  type: memory
jobs:
  - name: a
    schedule: "@every 1s"
    command: ["/bin/true"]
  - name: a
    schedule: "@every 2s"
    command: ["/bin/true"]
`,
			want:  []fieldErr{{7, "jobs[1].name", `duplicate job name "a"`}},
			exact: true,
		},
		{
			name: "yaml syntax",
			table: `backend:
  type: memory
jobs:
  - name: [a
    schedule: "@every 1s"
`,
			want: []fieldErr{{0, "", "YAML"}},
		},
		{
			name: "missing env var",
			table: `backend:
  type: redis
  redis:
    addr: "127.0.0.1:6379"
    password: "${` + unsetVar + `}"
jobs:
  - name: a
    schedule: "@every 1s"
    command: ["/bin/true"]
`,
			want:  []fieldErr{{5, "backend.redis.password", unsetVar}},
			exact: true,
		},
		{
			name: "many errors",
			table: `backend:
  type: memory
lock:
  ttl: 3s
  nmespace: x
jobs:
  - name: a
    schedule: "* * * *"
    command: ["/bin/true"]
  - name: a
    schedule: "@every 1s"
    func: no.such
  - name: c
    schedule: "@every 1s"
    timezone: Mars/Olympus_Mons
    command: ["/bin/true"]
  - name: d
    schedule: "@every 1s"
    command: ["${` + unsetVar + `}"]
`,
			want: []fieldErr{
				{5, "lock.nmespace", "unknown field"},
				{8, "jobs[0].schedule", "expected 5 or 6 fields, got 4"},
				{10, "jobs[1].name", `duplicate job name "a"`},
				{12, "jobs[1].func", `"no.such"`},
				{15, "jobs[2].timezone", "Mars/Olympus_Mons"},
				{19, "jobs[3].command[0]", unsetVar},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "jobs.yaml", tc.table)
			for _, args := range [][]string{{"validate", "--config", path}, {"next", "--config", path}} {
				code, stdout, stderr := run(t, context.Background(), args...)
				if code != cli.ExitUsage {
					t.Errorf("%s: exit code %d, want %d", args[0], code, cli.ExitUsage)
				}
				if stdout != "" {
					t.Errorf("%s: stdout = %q, want nothing", args[0], stdout)
				}
				checkFieldErrors(t, path, stderr, tc.want, tc.exact)
			}
		})
	}
}

// checkFieldErrors checks that stderr holds one "path:line: field: msg" line
// per want, in order, and, with exact, no other one.
func checkFieldErrors(t *testing.T, path, stderr string, want []fieldErr, exact bool) {
	t.Helper()
	var got []string
	for _, l := range lines(stderr) {
		// run and next print the errors as their own error: the first line
		// follows "scheduler CMD: ".
		if rest, ok := strings.CutPrefix(l, "scheduler "); ok {
			if _, after, ok := strings.Cut(rest, ": "); ok {
				l = after
			}
		}
		if strings.HasPrefix(l, path+":") {
			got = append(got, l)
		}
	}
	i := 0
	for _, w := range want {
		prefix := path + ":"
		if w.line > 0 {
			prefix += fmt.Sprintf("%d: ", w.line)
		}
		if w.field != "" {
			prefix += w.field + ": "
		}
		found := false
		for ; i < len(got) && !found; i++ {
			rest, ok := strings.CutPrefix(got[i], prefix)
			found = ok && strings.Contains(rest, w.msg)
		}
		if !found {
			t.Errorf("stderr lacks (in order) a line %q…%q:\n%s", prefix, w.msg, stderr)
			return
		}
	}
	if exact && len(got) != len(want) {
		t.Errorf("stderr has %d error lines, want %d:\n%s", len(got), len(want), stderr)
	}
	for _, l := range got {
		if !regexp.MustCompile(`^` + regexp.QuoteMeta(path) + `:\d+: `).MatchString(l) {
			t.Errorf("error line %q has no line number", l)
		}
	}
}

// countingListener accepts connections on 127.0.0.1 and counts them.
func countingListener(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String(), accepted
}

func TestRunBadConfigContactsNoBackend(t *testing.T) {
	addr, accepted := countingListener(t)
	for _, backend := range []string{
		"type: redis\n  redis:\n    addr: \"" + addr + "\"",
		"type: etcd\n  etcd:\n    endpoints: [\"" + addr + "\"]",
		"type: zookeeper\n  zookeeper:\n    servers: [\"" + addr + "\"]",
	} {
		table := "backend:\n  " + backend + `
jobs:
  - name: a
    schedule: "* * * *"
    command: ["/bin/true"]
`
		path := writeFile(t, t.TempDir(), "jobs.yaml", table)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		code, stdout, stderr := run(t, ctx, "run", "--config", path)
		cancel()
		if code != cli.ExitUsage {
			t.Errorf("exit code %d, want %d", code, cli.ExitUsage)
		}
		if stdout != "" {
			t.Errorf("stdout = %q, want nothing", stdout)
		}
		checkFieldErrors(t, path, stderr, []fieldErr{{7, "jobs[0].schedule", "expected 5 or 6 fields, got 4"}}, true)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the backend got %d connections from runs of invalid tables, want none", n)
	}
}

func TestRunUnreachableRedis(t *testing.T) {
	// A loopback port that nothing listens on: connections are refused at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	path := writeFile(t, t.TempDir(), "jobs.yaml", `backend:
  type: redis
  redis:
    addr: "`+addr+`"
lock:
  ttl: 3s
jobs:
  - name: a
    schedule: "@every 1s"
    command: ["/bin/true"]
`)
	// Bounded: should run start scheduling despite the backend, the context
	// ends it, and the exit code tells.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, stdout, stderr := run(t, ctx, "run", "--config", path, "--replica", "r1")
	if code != cli.ExitFailure {
		t.Errorf("exit code %d, want %d", code, cli.ExitFailure)
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing", stdout)
	}
	var last string
	if ls := lines(stderr); len(ls) > 0 {
		last = ls[len(ls)-1]
	}
	for _, s := range []string{"scheduler run: ", path, "redis", addr} {
		if !strings.Contains(last, s) {
			t.Errorf("last stderr line %q does not contain %q", last, s)
		}
	}
	if strings.Contains(stderr, "scheduler started") {
		t.Errorf("the scheduler started on an unreachable backend")
	}
}
