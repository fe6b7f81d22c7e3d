//go:build unix

package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oncecron/oncecron/jobs"
	"go.uber.org/zap"
)

func ExampleCommand_Run() {
	run := jobs.Run{
		Job:       "backup",
		Scheduled: time.Date(2026, 11, 25, 2, 30, 0, 0, time.UTC),
		Token:     42,
		Attempt:   1,
		Replica:   "replica-a",
	}.WithLogger(zap.NewExample())

	c := jobs.Command{Argv: []string{"sh", "-c", `echo "backing up as of $ONCECRON_FIRE_TIME, token $ONCECRON_TOKEN"; exit 2`}}
	err := c.Run(context.Background(), run)
	var ee *jobs.ExitError
	if errors.As(err, &ee) {
		fmt.Println("exit code", ee.Code)
	}
	// Output:
	// {"level":"info","msg":"backing up as of 2026-11-25T02:30:00Z, token 42","job":"backup","scheduled":"2026-11-25T02:30:00.000Z","token":42,"attempt":1,"replica":"replica-a","stream":"stdout"}
	// exit code 2
}
