package zklock

import (
	"context"
	"time"

	"github.com/go-zookeeper/zk"
)

// clockScope holds the node whose modification time reads the server's clock.
const clockScope = "_clock"

// ServerTime implements locking.ServerClock: it touches a node and returns its
// modification time, which the ZooKeeper leader stamps from its own clock (in
// milliseconds).
func (b *Backend) ServerTime(ctx context.Context) (time.Time, error) {
	if err := b.ensureScope(ctx, clockScope); err != nil {
		return time.Time{}, b.wrap("time", clockScope, err)
	}
	var stat *zk.Stat
	err := b.do(ctx, func() error {
		_, _, err := b.exec(func() error {
			var e error
			stat, e = b.conn.Set(b.fencePath(clockScope), nil, -1)
			return e
		})
		return err
	})
	if err != nil || abandoned(err) {
		return time.Time{}, b.wrap("time", clockScope, err)
	}
	return time.UnixMilli(stat.Mtime), nil
}
