package scheduler

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Defaults of the clock-offset check.
const (
	DefaultMaxClockOffset = time.Second
	clockCheckInterval    = 30 * time.Second
)

// clockState is the replica's last estimate of its clock's offset from the
// backend's.
type clockState struct {
	offset atomic.Int64 // nanoseconds; valid when known
	known  atomic.Bool
}

// ClockOffset returns the last estimate of how far this replica's clock is ahead
// of the backend's, and whether there is one (the backend may not tell).
func (s *Scheduler) ClockOffset() (time.Duration, bool) {
	return time.Duration(s.clock.offset.Load()), s.clock.known.Load()
}

// skewed reports whether the clock offset exceeds the budget: critical jobs are
// then left to replicas whose clocks agree with the backend.
func (s *Scheduler) skewed() bool {
	if s.o.MaxClockOffset < 0 || !s.clock.known.Load() {
		return false
	}
	off := time.Duration(s.clock.offset.Load())
	return off > s.maxOffset() || off < -s.maxOffset()
}

func (s *Scheduler) maxOffset() time.Duration {
	if s.o.MaxClockOffset == 0 {
		return DefaultMaxClockOffset
	}
	return s.o.MaxClockOffset
}

// watchClock estimates the clock offset now and every clockCheckInterval.
func (s *Scheduler) watchClock(ctx context.Context) {
	for {
		cctx, cancel := context.WithTimeout(ctx, s.o.TTL)
		off, rtt, err := s.locker.ClockOffset(cctx)
		cancel()
		switch {
		case errors.Is(err, errors.ErrUnsupported):
			s.log.Info("the backend cannot tell its clock; the clock offset is not checked")
			return
		case err != nil:
			s.log.Debug("clock offset not measured", zap.Error(err))
		default:
			s.clock.offset.Store(int64(off))
			s.clock.known.Store(true)
			s.emit(Event{Kind: EventClockOffset, Duration: off})
			if math.Abs(float64(off)) > float64(s.maxOffset()) {
				s.log.Warn("this replica's clock is off the backend's by more than the budget; critical jobs are left to other replicas",
					zap.Duration("offset", off), zap.Duration("budget", s.maxOffset()), zap.Duration("rtt", rtt))
			}
		}
		if sleep(ctx, s.o.Clock, clockCheckInterval) != nil {
			return
		}
	}
}
