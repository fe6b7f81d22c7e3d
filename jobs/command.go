package jobs

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// Defaults of a Command.
const (
	// DefaultGrace is how long a program has between SIGTERM and SIGKILL.
	DefaultGrace = 5 * time.Second
	// DefaultMaxLogLine is the longest output line logged, in bytes.
	DefaultMaxLogLine = 4096
	// DefaultMaxOutput is how many bytes of output one run may log.
	DefaultMaxOutput int64 = 1 << 20
	// stderrTail is how much of the end of stderr an ExitError keeps.
	stderrTail = 1024
)

// Environment variables a Command sets for its program, on top of the
// replica's environment and Command.Env.
const (
	// EnvJob holds Run.Job.
	EnvJob = "ONCECRON_JOB"
	// EnvFireTime holds Run.Scheduled as FireTime formats it, e.g.
	// 2026-11-25T02:30:00Z.
	EnvFireTime = "ONCECRON_FIRE_TIME"
	// EnvToken holds Run.Token in decimal.
	EnvToken = "ONCECRON_TOKEN"
	// EnvReplica holds Run.Replica.
	EnvReplica = "ONCECRON_REPLICA"
	// EnvAttempt holds Run.Attempt in decimal.
	EnvAttempt = "ONCECRON_ATTEMPT"
)

// Command is a job that runs a program. The program is executed directly,
// without a shell, in a process group of its own.
//
// Its output is logged through run.Logger line by line: stdout at Info with
// stream=stdout, stderr at Warn with stream=stderr. Lines longer than
// MaxLogLine are cut (truncated=true); once MaxOutput bytes have been logged
// one "output truncated" line is logged and the rest is read and dropped.
//
// When ctx ends, the whole process group gets SIGTERM and, Grace later, if
// the program has not exited, SIGKILL. When the program exits, whatever is
// left in its process group (background children) is killed with SIGKILL: a
// run must not outlive its lease.
type Command struct {
	// Argv is the program and its arguments. Argv[0] is looked up in the
	// replica's PATH when it contains no slash.
	Argv []string
	// Env is added to the replica's environment, overriding it. The ONCECRON_*
	// variables are set last and cannot be overridden.
	Env map[string]string
	// Dir is the working directory; empty means the replica's.
	Dir string
	// Grace is the time between SIGTERM and SIGKILL; 0 means DefaultGrace.
	Grace time.Duration
	// MaxLogLine caps each logged line, in bytes; 0 means DefaultMaxLogLine.
	MaxLogLine int
	// MaxOutput caps the bytes of output logged per run; 0 means
	// DefaultMaxOutput.
	MaxOutput int64
}

// ExitError is returned by Command.Run when the program exits unsuccessfully.
type ExitError struct {
	// Code is the exit status, or -1 when the program was killed by a signal.
	Code int
	// Signal is the name of the signal that killed the program ("SIGKILL"),
	// or empty.
	Signal string
	// Stderr is the last KiB or so of the program's stderr, for the run record.
	Stderr string
}

// Error describes the exit status, e.g. "exit status 3" or "killed by
// SIGKILL". Command.Run wraps it with the program's name.
func (e *ExitError) Error() string {
	if e.Signal != "" {
		return "killed by " + e.Signal
	}
	return "exit status " + strconv.Itoa(e.Code)
}

func (c Command) withDefaults() Command {
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.MaxLogLine <= 0 {
		c.MaxLogLine = DefaultMaxLogLine
	}
	if c.MaxOutput <= 0 {
		c.MaxOutput = DefaultMaxOutput
	}
	return c
}

// FireTime formats t as ONCECRON_FIRE_TIME does: RFC 3339 in UTC with a "Z",
// with a fractional second only when it is not zero.
func FireTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// environ returns the program's environment. exec.Cmd keeps the last value of
// a duplicated key, so later entries win.
func (c Command) environ(run Run) []string {
	env := os.Environ()
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		env = append(env, k+"="+c.Env[k])
	}
	return append(env,
		EnvJob+"="+run.Job,
		EnvFireTime+"="+FireTime(run.Scheduled),
		EnvToken+"="+strconv.FormatUint(run.Token, 10),
		EnvReplica+"="+run.Replica,
		EnvAttempt+"="+strconv.Itoa(run.Attempt),
	)
}

// output logs a program's two streams under one budget.
type output struct {
	log     *zap.Logger
	maxLine int

	mu        sync.Mutex
	left      int64 // bytes that may still be logged
	truncated bool  // the "output truncated" line was logged
	tail      []byte
}

func newOutput(log *zap.Logger, maxLine int, maxOutput int64) *output {
	return &output{log: log, maxLine: maxLine, left: maxOutput}
}

// consume reads r to EOF (or a read error) and logs it line by line. It never
// stops reading early, so a chatty program never blocks on a full pipe.
func (o *output) consume(r io.Reader, stderr bool) {
	br := bufio.NewReaderSize(r, 32<<10)
	line := make([]byte, 0, min(o.maxLine, 4096))
	cut := false
	for {
		chunk, err := br.ReadSlice('\n')
		if stderr {
			o.keepTail(chunk)
		}
		full := err == nil
		if full {
			chunk = chunk[:len(chunk)-1]
			if n := len(chunk); n > 0 && chunk[n-1] == '\r' {
				chunk = chunk[:n-1]
			}
		}
		if room := o.maxLine - len(line); len(chunk) > room {
			line, cut = append(line, chunk[:room]...), true
		} else {
			line = append(line, chunk...)
		}
		if full || (err != bufio.ErrBufferFull && (len(line) > 0 || cut)) {
			o.emit(line, cut, stderr)
			line, cut = line[:0], false
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

func (o *output) keepTail(b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tail = append(o.tail, b...)
	if extra := len(o.tail) - stderrTail; extra > 0 {
		o.tail = append(o.tail[:0], o.tail[extra:]...)
	}
}

func (o *output) emit(line []byte, cut, stderr bool) {
	o.mu.Lock()
	if o.left < int64(len(line)) {
		first := !o.truncated
		o.truncated, o.left = true, 0
		o.mu.Unlock()
		if first {
			o.log.Warn("output truncated", zap.String("stream", streamName(stderr)))
		}
		return
	}
	o.left -= int64(len(line))
	o.mu.Unlock()
	fields := []zap.Field{zap.String("stream", streamName(stderr))}
	if cut {
		fields = append(fields, zap.Bool("truncated", true))
	}
	if stderr {
		o.log.Warn(string(line), fields...)
	} else {
		o.log.Info(string(line), fields...)
	}
}

func (o *output) stderr() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.tail
	for len(t) > 0 && !utf8.RuneStart(t[0]) {
		t = t[1:] // the cut fell inside a character
	}
	return string(t)
}

func streamName(stderr bool) string {
	if stderr {
		return "stderr"
	}
	return "stdout"
}

func (c Command) name() string {
	if len(c.Argv) == 0 {
		return ""
	}
	return c.Argv[0]
}

func (c Command) errorf(format string, args ...any) error {
	return fmt.Errorf("jobs: command %q: "+format, append([]any{c.name()}, args...)...)
}
