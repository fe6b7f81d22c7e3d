package cli

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking/redislock"
)

// go-redis logs through one process-wide logger, stderr by default. The
// commands route it through their own zap logger: it is installed once
// (redis.SetLogger) and forwards to the logger of the command running now;
// with none, its messages are dropped (the command reports its errors itself).
var redisLog struct {
	once sync.Once
	cur  atomic.Pointer[redislock.Logger]
}

type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l := redisLog.cur.Load(); l != nil {
		l.Printf(ctx, format, v...)
	}
}

// routeRedisLog sends go-redis's messages to log until the returned function
// is called.
func routeRedisLog(log *zap.Logger) (restore func()) {
	redisLog.once.Do(func() { redis.SetLogger(redisLogger{}) })
	l := redislock.NewLogger(log)
	redisLog.cur.Store(l)
	return func() { redisLog.cur.CompareAndSwap(l, nil) }
}
