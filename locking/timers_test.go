package locking

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock whose time moves only by advance, which runs the
// AfterFunc callbacks that come due, in order, in the caller's goroutine.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	armed  int // AfterFunc calls: how often the clock's timer was (re)armed
}

type fakeTimer struct {
	c    *fakeClock
	when time.Time
	f    func()
	live bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(time.Duration) Timer { panic("not used") }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed++
	t := &fakeTimer{c: c, when: c.now.Add(d), f: f, live: true}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return nil }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.live
	t.live = false
	return was
}

// advance moves the clock by d, firing due timers in order of due time.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.timers {
			if t.live && !t.when.After(end) && (next == nil || t.when.Before(next.when)) {
				next = t
			}
		}
		if next == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		next.live = false
		c.now = next.when
		c.mu.Unlock()
		next.f()
	}
}

func TestTimerSet(t *testing.T) {
	type step struct {
		at   time.Duration // when, from the start, the step happens
		arm  string        // a timer to arm, due after d
		d    time.Duration
		stop string // a timer to stop
		want bool   // what Stop reports
	}
	for _, tc := range []struct {
		name      string
		steps     []step
		until     time.Duration
		wantFired []string // in order
		wantArmed int      // times the clock's timer was armed
		together  bool     // some are due together: they run concurrently, in any order
	}{
		{
			name:      "in due order",
			steps:     []step{{arm: "b", d: 2 * time.Second}, {arm: "a", d: time.Second}, {arm: "c", d: 3 * time.Second}},
			until:     5 * time.Second,
			wantFired: []string{"a", "b", "c"},
			wantArmed: 4, // b, then a (earlier), then b and c after each firing
		},
		{
			name: "a later timer does not rearm the clock",
			steps: []step{
				{arm: "a", d: time.Second},
				{arm: "b", d: 1500 * time.Millisecond},
				{arm: "c", d: 1200 * time.Millisecond},
			},
			until:     2 * time.Second,
			wantFired: []string{"a", "c", "b"},
			wantArmed: 3,
		},
		{
			name: "stopped timers do not fire",
			steps: []step{
				{arm: "a", d: time.Second},
				{arm: "b", d: 2 * time.Second},
				{at: 500 * time.Millisecond, stop: "a", want: true},
				{at: 600 * time.Millisecond, stop: "a", want: false},
			},
			until:     3 * time.Second,
			wantFired: []string{"b"},
			wantArmed: 2, // a; at a's time nothing is due, so b
		},
		{
			name: "stop after firing reports false",
			steps: []step{
				{arm: "a", d: time.Second},
				{at: 2 * time.Second, stop: "a", want: false},
			},
			until:     3 * time.Second,
			wantFired: []string{"a"},
			wantArmed: 1,
		},
		{
			name: "the same due time fires all at once",
			steps: []step{
				{arm: "a", d: time.Second},
				{arm: "b", d: time.Second},
				{arm: "c", d: time.Second},
			},
			until:     time.Second,
			wantFired: []string{"a", "b", "c"},
			wantArmed: 1,
			together:  true,
		},
		{
			name: "one lease after another: no rearming",
			steps: []step{
				{arm: "a", d: time.Second},
				{at: 100 * time.Millisecond, stop: "a", want: true},
				{at: 100 * time.Millisecond, arm: "b", d: time.Second},
				{at: 200 * time.Millisecond, stop: "b", want: true},
				{at: 200 * time.Millisecond, arm: "c", d: time.Second},
			},
			until:     2 * time.Second,
			wantFired: []string{"c"},
			wantArmed: 2, // a, then c when a's time came with nothing due
		},
		{
			name:      "zero and negative durations fire at once",
			steps:     []step{{arm: "a", d: -time.Second}, {arm: "b", d: 0}},
			until:     0,
			wantFired: []string{"a", "b"},
			wantArmed: 1,
			together:  true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
			start := clk.Now()
			s := &timerSet{clock: clk}
			var mu sync.Mutex
			var fired []string
			timers := map[string]Timer{}
			for _, st := range tc.steps {
				if d := st.at - clk.Now().Sub(start); d > 0 {
					clk.advance(d)
				}
				if st.arm != "" {
					name := st.arm
					timers[name] = s.AfterFunc(st.d, func() {
						mu.Lock()
						defer mu.Unlock()
						if now := clk.Now(); now.Before(start.Add(max(st.at+st.d, st.at))) {
							t.Errorf("%s fired at %v, before it was due", name, now.Sub(start))
						}
						fired = append(fired, name)
					})
				}
				if st.stop != "" {
					if got := timers[st.stop].Stop(); got != st.want {
						t.Errorf("Stop(%s) at %v = %v, want %v", st.stop, st.at, got, st.want)
					}
				}
			}
			clk.advance(tc.until - clk.Now().Sub(start))
			deadline := time.Now().Add(5 * time.Second) // all but the last due run in goroutines
			for {
				mu.Lock()
				n := len(fired)
				mu.Unlock()
				if n >= len(tc.wantFired) || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			mu.Lock()
			got := slices.Clone(fired)
			mu.Unlock()
			want := tc.wantFired
			if tc.together {
				slices.Sort(got)
				want = slices.Sorted(slices.Values(want))
			}
			if !slices.Equal(got, want) {
				t.Errorf("fired %v, want %v", fired, tc.wantFired)
			}
			if clk.armed != tc.wantArmed {
				t.Errorf("the clock's timer was armed %d times, want %d", clk.armed, tc.wantArmed)
			}
		})
	}
}
