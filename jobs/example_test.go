package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oncecron/oncecron/jobs"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"
)

type greetArgs struct {
	Name string `yaml:"name"`
}

// A func is registered with the type of its args; the scheduler decodes the
// job's YAML args into that type and calls it with the Run of the tick.
func ExampleRegisterTo() {
	r := jobs.NewRegistry()
	err := jobs.RegisterTo(r, "demo.greet", func(ctx context.Context, run jobs.Run, args greetArgs) error {
		fmt.Printf("%s at %s: hello, %s (token %d)\n", run.Job, jobs.FireTime(run.Scheduled), args.Name, run.Token)
		return nil
	})
	if err != nil {
		panic(err)
	}

	var node yaml.Node
	if err := yaml.Unmarshal([]byte("name: world"), &node); err != nil {
		panic(err)
	}
	p, args, err := r.Decode("demo.greet", &node)
	if err != nil {
		panic(err)
	}
	run := jobs.Run{
		Job:       "greeter",
		Scheduled: time.Date(2026, 11, 25, 2, 30, 0, 0, time.UTC),
		Token:     7,
		Attempt:   1,
		Args:      args,
	}
	if err := jobs.SafeCall(context.Background(), p, run); err != nil {
		panic(err)
	}
	// Output: greeter at 2026-11-25T02:30:00Z: hello, world (token 7)
}

// CheckFunc validates a job's func and args when the config is loaded, with
// the line of the offending arg.
func ExampleRegistry_CheckFunc() {
	r := jobs.NewRegistry()
	_ = jobs.RegisterTo(r, "demo.greet", func(context.Context, jobs.Run, greetArgs) error { return nil })

	var cfg yaml.Node
	_ = yaml.Unmarshal([]byte(`jobs:
  - name: greeter
    func: demo.greet
    args:
      nmae: world
`), &cfg)
	job := cfg.Content[0].Content[1].Content[0]
	args := job.Content[5]

	fmt.Println(r.CheckFunc("demo.greet", args))
	fmt.Println(r.CheckFunc("demo.greeet", args))
	// Output:
	// jobs: func "demo.greet": args: line 5: field nmae not found in type jobs_test.greetArgs
	// jobs: unknown func "demo.greeet" (registered: demo.greet)
}

// A panic in a job function fails the run instead of crashing the replica.
func ExampleNoArgs() {
	p := jobs.NoArgs(func(context.Context, jobs.Run) error {
		var m map[string]int
		m["boom"]++ // a plugin bug
		return nil
	})
	err := p.Call(context.Background(), jobs.Run{Job: "buggy"})
	var pe *jobs.PanicError
	fmt.Println(errors.As(err, &pe))
	fmt.Println(err)
	// Output:
	// true
	// jobs: job "buggy" panicked: assignment to entry in nil map
}

func ExampleRun_WithLogger() {
	run := jobs.Run{
		Job:       "nightly",
		Scheduled: time.Date(2026, 11, 25, 2, 30, 0, 0, time.UTC),
		Token:     42,
		Attempt:   1,
		Replica:   "replica-a",
	}.WithLogger(zap.NewExample())
	run.Logger.Info("starting")
	// Output:
	// {"level":"info","msg":"starting","job":"nightly","scheduled":"2026-11-25T02:30:00.000Z","token":42,"attempt":1,"replica":"replica-a"}
}

func ExampleRetry() {
	err := jobs.Retry(context.Background(), 5, time.Millisecond, func(ctx context.Context, attempt int) error {
		fmt.Println("attempt", attempt)
		if attempt < 3 {
			return errors.New("backend unavailable")
		}
		return nil
	})
	fmt.Println("err:", err)
	// Output:
	// attempt 1
	// attempt 2
	// attempt 3
	// err: <nil>
}
