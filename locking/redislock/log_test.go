package redislock_test

import (
	"context"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oncecron/oncecron/locking/redislock"
)

func TestLogger(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	l := redislock.NewLogger(zap.New(core))
	l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v\n", 5, "refused")
	got := logs.All()
	if len(got) != 1 {
		t.Fatalf("got %d entries, want 1", len(got))
	}
	e := got[0]
	if e.Level != zap.WarnLevel || e.LoggerName != "go-redis" || e.Message != "connection pool: failed to dial after 5 attempts: refused" {
		t.Errorf("entry = %v %q %q", e.Level, e.LoggerName, e.Message)
	}
	redislock.NewLogger(nil).Printf(context.Background(), "nowhere") // must not panic
}
