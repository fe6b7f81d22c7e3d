package redislock

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"
)

// Logger adapts a *zap.Logger to go-redis's process-wide logger, which
// otherwise writes its messages (failed dials, pool and Sentinel events) to
// stderr, outside the program's structured log:
//
//	redis.SetLogger(redislock.NewLogger(log))
//
// Each message becomes one Warn entry of the logger named "go-redis".
type Logger struct{ l *zap.Logger }

// NewLogger returns a Logger that writes to l (nil: nowhere).
func NewLogger(l *zap.Logger) *Logger {
	if l == nil {
		l = zap.NewNop()
	}
	return &Logger{l: l.Named("go-redis")}
}

// Printf logs one message of go-redis.
func (g *Logger) Printf(_ context.Context, format string, v ...any) {
	if ce := g.l.Check(zap.WarnLevel, ""); ce != nil {
		ce.Message = strings.TrimSpace(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
		ce.Write()
	}
}
