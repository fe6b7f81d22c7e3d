package locking

import "time"

// Clock is the narrow view of time that the lease watchdog uses, so tests can drive
// it. Now must carry a monotonic reading (as time.Now does): every lease deadline is
// computed from monotonic time, so wall-clock steps never change a lease's validity.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
	// AfterFunc calls f in its own goroutine after d; the returned Timer's Stop
	// reports whether it prevented the call (its C is nil).
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is the part of *time.Timer that Clock users need.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// SystemClock is the Clock of the running system.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer returns a timer of the time package.
func (SystemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

// AfterFunc returns time.AfterFunc's timer.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return sysTimer{time.AfterFunc(d, f)} }

type sysTimer struct{ t *time.Timer }

func (s sysTimer) C() <-chan time.Time { return s.t.C }
func (s sysTimer) Stop() bool          { return s.t.Stop() }
