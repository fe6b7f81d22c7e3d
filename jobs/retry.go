package jobs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// MaxBackoff caps the wait between two attempts of Retry.
const MaxBackoff = time.Minute

// Retry calls fn up to attempts times (at least once) until it returns nil,
// passing the 1-based attempt number. Between attempts it waits initial, then
// twice as long each time, capped at MaxBackoff, each wait varied by a random
// ±10% so that replicas do not retry in lock step. An initial <= 0 retries at
// once.
//
// It returns nil on success and otherwise fn's last error. If ctx ends first
// (during a wait, or before an attempt) it stops early and the error wraps
// both fn's last error and context.Cause(ctx).
func Retry(ctx context.Context, attempts int, initial time.Duration, fn func(ctx context.Context, attempt int) error) error {
	attempts = max(attempts, 1)
	var last error
	delay := initial
	for attempt := 1; ; attempt++ {
		if last != nil && ctx.Err() != nil {
			return stopped(ctx, last, attempt-1)
		}
		last = fn(ctx, attempt)
		if last == nil {
			return nil
		}
		if attempt >= attempts {
			return last
		}
		if delay > 0 {
			t := time.NewTimer(Backoff(delay, rand.Float64()))
			select {
			case <-ctx.Done():
				t.Stop()
				return stopped(ctx, last, attempt)
			case <-t.C:
			}
			delay = min(2*delay, MaxBackoff)
		}
	}
}

// Backoff returns d varied by ±10% according to u in [0, 1) (0.5 gives d
// exactly) and capped at MaxBackoff.
func Backoff(d time.Duration, u float64) time.Duration {
	jittered := time.Duration(float64(d) * (0.9 + 0.2*u))
	return min(max(jittered, 0), MaxBackoff)
}

func stopped(ctx context.Context, last error, done int) error {
	return fmt.Errorf("%w (retries stopped after attempt %d: %w)", last, done, context.Cause(ctx))
}
