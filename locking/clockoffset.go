package locking

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ClockOffset estimates how far this process's wall clock is ahead of the
// backend server's (negative: behind), Cristian-style: the server's time is
// taken to be read half-way through the round trip, so the estimate is good to
// within rtt/2 (also returned). It wraps errors.ErrUnsupported for backends that
// cannot read their server's clock (etcd).
func (l *Locker) ClockOffset(ctx context.Context) (offset, rtt time.Duration, err error) {
	sc, ok := l.b.(ServerClock)
	if !ok {
		return 0, 0, fmt.Errorf("locking: clock offset: %w by this backend", errors.ErrUnsupported)
	}
	t0 := l.opts.clock.Now()
	st, err := sc.ServerTime(ctx)
	t1 := l.opts.clock.Now()
	if err != nil {
		return 0, 0, err
	}
	rtt = t1.Sub(t0)
	mid := t0.Add(rtt / 2)
	return mid.Round(0).Sub(st), rtt, nil
}
