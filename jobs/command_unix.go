//go:build unix

package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Run runs the program once for run and waits for it and for its output.
//
// It returns nil when the program exits with status 0. Otherwise it returns an
// error that wraps an *ExitError. When ctx ends first, the program is stopped
// (SIGTERM, then SIGKILL after Grace, both to its whole process group) and the
// error wraps context.Cause(ctx) as well, so the caller can tell a timeout from
// a lost lease or a shutdown. A program that cannot be started (a missing
// binary, a bad Dir) gives an error naming Argv[0].
func (c Command) Run(ctx context.Context, run Run) error {
	c = c.withDefaults()
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return errors.New("jobs: command: empty argv")
	}
	if ctx.Err() != nil {
		return c.errorf("not started: %w", context.Cause(ctx))
	}
	log := run.Log()

	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	if cmd.Err != nil { // argv[0] not found in PATH
		return c.errorf("cannot start: %w", cmd.Err)
	}
	if c.Dir != "" {
		// A missing Dir makes Start blame the binary; name the directory.
		if fi, err := os.Stat(c.Dir); err != nil {
			return c.errorf("cannot start: dir: %w", err)
		} else if !fi.IsDir() {
			return c.errorf("cannot start: dir %s: not a directory", c.Dir)
		}
	}
	cmd.Env = c.environ(run)
	cmd.Dir = c.Dir
	cmd.SysProcAttr = sysProcAttr()
	outR, outW, err := os.Pipe()
	if err != nil {
		return c.errorf("stdout pipe: %w", err)
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return c.errorf("stderr pipe: %w", err)
	}
	defer errR.Close()
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		return c.errorf("cannot start: %w", err)
	}
	pgid := cmd.Process.Pid // Setpgid: the program leads a group of its own

	out := newOutput(log, c.MaxLogLine, c.MaxOutput)
	var readers sync.WaitGroup
	readers.Go(func() { out.consume(outR, false) })
	readers.Go(func() { out.consume(errR, true) })

	exited := make(chan struct{})
	var (
		reaped  bool
		waitErr error
	)
	go func() {
		reaped, waitErr = waitExit(cmd)
		close(exited)
	}()

	stopped := false
	select {
	case <-exited:
	case <-ctx.Done():
		select {
		case <-exited: // it finished on its own just as ctx ended
		default:
			stopped = true
			log.Info("stopping program", zap.NamedError("cause", context.Cause(ctx)), zap.Duration("grace", c.Grace))
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			grace := time.NewTimer(c.Grace)
			select {
			case <-exited:
			case <-grace.C:
				log.Warn("program still running after grace; sending SIGKILL", zap.Duration("grace", c.Grace))
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				<-exited
			}
			grace.Stop()
		}
	}
	// The program has exited. Kill whatever it left behind in its group; on
	// Linux the program is not reaped yet, so pgid cannot have been reused.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if !reaped {
		waitErr = cmd.Wait()
	}

	// Every writer in the group is dead, so the pipes reach EOF, unless a
	// process left the group and kept them open: stop reading after Grace.
	drained := make(chan struct{})
	go func() {
		readers.Wait()
		close(drained)
	}()
	drain := time.NewTimer(c.Grace)
	select {
	case <-drained:
	case <-drain.C:
		log.Warn("output still open after the program exited; closing it")
		outR.Close()
		errR.Close()
		<-drained
	}
	drain.Stop()

	ee := exitError(waitErr, out)
	switch {
	case stopped && ee != nil:
		return c.errorf("stopped: %w: %w", context.Cause(ctx), ee)
	case stopped:
		return c.errorf("stopped: %w", context.Cause(ctx))
	case ee != nil:
		return c.errorf("%w", ee)
	case waitErr != nil:
		return c.errorf("wait: %w", waitErr)
	}
	return nil
}

// exitError turns a Wait error into an *ExitError, or nil if it is not an
// unsuccessful exit.
func exitError(err error, out *output) *ExitError {
	var xe *exec.ExitError
	if !errors.As(err, &xe) {
		return nil
	}
	ee := &ExitError{Code: xe.ExitCode(), Stderr: out.stderr()}
	if ws, ok := xe.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		ee.Signal = signalName(ws.Signal())
	}
	return ee
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGABRT: "SIGABRT", syscall.SIGALRM: "SIGALRM", syscall.SIGBUS: "SIGBUS",
	syscall.SIGFPE: "SIGFPE", syscall.SIGHUP: "SIGHUP", syscall.SIGILL: "SIGILL",
	syscall.SIGINT: "SIGINT", syscall.SIGKILL: "SIGKILL", syscall.SIGPIPE: "SIGPIPE",
	syscall.SIGQUIT: "SIGQUIT", syscall.SIGSEGV: "SIGSEGV", syscall.SIGTERM: "SIGTERM",
	syscall.SIGTRAP: "SIGTRAP", syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2",
	syscall.SIGXCPU: "SIGXCPU", syscall.SIGXFSZ: "SIGXFSZ",
}

func signalName(s syscall.Signal) string {
	if n, ok := signalNames[s]; ok {
		return n
	}
	return fmt.Sprintf("signal %d (%v)", int(s), s)
}
