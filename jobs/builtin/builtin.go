// Package builtin registers oncecron's built-in plugins in the Default
// registry of package jobs. Import it for its side effect:
//
//	import _ "github.com/oncecron/oncecron/jobs/builtin"
//
// It registers:
//
//   - "example.hello", args {greeting: string}: logs "<greeting> from
//     <replica>" with the run's fields. The greeting defaults to "hello".
package builtin

import (
	"context"

	"github.com/oncecron/oncecron/jobs"
)

// HelloName is the func name of Hello.
const HelloName = "example.hello"

// HelloArgs are the args of "example.hello".
type HelloArgs struct {
	// Greeting is the first word logged; empty means "hello".
	Greeting string `yaml:"greeting"`
}

// Hello logs "<greeting> from <replica>" through run.Logger.
func Hello(_ context.Context, run jobs.Run, args HelloArgs) error {
	greeting := args.Greeting
	if greeting == "" {
		greeting = "hello"
	}
	run.Log().Info(greeting + " from " + run.Replica)
	return nil
}

func init() {
	jobs.Register(HelloName, Hello)
}
