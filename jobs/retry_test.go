package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/oncecron/oncecron/jobs"
)

func TestRetry(t *testing.T) {
	tests := []struct {
		name      string
		attempts  int
		initial   time.Duration
		failures  int // fn fails this many times, then succeeds
		wantCalls int
		wantErr   string
		wantWaits []time.Duration // nominal waits, ±10% each
	}{
		{name: "first try", attempts: 3, initial: time.Second, failures: 0, wantCalls: 1},
		{name: "third try", attempts: 5, initial: time.Second, failures: 2, wantCalls: 3,
			wantWaits: []time.Duration{time.Second, 2 * time.Second}},
		{name: "exhausted", attempts: 3, initial: time.Second, failures: 99, wantCalls: 3, wantErr: "fail 3",
			wantWaits: []time.Duration{time.Second, 2 * time.Second}},
		{name: "zero attempts means one", attempts: 0, initial: time.Second, failures: 99, wantCalls: 1, wantErr: "fail 1"},
		{name: "capped at a minute", attempts: 4, initial: 40 * time.Second, failures: 99, wantCalls: 4, wantErr: "fail 4",
			wantWaits: []time.Duration{40 * time.Second, time.Minute, time.Minute}},
		{name: "no backoff", attempts: 3, initial: 0, failures: 99, wantCalls: 3, wantErr: "fail 3",
			wantWaits: []time.Duration{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var calls []time.Time
				err := jobs.Retry(context.Background(), tt.attempts, tt.initial, func(_ context.Context, attempt int) error {
					calls = append(calls, time.Now())
					if attempt != len(calls) {
						t.Errorf("attempt %d on call %d", attempt, len(calls))
					}
					if attempt <= tt.failures {
						return fmt.Errorf("fail %d", attempt)
					}
					return nil
				})
				if len(calls) != tt.wantCalls {
					t.Fatalf("%d calls, want %d", len(calls), tt.wantCalls)
				}
				if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
					t.Fatalf("Retry = %v, want %q", err, tt.wantErr)
				}
				for i, want := range tt.wantWaits {
					got := calls[i+1].Sub(calls[i])
					lo, hi := time.Duration(float64(want)*0.9), min(time.Duration(float64(want)*1.1), jobs.MaxBackoff)
					if got < lo || got > hi {
						t.Errorf("wait %d = %v, want %v ±10%% (at most %v)", i+1, got, want, jobs.MaxBackoff)
					}
				}
			})
		})
	}
}

func TestRetryStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		start := time.Now()
		calls := 0
		last := errors.New("still down")
		err := jobs.Retry(ctx, 10, time.Second, func(context.Context, int) error {
			calls++
			return last
		})
		// Attempt 1 at 0s, attempt 2 at ~1s, then a ~2s wait cut short at 1.5s.
		if calls != 2 || time.Since(start) != 1500*time.Millisecond {
			t.Fatalf("%d calls in %v", calls, time.Since(start))
		}
		if !errors.Is(err, last) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Retry = %v, want it to wrap the last error and the deadline", err)
		}
	})
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		d    time.Duration
		u    float64
		want time.Duration
	}{
		{time.Second, 0, 900 * time.Millisecond},
		{time.Second, 0.5, time.Second},
		{time.Second, 0.999999, 1099999800 * time.Nanosecond},
		{time.Minute, 0.9, time.Minute},
		{2 * time.Minute, 0, time.Minute},
		{0, 0.5, 0},
	}
	for _, tt := range tests {
		if got := jobs.Backoff(tt.d, tt.u); got != tt.want {
			t.Errorf("Backoff(%v, %v) = %v, want %v", tt.d, tt.u, got, tt.want)
		}
	}
}
