package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oncecron/oncecron/cli"
	"github.com/oncecron/oncecron/internal/testenv"
)

// TestRedisLogsThroughZap: go-redis's own messages (here its failed dials)
// reach the replica's JSON log, from the logger "go-redis", instead of
// go-redis's default plain-text stderr logger.
func TestRedisLogsThroughZap(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) // nothing listens
	path := writeFile(t, t.TempDir(), "jobs.yaml", fmt.Sprintf(`backend: {type: redis, redis: {addr: %q}}
jobs:
  - {name: a, schedule: "@every 1s", command: ["/bin/true"]}
`, addr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, _, stderr := run(t, ctx, "run", "--config", path, "--log-format", "json")
	if code != cli.ExitFailure {
		t.Errorf("exit code %d, want %d", code, cli.ExitFailure)
	}
	ls := lines(stderr)
	if len(ls) < 2 {
		t.Fatalf("stderr has %d lines, want go-redis's log and the error", len(ls))
	}
	found := false
	for _, l := range ls[:len(ls)-1] { // the last line is the command's error
		var e struct{ Level, Logger, Msg string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Errorf("a log line is not JSON: %q", l)
			continue
		}
		if e.Logger == "go-redis" && e.Level == "warn" && strings.Contains(e.Msg, "failed to dial") {
			found = true
		}
	}
	if !found {
		t.Errorf("no go-redis entry about the failed dial in the JSON log:\n%s", stderr)
	}
}
