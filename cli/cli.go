// Package cli is the scheduler command line: `scheduler run`, `validate`, `next`
// and `version`. cmd/scheduler is a thin main around Main; a program of your own
// that registers its job functions with jobs.Register calls Main the same way
// and gets the same commands:
//
//	func main() {
//		jobs.Register("payments.reconcile", reconcile)
//		os.Exit(cli.Main(context.Background(), os.Args[1:], cli.Options{}))
//	}
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes of Main.
const (
	ExitOK      = 0 // success
	ExitFailure = 1 // the command failed at run time (backend unreachable, …)
	ExitUsage   = 2 // bad command line or invalid configuration
)

// Version is the version `scheduler version` prints; set at build time with
// -ldflags "-X github.com/oncecron/oncecron/cli.Version=v1.2.3".
var Version = "devel"

// Options adapts Main to its caller. The zero value serves cmd/scheduler.
type Options struct {
	// Stdout and Stderr default to os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Registry holds the job functions; nil means jobs.Default().
	Registry Registry
}

// errUsage marks errors that are the caller's (exit code 2).
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }
func (e usageError) Is(t error) bool {
	return t == errUsage
}

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// Main runs the command line args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, o Options) int {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Registry == nil {
		o.Registry = defaultRegistry()
	}
	if len(args) == 0 {
		fmt.Fprint(o.Stderr, usage)
		return ExitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(ctx, rest, o)
	case "validate":
		err = cmdValidate(rest, o)
	case "next":
		err = cmdNext(rest, o)
	case "history":
		err = cmdHistory(ctx, rest, o)
	case "trigger":
		err = cmdTrigger(ctx, rest, o)
	case "status":
		err = cmdStatus(ctx, rest, o)
	case "version", "--version", "-version":
		fmt.Fprintf(o.Stdout, "scheduler %s\n", Version)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(o.Stdout, usage)
	default:
		err = usagef("unknown command %q (run `scheduler help` for the list)", cmd)
	}
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(o.Stderr, "scheduler %s: %v\n", cmd, err)
		return ExitUsage
	default:
		fmt.Fprintf(o.Stderr, "scheduler %s: %v\n", cmd, err)
		return ExitFailure
	}
}

const usage = `scheduler: a highly available cron; every replica reads the same table and
each tick runs once across them.

Usage:
  scheduler run      --config FILE [--replica NAME] [--log-format json|console] [--log-level LEVEL]
  scheduler validate --config FILE
  scheduler next     --config FILE [--count N] [JOB...]
  scheduler history  --config FILE [JOB] [--limit N] [--output table|json]
  scheduler trigger  --config FILE JOB [--id ID]
  scheduler status   --config FILE [--output table|json]
  scheduler version

Examples:
  scheduler run --config config/jobs.yaml --log-format console
  scheduler validate --config config/jobs.yaml
  scheduler next --config config/jobs.yaml --count 3 reconcile-payments
  scheduler history reconcile-payments --output json --config config/examples/redis.yaml
  scheduler trigger demo --config config/examples/redis.yaml

Exit codes: 0 success, 1 failure at run time, 2 bad command line or invalid config.
`

// parse parses flags and positional arguments in any order: flags may come
// before or after the arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name string, o Options, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(o.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(o.Stderr, "%s\nFlags:\n", strings.TrimSpace(help))
		fs.PrintDefaults()
	}
	return fs
}
